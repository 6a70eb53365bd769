"""SevenNet-0 fine-tuned on the training systems through sevenn's own path (issue #26, lever 2).

    nice -n 10 .venv/bin/python bench/sevennet_finetune.py [--structures N] [--epochs E]
    nice -n 10 .venv/bin/python bench/sevennet_finetune.py --phase zero-shot   # beside it
    nice -n 10 .venv/bin/python bench/sevennet_finetune.py --phase report --structures 2000 \
        --epochs 6 --also ft-2000x4-b4-lr0.004-clean ft-2000x3-b4-lr0.004-clean-shift \
        ft-2000x2-b4-lr0.001   # the runs of 2026-12-07 side by side

On 2026-12-07 (2 cores, load 3-6 from other work) 2000 structures x 6 epochs took 1232
CPU-s (0.10 CPU-s per structure-epoch), each model's evaluation about 10 CPU-minutes.

Phases: ``fine-tune``, ``zero-shot`` and ``tuned`` (the evaluations' caches), ``report``;
``all`` runs them in turn. A fine-tune's folder is named by its settings
(``ft-{N}x{E}-b{batch}-lr{lr}[-clean][-shift]``).

Why: the funnel's mlip stage (bench/funnel.py) uses SevenNet-0 zero-shot, mapped into the
oracle's scheme (CHGNet 0.3.0) by a per-element calibration. Lever 2 asks whether fine-tuning
SevenNet-0 on the oracle's own labels of the training systems does better than that map.

How: the world's systems split three ways: held-out (bench/world/heldout.json; never a label
of theirs is used to train, pick an epoch or calibrate), validation (a seeded tenth of the
training compound systems: picks the epoch and the calibration form) and training (the rest).
The fine-tune set is ``--structures`` oracle-relaxed structures of training systems, every
element row and at least one row per element, the rest seeded at random; energy is the
oracle's total energy, forces are set to zero (they are the oracle's relaxed minima: an
approximation, as the oracle's own residual forces are below 0.1 eV/Å but not zero), no stress.
sevenn trains it from the preset ``sevenn/presets/fine_tune.yaml`` (continue from
``SevenNet-0_11July2024``, shipped in the wheel; the preset's Huber loss, optimizer and
scheduler), with the epochs, batch size and checkpoint interval this CPU allows, through
``sevenn``'s console script (the fine-tune itself is the product's,
``gnomon.dft.sevennet_finetune``, which ``gnomon mlip finetune`` runs; this script measures it);
every epoch's checkpoint is kept, and the one with the lowest
validation loss (``checkpoint_best.pth``) is evaluated. ``--drop-outliers`` drops the rows
zero-shot SevenNet-0 misjudges by more than the calibration's failure bound (cells it explodes
on); ``--train-shift-scale`` lets sevenn train the per-element shifts and scales, which the
preset freezes, so the scheme's per-element offsets need not be learnt by the network.

Evaluated for zero-shot SevenNet-0 (calibrated as bench/funnel.py's ``fit_stage_calibration``
does, on training rows only) and the fine-tuned model (raw: it predicts the oracle's scheme
itself; and calibrated the same way): single-point MAE and mean signed error at the oracle's
relaxed structures of validation rows and of a seeded sample of held-out rows; and the stage
alone as bench/funnel.py's ``stage_alone`` judges it (a seeded random sample of the held-out
pool relaxed from its unrelaxed inputs, FIRE with cell, 0.1 eV/Å or 150 steps; stable or not
on the hull known at the start, against the world's ``is_stable``).

Resumable: every single point and relaxation is appended to a cache under
bench/results/sevennet-ft/ as it is made, and a finished fine-tune (its ``done.json``) is not
rerun; a fine-tune killed midway restarts. Torch runs on one thread. Tables go to stdout and
bench/results/sevennet-ft/table.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import funnel  # noqa: E402

from gnomon.dft import sevennet_finetune as product  # noqa: E402
from gnomon.pipeline.thermo.calibration import OUTLIER  # noqa: E402

OUT = HERE / "results" / "sevennet-ft"
ZERO_SHOT = "zero-shot"

log = logging.getLogger("sevennet_finetune")


def canon(chemsys: str) -> str:
    return "-".join(sorted(chemsys.split("-")))


# -- the split --------------------------------------------------------------------------------
def split(records: list[dict], held: set[str], seed: int, val_fraction: float) -> dict:
    """Held-out, validation and training rows; validation is whole training compound systems."""
    train_systems = sorted({canon(r["chemsys"]) for r in records
                            if "-" in r["chemsys"] and canon(r["chemsys"]) not in held})
    val = set(random.Random(seed).sample(train_systems,
                                         max(1, round(val_fraction * len(train_systems)))))
    out: dict = {"held": [], "val": [], "train": [], "val_systems": sorted(val),
                 "train_systems": sorted(set(train_systems) - val)}
    for r in records:
        c = canon(r["chemsys"])
        out["held" if c in held else "val" if c in val else "train"].append(r)
    return out


def fine_tune_rows(train: list[dict], n: int, seed: int) -> list[dict]:
    """Every element row, then one seeded row per element not yet covered, then seeded rows of
    the rest up to ``n`` (gnomon.dft.sevennet_finetune.training_rows, on world rows)."""
    by_id = {r["id"]: r for r in train}
    return [by_id[r.id] for r in product.training_rows([labelled(r) for r in train], n, seed)]


def labelled(row: dict) -> product.Labelled:
    return product.Labelled.from_world_row(row)


def drop_outliers(rows: list[dict], calibration_rows: list[dict], exclude: set[str]) -> list[dict]:
    """Rows SevenNet-0 zero-shot misjudges by more than the calibration's own failure bound
    (``OUTLIER`` eV/atom after the zero-shot calibration) dropped: cells it explodes on (an
    F-F pair at 0.87 Å in a PbF4 cell: 1e11 eV/atom) whose gradients swamp Adam's moments."""
    cal = fit_cal(calibration_rows, single_points(calibration_rows, ZERO_SHOT, OUT / ZERO_SHOT
                                                  / "points-calibration.jsonl"),
                  exclude, ZERO_SHOT)
    points = single_points(rows, ZERO_SHOT, OUT / ZERO_SHOT / "points-fine-tune-set.jsonl")
    kept = [r for r in rows if not cal.covers(r["formula"]) or abs(
        cal.energy_per_atom(r["formula"], points[r["id"]]["energy_per_atom"])
        - float(r["energy_per_atom"])) <= OUTLIER]
    log.info("fine-tune set: %d of %d rows kept (zero-shot within %.1f eV/atom)", len(kept),
             len(rows), OUTLIER)
    return kept


