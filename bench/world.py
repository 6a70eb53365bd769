"""The benchmark world: oracle-relaxed crystals over many chemical systems, with a fixed hold-out.

    .venv/bin/python bench/world.py build [--workers 2]   # resumable; an hour or two on 2 cores
    .venv/bin/python bench/world.py grow --per-system 85  # one more wave on the shipped world; resumable
    .venv/bin/python bench/world.py status                # how far a build has come
    .venv/bin/python bench/world.py check                 # verify the shipped files' hashes

Everything the project says about its screening model is measured on this set, so it is made
the way a campaign makes its candidates and labelled the way a campaign labels them:

* **Systems.** A fixed, seeded choice of binaries (cation-anion), ternaries and quaternaries
  over 48 elements; every element's reference is relaxed too (ASE's dcdft set, the
  structures the Delta test uses).
* **Wave 1** per system: SAPS on pymatgen's AFLOW prototype library (full substitutions into
  the system, up to ``arity`` species at once) and pyxtal random search on SMACT-balanced
  compositions. Duplicates inside a system are dropped with StructureMatcher.
* **Wave 2**: SAPS on *known compounds*, here the wave-1 phases within 50 meV/atom of their
  hull (the world's own database, as GNoME grew from its own), partially and fully
  substituted into the systems of the world.
* **Oracle:** the CHGNet engine with the quickstart campaign's settings (fmax, steps), one
  calculator per worker process. The unrelaxed input is kept beside the relaxed structure.
  A relaxation that diverges, or ends collapsed (a pair under 0.6 of its covalent bond
  length, :mod:`gnomon.dft.collapse`), is a failure recorded with its reason; results stored
  before that rule are judged again whenever the world is written.
* **Labels:** formation energy and e_above_hull from gnomon's hull engine (SQLite, one scheme),
  per system, over the whole world.
* **Hold-out:** a seeded 20 % of the systems of each arity, whole systems, in ``heldout.json``.
  Training (``bench/learning.py``, the shipped pretrained model) never sees them.

* **Waves 3, 4, ...** (``grow``): more of the same for every system up to ``--per-system``
  structures: partial and full SAPS on the prototype library and on the world's own compounds
  within 0.1 eV/atom of their hull, and random search (SMACT-balanced, else relaxed balance)
  where substitution finds too few; nothing the world already holds (StructureMatcher). Each
  wave is planned on the world the waves before it made and relaxed whole before the world is
  rewritten (``--write-partial`` ships what a deadline left relaxed, marked incomplete in the
  manifest); a ``--per-system`` above the last wave's (``grow/waves.json``) plans one more. The
  systems and the hold-out stay as they are. Plans and results live in ``bench/world/grow``,
  which is committed as it goes, so a grow stopped in one session resumes in the next.

Work goes to ``bench/world/work`` (not shipped): the plan of each wave, then one JSON line per
relaxation appended by each worker, so a stopped build restarts where it was and redoes
nothing. ``build`` ends by writing ``world.jsonl.gz``, ``heldout.json`` and ``manifest.json``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import logging
import multiprocessing as mp
import os
import random
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WORLD_DIR = HERE / "world"
WORK_DIR = WORLD_DIR / "work"
GROW_DIR = WORLD_DIR / "grow"  # wave 3: committed, so that a grow resumes across sessions
WORLD_FILE = WORLD_DIR / "world.jsonl.gz"
HELDOUT_FILE = WORLD_DIR / "heldout.json"
MANIFEST_FILE = WORLD_DIR / "manifest.json"
SEED = 2026
ORACLE_SETTINGS = {"fmax": 0.1, "steps": 150}  # examples/quickstart.yaml's engine options
HELDOUT_FRACTION = 0.2
NEAR_HULL = 0.05  # eV/atom: wave-1 phases used as "known compound" templates

log = logging.getLogger("world")

ALKALI = ["Li", "Na", "K", "Rb", "Cs"]
ALKALINE = ["Mg", "Ca", "Sr", "Ba"]
TRANSITION = ["Sc", "Y", "Ti", "Zr", "Hf", "V", "Nb", "Ta", "Cr", "Mo", "W", "Mn", "Fe", "Co",
              "Ni", "Cu", "Ag", "Zn", "Cd"]
POST = ["B", "Al", "Ga", "In", "Si", "Ge", "Sn", "Pb", "Sb", "Bi"]
ANIONS = ["O", "S", "Se", "Te", "N", "P", "F", "Cl", "Br", "I"]
ELEMENTS = ALKALI + ALKALINE + TRANSITION + POST + ANIONS


# -- systems ----------------------------------------------------------------------------------
def chemsys(elements: Iterable[str]) -> str:
    return "-".join(sorted(set(elements)))


def world_systems(n_binary: int = 46, n_ternary: int = 36, n_quaternary: int = 12) -> list[str]:
    """A fixed, seeded choice of systems: every element appears in some binary."""
    rng = random.Random(SEED)
    cations = ALKALI + ALKALINE + TRANSITION + POST
    binaries: list[str] = []
    # every cation once with a random anion, then random pairs up to n_binary
    for c in cations:
        binaries.append(chemsys([c, rng.choice(ANIONS)]))
    for a in ANIONS:  # every anion at least twice
        for c in rng.sample(cations, 2):
            binaries.append(chemsys([c, a]))
    binaries = sorted(set(binaries))
    while len(binaries) < n_binary:
        binaries = sorted(set(binaries) | {chemsys([rng.choice(cations), rng.choice(ANIONS)])})
    binaries = binaries[:n_binary] if len(binaries) > n_binary else binaries
    ternaries: set[str] = set()
    while len(ternaries) < n_ternary:
        a = rng.choice(ALKALI + ALKALINE)
        b = rng.choice(TRANSITION + POST)
        ternaries.add(chemsys([a, b, rng.choice(ANIONS)]))
    quaternaries: set[str] = set()
    while len(quaternaries) < n_quaternary:
        a = rng.choice(ALKALI + ALKALINE)
        b = rng.choice(TRANSITION + POST)
        x, y = rng.sample(ANIONS, 2) if rng.random() < 0.5 else (rng.choice(ANIONS), None)
        fourth = y or rng.choice([e for e in TRANSITION + POST + ALKALINE if e not in (a, b)])
        quaternaries.add(chemsys([a, b, x, fourth]))
    return sorted(binaries) + sorted(ternaries) + sorted(quaternaries)


def heldout_systems(systems: list[str]) -> list[str]:
    """A seeded HELDOUT_FRACTION of each arity, whole systems."""
    rng = random.Random(SEED + 1)
    held: list[str] = []
    by_arity: dict[int, list[str]] = defaultdict(list)
    for s in systems:
        by_arity[s.count("-") + 1].append(s)
    for arity in sorted(by_arity):
        group = sorted(by_arity[arity])
        k = max(1, round(HELDOUT_FRACTION * len(group)))
        held.extend(rng.sample(group, k))
    return sorted(held)


# -- plans ------------------------------------------------------------------------------------
@dataclass
class Planned:
    id: str
    chemsys: str
    generator: str  # saps-prototype | saps-known | random | element
    template: str | None
    structure: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def _plain(structure) -> dict[str, Any]:
    """A structure without site properties (magmoms etc. are not inputs of the oracle)."""
    from pymatgen.core import Structure

    s = Structure(structure.lattice, [site.specie for site in structure], structure.frac_coords)
    return s.as_dict()


def _sample_distinct(structures: list[tuple[str, str | None, Any]], k: int, seed: int):
    from gnomon.pipeline.generation.dedup import dedup_structures

    rng = random.Random(seed)
    rng.shuffle(structures)
    keep = dedup_structures([s for _, _, s in structures[: 4 * k]])
    return [structures[i] for i in keep][:k]


def plan_elements() -> list[Planned]:
    from ase.collections import dcdft
    from pymatgen.io.ase import AseAtomsAdaptor

    planned = []
    for el in ELEMENTS:
        s = AseAtomsAdaptor.get_structure(dcdft[el])
        planned.append(Planned(f"el-{el}", el, "element", "ase:dcdft", _plain(s)))
    return planned


_PROTOTYPES: dict[int, list[Any]] = {}


def _prototypes(max_sites: int) -> list[Any]:
    """The usable AFLOW prototype templates, read once per process."""
    from gnomon.pipeline.generation.templates import Template, prototype_templates

    if max_sites not in _PROTOTYPES:
        _PROTOTYPES[max_sites] = [t for t in prototype_templates(max_sites=max_sites)
                                  if isinstance(t, Template)]
    return _PROTOTYPES[max_sites]


def plan_wave1(system: str, n_saps: int, n_random: int, max_sites: int = 8) -> list[Planned]:
    """SAPS on the prototype library plus random search, for one system."""
    from pymatgen.core import Structure

    from gnomon.pipeline.generation.compositions import CompositionError, CompositionGenerator
    from gnomon.pipeline.generation.random_search import RandomSearch
    from gnomon.pipeline.generation.saps import SAPSGenerator

    elements = system.split("-")
    arity = len(elements)
    seed = int(hashlib.sha256(system.encode()).hexdigest()[:8], 16)
    saps = SAPSGenerator(elements=tuple(elements), max_species=arity, partial=False, seed=seed,
                         max_per_template=4)
    pool = []
    templates = [t for t in _prototypes(max_sites) if len(t.structure.composition) == arity]
    random.Random(seed).shuffle(templates)
    for c in saps.generate(templates):
        if c.chemsys == system:
            pool.append(("saps-prototype", c.template_id, Structure.from_dict(c.structure)))
        if len(pool) >= 3 * n_saps:
            break
    chosen = _sample_distinct(pool, n_saps, seed)
    try:
        formulas = list(CompositionGenerator(max_atoms=8).generate(elements))
    except CompositionError:
        formulas = []
    rng = random.Random(seed)
    formulas = rng.sample(formulas, min(len(formulas), max(1, n_random // 3)))
    search = RandomSearch(n_per_composition=max(1, -(-n_random // max(len(formulas), 1))),
                          max_atoms=8, seed=seed)
    randoms = []
    for c in search.generate(formulas):
        randoms.append(("random", None, Structure.from_dict(c.structure)))
    chosen += _sample_distinct(randoms, n_random, seed + 1)
    return [_planned(system, gen, tpl, s) for gen, tpl, s in chosen]


def _planned(system: str, generator: str, template: str | None, structure) -> Planned:
    from gnomon.pipeline.generation.identity import structure_hash

    return Planned(f"{system}:{structure_hash(structure)}", system, generator, template,
                   _plain(structure))


def plan_wave2(systems: list[str], known: list[tuple[str, Any]], per_system: int,
               max_templates: int = 16) -> list[Planned]:
    """SAPS on known compounds (id, relaxed structure) into every system of the world."""
    from pymatgen.core import Structure

    from gnomon.pipeline.generation.saps import SAPSGenerator
    from gnomon.pipeline.generation.templates import Template, make_template

    templates = [t for kid, st in known
                 if isinstance(t := make_template(f"world:{kid}", st, "world"), Template)]
    out: list[Planned] = []
    for system in systems:
        elements = system.split("-")
        if len(elements) < 2:
            continue
        target = set(elements)
        # known compounds one substitution away: at most one foreign element, no more
        # elements than the target system
        near = [t for t in templates
                if len(t.structure.composition) <= len(target)
                and len({e.symbol for e in t.structure.composition} - target) <= 1]
        seed = int(hashlib.sha256(("w2" + system).encode()).hexdigest()[:8], 16)
        random.Random(seed).shuffle(near)
        near = near[:max_templates]
        saps = SAPSGenerator(elements=tuple(elements), max_species=2, partial=True, seed=seed,
                             max_per_template=3)
        pool = []
        for c in saps.generate(near):
            if c.chemsys == system:
                pool.append(("saps-known", c.template_id, Structure.from_dict(c.structure)))
            if len(pool) >= 3 * per_system:
                break
        out += [_planned(system, g, t, s) for g, t, s in _sample_distinct(pool, per_system, seed)]
        log.info("wave 2 planned %s: %d", system, len(out))
    return out


# -- oracle -----------------------------------------------------------------------------------
def _relax_shard(todo: list[dict[str, Any]], out: Path, batch_size: int) -> None:
    """Relax ``todo`` with the CHGNet engine's settings, appending one JSON line per result."""
    import warnings

    import torch
    from pymatgen.core import Structure

    from gnomon.dft.mlip import CHGNetEngine
    from gnomon.dft.mlip_batch import BatchRelaxer, BatchResult

    warnings.simplefilter("ignore")  # CHGNet's tensor-copy notice, once per process
    torch.set_num_threads(1)
    relaxer = BatchRelaxer(CHGNetEngine(**ORACLE_SETTINGS), batch_size=batch_size)
    inputs = {p["id"]: oracle_input(Structure.from_dict(p["structure"])) for p in todo}
    items = ((key, s) for key, (s, refused) in inputs.items() if refused is None)
    t0, n = time.time(), 0
    with out.open("a") as fh:
        for key, (_, refused) in inputs.items():
            if refused is not None:
                fh.write(json.dumps({"id": key, "error": refused, "input_rule": INPUT_RULE}) + "\n")
        for key, result in relaxer.relax(items):
            if isinstance(result, BatchResult):
                rec = {"id": key, "structure": result.structure.as_dict(), "energy": result.energy,
                       "initial_energy": result.initial_energy, "steps": result.steps,
                       "converged": result.converged}
            else:
                rec = {"id": key, "error": result}
            rec["input_rule"] = INPUT_RULE
            fh.write(json.dumps(rec) + "\n")
            fh.flush()
            n += 1
            if n % 100 == 0:
                rate = n / (time.time() - t0)
                log.info("oracle %s: %d/%d (%.2f/s, %.0f min left)", out.stem, n, len(todo), rate,
                         (len(todo) - n) / rate / 60)


