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

**campaigns** (issue #26's cost-aware benchmark): replayed campaigns on the held-out systems,
first build known, 5 rounds x 3 seeds (random: 20 seeds, since its mean divides every ratio):
random; the screen; the screen fine-tuned each round; the distilled screen; the screen with a
SevenNet stage (SevenNet-0 calibrated; or a fine-tuned checkpoint, ``--tuned-model``, raw;
with a gate that fills the oracle budget, ``--fill``; ranked for the stage by the screen's
lower confidence bound, ``--kappa``); and perfect knowledge, the ceiling. Stable per 100
oracle calls, per-round hit rate, share of the ceiling, CPU-seconds of every stage, stable per
CPU-hour; docs/bench/funnel-campaigns.md and .png. Fill the SevenNet caches first (resumable):

    nice -n 5 .venv/bin/python bench/funnel.py cache --head 1000          # SevenNet-0
    nice -n 5 .venv/bin/python bench/funnel.py cache --head 1000 --stage-model CHECKPOINT
    nice -n 5 .venv/bin/python bench/funnel.py cache --order minima       # calibration pairs
    nice -n 5 .venv/bin/python bench/funnel.py campaigns --budget 10 --pairs minima \
        --tuned-model CHECKPOINT

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

import numpy as np

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


# -- (c) SevenNet-0 on disk: single points on training rows, relaxations of the pool ------------
CACHE = HERE / "results" / "sevennet"
#: The checkpoint ``sevenn`` ships (SevenNet-0); any other stage model is a checkpoint path.
ZERO_SHOT = "7net-0"


def stage_cache(model: str = ZERO_SHOT) -> Path:
    """The relaxation cache of a stage model: SevenNet-0's is ``results/sevennet``; a
    fine-tuned checkpoint's is named after its run folder (``results/sevennet-<run>``)."""
    return CACHE if model == ZERO_SHOT else CACHE.parent / f"sevennet-{Path(model).parent.name}"


def stage_calculator(model: str = ZERO_SHOT):
    """SevenNet's calculator for ``model`` (its shipped name or a checkpoint path)."""
    from gnomon.dft.potentials import sevennet_calculator

    return sevennet_calculator(model)
#: The oracle's own relaxation settings (the card of the shipped model): FIRE on positions and
#: cell, forces below 0.1 eV/Å or 150 steps.
RELAX_FMAX, RELAX_STEPS = 0.1, 150


def read_cache(path: Path) -> dict[str, dict]:
    """Rows of a cache file by id; a line cut by a kill is skipped, so a rerun redoes it."""
    out: dict[str, dict] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            out[row["id"]] = row
    return out


def _append(path: Path, row: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write(json.dumps(row) + "\n")


def training_rows(records: list[dict], held: set[str], n: int, seed: int) -> list[dict]:
    """Every element row and ``n`` compound rows of the training systems (never a held-out
    system's), seeded: what the calibration is fitted on."""
    def canon(c: str) -> str:
        return "-".join(sorted(c.split("-")))

    train = [r for r in records if canon(r["chemsys"]) not in held]
    elements = [r for r in train if "-" not in r["chemsys"]]
    compounds = [r for r in train if "-" in r["chemsys"]]
    return elements + random.Random(seed).sample(compounds, min(n, len(compounds)))


def sevennet_points(rows: list[dict], path: Path) -> None:
    """SevenNet-0 single points at the oracle-relaxed structures, cached per row."""
    from pymatgen.core import Structure

    from gnomon.dft.potentials import sevennet_calculator
    from gnomon.models.peers import sevennet_energies

    done = read_cache(path)
    todo = [r for r in rows if r["id"] not in done]
    calc = sevennet_calculator() if todo else None
    for k, r in enumerate(todo):
        t0 = time.process_time()
        (e,) = sevennet_energies([Structure.from_dict(r["relaxed"])], calc)
        _append(path, {"id": r["id"], "energy_per_atom": float(e),
                       "cpu_s": time.process_time() - t0})
        if k % 100 == 0:
            log.info("points: %d of %d", k, len(todo))


def sevennet_minima(rows: list[dict], path: Path, model: str = ZERO_SHOT) -> None:
    """SevenNet (``model``) relaxed from each row's oracle-relaxed structure, cached per row:
    the pair (SevenNet's minimum, the oracle's minimum) is what the stage's relaxations
    produce, where a single point at the oracle's structure sits above SevenNet's own
    minimum."""
    done = read_cache(path)
    todo = [r for r in rows if r["id"] not in done]
    calc = stage_calculator(model) if todo else None
    for k, r in enumerate(todo):
        _append(path, {"id": r["id"], **relax_one(calc, structure_from(r["relaxed"]))})
        log.info("minimum %d of %d", k + 1, len(todo))


def structure_from(d: dict):
    from pymatgen.core import Structure

    return Structure.from_dict(d)


def relax_one(calc, structure) -> dict:
    """One SevenNet-0 relaxation of an unrelaxed input, as the mlip stage runs it."""
    from ase.filters import FrechetCellFilter  # heavy: ase
    from ase.optimize import FIRE  # heavy: ase
    from pymatgen.io.ase import AseAtomsAdaptor  # heavy: pymatgen.io

    atoms = AseAtomsAdaptor.get_atoms(structure)
    atoms.calc = calc
    t0 = time.process_time()
    opt = FIRE(FrechetCellFilter(atoms), logfile=None)
    try:
        opt.run(fmax=RELAX_FMAX, steps=RELAX_STEPS)
        e = float(atoms.get_potential_energy()) / len(atoms)
    except (ValueError, FloatingPointError, RuntimeError) as exc:  # an exploding cell (NaN)
        return {"energy_per_atom": float("nan"), "steps": int(opt.nsteps),
                "cpu_s": time.process_time() - t0, "structure": structure.as_dict(),
                "error": f"{type(exc).__name__}: {exc}"}
    return {"energy_per_atom": e, "steps": int(opt.nsteps), "cpu_s": time.process_time() - t0,
            "structure": AseAtomsAdaptor.get_structure(atoms).as_dict()}


def sevennet_relaxations(items: list, path: Path, model: str = ZERO_SHOT) -> None:
    """SevenNet relaxations (``model``) of ``items``' unrelaxed inputs (``Labelled``), cached
    per id, in the order given; a killed run resumes where it stopped."""
    done = read_cache(path)
    todo = [it for it in items if it.key not in done]
    calc = stage_calculator(model) if todo else None
    for k, it in enumerate(todo):
        if it.key in read_cache(path):  # another process (the benchmark) relaxed it meanwhile
            continue
        _append(path, {"id": it.key, **relax_one(calc, it.candidate)})
        log.info("relaxed %d of %d (%s)", k + 1, len(todo), it.reduced_formula)


def relax_order(data: dict, model: Path | None, seed: int, head: int = 100) -> list:
    """The pool in the order to relax it: the pretrained screen's ``head`` best first (what the
    funnel's mlip stage asks for), then its ranking interleaved with a seeded random order, so
    an unbiased sample for the stage's own F1 is cached too."""
    from gnomon.campaign.simulate import e_above_known
    from gnomon.models.ensemble import Ensemble
    from gnomon.models.screening import Screener

    pool = [it for it in data["labels"] if "-" in it.chemsys]
    shuffled = pool[:]
    random.Random(seed).shuffle(shuffled)
    ranked = shuffled
    if model is not None:
        preds = Screener(Ensemble.load(model)).predict([it.candidate for it in pool])
        means = [p.energy_per_atom if p.energy_per_atom is not None else 9.0 for p in preds]
        known = data["reference"] + [it for it in data["labels"] if "-" not in it.chemsys]
        e_hull = e_above_known(known, pool, means)
        order = sorted(range(len(pool)), key=lambda i: 9.0 if e_hull[i] is None else e_hull[i])
        ranked = [pool[i] for i in order]
    out, seen = ranked[:head], {it.key for it in ranked[:head]}
    for a, b in zip(ranked[head:], shuffled, strict=False):
        for it in (a, b):
            if it.key not in seen:
                seen.add(it.key)
                out.append(it)
    return out


def bench_cache(n_points: int, seed: int, model: Path | None, order: str = "screen",
                stage_model: str = ZERO_SHOT, head: int = 100) -> None:
    """Fill the SevenNet caches the campaign benchmark reads (resumable, niced by the caller):
    SevenNet-0's single points (and minima) on training rows for its calibration, and the
    pool's relaxations by ``stage_model`` (the screen's ``head`` best first)."""
    import torch

    from gnomon.world.replay import campaign_data

    torch.set_num_threads(1)
    world = WORLD_FILE.parent
    held = set(json.loads((world / "heldout.json").read_text())["systems"])
    held = {"-".join(sorted(s.split("-"))) for s in held}
    sevennet_points(training_rows(world_records(), held, n_points, seed), CACHE / "points.jsonl")
    data = campaign_data(world, None, "first-build")
    if order == "minima":
        rows = training_rows(world_records(), held, n_points, seed)
        sevennet_minima(rows, stage_cache(stage_model) / "minima.jsonl", stage_model)
        return
    screen = order == "screen"
    items = relax_order(data, model if screen else None, seed, head=head if screen else 0)
    sevennet_relaxations(items, stage_cache(stage_model) / "relax.jsonl", stage_model)


# -- (d) cost-aware campaigns: random, screen, screen + calibrated SevenNet stage, ceiling ---------
RANDOM, SCREEN, STAGED, CEILING = "random", "screen", "screen+mlip", "perfect"
SCREEN_FT, DISTILLED = "screen+fine-tune", "distilled screen"  # levers 4 and 3
STAGED_FT = "screen+fine-tune+mlip"  # levers 4 and 2 together
#: the stage with SevenNet-0 fine-tuned on the training systems (``--tuned-model``), raw
#: energies (the map bench/sevennet_finetune.py chose on validation systems); with a gate
#: that fills the oracle budget (``--fill``); and ranked for it with the screen's
#: uncertainty (``--kappa``); and with the screen fine-tuned every round too
TUNED = "screen+tuned mlip"
TUNED_FILL = "screen+tuned mlip, filling"
TUNED_LCB = "screen (lcb)+tuned mlip, filling"
FT_TUNED_FILL = "screen+fine-tune+tuned mlip, filling"
#: the filling stage also relaxing, each round, up to a budget of the candidates the screen
#: refuses (an element it never saw): the product's ``mlip_unscreened``
TUNED_ROUTED = "screen+tuned mlip, filling, unscreened routed"
STAGED_ARMS = (STAGED, STAGED_FT, TUNED, TUNED_FILL, TUNED_LCB, FT_TUNED_FILL, TUNED_ROUTED)
ARMS = (RANDOM, SCREEN, SCREEN_FT, DISTILLED, *STAGED_ARMS, CEILING)
SCREENED_ARMS = (SCREEN, SCREEN_FT, DISTILLED, *STAGED_ARMS)
FINE_TUNED_ARMS = (SCREEN_FT, STAGED_FT, FT_TUNED_FILL)
#: each round's fine-tuning (lever 4) on everything the campaign knows (its first build, the
#: systems inside its spaces, the picks revealed so far: relaxed structures and their unrelaxed
#: inputs), as a campaign's retrain step does; few epochs, as fine-tuning converges in 2-4
FINE_TUNE = {"train_on": "all", "max_epochs": 8, "patience": 3}


def calibration_pairs(records: list[dict], held: set[str], kind: str = "points",
                      cache: Path = CACHE) -> list:
    """Pairs of the training rows SevenNet computed (``kind``: single points at the oracle's
    structures, or minima relaxed from them): never a held-out row."""
    from pymatgen.core import Composition

    from gnomon.pipeline.thermo.calibration import Pair

    points = read_cache(cache / f"{kind}.jsonl")
    return [Pair(r["id"], Composition(r["formula"]), points[r["id"]]["energy_per_atom"],
                 float(r["energy_per_atom"]))
            for r in records if r["id"] in points
            and np.isfinite(points[r["id"]]["energy_per_atom"])]


@dataclass
class MlipStage:
    """The screen's ``width`` best each round relaxed by SevenNet (``model``: SevenNet-0, or a
    fine-tuned checkpoint) from their unrelaxed inputs (the disk cache first; a miss is relaxed
    here and cached), calibrated into the oracle's scheme and judged on the hull known before
    the round; those within ``gate`` eV/atom are handed on, best first.

    ``fill``: when fewer than ``need`` (the round's oracle budget) pass, the stage relaxes the
    screen's next ``width`` too, up to ``fill`` more times, instead of leaving oracle calls
    unspent once the screen's best are used up. ``kappa``: the screen's list is ranked by
    e_above_hull - kappa x sigma (its ensemble spread), so a candidate the screen is unsure of
    reaches the cheaper stage before the oracle. Counts the CPU of the relaxations this run
    needed."""

    calibration: object
    relaxed: dict
    width: int
    gate: float
    model: str = ZERO_SHOT
    fill: int = 0
    need: int = 0
    kappa: float = 0.0
    #: candidates the screen cannot judge (an element it never saw), up to this many relaxed
    #: each round beside its best (a seeded draw): the potential knows what the screen does not
    unscreened: int = 0
    calc: object = None
    spent: dict = None  # key -> CPU-seconds of its relaxation, once per run
    own_cpu: float = 0.0
    miss_cpu: float = 0.0  # relaxations this run made itself (inside own_cpu)

    def relaxation(self, item) -> dict:
        row = self.relaxed.get(item.key)
        if row is None:
            self.calc = self.calc or stage_calculator(self.model)
            row = {"id": item.key, **relax_one(self.calc, item.candidate)}
            self.miss_cpu += row["cpu_s"]
            _append(stage_cache(self.model) / "relax.jsonl", row)
            self.relaxed[item.key] = row
        self.spent = self.spent or {}
        self.spent.setdefault(item.key, row["cpu_s"])
        return row

    def __call__(self, known, candidates, scored, r):
        from gnomon.campaign.selection import Scored

        t0 = time.process_time()
        by_key = {it.key: it for it in candidates}
        ranked = sorted((s for s in scored or [] if s.e_above_hull is not None),
                        key=lambda s: s.e_above_hull - self.kappa * s.sigma)
        unjudged = sorted(s.candidate_id for s in scored or [] if s.e_above_hull is None)
        routed = random.Random(f"{r}:unscreened").sample(
            unjudged, min(len(unjudged), self.unscreened))
        passed: list = []
        for chunk in range(1 + self.fill):
            best = ranked[chunk * self.width:(chunk + 1) * self.width]
            keys = [s.candidate_id for s in best] + (routed if chunk == 0 else [])
            if not keys:
                break
            items = [by_key[k] for k in keys]
            rows = [self.relaxation(it) for it in items]
            keep = [k for k, row in enumerate(rows) if not failed_relaxation(row)]
            items = [items[k] for k in keep]
            e_hull = calibrated_hull(self.calibration, known, items,
                                     [rows[k]["energy_per_atom"] for k in keep])
            passed += [Scored(it.key, e, 0.0, it.reduced_formula)
                       for it, e in zip(items, e_hull, strict=True)
                       if e is not None and e <= self.gate]
            if len(passed) >= self.need:
                break
        self.own_cpu += time.process_time() - t0
        return passed


def failed_relaxation(row: dict) -> str | None:
    """Why a stage relaxation is not a result (None: it is): the product's collapse rule
    (``gnomon.dft.collapse``: a pair nearer than 0.6 of its bond length), which is what an
    exploded SevenNet relaxation looks like (energies of -10^8 eV/atom would otherwise pass
    any gate and spend an oracle call)."""
    from gnomon.dft.collapse import collapsed_pair

    if not np.isfinite(row["energy_per_atom"]):
        return "energy not finite"
    return collapsed_pair(structure_from(row["structure"]))


def calibrated_hull(calibration, known, items, energies) -> list:
    """Calibrated e_above_hull of SevenNet energies against the hull of ``known`` (the
    oracle's scheme), per chemical system; None where it cannot be judged."""
    from pymatgen.entries.computed_entries import ComputedEntry

    from gnomon.pipeline.thermo.calibration import calibrated_e_above_hull
    from gnomon.pipeline.thermo.hull import phase_diagram

    entries = [ComputedEntry(k.structure.composition, k.energy_per_atom * len(k.structure))
               for k in known]
    pds: dict = {}
    out = []
    for it, e in zip(items, energies, strict=True):
        els = set(it.chemsys.split("-"))
        if it.chemsys not in pds:
            pds[it.chemsys] = phase_diagram(
                [x for x in entries if {str(el) for el in x.composition.elements} <= els],
                "-".join(sorted(els)))
        pd = pds[it.chemsys]
        comp = it.structure.composition
        ok = pd is not None and calibration.covers(comp)
        out.append(calibrated_e_above_hull(calibration, pd, comp, e) if ok else None)
    return out


def ceiling_stage(world_e_hull: dict):
    """Perfect knowledge: the oracle's own ranking (the world's e_above_hull), no screen."""
    from gnomon.campaign.selection import Scored

    def stage(known, candidates, scored, r):
        return [Scored(it.key, world_e_hull[it.key], 0.0, it.reduced_formula)
                for it in candidates]

    return stage


def oracle_cpu_per_step(items: list, n: int = 6, steps: int = 10) -> float:
    """CHGNet's CPU-seconds per FIRE step here, on ``n`` pool inputs (``steps`` steps each):
    an oracle call is costed at its world row's step count times this."""
    from ase.filters import FrechetCellFilter  # heavy: ase
    from ase.optimize import FIRE  # heavy: ase
    from chgnet.model.dynamics import CHGNetCalculator  # heavy: chgnet
    from pymatgen.io.ase import AseAtomsAdaptor  # heavy: pymatgen.io

    calc = CHGNetCalculator(use_device="cpu")
    spent, taken = 0.0, 0
    for it in items[:n]:
        atoms = AseAtomsAdaptor.get_atoms(it.candidate)
        atoms.calc = calc
        t0 = time.process_time()
        opt = FIRE(FrechetCellFilter(atoms), logfile=None)
        opt.run(fmax=0.0, steps=steps)
        spent += time.process_time() - t0
        taken += max(int(opt.nsteps), 1)
    return spent / taken


def held_systems() -> set[str]:
    held = json.loads((WORLD_FILE.parent / "heldout.json").read_text())["systems"]
    return {"-".join(sorted(x.split("-"))) for x in held}


def fit_stage_calibration(records: list[dict], held: set[str], kind: str = "points",
                          model: str = ZERO_SHOT):
    """SevenNet (``model``) -> the oracle's scheme, fitted on training rows only, held-out
    excluded by name too; stored beside the cache so the gate's decisions can be
    reproduced."""
    from gnomon.pipeline.thermo.calibration import fit_calibration

    cache = stage_cache(model)
    source = "mlip-sevennet-0" if model == ZERO_SHOT else "mlip-sevennet-ft"
    cal = fit_calibration(calibration_pairs(records, held, kind, cache), source_scheme=source,
                          target_scheme="mlip-chgnet-0.3.0", exclude=sorted(held))
    (cache / f"calibration-{kind}.json").write_text(json.dumps(cal.as_dict(), indent=1))
    return cal


def element_alignment(records: list[dict], held: set[str]):
    """The uncalibrated figure's map: SevenNet's own formation energies (each element's lowest
    SevenNet energy aligned to its lowest oracle energy), no compound fitted."""
    from gnomon.pipeline.thermo.calibration import Calibration

    points = read_cache(CACHE / "points.jsonl")
    lows: dict[str, list[float]] = {}
    for r in records:
        if "-" not in r["chemsys"] and r["id"] in points:
            lo = lows.setdefault(r["chemsys"], [np.inf, np.inf])
            lo[0] = min(lo[0], float(r["energy_per_atom"]))
            lo[1] = min(lo[1], points[r["id"]]["energy_per_atom"])
    return Calibration("mlip-sevennet-0", "mlip-chgnet-0.3.0",
                       mu={el: c - m for el, (c, m) in lows.items()})


def run_arm(arm: str, data: dict, seed: int, opts: dict, stage=None) -> dict:
    """One replayed campaign of ``arm``; its CPU-seconds by stage."""
    from gnomon.campaign.simulate import simulate

    t0 = time.process_time()
    model = opts["distilled"] if arm == DISTILLED else opts["model"]
    result = simulate(
        data["labels"], RANDOM if arm == RANDOM else "greedy", rounds=opts["rounds"],
        budget=opts["budget"], initial=0, seed=seed, reference=data["reference"],
        stable=data["stable"],
        initial_model=model if arm in SCREENED_ARMS else None,
        model_options=FINE_TUNE if arm in FINE_TUNED_ARMS else {"frozen": True},
        stage=stage,
        screen=arm != CEILING,
    )
    cpu = time.process_time() - t0
    out = result.as_dict()
    picked = [k for keys in out["picked"] for k in keys]
    mlip = sum((stage.spent or {}).values()) if isinstance(stage, MlipStage) else 0.0
    own = stage.own_cpu - stage.miss_cpu if isinstance(stage, MlipStage) else 0.0
    miss = stage.miss_cpu if isinstance(stage, MlipStage) else 0.0
    teacher = opts["distill_cost"] if arm == DISTILLED else {"cpu": 0.0, "relaxations": 0}
    out.update(arm=arm, seed=seed, cpu={
        "screen": cpu - own - miss, "mlip": mlip + own + teacher["cpu"],
        "oracle": sum(opts["steps"][k] for k in picked) * opts["per_step"],
        "mlip_relaxations": len((stage.spent or {}) if isinstance(stage, MlipStage) else {})
        + teacher["relaxations"],
    })
    log.info("%s seed %d: %s stable in %s calls; cpu %s", arm, seed, out["stable_found"],
             out["evaluations"], {k: round(v) for k, v in out["cpu"].items()})
    return out


def classification(pred: list, truth: list[bool]) -> dict:
    """F1, precision, recall and DAF of "predicted e_above_hull <= 0" (None: not stable)."""
    guess = [p is not None and p <= 1e-8 for p in pred]
    tp = sum(g and t for g, t in zip(guess, truth, strict=True))
    prec = tp / max(sum(guess), 1)
    rec = tp / max(sum(truth), 1)
    prevalence = sum(truth) / max(len(truth), 1)
    return {"n": len(truth), "stable": sum(truth), "predicted": sum(guess),
            "precision": prec, "recall": rec,
            "f1": 2 * prec * rec / (prec + rec) if prec + rec else 0.0,
            "daf": prec / prevalence if prevalence else float("nan")}


def stage_alone(data: dict, relaxed: dict, rows: dict, maps: dict, seed: int) -> dict:
    """The calibrated stage by itself on the held-out pool's unrelaxed inputs after its
    SevenNet relaxation: judged on the hull known at the start (first build), against the
    world's own stability; on every cached relaxation and on the seeded random sample (the
    longest prefix of the cache job's random order that is all relaxed: an unbiased draw)."""
    pool = [it for it in data["labels"] if "-" in it.chemsys]
    known = data["reference"] + [it for it in data["labels"] if "-" not in it.chemsys]
    shuffled = pool[:]
    random.Random(seed).shuffle(shuffled)
    prefix = next((i for i, it in enumerate(shuffled) if it.key not in relaxed), len(shuffled))
    sets = {"random sample": shuffled[:prefix], "all cached": [it for it in pool
                                                               if it.key in relaxed]}
    out: dict = {}
    for name, items in sets.items():
        truth = [rows[it.key]["e_above_hull"] <= 1e-8 for it in items]
        ok = [not failed_relaxation(relaxed[it.key]) for it in items]
        good = [it for it, k in zip(items, ok, strict=True) if k]
        e_m = [relaxed[it.key]["energy_per_atom"] for it in good]
        for label, cal in maps.items():
            judged = iter(calibrated_hull(cal, known, good, e_m))
            e_hull = [next(judged) if k else None for k in ok]  # a failed relaxation: not stable
            err = [abs(cal.energy_per_atom(it.structure.composition, e) - it.energy_per_atom)
                   for it, e in zip(good, e_m, strict=True)
                   if cal.covers(it.structure.composition)]
            out[f"{name} / {label}"] = {**classification(e_hull, truth),
                                        "failed": len(items) - len(good),
                                        "mae": float(np.mean(err)) if err else float("nan")}
    return out


def summarise_arms(runs: list[dict], rounds: int) -> dict:
    """Per arm: mean ± std over seeds of per-round hit rate, stable per 100 calls, CPU."""
    out: dict = {}
    for arm in ARMS:
        rs = [r for r in runs if r["arm"] == arm]
        if not rs:
            continue
        hits = np.array([[np.nan if v is None else v for v in r["hit_rate"]]
                         + [np.nan] * (rounds - len(r["hit_rate"])) for r in rs], dtype=float)
        per100 = [100.0 * r["stable_found"][-1] / max(r["evaluations"][-1], 1) for r in rs]
        cpu = {k: float(np.mean([r["cpu"][k] for r in rs])) for k in rs[0]["cpu"]}
        total_h = (cpu["screen"] + cpu["mlip"] + cpu["oracle"]) / 3600.0
        found = float(np.mean([r["stable_found"][-1] for r in rs]))
        maes = np.array([[np.nan if v is None else v for v in r.get("round_mae") or []]
                         + [np.nan] * (rounds - len(r.get("round_mae") or [])) for r in rs],
                        dtype=float)
        out[arm] = {"seeds": len(rs), "hit_mean": np.nanmean(hits, 0).tolist(),
                    "mae_mean": np.nanmean(maes, 0).tolist(),
                    "hit_std": np.nanstd(hits, 0).tolist(), "per100": float(np.mean(per100)),
                    "per100_std": float(np.std(per100)), "found": found,
                    "calls": float(np.mean([r["evaluations"][-1] for r in rs])), "cpu": cpu,
                    "per_cpu_hour": found / total_h if total_h else float("nan")}
    return out


def arms_table(summary: dict, rounds: int) -> list[str]:
    """The markdown table of the arms, and the issue's goals as measured."""
    ceil = summary.get(CEILING, {}).get("per100") or float("nan")
    rand = summary.get(RANDOM, {}).get("per100") or float("nan")
    lines = ["| arm | stable per 100 oracle calls | x random | share of ceiling | "
             + " | ".join(f"hit r{j}" for j in range(rounds))
             + " | CPU-s screen | CPU-s mlip (relaxations) | CPU-s oracle | stable per CPU-h |",
             "|" + "---|" * (8 + rounds)]
    for arm, a in summary.items():
        hits = " | ".join("–" if not np.isfinite(m) else f"{m:.2f} ± {sd:.2f}"
                          for m, sd in zip(a["hit_mean"], a["hit_std"], strict=True))
        c = a["cpu"]
        lines.append(
            f"| {arm} | {a['per100']:.1f} ± {a['per100_std']:.1f} ({a['found']:.1f} in "
            f"{a['calls']:.0f}) | {a['per100'] / rand:.1f}x | "
            f"{100 * a['per100'] / ceil:.0f} % | {hits} | {c['screen']:.0f} | "
            f"{c['mlip']:.0f} ({c['mlip_relaxations']:.0f}) | {c['oracle']:.0f} | "
            f"{a['per_cpu_hour']:.1f} |")
    for name in STAGED_ARMS:
        staged = summary.get(name)
        if not (staged and rand and ceil):
            continue
        ratio, share = staged["per100"] / rand, staged["per100"] / ceil
        h = staged["hit_mean"]
        lines += ["", f"- goal {name} >= 5x random per 100 calls: "
                  f"{'met' if ratio >= 5 else 'not met'} ({ratio:.1f}x)",
                  f"- goal {name} >= 60 % of the ceiling: "
                  f"{'met' if share >= 0.6 else 'not met'} ({100 * share:.0f} %)"]
        if rounds > 4:
            rising = all(h[j + 1] >= h[j] for j in range(1, 4))
            lines.append(f"- goal {name} hit rate rising from round 1 to 4: "
                         f"{'met' if rising else 'not met'} "
                         f"({', '.join(f'{v:.2f}' for v in h[1:5])})")
    return lines


def learning_table(summary: dict, rounds: int) -> list[str]:
    """The screen's MAE on each round's picks, against what the oracle then revealed."""
    lines = ["| arm | " + " | ".join(f"MAE r{j}" for j in range(rounds)) + " | falls r1 to r4 |",
             "|" + "---|" * (rounds + 2)]
    for arm, a in summary.items():
        m = a.get("mae_mean") or []
        if not any(np.isfinite(v) for v in m):
            continue
        falls = (all(m[j + 1] <= m[j] for j in range(1, min(4, len(m) - 1)))
                 if len(m) > 4 else None)
        lines.append(f"| {arm} | " + " | ".join("–" if not np.isfinite(v) else f"{v:.3f}"
                                                for v in m)
                     + f" | {'–' if falls is None else 'yes' if falls else 'no'} |")
    return lines


def distilled_model(opts: dict, relaxed: dict, cal, pool: list, args) -> None:
    """Lever 3: the screen fine-tuned, before round 0, on SevenNet-0's calibrated relaxed
    energies of the pool's candidates the teacher relaxed (the relaxation cache: the screen's
    best first, then a seeded random order), their unrelaxed inputs labelled. Its cost (the
    teacher's relaxations and the fine-tuning) is the distilled arm's."""
    from gnomon.campaign.distill import TeacherLabel, distill, teacher_samples
    from gnomon.models.ensemble import Ensemble
    from gnomon.models.spec import TrainConfig

    labels = [TeacherLabel(it.key, it.candidate, relaxed[it.key]["energy_per_atom"],
                           structure_from(relaxed[it.key]["structure"]),
                           relaxed[it.key]["cpu_s"]) for it in pool if it.key in relaxed]
    t0 = time.process_time()
    samples = teacher_samples(labels, cal)
    parent = Ensemble.load(opts["model"])
    opts["distilled"] = distill(parent, samples, TrainConfig(
        ensemble_size=parent.size, seed=args.seed, max_epochs=30, patience=6, threads=1))
    opts["distill_cost"] = {"cpu": sum(lb.cpu_s for lb in labels) + time.process_time() - t0,
                            "relaxations": len(labels), "samples": len(samples)}
    log.info("distilled on %d teacher labels (%d samples)", len(labels), len(samples))


def alone_table(alone: dict) -> list[str]:
    lines = ["| inputs / energies | n | relaxations failed (collapsed) | stable | "
             "predicted stable | precision | recall | F1 | DAF | MAE eV/atom (failed left out) |",
             "|" + "---|" * 10]
    for name, m in alone.items():
        lines.append(f"| {name} | {m['n']} | {m.get('failed', 0)} | {m['stable']} | "
                     f"{m['predicted']} | "
                     f"{m['precision']:.2f} | {m['recall']:.2f} | {m['f1']:.2f} | "
                     f"{m['daf']:.2f} | {m['mae']:.3f} |")
    return lines


def plot_arms(summary: dict, rounds: int, path: Path, title: str) -> None:
    import matplotlib  # heavy: matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # heavy: matplotlib

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for arm, a in summary.items():
        ax1.errorbar(range(rounds), a["hit_mean"], yerr=a["hit_std"], fmt="o-", capsize=3,
                     label=arm)
    ax1.set(xlabel="round", ylabel="hit rate (vs hull before the round)",
            xticks=range(rounds), ylim=(0, None))
    ax1.legend(fontsize=8)
    arms = list(summary)
    ax2.bar(arms, [summary[a]["per100"] for a in arms],
            yerr=[summary[a]["per100_std"] for a in arms], capsize=3)
    ax2.set(ylabel="stable phases per 100 oracle calls")
    for k, arm in enumerate(arms):
        ax2.annotate(f"{summary[arm]['per_cpu_hour']:.1f}/CPU-h", (k, 0.5), ha="center",
                     fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def bench_campaigns(args: argparse.Namespace) -> None:
    """The four arms over ``--rounds`` x ``--seeds`` on the held-out systems, first build known;
    writes docs/bench/funnel-campaigns.md and .png and bench/results/funnel-campaigns.json."""
    import torch
    from campaigns import default_model

    from gnomon.world.replay import campaign_data

    torch.set_num_threads(1)
    records, held = world_records(), held_systems()
    rows = {r["id"]: r for r in records}
    data = campaign_data(WORLD_FILE.parent, None, "first-build")
    cal = fit_stage_calibration(records, held, args.pairs)
    relaxed = read_cache(CACHE / "relax.jsonl")
    pool = [it for it in data["labels"] if "-" in it.chemsys]
    opts = {"rounds": args.rounds, "budget": args.budget,
            "model": args.screen_model or default_model(),
            "steps": {k: int(r.get("steps") or 0) for k, r in rows.items()},
            "per_step": oracle_cpu_per_step(pool)}
    world_e_hull = {it.key: rows[it.key]["e_above_hull"] for it in pool}
    if DISTILLED in args.arms:
        distilled_model(opts, relaxed, cal, pool, args)
    tuned = args.tuned_model
    raw = raw_energies({el for r in records for el in r["chemsys"].split("-")})
    tuned_relaxed = read_cache(stage_cache(tuned) / "relax.jsonl") if tuned else {}
    # the stage's energies are minima: a map fitted on the fine-tune's own minima of training
    # rows where they are cached (--tuned-map minima), else its raw energies
    tuned_map = (fit_stage_calibration(records, held, "minima", tuned)
                 if tuned and args.tuned_map == "minima" else raw)

    def stage_for(arm: str):
        width = args.width * args.budget
        if arm in (STAGED, STAGED_FT):
            return MlipStage(cal, relaxed, width, args.gate)
        if arm in (TUNED, TUNED_FILL, TUNED_LCB, FT_TUNED_FILL, TUNED_ROUTED):
            if not tuned:
                raise SystemExit(f"arm {arm!r} needs --tuned-model (a fine-tuned checkpoint)")
            fill = 0 if arm == TUNED else args.fill
            return MlipStage(tuned_map, tuned_relaxed, width, args.gate, model=tuned, fill=fill,
                             need=args.budget, kappa=args.kappa if arm == TUNED_LCB else 0.0,
                             unscreened=args.budget if arm == TUNED_ROUTED else 0)
        return ceiling_stage(world_e_hull) if arm == CEILING else None

    runs = []
    for seed in range(args.seeds):
        for arm in args.arms:
            runs.append(run_arm(arm, data, seed, opts, stage_for(arm)))
    if RANDOM in args.arms:  # random's mean is every ratio's denominator: more seeds, no model
        runs += [run_arm(RANDOM, data, seed, opts) for seed in range(args.seeds,
                                                                     args.random_seeds)]
    summary = summarise_arms(runs, args.rounds)
    alone = stage_alone(data, read_cache(CACHE / "relax.jsonl"), rows,
                        {"SevenNet-0 calibrated": cal, "SevenNet-0 uncalibrated (elements "
                         "aligned)": element_alignment(records, held)}, args.seed)
    if tuned:
        maps = {"SevenNet fine-tuned, raw": raw}
        if tuned_map is not raw:
            maps["SevenNet fine-tuned, calibrated on its minima"] = tuned_map
        alone |= stage_alone(data, read_cache(stage_cache(tuned) / "relax.jsonl"), rows, maps,
                             args.seed)
    write_report(args, data, cal, opts, summary, alone, runs)


def raw_energies(elements) -> object:
    """The identity map: a fine-tuned potential's energies taken as the oracle's, as
    bench/sevennet_finetune.py chose on validation systems (raw beat calibrated there)."""
    from gnomon.pipeline.thermo.calibration import Calibration

    return Calibration("mlip-sevennet-ft", "mlip-chgnet-0.3.0",
                       mu=dict.fromkeys(sorted(elements), 0.0))


def write_report(args, data, cal, opts, summary, alone, runs) -> None:
    title = (f"{len(data['held'])} held-out systems, first build known; pool {data['n_pool']} "
             f"({len(data['stable'])} stable); {args.rounds} rounds x {args.budget} calls, "
             f"{args.seeds} seeds ({args.random_seeds} for random)")
    docs = HERE.parent / "docs" / "bench"
    name = "funnel-campaigns" + (f"-{Path(args.screen_model).stem}" if args.screen_model else "")
    plot_arms(summary, args.rounds, docs / f"{name}.png", title)
    cmd = "nice -n 5 .venv/bin/python bench/funnel.py " + " ".join(sys.argv[1:])
    text = [f"# Cost-aware discovery funnel ({time.strftime('%Y-%m-%d')})", "",
            f"`{cmd}`", "", title + f"; screen: {Path(str(opts['model'])).name} (frozen: "
            "it screens every round unchanged, so its arms repeat across seeds).", "",
            f"Calibration SevenNet-0 -> oracle (CHGNet) scheme: {cal.n_entries} training-system "
            f"pairs ({cal.n_outliers} dropped as failures), slope {cal.slope:.3f}, residual MAE "
            f"{cal.mae:.3f} eV/atom, validation median |err| {cal.validation}; "
            f"{len(cal.excluded)} held-out systems excluded. Oracle call cost: "
            f"{opts['per_step']:.3f} CPU-s per CHGNet FIRE step (measured here) x the world "
            f"row's steps. mlip stage: the screen's best {args.width}x budget per round relaxed "
            f"(cached), gate {args.gate} eV/atom calibrated e_above_hull.", "",
            *arms_table(summary, args.rounds), "", f"![funnel]({name}.png)", "",
            "## A screen that keeps learning: its error on each round's picks", "",
            f"`{SCREEN_FT}` fine-tunes the screen every round ({FINE_TUNE}); the frozen arms "
            "screen with the same model throughout. MAE in eV/atom of the screen's energy per "
            "atom on the round's picks against what the oracle revealed.", "",
            *learning_table(summary, args.rounds), "",
            f"`{DISTILLED}`: {opts.get('distill_cost', {})} (teacher: SevenNet-0 relaxations "
            "from the relaxation cache, calibrated into the oracle's scheme).", "",
            "## The calibrated stage alone (unrelaxed held-out inputs, SevenNet-0 relaxed)", "",
            *alone_table(alone), ""]
    (docs / f"{name}.md").write_text("\n".join(text))
    (HERE / "results" / f"{name}.json").write_text(json.dumps(
        {"date": time.strftime("%Y-%m-%d"), "command": cmd, "summary": summary,
         "alone": alone, "calibration": cal.as_dict(), "runs": runs}, indent=1, default=str))
    print("\n".join(text))


def _share(k: int, n: int) -> str:
    return "–" if n == 0 else f"{k / n:.3f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("qe", "world", "all", "cache", "campaigns"))
    parser.add_argument("--rounds", type=int, default=5, help="campaigns: rounds")
    parser.add_argument("--seeds", type=int, default=3, help="campaigns: seeds")
    parser.add_argument("--budget", type=int, default=20, help="campaigns: oracle calls/round")
    parser.add_argument("--width", type=int, default=2,
                        help="campaigns: the mlip stage relaxes width x budget per round")
    parser.add_argument("--points", type=int, default=600, help="cache: training rows")
    parser.add_argument("--stage-model", default=ZERO_SHOT,
                        help="cache: the SevenNet model whose relaxations to cache (7net-0, or "
                        "a fine-tuned checkpoint's path)")
    parser.add_argument("--head", type=int, default=100,
                        help="cache: how many of the screen's best to relax before the "
                        "interleaved random order")
    parser.add_argument("--order", choices=("screen", "random", "minima"), default="screen",
                        help="cache: relax the pool (the screen's best first, or the seeded "
                        "random order only), or the training rows from the oracle's minima")
    parser.add_argument("--pairs", choices=("points", "minima"), default="points",
                        help="campaigns: fit the calibration on SevenNet single points at the "
                        "oracle's structures, or on SevenNet's own minima from them")
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
    parser.add_argument("--random-seeds", type=int, default=20,
                        help="campaigns: seeds of the random arm (its mean divides every ratio)")
    parser.add_argument("--screen-model", type=Path, default=None,
                        help="campaigns: the screen's ensemble file (default: the shipped model); "
                        "the report is then named after it")
    parser.add_argument("--tuned-model", default=None,
                        help="campaigns: a fine-tuned SevenNet checkpoint for the tuned arms")
    parser.add_argument("--tuned-map", choices=("minima", "raw"), default="minima",
                        help="campaigns: the tuned stage's energies calibrated on its own minima "
                        "of training rows (cache --order minima --stage-model CHECKPOINT), or raw")
    parser.add_argument("--fill", type=int, default=3,
                        help="campaigns: how many more widths a filling stage may relax")
    parser.add_argument("--kappa", type=float, default=1.0,
                        help="campaigns: sigma weight of the lcb arm's ranking")
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS),
                        help="campaigns: the arms to run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    print(f"bench/funnel.py {' '.join(argv or sys.argv[1:])}  ({time.strftime('%Y-%m-%d')})")
    if args.part in ("qe", "all"):
        bench_qe(args.n, args.ecutwfc, args.kspacing, args.max_sites, args.tolerance, args.seed)
    if args.part == "cache":
        from campaigns import default_model

        bench_cache(args.points, args.seed, default_model(), args.order, args.stage_model,
                    args.head)
    if args.part == "campaigns":
        bench_campaigns(args)
    if args.part in ("world", "all"):
        bench_world(args.systems, args.mlip_steps, args.fmax, args.gate, args.seed)


if __name__ == "__main__":
    main()