# -- the fine-tune through sevenn (the product's: gnomon.dft.sevennet_finetune) ----------------
def fine_tune(run: Path, rows: list[dict], valid: list[dict], epochs: int, batch: int,
              lr: float, shift_scale: bool = False, frames: list | None = None) -> dict:
    """sevenn's console script on the preset (gnomon.dft.sevennet_finetune.fine_tune), every
    epoch's checkpoint kept, one OMP thread; CPU-seconds of the child recorded in done.json.
    ``frames``: labelled relaxation frames trained on beside the rows."""
    return product.fine_tune(run, [labelled(r) for r in rows] + list(frames or []),
                             [labelled(r) for r in valid], epochs, batch, lr,
                             shift_scale=shift_scale, keep_epochs=True, threads=1)


def labelled_frames(train: list[dict], n: int, seed: int, run: Path) -> list:
    """``n`` frames of the training rows' oracle relaxations (the product's choice,
    gnomon.dft.sevennet_finetune.frames_to_train), each labelled by one single point of the
    world's oracle (energy and forces); cached as extxyz beside the run, so a restarted
    fine-tune labels nothing twice."""
    from ase.io import read

    from gnomon.world.oracle import oracle_engine

    cache = run.with_name(run.name + "-frames.extxyz")
    geometries = [g for r in train for g in product.Geometry.of_world_row(r)]
    chosen = product.frames_to_train(geometries, {canon(r["chemsys"]) for r in train}, n, seed)
    if cache.is_file():
        from pymatgen.io.ase import AseAtomsAdaptor

        by_id = {g.id: g for g in chosen}
        return [product.Labelled(a.info["id"], by_id[a.info["id"]].chemsys,
                                 AseAtomsAdaptor.get_structure(a), a.get_potential_energy(),
                                 a.get_forces()) for a in read(cache, index=":")]
    import torch

    torch.set_num_threads(1)
    t0 = time.process_time()
    out, dropped = product.label_frames(chosen, oracle_engine().calculator())
    log.info("frames: %d of %d geometries of %d training rows labelled (%d left out) in %.0f "
             "CPU-s", len(out), len(geometries), len(train), dropped, time.process_time() - t0)
    tmp = cache.with_suffix(".tmp")
    product.write_extxyz(out, tmp)
    os.replace(tmp, cache)
    return out