INPUT_RULE = 3  # results of older rules that failed are relaxed again under this one
DENSEST = 0.5  # of the radii volume estimate: denser inputs are refused before the oracle


def oracle_input(structure):
    """The structure the oracle starts from, or the reason it is refused.

    Substituted prototypes inherit their template's density (high-pressure H3S, diamond C):
    a tenth of them are denser than half the radii estimate (itself the dense packing target of
    random search). Such a cell makes CHGNet's neighbour and angle lists explode and FIRE
    spends its steps only expanding it, so the oracle refuses it up front, with the reason.
    """
    from gnomon.pipeline.generation.random_search import estimate_volume_per_atom

    if len(structure.composition) == 1:  # elemental references: ASE's measured cells
        return structure, None
    estimate = estimate_volume_per_atom(structure.composition)
    per_atom = structure.volume / len(structure)
    if per_atom < DENSEST * estimate:
        return structure, (f"input refused: {per_atom:.2f} Å^3/atom is under {DENSEST} of the "
                           f"radii estimate {estimate:.2f}")
    return structure, None


def _results_done(work: Path) -> dict[str, dict[str, Any]]:
    done: dict[str, dict[str, Any]] = {}
    for path in sorted([*work.glob("relaxed-*.jsonl"), *work.glob("relaxed-*.jsonl.gz")]):
        with (gzip.open(path, "rt") if path.suffix == ".gz" else path.open()) as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a kill: relaxed again
                    continue
                if "error" in rec and rec.get("input_rule") != INPUT_RULE:
                    continue
                done[rec["id"]] = rec
    return done


