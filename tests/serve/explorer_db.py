"""A database for the explorer's feature tests, built the way a campaign builds one.

Li-Mn-O with the crowded middle of the issue (LiMnO2, LiMn2O4 and Mn3O4 all on the hull, with
Li2MnO3, and unstable polymorphs), rock-salt NaCl, a quaternary Li-Mn-Na-O corner, two
campaigns ("alpha", "beta") on Li-Mn-O with rounds and metrics, and the records a lineage is
made of: SAPS and random-search candidates, screen predictions, calculations, and a DFT entry
started from an ML-relaxed one. Energies go through make_entry and the HullEngine.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pymatgen.core import Lattice, Structure

from gnomon.pipeline.thermo.entries import make_entry
from gnomon.pipeline.thermo.hull import HullEngine
from gnomon.storage import (
    Calculation,
    Campaign,
    Candidate,
    Entry,
    Prediction,
    Round,
    open_repository,
)

SCHEME = "mlip-test-1.0"
DFT = "qe-pbe-test"
REFS = {"Li": -1.9, "Mn": -9.0, "O": -4.9, "Na": -1.3, "Cl": -1.8}  # eV/atom


def rocksalt(a: str, b: str, lattice: float) -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(lattice), [a, b],
                                     [[0, 0, 0], [0.5, 0.5, 0.5]])


def grid(species: list[str], spacing: float = 2.1) -> Structure:
    k = 1
    while k**3 < len(species):
        k += 1
    coords = [[(i // (k * k)) / k, ((i // k) % k) / k, (i % k) / k] for i in range(len(species))]
    return Structure(Lattice.cubic(k * spacing), species, coords)


def structures() -> dict[str, Structure]:
    """name -> structure; a name's formula is its structure's."""
    out = {
        "Li": Structure.from_spacegroup("Im-3m", Lattice.cubic(3.44), ["Li"], [[0, 0, 0]]),
        "Mn": Structure.from_spacegroup("Im-3m", Lattice.cubic(2.9), ["Mn"], [[0, 0, 0]]),
        "O": Structure(Lattice.cubic(3.2), ["O", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        "Na": Structure.from_spacegroup("Im-3m", Lattice.cubic(4.23), ["Na"], [[0, 0, 0]]),
        "Cl": Structure(Lattice.cubic(3.6), ["Cl", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        "NaCl": rocksalt("Na", "Cl", 5.64),
        "MnO": rocksalt("Mn", "O", 4.44),
        "Li2O": Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.62), ["O", "Li"],
                                          [[0, 0, 0], [0.25, 0.25, 0.25]]),
        "LiMnO2": Structure.from_spacegroup("R-3m", Lattice.hexagonal(2.9, 14.4),
                                            ["Li", "Mn", "O"],
                                            [[0, 0, 0.5], [0, 0, 0], [0, 0, 0.26]]),
        "Mn3O4": grid(["Mn"] * 3 + ["O"] * 4),
        "LiMn2O4": grid(["Li"] + ["Mn"] * 2 + ["O"] * 4),
        "Li2MnO3": grid(["Li"] * 2 + ["Mn"] + ["O"] * 3),
        "MnO2": grid(["Mn"] + ["O"] * 2),
        "LiMn3O4": grid(["Li"] + ["Mn"] * 3 + ["O"] * 4),
        "LiMnO2-b": grid(["Li", "Mn", "O", "O"]),
        "LiNaMnO3": grid(["Li", "Na", "Mn", "O", "O", "O"]),
    }
    return out


# formation energies, eV/atom: LiMnO2, LiMn2O4 and Mn3O4 all on the hull
FORMATION = {"NaCl": -2.1, "MnO": -1.9, "Li2O": -2.0, "LiMnO2": -2.2, "Mn3O4": -2.05,
             "LiMn2O4": -2.15, "Li2MnO3": -2.1, "MnO2": -1.75, "LiMn3O4": -1.9,
             "LiMnO2-b": -2.1, "LiNaMnO3": -1.6}
FOUND = {"LiMnO2": ("alpha", 0), "LiMn2O4": ("alpha", 1), "Li2MnO3": ("beta", 0),
         "LiMn3O4": ("alpha", 1)}


def _energy(s: Structure, name: str, shift: float = 0.0) -> float:
    comp = s.composition
    epa = sum(REFS[el.symbol] * n for el, n in comp.items()) / comp.num_atoms
    return (epa + FORMATION.get(name, 0.0) + shift) * comp.num_atoms


def _candidate(name: str, s: Structure, generator: str, **fields) -> Candidate:
    return Candidate(id=f"cand-{name}", structure=s.as_dict(), formula=s.formula,
                     reduced_formula=s.composition.reduced_formula,
                     chemsys=s.composition.chemical_system, nsites=len(s), generator=generator,
                     **fields)


def build(url: str) -> str:
    """Fill the database at ``url``; returns ``url``."""
    repo = open_repository(url)
    ss = structures()
    entries, candidates = [], []
    for name, s in ss.items():
        campaign, rnd = FOUND.get(name, (None, None))
        prov = {"source": f"relax <{name}>" if campaign else "imported", "campaign": campaign,
                "round": rnd}
        if campaign:
            gen = "random-pyxtal" if name == "Li2MnO3" else "saps"
            fields = ({"template_id": "entry:" + "TEMPLATE", "substitution": {"Co": "Mn"},
                       "replaced_fraction": 1.0, "extra": {"template_spacegroup": "R-3m"}}
                      if gen == "saps" else {"extra": {"space_group": 12}})
            candidates.append(_candidate(name, s, gen, campaign=campaign, round=rnd, seed=7,
                                         **fields))
            prov.update(candidate_id=f"cand-{name}", calculation_id=f"cand-{name}:mlip",
                        code_version="chgnet 0.4.2 model 0.3.0")
        entries.append(make_entry(s.composition, _energy(s, name), SCHEME, structure=s,
                                  **prov))
    # an energy without a structure
    entries.append(make_entry("Li4O3", (REFS["Li"] * 4 + REFS["O"] * 3) - 7 * 1.5, SCHEME,
                              source="table"))
    HullEngine(repo).ingest(entries)
    by_name = dict(zip(ss, entries, strict=False))
    template = by_name["MnO"].id
    for c in candidates:
        if c.template_id:
            c.template_id = f"entry:{template}"
    repo.put(candidates)
    _stage_two(repo, ss, by_name)
    _records(repo, by_name)
    repo.close()
    return url


def _stage_two(repo, ss: dict[str, Structure], by_name: dict[str, Entry]) -> None:
    """LiMn2O4 relaxed again with DFT from its ML-relaxed structure (references too)."""
    refs = [make_entry(ss[el].composition, _energy(ss[el], el, 0.0), DFT, structure=ss[el],
                       source="reference") for el in ("Li", "Mn", "O")]
    s = ss["LiMn2O4"]
    parent = by_name["LiMn2O4"]
    dft_cand = _candidate("LiMn2O4-dft", s, "saps", campaign="alpha", round=1,
                          parent_candidate_id="cand-LiMn2O4", parent_entry_id=parent.id)
    repo.put([dft_cand])
    dft = make_entry(s.composition, _energy(s, "LiMn2O4", -0.05), DFT, structure=s,
                     source="relax:qe", campaign="alpha", round=1, candidate_id=dft_cand.id,
                     calculation_id="cand-LiMn2O4-dft:qe", code_version="pw.x 7.2",
                     parent_entry_id=parent.id)
    HullEngine(repo).ingest([*refs, dft])


def _records(repo, by_name: dict[str, Entry]) -> None:
    """Predictions, calculations, campaigns and rounds around the found phases."""
    when = datetime(2026, 1, 2, tzinfo=UTC)
    preds, calcs = [], []
    for name, (campaign, rnd) in FOUND.items():
        cid = f"cand-{name}"
        preds.append(Prediction(id=Prediction.key(cid, "gnn-v1"), candidate_id=cid,
                                model_version="gnn-v1", scheme=SCHEME, energy_per_atom=-6.1,
                                sigma=0.05, e_above_hull=0.01, campaign=campaign, round=rnd,
                                created_at=when))
        calcs.append(Calculation(id=f"{cid}:mlip", candidate_id=cid, engine="mlip",
                                 scheme=SCHEME, settings_hash="mlip", state="done",
                                 dispatcher="local", batch_id="local:1", attempts=1,
                                 task_doc={"code": "chgnet", "converged": True,
                                           "n_ionic_steps": 12, "walltime_s": 3.5},
                                 entry_id=by_name[name].id, campaign=campaign, round=rnd))
    calcs.append(Calculation(id="cand-LiMn2O4-dft:qe", candidate_id="cand-LiMn2O4-dft",
                             engine="qe", scheme=DFT, settings_hash="qe", state="done",
                             dispatcher="slurm", batch_id="4242", attempts=2,
                             task_doc={"code": "pw.x", "converged": True, "walltime_s": 812.0}))
    repo.put(preds)
    repo.put(calcs)
    config = {"elements": ["Li", "Mn", "O"]}
    repo.put([Campaign(id="alpha", name="alpha", config=config, status="done", rounds_done=2),
              Campaign(id="beta", name="beta", config=config, status="done", rounds_done=1)])
    ids = {n: by_name[n].id for n in FOUND}
    repo.put([
        Round(id=Round.key("alpha", 0), campaign="alpha", index=0,
              outputs={"ingest": {"entries": [ids["LiMnO2"]]}},
              metrics={"relaxed": 4, "failed": 1, "stable_vs_previous": 1, "hit_rate": 0.25,
                       "new_stable": 1, "generated": 30}),
        Round(id=Round.key("alpha", 1), campaign="alpha", index=1,
              outputs={"ingest": {"entries": [ids["LiMn2O4"], ids["LiMn3O4"]]}},
              metrics={"relaxed": 5, "failed": 0, "stable_vs_previous": 2, "hit_rate": 0.4,
                       "new_stable": 1, "generated": 40}),
        Round(id=Round.key("beta", 0), campaign="beta", index=0,
              outputs={"ingest": {"entries": [ids["Li2MnO3"]]}},
              metrics={"relaxed": 8, "failed": 2, "stable_vs_previous": 1, "hit_rate": 0.125,
                       "new_stable": 1, "generated": 50}),
    ])