# -- SevenNet single points and relaxations, cached -------------------------------------------
def calculator(model: str):
    import torch

    from gnomon.dft.potentials import sevennet_calculator

    torch.set_num_threads(1)
    return sevennet_calculator() if model == ZERO_SHOT else sevennet_calculator(model)


def single_points(rows: list[dict], model: str, path: Path) -> dict[str, dict]:
    """Energy per atom at each row's oracle-relaxed structure, appended to ``path`` as made."""
    from gnomon.models.peers import sevennet_energies

    done = funnel.read_cache(path)
    todo = [r for r in rows if r["id"] not in done]
    calc = calculator(model) if todo else None
    for k, r in enumerate(todo):
        t0 = time.process_time()
        (e,) = sevennet_energies([funnel.structure_from(r["relaxed"])], calc)
        funnel._append(path, {"id": r["id"], "energy_per_atom": float(e),
                              "cpu_s": time.process_time() - t0})
        if k % 100 == 0:
            log.info("%s: point %d of %d", path.parent.name, k, len(todo))
    return funnel.read_cache(path)


def relaxations(items: list, model: str, path: Path) -> dict[str, dict]:
    """``funnel.relax_one`` of each pool item's unrelaxed input, in the order given."""
    done = funnel.read_cache(path)
    todo = [it for it in items if it.key not in done]
    calc = calculator(model) if todo else None
    for k, it in enumerate(todo):
        funnel._append(path, {"id": it.key, **funnel.relax_one(calc, it.candidate)})
        log.info("%s: relaxed %d of %d (%s)", path.parent.name, k + 1, len(todo),
                 it.reduced_formula)
    return funnel.read_cache(path)


def sample_order(data: dict, seed: int) -> list:
    """The held-out pool in stage_alone's seeded random order."""
    shuffled = [it for it in data["labels"] if "-" in it.chemsys]
    random.Random(seed).shuffle(shuffled)
    return shuffled


def evaluate(model: str, where: Path, sets: dict, data: dict, n_relax: int, seed: int) -> None:
    """Every cache a model's figures need: calibration rows, validation, held-out points,
    then the relaxations of the held-out sample."""
    for name in ("calibration", "validation", "held-out"):
        single_points(sets[name], model, where / f"points-{name}.jsonl")
    relaxations(sample_order(data, seed)[:n_relax], model, where / "relax.jsonl")


# -- figures -----------------------------------------------------------------------------------
def fit_cal(rows: list[dict], points: dict, exclude: set[str], source: str):
    """As funnel.fit_stage_calibration: pairs of training rows, held-out systems excluded by
    name (here validation systems too)."""
    from pymatgen.core import Composition

    from gnomon.pipeline.thermo.calibration import Pair, fit_calibration

    pairs = [Pair(r["id"], Composition(r["formula"]), points[r["id"]]["energy_per_atom"],
                  float(r["energy_per_atom"])) for r in rows if r["id"] in points]
    return fit_calibration(pairs, source_scheme=source, target_scheme="mlip-chgnet-0.3.0",
                           exclude=sorted(exclude))


def identity(elements) -> object:
    from gnomon.pipeline.thermo.calibration import Calibration

    return Calibration("sevennet-ft", "mlip-chgnet-0.3.0", mu=dict.fromkeys(elements, 0.0))