def relax_all(plan: list[dict[str, Any]], work: Path, workers: int, batch_size: int = 48,
              deadline: float | None = None) -> None:
    """Relax what the plan holds and no result file does yet; ``workers`` processes.

    At ``deadline`` (epoch seconds) the workers are stopped: every finished result is already
    on disk, and a later build picks up the rest.
    """
    done = _results_done(work)
    todo = [p for p in plan if p["id"] not in done]
    log.info("oracle: %d planned, %d done, %d to relax on %d workers", len(plan), len(done),
             len(todo), workers)
    if not todo:
        return
    # big cells last, so that the batches stay even
    todo.sort(key=lambda p: len(p["structure"]["sites"]))
    stamp = time.strftime("%Y%m%d%H%M%S")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_relax_shard,
                         args=(todo[i::workers], work / f"relaxed-{stamp}-{i}.jsonl", batch_size))
             for i in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(None if deadline is None else max(1.0, deadline - time.time()))
    if any(p.is_alive() for p in procs):
        log.info("oracle: deadline reached, stopping the workers (the rest stays to do)")
        for p in procs:
            p.terminate()
            p.join()
        return
    bad = [p.exitcode for p in procs if p.exitcode != 0]
    if bad:
        raise RuntimeError(f"oracle workers failed with exit codes {bad}; rerun build to resume")


