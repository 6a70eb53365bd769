"""What an ML-potential stage between the screen and DFT is worth (issue #16). Prints two tables.

    nice -n 10 .venv/bin/python bench/funnel.py qe [--n 12]  # needs pw.x, quantum-espresso-data
    nice -n 10 .venv/bin/python bench/funnel.py world [--systems 10] [--mlip-steps 0]
    nice -n 10 .venv/bin/python bench/funnel.py all

**qe** (the "DFT starts closer to its minimum" claim): a dozen SAPS binary candidates (AFLOW
prototypes of at most ``--max-sites`` sites, substituted into Mg-Si, Al-Mg and Al-Si, the
elements with norm-conserving pseudopotentials in Debian's quantum-espresso-data, so a
relaxation takes seconds), each relaxed by pw.x (vc-relax) twice: from the raw candidate, and
from the structure CHGNet relaxed it to (the campaign's mlip stage, default settings), idealised
to its space group as the campaign hands it on (``gnomon.campaign.steps.dft_start``). Per
relaxation: DFT ionic steps, wall time, the energy reached; and whether both starts reach the
same minimum (|ΔE| within ``--tolerance`` eV/atom). The CHGNet time is reported beside, since
the mlip stage is not free. LDA pseudopotentials (vbc) at ``--ecutwfc`` Ry: the comparison is
between two starts of the same DFT, not an accurate DFT.

**world** (the "more of the DFT calls end stable" claim), in simulation on the benchmark world
(bench/world): the oracle (CHGNet labels, ``is_stable`` on the world's hull) stands in for DFT;
SevenNet-0 (zero-shot, a different potential) is the mlip stage. Whole binary systems of the
world are taken (``--systems``, seeded), so each system's hull is complete in both schemes.
Without the mlip stage every candidate is a DFT call; with it, only those within
``--gate`` eV/atom of SevenNet's own hull (its elements and the system's candidates, all in
SevenNet) are. Reported: DFT calls, stable found, and the share of DFT calls that end stable,
per arm. ``--mlip-steps 0`` (default on a small machine) judges each candidate by a SevenNet
single point at the oracle-relaxed structure, a stand-in for SevenNet relaxing it to the same
minimum; ``--mlip-steps N`` relaxes each unrelaxed candidate in SevenNet (FIRE, cell and
positions), as the stage would, and costs about N single points per candidate.

Tables, never assertions; timings are what this machine gave on the day.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import random
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORLD_FILE = HERE / "world" / "world.jsonl.gz"
PSEUDO_DIR = Path("/usr/share/espresso/pseudo")
PSEUDOS = {"Mg": "Mg.pz-n-vbc.UPF", "Si": "Si.pz-vbc.UPF", "Al": "Al.pz-vbc.UPF"}
SYSTEMS = (("Mg", "Si"), ("Al", "Mg"), ("Al", "Si"))

log = logging.getLogger("funnel")


# -- (a) QE from the raw candidate vs from the CHGNet-relaxed one ---------------------------------
@dataclass
class Run:
    steps: int | None
    wall_s: float
    energy_per_atom: float | None
    error: str | None = None


def saps_candidates(n: int, max_sites: int, seed: int):
    """``n`` SAPS candidates spread over the three binaries, small cells first."""
    from gnomon.pipeline.generation.saps import SAPSGenerator
    from gnomon.pipeline.generation.templates import prototype_templates

    per_system = -(-n // len(SYSTEMS))
    out = []
    for k, elements in enumerate(SYSTEMS):
        gen = SAPSGenerator(
            elements=elements,
            threshold=0.001,
            partial=True,
            max_per_template=2,
            seed=seed + k,
            max_species=2,
        )
        found = [
            c
            for c in gen.generate(prototype_templates(max_sites=max_sites, max_species=2))
            if c.chemsys == "-".join(sorted(elements))
        ]
        found.sort(key=lambda c: (c.nsites, c.id))
        rng = random.Random(seed + k)
        out.append(rng.sample(found, min(per_system, len(found))))
    interleaved = [
        c for group in zip_longest(*out) for c in group if c is not None
    ]  # every system early
    return interleaved[:n]


def qe_run(engine, structure, workdir: Path) -> Run:
    from gnomon.dft.errors import RelaxationError

    start = time.perf_counter()
    try:
        doc = engine.relax(structure, workdir)
    except RelaxationError as exc:
        return Run(None, time.perf_counter() - start, None, str(exc).splitlines()[0][:80])
    wall = time.perf_counter() - start
    return Run(doc.n_ionic_steps, wall, doc.energy / len(structure))


def bench_qe(
    n: int, ecutwfc: float, kspacing: float, max_sites: int, tolerance: float, seed: int
) -> None:
    from pymatgen.core import Structure

    from gnomon.campaign.steps import dft_start
    from gnomon.dft.forcefield import CHGNetEngine
    from gnomon.dft.qe import QEEngine
    from gnomon.dft.settings import QESettings

    if shutil.which("pw.x") is None or not all(
        (PSEUDO_DIR / f).is_file() for f in PSEUDOS.values()
    ):
        print("qe: skipped (pw.x or the vbc pseudopotentials of quantum-espresso-data are missing)")
        return
    qe = QEEngine(
        QESettings(
            ecutwfc=ecutwfc,
            kspacing=kspacing,
            functional="pz",
            pseudo_family="vbc",
            pseudo_map=PSEUDOS,
            pseudo_dir=PSEUDO_DIR,
        )
    )
    ml = CHGNetEngine()
    candidates = saps_candidates(n, max_sites, seed)
    print(
        f"\n(a) QE vc-relax from the raw SAPS candidate vs from its CHGNet-relaxed structure "
        f"(LDA vbc, {ecutwfc:g} Ry, k-spacing {kspacing:g} 1/Å; same minimum: |ΔE| ≤ "
        f"{tolerance * 1000:g} meV/atom)"
    )
    head = (
        "candidate",
        "sites",
        "CHGNet steps",
        "CHGNet s",
        "QE steps raw",
        "QE steps ML",
        "QE s raw",
        "QE s ML",
        "E raw (eV/at)",
        "E ML (eV/at)",
        "ΔE meV/at",
        "same min",
    )
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head), flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="funnel-qe-") as tmp:
        for i, cand in enumerate(
            candidates
        ):  # each row printed when done: a cut-short run still reports
            raw = Structure.from_dict(cand.structure)
            t = time.perf_counter()
            ml_doc = ml.relax(raw, Path(tmp, f"{i}-chgnet"))
            ml_s = time.perf_counter() - t
            relaxed = dft_start(
                Structure.from_dict(ml_doc.structure)
            )  # as the mlip_gate step hands it on
            a = qe_run(qe, raw, Path(tmp, f"{i}-raw"))
            b = qe_run(qe, relaxed, Path(tmp, f"{i}-ml"))
            rows.append((cand, ml_s, ml_doc.n_ionic_steps, a, b))
            de = (
                (b.energy_per_atom - a.energy_per_atom) * 1000
                if a.steps is not None and b.steps is not None
                else None
            )
            print(
                f"| {cand.reduced_formula} ({cand.id[:6]}) | {cand.nsites} | "
                f"{ml_doc.n_ionic_steps} | {ml_s:.1f} | "
                f"{a.steps if a.steps is not None else 'failed: ' + (a.error or '')} | "
                f"{b.steps if b.steps is not None else 'failed: ' + (b.error or '')} | "
                f"{a.wall_s:.1f} | "
                f"{b.wall_s:.1f} | {_f(a.energy_per_atom, 4)} | {_f(b.energy_per_atom, 4)} | "
                f"{_f(de, 1)} | "
                f"{'–' if de is None else ('yes' if abs(de) <= tolerance * 1000 else 'no')} |",
                flush=True,
            )
    ok = [(a, b) for _, _, _, a, b in rows if a.steps is not None and b.steps is not None]
    if ok:
        steps_raw = sum(a.steps for a, _ in ok) / len(ok)
        steps_ml = sum(b.steps for _, b in ok) / len(ok)
        wall_raw = sum(a.wall_s for a, _ in ok) / len(ok)
        wall_ml = sum(b.wall_s for _, b in ok) / len(ok)
        same = sum(abs(b.energy_per_atom - a.energy_per_atom) <= tolerance for a, b in ok)
        ml_total = sum(r[1] for r in rows) / len(rows)
        print(
            f"| **mean over {len(ok)}** | | | {ml_total:.1f} | {steps_raw:.1f} | {steps_ml:.1f} | "
            f"{wall_raw:.1f} | {wall_ml:.1f} | | | | {same}/{len(ok)} |"
        )


def _f(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


# -- (b) the world: share of DFT calls that end stable, with and without the mlip stage -----------
def world_records() -> list[dict]:
    with gzip.open(WORLD_FILE, "rt") as fh:
        return [json.loads(line) for line in fh]


def sevennet_e(records: list[dict], steps: int, fmax: float) -> list[float]:
    """SevenNet's energy per atom: a single point at the oracle-relaxed structure (steps=0), or
    after relaxing the unrelaxed candidate ``steps`` FIRE steps."""
    from pymatgen.core import Structure

    from gnomon.models.peers import sevennet_energies

    key = "relaxed" if steps == 0 else "unrelaxed"
    structures = [Structure.from_dict(r.get(key) or r["relaxed"]) for r in records]
    return list(sevennet_energies(structures, relax_steps=steps, fmax=fmax))


def e_above_own_hull(records: list[dict], energies: list[float]) -> list[float]:
    """e_above_hull of each record on the hull of all ``records`` (one system, one scheme)."""
    from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
    from pymatgen.core import Composition

    entries = [
        PDEntry(Composition(r["formula"]), e * Composition(r["formula"]).num_atoms)
        for r, e in zip(records, energies, strict=True)
    ]
    pd = PhaseDiagram(entries)
    return [pd.get_e_above_hull(e) for e in entries]


def bench_world(n_systems: int, mlip_steps: int, fmax: float, gate: float, seed: int) -> None:
    import torch

    torch.set_num_threads(1)
    records = world_records()
    elements = {r["chemsys"]: r for r in records if r["generator"] == "element"}
    by_system: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        if len(r["chemsys"].split("-")) == 2:
            by_system[r["chemsys"]].append(r)
    systems = sorted(s for s in by_system if all(el in elements for el in s.split("-")))
    chosen = sorted(random.Random(seed).sample(systems, min(n_systems, len(systems))))
    start = time.perf_counter()
    rows = []
    for chemsys in chosen:
        refs = [elements[el] for el in chemsys.split("-")]
        cands = by_system[chemsys]
        energies = sevennet_e(refs + cands, mlip_steps, fmax)
        e_hull = e_above_own_hull(refs + cands, energies)[len(refs) :]
        passed = [r for r, e in zip(cands, e_hull, strict=True) if e <= gate]
        rows.append((chemsys, cands, passed))
        log.info(
            "%s: %d candidates, %d within %.2f eV/atom of the SevenNet hull",
            chemsys,
            len(cands),
            len(passed),
            gate,
        )
    took = time.perf_counter() - start
    mode = (
        "single point at the oracle-relaxed structure"
        if mlip_steps == 0
        else f"relaxed {mlip_steps} FIRE steps from the candidate"
    )
    print(
        "\n(b) The world (oracle = CHGNet labels for DFT; mlip stage = SevenNet-0 zero-shot, "
        f"{mode}; "
        f"gate {gate:g} eV/atom on SevenNet's own hull), {len(chosen)} whole binary systems, "
        f"SevenNet time {took:.0f} s"
    )
    head = (
        "system",
        "candidates",
        "stable",
        "DFT calls without",
        "stable share without",
        "DFT calls with",
        "stable found with",
        "stable share with",
    )
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    tot = [0, 0, 0, 0]
    for chemsys, cands, passed in rows:
        stable = sum(r["is_stable"] for r in cands)
        found = sum(r["is_stable"] for r in passed)
        tot = [tot[0] + len(cands), tot[1] + stable, tot[2] + len(passed), tot[3] + found]
        print(
            f"| {chemsys} | {len(cands)} | {stable} | {len(cands)} | {_share(stable, len(cands))} "
            "| "
            f"{len(passed)} | {found} | {_share(found, len(passed))} |"
        )
    print(
        f"| **all** | {tot[0]} | {tot[1]} | {tot[0]} | {_share(tot[1], tot[0])} | {tot[2]} | "
        f"{tot[3]} | "
        f"{_share(tot[3], tot[2])} |"
    )


def _share(k: int, n: int) -> str:
    return "–" if n == 0 else f"{k / n:.3f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("qe", "world", "all"))
    parser.add_argument("--n", type=int, default=12, help="qe: SAPS candidates")
    parser.add_argument("--max-sites", type=int, default=4, help="qe: prototype sites at most")
    parser.add_argument("--ecutwfc", type=float, default=16.0)
    parser.add_argument("--kspacing", type=float, default=0.5)
    parser.add_argument(
        "--tolerance", type=float, default=0.005, help="qe: same minimum within, eV/atom"
    )
    parser.add_argument("--systems", type=int, default=10, help="world: binary systems")
    parser.add_argument(
        "--mlip-steps", type=int, default=0, help="world: SevenNet FIRE steps (0: single point)"
    )
    parser.add_argument("--fmax", type=float, default=0.1)
    parser.add_argument("--gate", type=float, default=0.1, help="world: mlip_e_above_hull, eV/atom")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    print(f"bench/funnel.py {' '.join(argv or sys.argv[1:])}  ({time.strftime('%Y-%m-%d')})")
    if args.part in ("qe", "all"):
        bench_qe(args.n, args.ecutwfc, args.kspacing, args.max_sites, args.tolerance, args.seed)
    if args.part in ("world", "all"):
        bench_world(args.systems, args.mlip_steps, args.fmax, args.gate, args.seed)


if __name__ == "__main__":
    main()