def point_errors(rows: list[dict], points: dict, cal) -> dict:
    err = [cal.energy_per_atom(r["formula"], points[r["id"]]["energy_per_atom"])
           - float(r["energy_per_atom"]) for r in rows
           if r["id"] in points and cal.covers(r["formula"])]
    a = np.asarray(err)
    return {"n": len(a), "mae": float(np.mean(np.abs(a))) if len(a) else float("nan"),
            "median": float(np.median(np.abs(a))) if len(a) else float("nan"),
            "mean": float(np.mean(a)) if len(a) else float("nan")}


def cpu_of(path: Path) -> float:
    rows = funnel.read_cache(path).values()
    return float(np.mean([r["cpu_s"] for r in rows])) if rows else float("nan")


def report(args, sets: dict, data: dict, records: list[dict], held: set[str], val: set[str],
           runs: list[Path]) -> list[str]:
    """The tables of zero-shot SevenNet-0 and each finished fine-tune in ``runs``."""
    rows = {r["id"]: r for r in records}
    elements = sorted({el for r in records for el in r["chemsys"].split("-")})
    models = {"zero-shot": OUT / ZERO_SHOT}
    models.update({f"fine-tuned {run.name}": run / "eval" for run in runs})
    maps: dict[str, dict] = {}
    for name, where in models.items():
        cal_points = funnel.read_cache(where / "points-calibration.jsonl")
        raw = identity(elements)
        maps[name] = {"raw": raw, "calibrated": fit_cal(sets["calibration"], cal_points,
                                                        held | val, name)}
    load = os.getloadavg()
    cmd = "nice -n 10 .venv/bin/python bench/sevennet_finetune.py " + " ".join(sys.argv[1:])
    lines = [f"# SevenNet-0 fine-tuned through sevenn vs zero-shot ({time.strftime('%Y-%m-%d')})",
             "", f"`{cmd}`; machine: {os.cpu_count()} cores, load average "
             f"{load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f} at the report, torch on one thread, "
             "other work running beside it.", "",
             f"Split: {len(held)} held-out systems ({len(sets['held'])} rows), "
             f"{len(val)} validation systems ({len(sets['val'])} rows), "
             f"{len(sets['train_systems'])} training compound systems + elements "
             f"({len(sets['train'])} rows).", ""]
    done = [(run, json.loads((run / "done.json").read_text())) for run in runs]
    if done:
        lines += ["## The fine-tunes", "",
                  "| run | structures | validation structures (epoch choice) | epochs | batch | "
                  "lr | CPU-s | wall-s | CPU-s per structure-epoch | best epoch |",
                  "|" + "---|" * 10]
        lines += [f"| {run.name} | {ft['structures']} of {len(sets['train'])} training rows | "
                  f"{ft['valid']} | {ft['epochs']} | {ft['batch']} | {ft['lr']:g} | "
                  f"{ft['cpu_s']:.0f} | {ft['wall_s']:.0f} | "
                  f"{ft['cpu_s_per_structure_epoch']:.2f} | {ft['best_epoch']} |"
                  for run, ft in done]
        lines += ["", "| run | epoch | train energy RMSE eV/atom | train force RMSE | valid energy "
                  "MAE eV/atom | valid force RMSE | valid loss |", "|" + "---|" * 7]
        nan = float("nan")
        for run, ft in done:
            lines += [f"| {run.name} | {int(e['epoch'])} | {e.get('trainset_Energy_RMSE', nan):.4g}"
                      f" | {e.get('trainset_Force_RMSE', nan):.4g} | "
                      f"{e.get('validset_Energy_MAE', nan):.4f} | "
                      f"{e.get('validset_Force_RMSE', nan):.4f} | "
                      f"{e.get('validset_TotalLoss', nan):.5f} |" for e in ft["learning_curve"]]
        lines.append("")
    lines += ["## Single points at the oracle's relaxed structures (eV/atom; error = model - "
              "oracle)", "", "| model / map | set | n | MAE | median abs | mean signed | "
              "CPU-s per point |", "|" + "---|" * 7]
    for name, where in models.items():
        for set_name, key in (("validation", "val_eval"), ("held-out", "held-out")):
            pts = funnel.read_cache(where / f"points-{set_name}.jsonl")
            for label, cal in maps[name].items():
                m = point_errors(sets[key], pts, cal)
                lines.append(f"| {name} / {label} | {set_name} | {m['n']} | {m['mae']:.4f} | "
                             f"{m['median']:.4f} | {m['mean']:+.4f} | "
                             f"{cpu_of(where / f'points-{set_name}.jsonl'):.2f} |")
    best = min(((point_errors(sets["val_eval"], funnel.read_cache(
        where / "points-validation.jsonl"), cal)["mae"], f"{name} / {label}")
        for name, where in models.items() for label, cal in maps[name].items()))
    lines.append(f"\nBest on validation (MAE): {best[1]} ({best[0]:.4f} eV/atom).")
    for name, per in maps.items():
        c = per["calibrated"]
        lines.append(f"\n{name} calibration: {c.n_entries} training pairs, slope {c.slope:.3f}, "
                     f"residual MAE {c.mae:.4f}, form validation {c.validation}.")
    pool = [it for it in data["labels"] if "-" in it.chemsys]
    known = data["reference"] + [it for it in data["labels"] if "-" not in it.chemsys]
    truth = [rows[it.key]["e_above_hull"] <= 1e-8 for it in pool]
    lines += ["", "## Stable or not from single points at the oracle's relaxed structures "
              "(the whole held-out pool)", "",
              "The stage's judgement with SevenNet at the oracle's minimum instead of its own "
              "relaxation (bench/funnel.py's `--mlip-steps 0` stand-in): calibrated "
              "e_above_hull on the hull known at the start (first build), against the world's "
              "stability.", "",
              "| model / map | n | stable | predicted stable | precision | recall | F1 | DAF |",
              "|" + "---|" * 8]
    for name, where in models.items():
        pts = funnel.read_cache(where / "points-held-out.jsonl")
        have = [k for k, it in enumerate(pool) if it.key in pts]
        items = [pool[k] for k in have]
        for label, cal in maps[name].items():
            e_hull = funnel.calibrated_hull(cal, known, items,
                                            [pts[it.key]["energy_per_atom"] for it in items])
            m = funnel.classification(e_hull, [truth[k] for k in have])
            lines.append(f"| {name} / {label} | {m['n']} | {m['stable']} | {m['predicted']} | "
                         f"{m['precision']:.2f} | {m['recall']:.2f} | {m['f1']:.2f} | "
                         f"{m['daf']:.2f} |")
    lines += ["", "## The stage alone: held-out pool relaxed from its unrelaxed inputs", "",
              "funnel.stage_alone on the seeded random sample (its longest relaxed prefix); "
              f"failed: relaxed energy more than {OUTLIER:g} eV/atom from the oracle's "
              "(an exploded relaxation), which the mean absolute error then carries.", "",
              "| model / map | n | stable | predicted stable | precision | recall | F1 | DAF | "
              "MAE eV/atom | median abs | failed | relaxation CPU-s (mean) |", "|" + "---|" * 12]
    for name, where in models.items():
        relaxed = funnel.read_cache(where / "relax.jsonl")
        out = funnel.stage_alone(data, relaxed, rows, maps[name], args.seed)
        cpu = cpu_of(where / "relax.jsonl")
        order = sample_order(data, args.seed)
        n = next((i for i, it in enumerate(order) if it.key not in relaxed), len(order))
        for label, cal in maps[name].items():
            m = out[f"random sample / {label}"]
            err = np.abs([cal.energy_per_atom(it.structure.composition,
                                              relaxed[it.key]["energy_per_atom"])
                          - it.energy_per_atom for it in order[:n]
                          if cal.covers(it.structure.composition)])
            lines.append(f"| {name} / {label} | {m['n']} | {m['stable']} | {m['predicted']} | "
                         f"{m['precision']:.2f} | {m['recall']:.2f} | {m['f1']:.2f} | "
                         f"{m['daf']:.2f} | {m['mae']:.3g} | {np.median(err):.3f} | "
                         f"{int(np.sum(err > OUTLIER))} | {cpu:.1f} |")
    return lines