# -- plan files -------------------------------------------------------------------------------
def _write_jsonl_gz(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    with gzip.open(tmp, "wt") as fh:
        for row in rows:
            fh.write(json.dumps(row, sort_keys=True) + "\n")
    os.replace(tmp, path)


def read_jsonl_gz(path: Path) -> Iterator[dict[str, Any]]:
    with gzip.open(path, "rt") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def _planned_wave(path: Path, make) -> list[dict[str, Any]]:
    if path.exists():
        return list(read_jsonl_gz(path))
    rows = [p.as_dict() for p in make()]
    _write_jsonl_gz(path, rows)
    return rows


def _plan_wave1_all(systems: list[str], n_saps: int, n_random: int, workers: int):
    from gnomon.pipeline.generation.streaming import parallel_map

    plans = list(plan_elements())
    for i, batch in enumerate(parallel_map(_plan_one, [(s, n_saps, n_random) for s in systems],
                                           workers), 1):
        plans += batch
        log.info("wave 1 planned %d/%d systems (%d structures)", i, len(systems), len(plans))
    return plans


def _plan_one(args: tuple[str, int, int]) -> list[Planned]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyxtal/spglib chatter on odd draws; not our output
        return plan_wave1(*args)


# -- labels -----------------------------------------------------------------------------------
def judged(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The results with the oracle's verdict of today: a relaxation that ended collapsed
    (:func:`gnomon.dft.collapse.collapsed_pair`) is a failure, also one relaxed before that
    rule, whose stored structure is judged again here (nothing is relaxed twice)."""
    from pymatgen.core import Structure

    from gnomon.dft.collapse import collapsed_pair

    out: dict[str, dict[str, Any]] = {}
    for key, r in results.items():
        if "error" not in r:
            why = collapsed_pair(Structure.from_dict(r["structure"]))
            if why:
                r = {"id": key, "error": f"relaxation ended {why}", "input_rule": INPUT_RULE}
        out[key] = r
    return out


def label(plan: list[dict[str, Any]], results: dict[str, dict[str, Any]], db: Path) -> list[dict[str, Any]]:
    """Entries for every relaxed structure, through gnomon's hull engine; the world's rows."""
    from pymatgen.core import Structure

    from gnomon.pipeline.thermo.entries import entry_from_structure
    from gnomon.pipeline.thermo.hull import HullEngine
    from gnomon.storage import open_repository

    if db.exists():
        db.unlink()
    scheme = "mlip-chgnet-0.3.0"
    rows_by_entry: dict[str, dict[str, Any]] = {}
    entries = []
    for p in plan:
        r = results.get(p["id"])
        if r is None or "error" in r:
            continue
        relaxed = Structure.from_dict(r["structure"])
        entry = entry_from_structure(relaxed, r["energy"], scheme, source=p["generator"])
        entries.append(entry)
        rows_by_entry.setdefault(entry.id, {
            "id": p["id"], "chemsys": relaxed.composition.chemical_system,
            "planned_chemsys": p["chemsys"], "generator": p["generator"],
            "template": p["template"], "wave": p.get("wave"),
            "formula": relaxed.composition.reduced_formula,
            # inputs rescaled under rule 2 are kept with the result: that is what was relaxed
            "nsites": len(relaxed), "unrelaxed": r.get("input", p["structure"]),
            "relaxed": r["structure"],
            "energy": r["energy"], "energy_per_atom": r["energy"] / len(relaxed),
            "unrelaxed_energy_per_atom": r.get("initial_energy", 0.0) / len(relaxed),
            "steps": r["steps"], "converged": r["converged"],
        })
    repo = open_repository(f"sqlite:///{db}")
    try:
        HullEngine(repo).ingest(entries)
        rows = []
        for phase in repo.phases():
            row = rows_by_entry.get(phase.id)
            if row is None:
                continue
            row.update({"formation_energy_per_atom": phase.formation_energy_per_atom,
                        "e_above_hull": phase.e_above_hull,
                        "is_stable": phase.is_stable})
            rows.append(row)
    finally:
        repo.close()
    return sorted(rows, key=lambda r: r["id"])


# -- wave 3: growing the shipped world ---------------------------------------------------------
GROW_NEAR_HULL = 0.1  # eV/atom: world compounds used as templates in wave 3


def rows_as_plan(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """The world's rows as the (plan, results) they were labelled from, so that a grown world
    is labelled over all of its structures at once."""
    plan, results = [], {}
    for r in rows:
        plan.append({"id": r["id"], "chemsys": r["planned_chemsys"], "generator": r["generator"],
                     "template": r["template"], "structure": r["unrelaxed"],
                     "wave": r.get("wave") or _first_build_wave(r)})
        results[r["id"]] = {"id": r["id"], "structure": r["relaxed"], "energy": r["energy"],
                            "initial_energy": r["unrelaxed_energy_per_atom"] * r["nsites"],
                            "steps": r["steps"], "converged": r["converged"], "input": r["unrelaxed"]}
    return plan, results


def _first_build_wave(row: dict[str, Any]) -> int:
    """The wave of a row written before rows said so: ``build`` made only waves 1 and 2, and
    wave 2 is its SAPS on known compounds."""
    return 2 if row["generator"] == "saps-known" else 1


GROW_SAPS_THRESHOLD = 0.0005  # substitution probability cut-off of wave 3 (campaigns: 0.01)
GROW_MAX_RANDOM = 10  # random structures per system at most: pyxtal takes 2-15 s a quaternary


def plan_grow_wave(system: str, need: int, existing: list[dict[str, Any]],
                   known: list[tuple[str, Any]], wave: int = 3, max_sites: int = 10) -> list[Planned]:
    """Up to ``need`` new structures for ``system`` that match none of ``existing`` (its
    world inputs, structure dicts): SAPS with a low probability cut-off (less likely
    substitutions too, as GNoME's later rounds did), random search only where SAPS finds
    under ``GROW_MAX_RANDOM`` (quaternaries few templates reach)."""
    from pymatgen.core import Structure

    from gnomon.pipeline.generation.compositions import (
        BalanceMode,
        CompositionError,
        CompositionGenerator,
    )
    from gnomon.pipeline.generation.random_search import RandomSearch
    from gnomon.pipeline.generation.saps import SAPSGenerator
    from gnomon.pipeline.generation.templates import Template, make_template

    if need <= 0:
        return []
    elements = system.split("-")
    arity = len(elements)
    seed = int(hashlib.sha256((f"w{wave}" + system).encode()).hexdigest()[:8], 16)
    rng = random.Random(seed)
    target = set(elements)
    templates = [t for t in _prototypes(max_sites) if len(t.structure.composition) <= arity]
    templates += [t for kid, st in known
                  if len(st.composition) <= arity
                  and len({e.symbol for e in st.composition} - target) <= 1
                  and isinstance(t := make_template(f"world:{kid}", st, "world"), Template)]
    rng.shuffle(templates)
    saps = SAPSGenerator(elements=tuple(elements), max_species=arity, partial=True, seed=seed,
                         max_per_template=4, threshold=GROW_SAPS_THRESHOLD)
    pool: list[tuple[str, str | None, Any]] = []
    for c in saps.generate(templates):
        if c.chemsys != system:
            continue
        structure = Structure.from_dict(c.structure)
        if oracle_input(structure)[1] is not None:
            # less likely substitutions keep the template's cell, often far too dense for the
            # new ions; the oracle would refuse them, so the plan takes the next one instead
            continue
        gen = "saps-known" if c.template_id.startswith("world:") else "saps-prototype"
        pool.append((gen, c.template_id, structure))
        if len(pool) >= 3 * need:
            break
    rng.shuffle(pool)
    chosen = _new_against(existing, pool, need)
    if len(chosen) < GROW_MAX_RANDOM:  # substitution finds (almost) nothing: random search
        formulas: list[str] = []
        for mode in (BalanceMode.strict, BalanceMode.relaxed):
            try:
                formulas = [f for f in CompositionGenerator(max_atoms=8, mode=mode).generate(elements)
                            if set(_elements_of(f)) == target]
            except CompositionError:
                formulas = []
            if formulas:
                break
        if formulas:
            short = min(need - len(chosen), GROW_MAX_RANDOM)
            formulas = rng.sample(formulas, min(len(formulas), max(1, short // 3)))
            search = RandomSearch(n_per_composition=max(1, -(-2 * short // len(formulas))),
                                  max_atoms=8, seed=seed)
            randoms = [("random", None, Structure.from_dict(c.structure)) for c in search.generate(formulas)]
            chosen += _new_against(existing + [s.as_dict() for _, _, s in chosen], randoms, short)
    return [_planned(system, g, t, s) for g, t, s in chosen[:need]]


def _elements_of(formula: str) -> list[str]:
    from pymatgen.core import Composition

    return [e.symbol for e in Composition(formula).elements]


def _new_against(existing: list[dict[str, Any]], pool: list[tuple[str, str | None, Any]],
                 k: int) -> list[tuple[str, str | None, Any]]:
    """Up to ``k`` of ``pool``, distinct from each other and from every ``existing`` structure
    (StructureMatcher at gnomon's dedup tolerances)."""
    from pymatgen.core import Structure

    from gnomon.pipeline.generation.dedup import dedup_structures

    old = [Structure.from_dict(d) for d in existing]
    keep = dedup_structures(old + [s for _, _, s in pool[: 4 * k]])
    return [pool[i - len(old)] for i in keep if i >= len(old)][:k]


def _plan_grow_one(args: tuple[str, int, list[dict[str, Any]], list[tuple[str, dict[str, Any]]], int]) -> list[Planned]:
    import warnings

    from pymatgen.core import Structure

    system, need, existing, known, wave = args
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return plan_grow_wave(system, need, existing, [(k, Structure.from_dict(d)) for k, d in known], wave)


WAVES_FILE = GROW_DIR / "waves.json"  # {wave: structures per system it grows the world to}


def _grow_base() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The world as it was before the grow began (kept in the grow folder), and its manifest."""
    if (GROW_DIR / "base.jsonl.gz").exists():
        return (list(read_jsonl_gz(GROW_DIR / "base.jsonl.gz")),
                json.loads((GROW_DIR / "base-manifest.json").read_text()))
    rows, _ = load_world()
    manifest = json.loads(MANIFEST_FILE.read_text())
    _write_jsonl_gz(GROW_DIR / "base.jsonl.gz", rows)
    (GROW_DIR / "base-manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return rows, manifest


def _plan_grow(wave: int, per_system: int, rows: list[dict[str, Any]], workers: int) -> list[Planned]:
    """Wave ``wave``: every system up to ``per_system`` structures, templated on ``rows`` (the
    labelled world before the wave) within GROW_NEAR_HULL of their hull, as GNoME's later
    rounds substituted into its own discoveries."""
    from gnomon.pipeline.generation.streaming import parallel_map

    by_system: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_system[r["planned_chemsys"]].append(r["unrelaxed"])
    known = [(r["id"], r["relaxed"]) for r in rows
             if r["generator"] != "element" and r["e_above_hull"] is not None
             and r["e_above_hull"] <= GROW_NEAR_HULL and r["nsites"] <= 12]
    jobs = [(s, per_system - len(by_system[s]), by_system[s], known, wave)
            for s in world_systems() if "-" in s and per_system > len(by_system[s])]
    out: list[Planned] = []
    for i, batch in enumerate(parallel_map(_plan_grow_one, jobs, workers), 1):
        out += batch
        log.info("wave %d planned %d/%d systems (%d structures)", wave, i, len(jobs), len(out))
    return out


def grow(workers: int, per_system: int, deadline: float | None = None, write_partial: bool = False) -> None:
    """Grow the shipped world wave by wave (see the module docstring); resumable.

    Each wave is planned on the world as the earlier waves left it and relaxed whole before
    the world, its manifest (cumulative counts) and the next wave are written; the hold-out
    stays as it is. A ``per_system`` above the last wave's asks for one more wave.

    ``write_partial`` writes the world from what is relaxed when the deadline stops a wave
    (the manifest says ``complete: false`` and how much of each wave is in), as ``build``
    does at its deadlines: a session that cannot wait for the biggest cells of a wave still
    ships what the oracle did. The rest stays planned; the grow that finishes the wave
    rewrites the world whole, and only then plans the next one."""
    GROW_DIR.mkdir(parents=True, exist_ok=True)
    base_rows, base_manifest = _grow_base()
    held = set(json.loads(HELDOUT_FILE.read_text())["systems"])
    waves = {int(k): v for k, v in json.loads(WAVES_FILE.read_text()).items()} if WAVES_FILE.exists() else {}
    if not waves:
        waves = {3: per_system}
        WAVES_FILE.write_text(json.dumps(waves, indent=1) + "\n")
    while True:
        last = max(waves)
        plan: list[dict[str, Any]] = []  # every wave's, each structure once (first wave wins)
        for n in sorted(waves):
            # a wave is planned on the world the waves before it made (written when they were
            # complete), so only the last one can still need planning
            wave_plan = _planned_wave(GROW_DIR / f"wave{n}.jsonl.gz", lambda n=n: _plan_grow(
                n, waves[n], base_rows if n == 3 else load_world()[0], workers))
            # an input an earlier wave planned (one the oracle failed on) is neither relaxed
            # nor counted twice
            earlier = {p["id"] for p in plan}
            plan += [{**p, "wave": n} for p in wave_plan if p["id"] not in earlier]
        relax_all(plan, GROW_DIR, workers, deadline=deadline)
        results = _results_done(GROW_DIR)
        left = sum(1 for p in plan if p["id"] not in results)
        if left and write_partial:
            _write_grown_world(base_rows, base_manifest, plan, results, held, sorted(waves))
            log.info("grow: wave %d written partially: %d of %d planned structures relaxed, "
                     "%d to go (run grow again to resume)", last, len(plan) - left, len(plan), left)
            return
        if left:
            # the shipped world, its manifest and the pretrained model trained on it stay as
            # they are until the whole wave is relaxed: a half-grown world is one nobody trained on
            log.info("grow: %d of %d planned structures relaxed, %d to go; the world is unchanged "
                     "until wave %d is complete (run grow again to resume)", len(plan) - left, len(plan), left, last)
            return
        _write_grown_world(base_rows, base_manifest, plan, results, held, sorted(waves))
        if per_system <= waves[last] or (deadline is not None and time.time() >= deadline):
            return
        waves[last + 1] = per_system
        WAVES_FILE.write_text(json.dumps(waves, indent=1) + "\n")


def _write_grown_world(base_rows: list[dict[str, Any]], base_manifest: dict[str, Any],
                       plan: list[dict[str, Any]], results: dict[str, dict[str, Any]],
                       held: set[str], waves: list[int]) -> None:
    """Label the base world and every grown wave together (one hull per system over all)."""
    plan0, results0 = rows_as_plan(base_rows)
    results0, results = judged(results0), judged(results)
    collapsed0 = sum(1 for r in results0.values() if "error" in r)  # base rows failed since
    rows = label(plan0 + plan, {**results0, **results}, GROW_DIR / "world.db")
    (GROW_DIR / "world.db").unlink(missing_ok=True)
    _write_jsonl_gz(WORLD_FILE, rows)
    c = base_manifest["counts"]
    attempted = [p for p in plan if p["id"] in results]
    failed = sum(1 for p in attempted if "error" in results[p["id"]])
    write_manifest(rows, world_systems(), sorted(held), c["planned"] + len(plan), c["oracle_failures"] + collapsed0 + failed,
                   c["attempted"] + len(attempted), grown_waves=waves)
    log.info("grow: the world now holds %d structures (waves %s)", len(rows), waves)


# -- commands ---------------------------------------------------------------------------------
def build(workers: int, n_saps: int, n_random: int, n_known: int,
          deadlines: tuple[float | None, float | None] = (None, None)) -> None:
    """Plan, relax and label both waves; with deadlines, each wave's relaxation stops at its
    deadline and the world is written from what was relaxed (the manifest says how much)."""
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    systems = world_systems()
    plan1 = [{**p, "wave": 1} for p in _planned_wave(
        WORK_DIR / "wave1.jsonl.gz", lambda: _plan_wave1_all(systems, n_saps, n_random, workers))]
    relax_all(plan1, WORK_DIR, workers, deadline=deadlines[0])
    results = judged(_results_done(WORK_DIR))

    def make_wave2():
        from pymatgen.core import Structure

        rows = label(plan1, results, WORK_DIR / "wave1.db")
        known = [(r["id"], Structure.from_dict(r["relaxed"])) for r in rows
                 if r["e_above_hull"] is not None and r["e_above_hull"] <= NEAR_HULL
                 and r["generator"] != "element" and r["nsites"] <= 12]
        log.info("wave 2: %d known compounds as templates", len(known))
        return plan_wave2(systems, known, n_known)

    plan2 = [{**p, "wave": 2} for p in _planned_wave(WORK_DIR / "wave2.jsonl.gz", make_wave2)]
    relax_all(plan2, WORK_DIR, workers, deadline=deadlines[1])
    results = judged(_results_done(WORK_DIR))
    rows = label(plan1 + plan2, results, WORK_DIR / "world.db")
    failures = [r for r in results.values() if "error" in r]
    _write_jsonl_gz(WORLD_FILE, rows)
    held = heldout_systems(systems)
    HELDOUT_FILE.write_text(json.dumps({"seed": SEED + 1, "fraction": HELDOUT_FRACTION,
                                        "systems": held}, indent=1) + "\n")
    attempted = sum(1 for p in plan1 + plan2 if p["id"] in results)
    write_manifest(rows, systems, held, len(plan1) + len(plan2), len(failures), attempted)


def oracle_description() -> dict[str, Any]:
    from importlib.metadata import version

    from gnomon.dft.collapse import COLLAPSED_FRACTION

    return {"engine": "mlip (gnomon.dft.mlip.CHGNetEngine settings)", "model": "CHGNet 0.3.0",
            "chgnet": version("chgnet"), "torch": version("torch"),
            "scheme": "mlip-chgnet-0.3.0", **ORACLE_SETTINGS, "optimizer": "FIRE",
            "cell_filter": "FrechetCellFilter", "input_rule": INPUT_RULE,
            "collapsed_below": f"{COLLAPSED_FRACTION} of a pair's covalent radii sum "
                               "(gnomon.dft.collapse): a failure"}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_manifest(rows, systems, held, planned, failed, attempted, grown_waves: list[int] | None = None) -> None:
    per_system: dict[str, Counter] = defaultdict(Counter)
    for r in rows:
        per_system[r["chemsys"]][r["generator"]] += 1
    elements = sorted({e for r in rows for e in r["chemsys"].split("-")})
    arity = Counter(s.count("-") + 1 for s in per_system if s.count("-") >= 1)
    manifest = {
        "description": "gnomon benchmark world: oracle-relaxed structures (bench/world.py)",
        "built": time.strftime("%Y-%m-%d"),
        "oracle": oracle_description(),
        "complete": attempted == planned,
        "counts": {"structures": len(rows), "planned": planned, "attempted": attempted,
                   "oracle_failures": failed,
                   "systems": len(per_system), "planned_systems": len(systems),
                   "by_arity": {str(k): v for k, v in sorted(arity.items())},
                   "elements": len(elements), "stable": sum(bool(r["is_stable"]) for r in rows),
                   "by_generator": dict(Counter(r["generator"] for r in rows)),
                   "by_wave": {str(k): v for k, v in sorted(Counter(
                       r.get("wave") or 0 for r in rows).items())},
                   "heldout_systems": len(held)},
        "per_system": {s: dict(c) for s, c in sorted(per_system.items())},
        **({"grown_waves": grown_waves} if grown_waves else {}),
        "files": {p.name: _sha256(p) for p in (WORLD_FILE, HELDOUT_FILE)},
    }
    MANIFEST_FILE.write_text(json.dumps(manifest, indent=1) + "\n")


def check() -> int:
    manifest = json.loads(MANIFEST_FILE.read_text())
    bad = 0
    for name, digest in manifest["files"].items():
        path = WORLD_DIR / name
        got = _sha256(path) if path.exists() else "missing"
        ok = got == digest
        bad += not ok
        print(f"{name:20s} {'ok' if ok else 'MISMATCH'}  {got[:16]}")
    rows = list(read_jsonl_gz(WORLD_FILE))
    n = manifest["counts"]["structures"]
    if len(rows) != n:
        print(f"world.jsonl.gz holds {len(rows)} rows, the manifest says {n}")
        bad += 1
    held = set(json.loads(HELDOUT_FILE.read_text())["systems"])
    print(f"{len(rows)} structures, {len({r['chemsys'] for r in rows})} systems, "
          f"{len(held)} held out")
    return 1 if bad else 0


def status() -> None:
    grown = sorted(GROW_DIR.glob("wave*.jsonl.gz"), key=lambda p: int(p.name[4:].split(".")[0]))
    for path in [WORK_DIR / "wave1.jsonl.gz", WORK_DIR / "wave2.jsonl.gz", *grown]:
        n = sum(1 for _ in read_jsonl_gz(path)) if path.exists() else 0
        print(f"{path.parent.name}/{path.name.split('.')[0]}: {n} planned")
    for folder in (WORK_DIR, GROW_DIR):
        done = _results_done(folder) if folder.exists() else {}
        print(f"{folder.name}: relaxed {len(done)} ({sum('error' in r for r in done.values())} failed)")


def load_world() -> tuple[list[dict[str, Any]], set[str]]:
    """The world's rows and the held-out systems (for bench/learning.py and pretraining)."""
    return list(read_jsonl_gz(WORLD_FILE)), set(json.loads(HELDOUT_FILE.read_text())["systems"])


def _at(hhmm: str) -> float:
    """Epoch seconds of the next local HH:MM."""
    now = time.localtime()
    h, m = (int(x) for x in hhmm.split(":"))
    t = time.mktime((now.tm_year, now.tm_mon, now.tm_mday, h, m, 0, 0, 0, -1))
    return t if t > time.time() - 12 * 3600 else t + 86400


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--workers", type=int, default=2)
    b.add_argument("--saps", type=int, default=26, help="wave-1 SAPS structures per system")
    b.add_argument("--random", type=int, default=12, help="wave-1 random structures per system")
    b.add_argument("--known", type=int, default=20, help="wave-2 SAPS structures per system")
    b.add_argument("--until", nargs=2, metavar=("WAVE1", "WAVE2"), default=None,
                   help="local times HH:MM at which each wave's relaxation stops")
    g = sub.add_parser("grow", help="wave 3: more structures per system on the shipped world")
    g.add_argument("--workers", type=int, default=2)
    g.add_argument("--per-system", type=int, default=55, help="structures per system to reach")
    g.add_argument("--until", default=None, metavar="HH:MM", help="local time at which relaxation stops")
    g.add_argument("--write-partial", action="store_true",
                   help="at --until, write the world from what is relaxed (manifest: complete false)")
    sub.add_parser("check")
    sub.add_parser("status")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.cmd == "build":
        build(args.workers, args.saps, args.random, args.known,
              tuple(_at(t) for t in args.until) if args.until else (None, None))
        return check()
    if args.cmd == "grow":
        grow(args.workers, args.per_system, _at(args.until) if args.until else None,
             write_partial=args.write_partial)
        return check()  # the shipped files: unchanged by an incomplete grow unless --write-partial
    if args.cmd == "check":
        return check()
    status()
    return 0


if __name__ == "__main__":
    sys.exit(main())
