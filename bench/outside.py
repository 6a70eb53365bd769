"""Does the screen carry over to chemistry the world does not hold at all? (issue 26)

The README's held-out figures are measured on 18 systems of the world's own making: their
elements, and most of their binaries, are in the training data. A user's campaign runs in
chemical systems the world has never seen. This benchmark makes such a set **the way the
world is made** and measures the shipped screen and the funnel on it:

* **The set** (seeded, printed, ``bench/results/outside/systems.json``): ternary systems with
  no world row and no held-out system among them:

  (a) four common ternary oxide and sulfide systems (two of each) of two of the world's
      cations, drawn from every such system whose cation-anion binaries the world holds;
  (b) two ternary oxide systems with one cation the world's 48 elements lack (CHGNet covers
      it: a metal or metalloid of ASE's dcdft references, Z <= 83, not radioactive) beside one
      of the world's cations.

  Per ternary system ``--per-system`` structures (25) planned with the world's own planner,
  :func:`gnomon.world.plan_grow.plan_grow_wave` (SAPS on pymatgen's prototypes and on the
  world's compounds within 0.1 eV/atom of their hull, held-out systems' compounds left out;
  random search where substitution finds fewer than 10), topped up to ``--per-system`` by
  random search on SMACT-balanced compositions where substitution finds fewer (prototype
  SAPS reaches only 13-22 structures in most ternaries); for a new element X also its elemental
  reference (:func:`gnomon.world.plan.plan_elements`) and ``--binary-per-system`` (8) X-O
  structures planned as the cover plans a binary
  (:func:`gnomon.world.plan_cover.plan_cover_system`), so each system's hull holds every
  binary the world holds (for (a) its cation-cation binary too, since the world's cover of
  2026-12-07 evening) and, for (b), not the new cation's binary with the world's cation.
* **The oracle**: :func:`gnomon.world.oracle.relax_all` (CHGNet, the world's settings), into
  ``bench/results/outside/work``, one worker; resumable: a rerun relaxes nothing twice.
* **Labels**: the new results, judged (:func:`gnomon.world.label.judged`), labelled with
  the world's rows of their subsystems (elements and binaries, ``bench/world``) through the
  hull engine (:func:`gnomon.world.label.label`): ``bench/results/outside/outside.jsonl.gz``,
  rows shaped like world rows (the subsystems' rows included).
* **The screen** (the shipped pretrained model): MAE, mean signed error, F1, DAF, +-1 sigma on
  the unrelaxed inputs labelled with the relaxed energy (what screening sees) and on the
  relaxed structures, per group and overall, e_above_hull_pred = e_above_hull_true + E_pred -
  E_true (``gnomon.models.evaluation``), beside the README's held-out row.
* **The funnel**: replayed campaigns (``bench/funnel.py``'s ``run_arm``, ``MlipStage``,
  ``ceiling_stage``, ``raw_energies``): random (20 seeds), the screen, the screen + the
  fine-tuned SevenNet stage (raw energies, filling gate), perfect knowledge; the pool is every
  structure of the new ternary systems, the known start every subsystem (the world's elements
  and binaries, and the new elements and X-O binaries). The stage's SevenNet relaxations are
  cached in ``bench/results/outside/sevennet-<run>.jsonl``.

Run (each part resumes; ``all`` runs them in order)::

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/outside.py all [--until 17:50]
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/outside.py plan     # print the set
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/outside.py relax    # the oracle
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/outside.py stage    # optional, beside it
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/outside.py label
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/outside.py report   # screen + funnel

A cheap trial: ``--out /tmp/outside-small --per-system 2 --binary-per-system 1``. Writes
``docs/bench/outside-world.md`` and ``bench/results/outside/outside-results.json`` (the default
``--out`` only). Tables, never assertions; timings are what this machine gave on the day.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from gnomon.pipeline.generation.random_search import RandomSearch
from gnomon.storage.chemsys import chemsys_of
from gnomon.world.files import WorldFiles, cached_plan, load_world, read_jsonl_gz, write_jsonl_gz
from gnomon.world.label import judged, label, rows_as_plan
from gnomon.world.oracle import relax_all, results_done
from gnomon.world.plan import Planned, plan_elements, planned, system_seed
from gnomon.world.plan_cover import COVER_WAVE, cover_templates, plan_cover_system
from gnomon.world.plan_grow import (
    GROW_NEAR_HULL,
    balanced_formulas,
    new_against,
    plan_grow_wave,
)
from gnomon.world.systems import ANIONS, ELEMENTS

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # bench/funnel.py and bench/campaigns.py, as funnel.py does

import funnel  # noqa: E402  (bench/funnel.py: the campaign arms, reused)

WORLD = HERE / "world"
OUT = HERE / "results" / "outside"
DOCS = HERE.parent / "docs" / "bench" / "outside-world.md"
TUNED_MODEL = HERE / "results" / "sevennet-ft" / "ft-2000x2-b4-lr0.001" / "checkpoint_best.pth"
SEED = 26  # the number: the draw of the systems
GROUPS = {"a": "world cations, common oxides and sulfides",
          "b": "one cation the world lacks, oxides"}
OUTSIDE_WAVE = 3  # the grow's planner plans the ternaries: their rows carry its wave
ELEMENT_WAVE = 1  # a new element's reference, as the first build planned the world's own
#: The README's held-out row of the shipped screen (v6, 1,187 structures of 18 systems).
HELDOUT_README = {"unrelaxed": {"mae": 0.231, "f1": 0.16, "daf": 5.26, "cov1": 0.72},
                  "relaxed": {"mae": 0.160, "f1": 0.19, "daf": 5.39, "cov1": 0.79}}

nan = float("nan")
log = logging.getLogger("outside")


# -- the set ------------------------------------------------------------------------------------
def world_cations() -> list[str]:
    return [e for e in ELEMENTS if e not in ANIONS]


def new_element_candidates() -> list[str]:
    """Cations a CHGNet oracle covers and the world lacks: metals and metalloids with an ASE
    dcdft reference structure (the world's elemental references), Z <= 83, not radioactive."""
    from ase.collections import dcdft  # heavy: ase's collections database
    from pymatgen.core import Element

    out = []
    for name in dcdft.names:
        el = Element(name)
        if (name not in ELEMENTS and el.Z <= 83 and not el.is_radioactive
                and (el.is_metal or el.is_metalloid)):
            out.append(name)
    return sorted(out, key=lambda e: Element(e).Z)


def choose_systems(rows: list[dict[str, Any]], held: set[str], seed: int = SEED,
                   n_each: int = 2, n_new: int = 2) -> dict[str, Any]:
    """The seeded set: ``n_each`` A-B-O and ``n_each`` A-B-S systems of world cations whose
    cation-anion binaries the world holds (group a), and ``n_new`` A-X-O systems with X a
    cation the world lacks (group b); none with a world row, none held out."""
    rng = random.Random(seed)
    present = {chemsys_of(r["chemsys"].split("-")) for r in rows}
    held = {chemsys_of(s.split("-")) for s in held}
    cations = world_cations()
    group_a: list[str] = []
    eligible: dict[str, int] = {}
    for anion in ("O", "S"):
        pool = sorted(chemsys_of([a, b, anion]) for i, a in enumerate(cations)
                      for b in cations[i + 1:]
                      if chemsys_of([a, anion]) in present and chemsys_of([b, anion]) in present)
        pool = [s for s in pool if s not in present and s not in held]
        eligible[anion] = len(pool)
        group_a += sorted(rng.sample(pool, n_each))
    news = new_element_candidates()
    xs = rng.sample(news, n_new)
    group_b = []
    for x in xs:
        partner = rng.choice(cations)
        group_b.append(chemsys_of([x, partner, "O"]))
    return {"seed": seed, "a": group_a, "b": group_b, "new_elements": xs,
            "new_binaries": [chemsys_of([x, "O"]) for x in xs],
            "eligible": {**eligible, "new_element_candidates": news}}


def templates(rows: list[dict[str, Any]], held: set[str]) -> list[tuple[str, dict[str, Any]]]:
    """The world's compounds near their hull, as a grow takes them (within GROW_NEAR_HULL, at
    most 12 sites), none of a held-out system."""
    held = {chemsys_of(s.split("-")) for s in held}
    return [(r["id"], r["relaxed"]) for r in rows
            if r["generator"] != "element" and r["e_above_hull"] is not None
            and r["e_above_hull"] <= GROW_NEAR_HULL and r["nsites"] <= 12
            and chemsys_of(r["chemsys"].split("-")) not in held]


def _as_dicts(batch: list[Planned], wave: int) -> list[dict[str, Any]]:
    return [{**p.as_dict(), "wave": wave} for p in batch]


def make_plan(choice: dict[str, Any], rows: list[dict[str, Any]], held: set[str],
              per_system: int, per_binary: int) -> list[dict[str, Any]]:
    """The new elements' references, their X-O binaries (as a cover plans them), and every
    ternary system's ``per_system`` structures (as a grow plans them)."""
    from pymatgen.core import Structure

    out = _as_dicts(plan_elements(choice["new_elements"]), ELEMENT_WAVE)
    binary_known = [(k, Structure.from_dict(d)) for k, d in cover_templates(rows, held)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyxtal/spglib chatter on odd draws; not our output
        for system in choice["new_binaries"]:
            t0 = time.time()
            batch = plan_cover_system(system, per_binary, [], binary_known)
            out += _as_dicts(batch, COVER_WAVE)
            log.info("planned %s: %d structures (%.0f s)", system, len(batch), time.time() - t0)
        known = [(k, Structure.from_dict(d)) for k, d in templates(rows, held)]
        for system in choice["a"] + choice["b"]:
            t0 = time.time()
            batch = plan_grow_wave(system, per_system, [], known, wave=OUTSIDE_WAVE)
            batch += random_top_up(system, per_system - len(batch), batch)
            out += _as_dicts(batch, OUTSIDE_WAVE)
            log.info("planned %s: %d structures (%.0f s)", system, len(batch), time.time() - t0)
    return out


def random_top_up(system: str, short: int, chosen: list[Planned]) -> list[Planned]:
    """Random search for the ``short`` places substitution left empty: the grow's planner
    tops up with random search only below ``GROW_MAX_RANDOM`` structures (a quaternary's
    pyxtal cost), and these ternaries are cheap; SMACT-balanced compositions, else relaxed
    balance, as the planner's own random branch (its seed, another tag)."""
    from pymatgen.core import Structure

    if short <= 0:
        return []
    elements = system.split("-")
    formulas = balanced_formulas(elements)
    if not formulas:
        return []
    seed = system_seed(f"outside-random{system}")
    rng = random.Random(seed)
    formulas = rng.sample(formulas, min(len(formulas), max(1, short // 2)))
    search = RandomSearch(n_per_composition=max(1, -(-2 * short // len(formulas))),
                          max_atoms=8, seed=seed)
    drawn = [("random", None, Structure.from_dict(c.structure))
             for c in search.generate(formulas)]
    fresh = new_against([p.structure for p in chosen], drawn, short)
    return [planned(system, g, t, st) for g, t, st in fresh]


class _Rows:
    """``cached_plan`` wants objects with ``as_dict()``."""

    def __init__(self, d: dict[str, Any]):
        self.d = d

    def as_dict(self) -> dict[str, Any]:
        return self.d


def the_plan(args: argparse.Namespace) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The set and its plan, read from ``--out`` when made before (the draw is seeded: the
    same set every time), else made and written."""
    rows, held = load_world(WorldFiles(WORLD))
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    choice_file = out / "systems.json"
    if choice_file.exists():
        choice = json.loads(choice_file.read_text())
    else:
        choice = choose_systems(rows, held, args.seed)
        choice.update(per_system=args.per_system, per_binary=args.binary_per_system)
        choice_file.write_text(json.dumps(choice, indent=1))
    plan = cached_plan(out / "plan.jsonl.gz", lambda: map(_Rows, make_plan(
        choice, rows, held, choice["per_system"], choice["per_binary"])))
    return choice, plan


def print_set(choice: dict[str, Any], plan: list[dict[str, Any]]) -> None:
    count: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for p in plan:
        count[p["chemsys"]][p["generator"]] += 1
    print(f"The set (seed {choice['seed']}; eligible: {choice['eligible']['O']} A-B-O and "
          f"{choice['eligible']['S']} A-B-S systems of world cations; new cations drawn from "
          f"{', '.join(choice['eligible']['new_element_candidates'])})")
    print("| group | system | planned | by generator |\n|---|---|---|---|")
    for g in ("a", "b"):
        for s in choice[g]:
            print(f"| {g} | {s} | {sum(count[s].values())} | {dict(count[s])} |")
    for s in choice["new_elements"] + choice["new_binaries"]:
        print(f"| b (subsystem) | {s} | {sum(count[s].values())} | {dict(count[s])} |")
    print(f"| all | | {len(plan)} | |")


# -- labels ---------------------------------------------------------------------------------------
def subsystem_rows(choice: dict[str, Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The world's rows inside the new systems' spaces (their elements and binaries)."""
    spaces = [set(s.split("-")) for s in choice["a"] + choice["b"]]
    return [r for r in rows if any(set(r["chemsys"].split("-")) < sp for sp in spaces)]


def write_labels(choice: dict[str, Any], plan: list[dict[str, Any]], out: Path) -> list[dict]:
    """The new results and the world's subsystem rows, labelled together: one hull per
    system over all (``outside.jsonl.gz``)."""
    rows, _ = load_world(WorldFiles(WORLD))
    plan0, results0 = rows_as_plan(subsystem_rows(choice, rows))
    results = judged(results_done(out / "work"))
    labelled = label(plan0 + plan, {**judged(results0), **results}, out / "label.db")
    (out / "label.db").unlink(missing_ok=True)
    write_jsonl_gz(out / "outside.jsonl.gz", labelled)
    failed = sum(1 for p in plan if "error" in results.get(p["id"], {}))
    log.info("labelled %d rows (%d new relaxed, %d failed, %d not relaxed)", len(labelled),
             sum(1 for p in plan if p["id"] in results) - failed, failed,
             sum(1 for p in plan if p["id"] not in results))
    return labelled


# -- the screen ----------------------------------------------------------------------------------
def groups_of(choice: dict[str, Any]) -> dict[str, set[str]]:
    """The sets of systems the tables score, by name."""
    a, b = set(choice["a"]), set(choice["b"])
    return {"(a) world cations": a, "(b) a new cation": b, "all new ternaries": a | b,
            "(b) new X-O binaries": set(choice["new_binaries"])}


def screen_tables(choice: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The shipped screen on the new systems' structures, unrelaxed and relaxed inputs, each
    labelled with the oracle's relaxed energy; e_above_hull_true by Matbench Discovery's
    convention over every labelled row (:func:`gnomon.models.evaluation.hull_distances`)."""
    from pymatgen.core import Structure

    from gnomon.models import pretrained
    from gnomon.models.evaluation import evaluation_report, hull_distances, predict_samples
    from gnomon.models.training import Sample
    from gnomon.pipeline.thermo.entries import entry_from_structure

    card = pretrained.read_card()
    ensemble = pretrained.load_weights(card["weights"])
    entries, samples = [], {"relaxed": [], "unrelaxed": []}
    for r in rows:
        entry = entry_from_structure(Structure.from_dict(r["relaxed"]), r["energy"],
                                     pretrained.SCHEME, source=r["generator"])
        entries.append(entry)
        samples["relaxed"].append(Sample.from_entry(entry))
        start = Sample.from_entry(entry)
        start.structure = r["unrelaxed"]
        start.key = f"{entry.id}:unrelaxed"
        samples["unrelaxed"].append(start)
    hull = hull_distances(entries)
    energy = np.asarray([s.energy_per_atom for s in samples["relaxed"]])
    out: dict[str, Any] = {"model": card.get("version") or card["weights"], "rows": []}
    for name, systems in groups_of(choice).items():
        idx = [i for i, r in enumerate(rows)
               if chemsys_of(r["planned_chemsys"].split("-")) in systems]
        for inputs in ("unrelaxed", "relaxed"):
            pred = predict_samples(ensemble, [samples[inputs][i] for i in idx])
            report = evaluation_report(energy[idx], pred.energy_per_atom, hull[idx], pred.sigma)
            err = pred.energy_per_atom - energy[idx]
            report.update(group=name, input=inputs, mse=float(np.nanmean(err)) if idx else nan,
                          n_stable_true=int(np.sum(hull[idx] <= 0)) if idx else 0,
                          per_system={s: float(np.nanmean(err[[k for k, i in enumerate(idx)
                                                               if _planned(rows[i]) == s]]))
                                      for s in sorted(systems)
                                      if any(_planned(rows[i]) == s for i in idx)})
            out["rows"].append(report)
    return out


def _planned(row: dict[str, Any]) -> str:
    return chemsys_of(row["planned_chemsys"].split("-"))


def _n(v: float, fmt: str = "{:.3f}") -> str:
    return "–" if v is None or not np.isfinite(v) else fmt.format(v)


def screen_table(screen: dict[str, Any]) -> list[str]:
    lines = ["| structures | input | n | refused by the screen | stable | MAE | "
             "mean signed error | F1 | DAF | precision | recall | ±1σ |", "|" + "---|" * 12]
    for inputs in ("unrelaxed", "relaxed"):
        h = HELDOUT_README[inputs]
        lines.append(f"| README held-out (18 world systems) | {inputs} | 1187 | 0 | 41 | "
                     f"{h['mae']:.3f} | – | {h['f1']:.2f} | {h['daf']:.2f} | – | – | "
                     f"{h['cov1']:.2f} |")
    for r in screen["rows"]:
        lines.append(f"| {r['group']} | {r['input']} | {r['n']} | {r['n_missing']} | "
                     f"{r['n_stable_true']} | "
                     f"{_n(r['mae'])} | {_n(r['mse'], '{:+.3f}')} | {_n(r.get('f1'), '{:.2f}')} "
                     f"| {_n(r.get('daf'), '{:.2f}')} | {_n(r.get('precision'), '{:.2f}')} | "
                     f"{_n(r.get('recall'), '{:.2f}')} | "
                     f"{_n(r.get('coverage_1sigma'), '{:.2f}')} |")
    return lines


def signed_table(screen: dict[str, Any]) -> list[str]:
    """The mean signed error per system (pred - oracle, eV/atom), unrelaxed and relaxed."""
    by = {(r["group"], r["input"]): r["per_system"] for r in screen["rows"]}
    lines = ["| system | group | mean signed error, unrelaxed | mean signed error, relaxed |",
             "|---|---|---|---|"]
    for group in ("(a) world cations", "(b) a new cation", "(b) new X-O binaries"):
        un, re_ = by.get((group, "unrelaxed"), {}), by.get((group, "relaxed"), {})
        for s in sorted(un):
            lines.append(f"| {s} | {group} | {_n(un[s], '{:+.3f}')} | "
                         f"{_n(re_.get(s), '{:+.3f}')} |")
    return lines


# -- the funnel -----------------------------------------------------------------------------------
def labelled_item(r: dict[str, Any]):
    """A labelled row as the campaign replay takes it (as ``gnomon.world.replay`` builds it)."""
    from pymatgen.core import Structure

    from gnomon.campaign.simulate import Labelled

    relaxed = Structure.from_dict(r["relaxed"])
    comp = relaxed.composition
    return Labelled(r["id"], relaxed, float(r["energy_per_atom"]), comp.reduced_formula,
                    comp.chemical_system, Structure.from_dict(r["unrelaxed"]))


def outside_data(choice: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The campaign's data, shaped as ``gnomon.world.replay.campaign_data``'s: the pool is
    every structure of the new ternary systems; known from the start are their subsystems
    (the world's elements and binaries, the new elements' references and X-O binaries)."""
    from gnomon.campaign.simulate import HIT_TOLERANCE

    new = set(choice["a"] + choice["b"])
    elements, pool, reference, stable = [], [], [], set()
    for r in rows:
        chemsys = chemsys_of(r["chemsys"].split("-"))
        if "-" not in chemsys:
            elements.append(labelled_item(r))
        elif chemsys in new:
            pool.append(labelled_item(r))
            if r.get("e_above_hull") is not None and r["e_above_hull"] <= HIT_TOLERANCE:
                stable.add(r["id"])
        else:
            reference.append(labelled_item(r))
    return {"held": sorted(new), "labels": elements + pool, "reference": reference,
            "stable": stable, "n_pool": len(pool), "n_world": len(rows)}


@dataclass
class OutsideStage(funnel.MlipStage):
    """``bench/funnel.py``'s stage, its misses relaxed and cached in ``cache`` (this
    benchmark's own file, never the world benchmark's caches)."""

    cache: Path | None = None

    def relaxation(self, item) -> dict:
        if item.key not in self.relaxed:
            self.calc = self.calc or funnel.stage_calculator(self.model)
            row = {"id": item.key, **funnel.relax_one(self.calc, item.candidate)}
            self.miss_cpu += row["cpu_s"]
            funnel._append(self.cache, row)
            self.relaxed[item.key] = row
        return super().relaxation(item)


def stage_cache_file(out: Path, model: Path) -> Path:
    return out / f"sevennet-{model.parent.name}.jsonl"


def relax_pool(data: dict[str, Any], out: Path, model: Path, seed: int) -> None:
    """The stage model's relaxation of every pool input (the screen's best first, then its
    ranking interleaved with a seeded random order, as ``funnel.py cache`` orders them):
    resumable, so the stage-alone table scores the whole pool."""
    items = funnel.relax_order(data, _default_model(), seed, head=len(data["labels"]))
    path = stage_cache_file(out, model)
    done = funnel.read_cache(path)
    todo = [it for it in items if it.key not in done]
    calc = funnel.stage_calculator(str(model)) if todo else None
    for k, it in enumerate(todo):
        funnel._append(path, {"id": it.key, **funnel.relax_one(calc, it.candidate)})
        if (k + 1) % 10 == 0:
            log.info("stage relaxations: %d of %d", k + 1, len(todo))


def relax_plan_inputs(choice: dict[str, Any], plan: list[dict[str, Any]], out: Path,
                      model: Path, seed: int) -> None:
    """The stage model's relaxations of the ternaries' planned inputs (what the oracle starts
    from, so the pool's candidates), in a seeded random order, before the oracle's labels are
    in: a cache filled while the oracle runs, an unbiased sample if it stops early."""
    import torch
    from pymatgen.core import Structure

    torch.set_num_threads(1)
    new = set(choice["a"] + choice["b"])
    todo = [p for p in plan if p["chemsys"] in new]
    random.Random(seed).shuffle(todo)
    path = stage_cache_file(out, model)
    done = funnel.read_cache(path)
    todo = [p for p in todo if p["id"] not in done]
    calc = funnel.stage_calculator(str(model)) if todo else None
    for k, p in enumerate(todo):
        funnel._append(path, {"id": p["id"],
                              **funnel.relax_one(calc, Structure.from_dict(p["structure"]))})
        if (k + 1) % 10 == 0:
            log.info("stage relaxations of the plan: %d of %d", k + 1, len(todo))


def _default_model() -> Path | None:
    from campaigns import default_model  # bench/campaigns.py, on the path funnel.py set

    return default_model()


FUNNEL_ARMS = (funnel.RANDOM, funnel.SCREEN, funnel.TUNED_FILL, funnel.TUNED_ROUTED,
               funnel.CEILING)


def run_funnel(choice: dict[str, Any], rows: list[dict[str, Any]],
               args: argparse.Namespace) -> dict[str, Any]:
    """The arms over ``--rounds`` x ``--seeds`` (random over ``--random-seeds``) on the new
    systems, with ``bench/funnel.py``'s ``run_arm``; the tuned stage alone on the pool."""
    import torch

    torch.set_num_threads(1)
    data = outside_data(choice, rows)
    by_id = {r["id"]: r for r in rows}
    pool = [it for it in data["labels"] if "-" in it.chemsys]
    model = _default_model()
    relax_pool(data, args.out, args.tuned_model, args.seed)
    cache = stage_cache_file(args.out, args.tuned_model)
    relaxed = funnel.read_cache(cache)
    raw = funnel.raw_energies({el for r in rows for el in r["chemsys"].split("-")})
    opts = {"rounds": args.rounds, "budget": args.budget, "model": model,
            "steps": {k: int(r.get("steps") or 0) for k, r in by_id.items()},
            "per_step": funnel.oracle_cpu_per_step(pool)}
    e_hull = {it.key: by_id[it.key]["e_above_hull"] for it in pool}

    def stage_for(arm: str):
        if arm in (funnel.TUNED_FILL, funnel.TUNED_ROUTED):
            return OutsideStage(raw, relaxed, args.width * args.budget, args.gate,
                                model=str(args.tuned_model), fill=args.fill, need=args.budget,
                                cache=cache, unscreened=args.budget
                                if arm == funnel.TUNED_ROUTED else 0)
        return funnel.ceiling_stage(e_hull) if arm == funnel.CEILING else None

    runs = [funnel.run_arm(arm, data, seed, opts, stage_for(arm))
            for seed in range(args.seeds) for arm in FUNNEL_ARMS]
    runs += [funnel.run_arm(funnel.RANDOM, data, seed, opts)
             for seed in range(args.seeds, args.random_seeds)]
    alone = funnel.stage_alone(data, relaxed, by_id, {"SevenNet fine-tuned, raw": raw},
                               args.seed)
    alone = {k: v for k, v in alone.items() if k.startswith("all cached")}  # all: one sample
    for g in ("a", "b"):  # the same, per group
        part = outside_data({**choice, "a": choice[g], "b": []}, rows)
        alone |= {f"{GROUPS[g]} ({g}) / {k.split(' / ')[1]}": v for k, v in funnel.stage_alone(
            part, relaxed, by_id, {"SevenNet fine-tuned, raw": raw}, args.seed).items()
            if k.startswith("all cached")}
    return {"summary": funnel.summarise_arms(runs, args.rounds), "alone": alone, "runs": runs,
            "pool": data["n_pool"], "stable": len(data["stable"]),
            "stable_ids": sorted(data["stable"]),
            "pool_systems": {it.key: _planned(by_id[it.key]) for it in pool},
            "reference": len(data["reference"]), "per_step": opts["per_step"],
            "model": str(model)}


# -- the report -----------------------------------------------------------------------------------
def write_report(args: argparse.Namespace, choice: dict[str, Any], plan: list[dict[str, Any]],
                 rows: list[dict[str, Any]], screen: dict[str, Any],
                 campaigns: dict[str, Any] | None) -> None:
    results = results_done(args.out / "work")
    new = [r for r in rows if r["id"] in {p["id"] for p in plan}]
    failed = sum(1 for p in plan if p["id"] in results and "error" in results[p["id"]])
    cmd = "nice -n 10 .venv/bin/python bench/outside.py " + " ".join(sys.argv[1:])
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    text = [f"# The screen and the funnel outside the world ({time.strftime('%Y-%m-%d %H:%M')}"
            " UTC)", "",
            f"`{cmd}` (`bench/outside.py`; machine: 2-core VM, no GPU, shared; load average "
            f"at the end {load}).", "",
            "Chemical systems the benchmark world does not hold at all (no world row, no "
            "held-out system), made the way the world is made: the world's planner (SAPS on "
            "pymatgen's prototypes and on the world's compounds near their hull, random search "
            "where substitution finds too few), the world's oracle (CHGNet, its relaxation "
            "settings), labelled on one hull per system with the world's rows of their "
            "subsystems (elements and binaries: for (a) its cation-anion and cation-cation "
            "binaries; for (b) the new cation's binary with the world's cation is not held).",
            "",
            f"Systems (seed {choice['seed']}): (a) {', '.join(choice['a'])}, drawn from "
            f"{choice['eligible']['O']} A-B-O and {choice['eligible']['S']} A-B-S systems of "
            f"the world's cations; (b) {', '.join(choice['b'])}, with "
            f"{' and '.join(choice['new_elements'])} (not among the world's 48 elements; "
            f"drawn from {', '.join(choice['eligible']['new_element_candidates'])}), with "
            f"their elemental references and the {' and '.join(choice['new_binaries'])} "
            "binaries planned as the cover plans a binary.", "",
            f"Oracle: {len(plan)} planned, {len(results)} attempted, {failed} failed "
            f"(refused inputs or collapsed relaxations); {len(new)} labelled new rows, "
            f"{sum(1 for r in new if r['e_above_hull'] is not None and r['e_above_hull'] <= 0)}"
            " on their hull; with the world's subsystem rows "
            f"`{_shown(args.out / 'outside.jsonl.gz')}` holds {len(rows)} rows. Made by the "
            "parts `plan`, `relax` (one oracle worker), `stage` (beside it), `label`, then "
            "`report`; `all` runs them in order, and each resumes.", "",
            "## The set", "", *set_table(choice, plan, rows, results), "",
            f"## The shipped screen ({screen['model']}) on it", "",
            "Energies per atom (eV/atom) against the oracle's relaxed energy; unrelaxed inputs "
            "without test-time augmentation, as the README's first v6 row; stable: "
            "e_above_hull_true <= 0 (Matbench Discovery's convention, "
            "`gnomon.models.evaluation`). Mean signed error: predicted minus oracle (positive: "
            "the screen puts them too high, so it calls too few stable).", "",
            *screen_table(screen), "", "Mean signed error per system:", "",
            *signed_table(screen), ""]
    if campaigns:
        s = campaigns["summary"]
        text += ["## The funnel on it", "",
                 f"Replayed campaigns (`bench/funnel.py`'s arms): pool {campaigns['pool']} "
                 f"structures of the {len(choice['a'] + choice['b'])} new systems "
                 f"({campaigns['stable']} stable), {campaigns['reference']} subsystem "
                 f"compounds known at the start; {args.rounds} rounds x {args.budget} oracle "
                 f"calls, {args.seeds} seeds ({args.random_seeds} for random). Screen: "
                 f"{Path(campaigns['model']).name}, frozen. Stage: SevenNet fine-tuned "
                 f"(`{_shown(args.tuned_model)}`), raw energies, the screen's "
                 f"best {args.width} x budget relaxed per round, gate {args.gate} eV/atom, "
                 f"filling up to {args.fill} more widths. Oracle call cost: "
                 f"{campaigns['per_step']:.3f} CPU-s per CHGNet FIRE step (measured here) x "
                 "the row's steps.", "",
                 *funnel.arms_table(s, args.rounds), "",
                 "A round without a pick shows –: nothing the stage relaxed passed its gate. "
                 "Stable per 100 oracle calls counts the calls made.", "",
                 "Where the arms' stable finds lie (mean over seeds; the pool's stable "
                 "structures per group in the header):", "",
                 *by_group_table(choice, campaigns), "",
                 "The tuned stage alone: every pool input relaxed by the fine-tuned SevenNet "
                 "(`all cached`: the whole pool), judged on the hull known at the start, "
                 "against the oracle's labels:", "",
                 *funnel.alone_table(campaigns["alone"]), ""]
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    if args.out == OUT:
        DOCS.write_text("\n".join(text))
    (args.out / "outside-results.json").write_text(json.dumps(
        {"date": time.strftime("%Y-%m-%d %H:%M"), "command": cmd, "load": load,
         "systems": choice, "screen": screen, "campaigns": campaigns}, indent=1, default=str))
    print("\n".join(text))


def _shown(path: Path) -> str:
    """A path as the checkout names it, where it lies inside the checkout."""
    try:
        return str(path.resolve().relative_to(HERE.parent))
    except ValueError:
        return str(path)


def by_group_table(choice: dict[str, Any], campaigns: dict[str, Any]) -> list[str]:
    """Per arm, the oracle calls and stable finds in each group's systems (mean over seeds)."""
    group = {it: g for g in ("a", "b") for it in choice[g]}
    stable, pool_of = set(campaigns["stable_ids"]), campaigns["pool_systems"]
    n_stable = {g: sum(1 for k in stable if group[pool_of[k]] == g) for g in ("a", "b")}
    lines = [f"| arm | calls in (a) | stable in (a) (of {n_stable['a']}) | calls in (b) | "
             f"stable in (b) (of {n_stable['b']}) |", "|---|---|---|---|---|"]
    for arm in campaigns["summary"]:
        rs = [r for r in campaigns["runs"] if r["arm"] == arm]
        picks = [[k for keys in r["picked"] for k in keys] for r in rs]
        cell = []
        for g in ("a", "b"):
            calls = np.mean([sum(1 for k in p if group[pool_of[k]] == g) for p in picks])
            found = np.mean([sum(1 for k in p if group[pool_of[k]] == g and k in stable)
                             for p in picks])
            cell += [f"{calls:.1f}", f"{found:.1f}"]
        lines.append(f"| {arm} | " + " | ".join(cell) + " |")
    return lines


def set_table(choice: dict[str, Any], plan: list[dict[str, Any]], rows: list[dict[str, Any]],
              results: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["| group | system | planned | relaxed | failed | labelled | on the hull | "
             "generators (planned) |", "|" + "---|" * 8]
    systems = [("a", s) for s in choice["a"]] + [("b", s) for s in choice["b"]]
    systems += [("b, subsystem", s) for s in choice["new_elements"] + choice["new_binaries"]]
    for g, s in systems:
        ps = [p for p in plan if p["chemsys"] == s]
        rs = [r for r in rows if r["planned_chemsys"] == s]
        gens: dict[str, int] = defaultdict(int)
        for p in ps:
            gens[p["generator"]] += 1
        done = [results[p["id"]] for p in ps if p["id"] in results]
        on_hull = sum(1 for r in rs if r["e_above_hull"] is not None and r["e_above_hull"] <= 0)
        lines.append(f"| {g} | {s} | {len(ps)} | {len(done)} | "
                     f"{sum(1 for d in done if 'error' in d)} | {len(rs)} | {on_hull} | "
                     f"{dict(gens)} |")
    return lines


# -- the command ----------------------------------------------------------------------------------
def deadline_of(until: str | None) -> float | None:
    """Epoch seconds of today's ``HH:MM`` (local time), or None."""
    if not until:
        return None
    h, m = (int(x) for x in until.split(":"))
    return datetime.now().replace(hour=h, minute=m, second=0, microsecond=0).timestamp()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("plan", "relax", "stage", "label", "report", "all"))
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--seed", type=int, default=SEED, help="the draw of the systems")
    parser.add_argument("--per-system", type=int, default=25, help="structures per ternary")
    parser.add_argument("--binary-per-system", type=int, default=8,
                        help="structures per new X-O binary")
    parser.add_argument("--workers", type=int, default=1, help="oracle worker processes")
    parser.add_argument("--until", default=None, help="stop the oracle at HH:MM (resumable)")
    parser.add_argument("--rounds", type=int, default=5, help="funnel: rounds")
    parser.add_argument("--budget", type=int, default=5, help="funnel: oracle calls per round")
    parser.add_argument("--seeds", type=int, default=3, help="funnel: seeds")
    parser.add_argument("--random-seeds", type=int, default=20, help="funnel: random's seeds")
    parser.add_argument("--width", type=int, default=2,
                        help="funnel: the stage relaxes width x budget per round")
    parser.add_argument("--gate", type=float, default=0.1, help="funnel: stage gate, eV/atom")
    parser.add_argument("--fill", type=int, default=3,
                        help="funnel: how many more widths the filling stage may relax")
    parser.add_argument("--tuned-model", type=Path, default=TUNED_MODEL,
                        help="funnel: the fine-tuned SevenNet checkpoint of the stage")
    parser.add_argument("--no-funnel", action="store_true", help="report: the screen only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stderr)
    choice, plan = the_plan(args)
    print_set(choice, plan)
    if args.part in ("relax", "all"):
        (args.out / "work").mkdir(parents=True, exist_ok=True)
        relax_all(plan, args.out / "work", args.workers, deadline=deadline_of(args.until))
    if args.part == "stage":  # optional: the stage's cache, filled beside the oracle
        relax_plan_inputs(choice, plan, args.out, args.tuned_model, args.seed)
    if args.part in ("label", "all"):
        write_labels(choice, plan, args.out)
    if args.part in ("report", "all"):
        rows = list(read_jsonl_gz(args.out / "outside.jsonl.gz"))
        screen = screen_tables(choice, rows)
        campaigns = None if args.no_funnel else run_funnel(choice, rows, args)
        write_report(args, choice, plan, rows, screen, campaigns)


if __name__ == "__main__":
    main()