# -- main ---------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phase", choices=("all", "fine-tune", ZERO_SHOT, "tuned", "report"),
                        default="all", help="all: fine-tune, both evaluations, the report")
    parser.add_argument("--structures", type=int, default=400, help="fine-tune set size")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=0.004, help="the preset's")
    parser.add_argument("--valid", type=int, default=40,
                        help="validation structures sevenn scores each epoch (epoch choice)")
    parser.add_argument("--val-eval", type=int, default=1000,
                        help="validation rows of the single-point figures (disjoint from those)")
    parser.add_argument("--held-points", type=int, default=2000,
                        help="held-out rows, single points (a seeded sample; all if fewer)")
    parser.add_argument("--relax", type=int, default=100,
                        help="held-out pool relaxations, stage_alone's seeded random order")
    parser.add_argument("--calibration-rows", type=int, default=600)
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--drop-outliers", action="store_true",
                        help="drop fine-tune rows zero-shot SevenNet-0 misjudges by more than "
                        "the calibration's failure bound (run name gets -clean)")
    parser.add_argument("--train-shift-scale", action="store_true",
                        help="train the per-element shifts and scales too (run name: -shift)")
    parser.add_argument("--frames", type=int, default=0,
                        help="also train on N frames of the training rows' oracle relaxations, "
                        "with the oracle's single-point forces (run name: -fN)")
    parser.add_argument("--also", nargs="*", default=[],
                        help="report: other fine-tune runs (their folder names) beside this one")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    from gnomon.world.replay import campaign_data

    records, held = funnel.world_records(), funnel.held_systems()
    sets = split(records, held, args.seed, args.val_fraction)
    val = set(sets["val_systems"])
    val_rows = [r for r in sets["val"] if "-" in r["chemsys"]]
    random.Random(args.seed).shuffle(val_rows)
    sets["valid"] = val_rows[: args.valid]
    sets["val_eval"] = sets["validation"] = val_rows[args.valid: args.valid + args.val_eval]
    held_rows = [r for r in sets["held"] if "-" in r["chemsys"]]
    sets["held-out"] = random.Random(args.seed).sample(held_rows,
                                                      min(args.held_points, len(held_rows)))
    sets["calibration"] = funnel.training_rows(records, held | val, args.calibration_rows,
                                               args.seed)
    data = campaign_data(funnel.WORLD_FILE.parent, None, "first-build")
    run = OUT / f"ft-{args.structures}x{args.epochs}-b{args.batch}-lr{args.lr:g}"
    if args.drop_outliers:
        run = run.with_name(run.name + "-clean")
    if args.train_shift_scale:
        run = run.with_name(run.name + "-shift")
    if args.frames:
        run = run.with_name(run.name + f"-f{args.frames}")
    if args.phase in ("all", "fine-tune"):
        train = fine_tune_rows(sets["train"], args.structures, args.seed)
        if args.drop_outliers:
            train = drop_outliers(train, sets["calibration"], held | val)
        frames = (labelled_frames(sets["train"], args.frames, args.seed, run)
                  if args.frames else None)
        done = fine_tune(run, train, sets["valid"], args.epochs, args.batch, args.lr,
                         args.train_shift_scale, frames)
        log.info("fine-tune: %s", {k: v for k, v in done.items() if k != "learning_curve"})
    if args.phase in ("all", ZERO_SHOT):
        evaluate(ZERO_SHOT, OUT / ZERO_SHOT, sets, data, args.relax, args.seed)
    best = run / "checkpoint_best.pth"
    if args.phase in ("all", "tuned") and best.is_file():
        evaluate(str(best), run / "eval", sets, data, args.relax, args.seed)
    if args.phase in ("all", "report"):
        runs = [r for r in [run, *(OUT / name for name in args.also)]
                if (r / "done.json").is_file() and (r / "eval").is_dir()]
        lines = report(args, sets, data, records, held, val, runs)
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "table.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))


if __name__ == "__main__":
    main()
