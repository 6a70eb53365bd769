"""Which pretraining recipe helps screening? The ablation of issue 26, lever 1.

    nice -n 5 .venv/bin/python bench/ablation.py                 # three recipes, reduced budget
    .venv/bin/python bench/ablation.py --recipes relaxed unrelaxed-heavy --members 2 --epochs 20
    .venv/bin/python bench/ablation.py --part versions --candidate DIR   # a new model vs shipped

Same world, same split, same budget, same run for every recipe of
:data:`gnomon.world.pretrain.RECIPES` (what the model learns from: relaxed structures, unrelaxed
inputs paired with the relaxed energy, trajectory frames; weights per kind). The budget is
reduced (2 members, 20 epochs, patience 6, batches of 32, one thread) so that the whole
ablation runs in well under an hour on a shared 2-core CPU; it is the same for all. By default
it runs three recipes (``relaxed``, today's; ``relaxed+unrelaxed``; ``unrelaxed``, only what
screening sees); ``unrelaxed-heavy`` is defined too and costs as much as ``relaxed+unrelaxed``.

**Choosing, fixed before any result:** on the VALIDATION systems (the trainer's seeded 15 % of
the training systems, whole systems, never a held-out one), with the unrelaxed inputs (what
screening sees): rank the recipes by MAE (lower is better) and by F1 of "e_above_hull <= 0"
(higher is better); the best mean rank wins, ties going to the lower MAE. The held-out figures
(18 systems of ``heldout.json``: unrelaxed inputs with and without volume TTA, and relaxed) are
reported beside, for every recipe, and choose nothing. The shipped model (full budget) is
scored on the same systems as a reference row; it takes no part in the choice.

``--part versions`` scores a candidate model folder (``gnomon model pretrain --out DIR``) and
the shipped model on the validation systems the candidate's card names and on the held-out
systems: the candidate replaces the shipped model only if it is better by the same rule on
those of its validation systems the shipped model did not train on either (its card's
training systems, less its own validation systems; since 2026-12-08: a world grown between
the two puts most of the candidate's validation systems in the shipped model's training data)
(``bench/results/versions.json``, ``docs/bench/pretrained-versions.md``).

Writes ``bench/results/ablation.json`` (resumable: recipes already measured with the same
budget are kept) and ``docs/bench/ablation.md``. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gnomon.models.ensemble import Ensemble
from gnomon.models.pretrained import load_weights, read_card
from gnomon.models.registry import _jsonable
from gnomon.world.files import default_world_dir
from gnomon.world.pretrain import (
    RECIPES,
    PretrainOptions,
    heldout_metrics,
    load,
    metrics,
    split_world,
    train,
    validation_metrics,
    validation_rows,
)

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DOCS = HERE.parent / "docs" / "bench"
log = logging.getLogger("ablation")
COLUMNS = ("mae", "f1", "daf", "coverage_1sigma")


def budget(args: argparse.Namespace) -> dict[str, Any]:
    return {"members": args.members, "epochs": args.epochs, "patience": args.patience,
            "batch_size": args.batch_size, "threads": args.threads, "seed": args.seed}


def run_recipe(name: str, data, split, args: argparse.Namespace) -> dict[str, Any]:
    """Train one recipe at the ablation's budget; its validation and held-out metrics."""
    options = PretrainOptions(members=args.members, epochs=args.epochs, patience=args.patience,
                              batch_size=args.batch_size, threads=args.threads, seed=args.seed,
                              recipe=name)
    t0 = time.perf_counter()
    result = train(data, split, options)
    seconds = time.perf_counter() - t0
    scores = metrics(result, data, split)
    val_systems = sorted({data.entries[i].chemsys
                          for i in validation_rows(data, split, result)})
    return {"recipe": options.the_recipe.as_dict(), "budget": budget(args),
            "seconds": round(seconds, 1), "n_train": result.metrics["n_train"],
            "best_epochs": [h.get("best_epoch") for h in result.metrics["members"]],
            "validation_system_names": val_systems, **scores}


def rows_of(data, split, systems: list[str]) -> list[int]:
    """The training pool's rows of ``systems``."""
    wanted = set(systems)
    return [i for i in split.train if data.entries[i].chemsys in wanted]


def shipped_reference(data, split, val_systems: list[str],
                      unseen: list[str] | None = None) -> dict[str, Any]:
    """The shipped model scored on the same validation and held-out systems (and, given
    ``unseen``, on those validation systems neither model trained on)."""
    card = read_card()
    ensemble = load_weights(card["weights"])
    out = {"version": card["version"], "command": card.get("command"),
           "validation_systems_match": _same(card["split"].get("validation_systems"), val_systems),
           "validation_systems": validation_metrics(ensemble, data, split,
                                                    rows_of(data, split, val_systems)),
           "heldout": heldout_metrics(ensemble, data, split.test)}
    if unseen is not None:
        out["validation_unseen_by_both"] = validation_metrics(ensemble, data, split,
                                                              rows_of(data, split, unseen))
    return out


def _same(listed: list[str] | None, val_systems: list[str]) -> bool | None:
    """Whether a card lists these validation systems; None when it lists none (cards before
    v4: their split is the same by construction, same world, seed and fraction)."""
    return None if listed is None else sorted(listed) == sorted(val_systems)


def choose(runs: dict[str, dict[str, Any]]) -> str:
    """The module's rule: best mean rank of validation unrelaxed MAE (low) and F1 (high)."""
    names = list(runs)
    val = {n: runs[n]["validation_systems"]["unrelaxed"] for n in names}
    by_mae = sorted(names, key=lambda n: val[n]["mae"])
    by_f1 = sorted(names, key=lambda n: -val[n]["f1"])
    rank = {n: (by_mae.index(n) + by_f1.index(n)) / 2 for n in names}
    return min(names, key=lambda n: (rank[n], val[n]["mae"]))


def _cell(row: dict[str, Any], key: str) -> str:
    v = row.get(key)
    return "–" if v is None or v != v else f"{v:.3f}"


def table(runs: dict[str, dict[str, Any]], part: str, inputs: tuple[str, ...]) -> list[str]:
    head = " | ".join(f"{i} {k}" for i in inputs for k in COLUMNS)
    lines = [f"| recipe | train samples | s | {head} |",
             "|---|---:|---:|" + "---:|" * (len(inputs) * len(COLUMNS))]
    for name, run in runs.items():
        cells = [_cell(run[part][i], k) for i in inputs for k in COLUMNS]
        lines.append(f"| {name} | {run.get('n_train', '–')} | {run.get('seconds', '–')} | "
                     + " | ".join(cells) + " |")
    return lines


def markdown(report: dict[str, Any]) -> str:
    runs = dict(report["runs"])
    if report.get("shipped"):
        runs[f"(shipped {report['shipped']['version']}, full budget)"] = report["shipped"]
    inputs = ("unrelaxed", "unrelaxed +TTA", "relaxed")
    val_sys = next(iter(report["runs"].values()))["validation_system_names"]
    out = [f"# Pretraining ablation (issue 26, lever 1) — {report['date']}", "",
           f"Command: `{report['command']}`", "",
           f"Budget (same for every recipe): {report['budget']}. World: "
           f"{report['world']['n_structures']} structures; frames in the world: "
           f"{report['world']['frames']}.", "",
           f"## Validation systems ({len(val_sys)} of the training systems, seeded 15 %, "
           "whole systems): chooses", "", *table(runs, "validation_systems", inputs), "",
           f"**Chosen** (best mean rank of validation unrelaxed-input MAE and F1): "
           f"`{report['chosen']}`.", "",
           "## Held-out systems (18, never trained on): reported, chooses nothing", "",
           *table(runs, "heldout", inputs), "",
           "MAE in eV/atom; F1 and DAF of e_above_hull <= 0 against the world's hull; "
           "coverage_1sigma: share of errors within ±1σ (calibrated on validation).", ""]
    return "\n".join(out)


def ablation(args: argparse.Namespace) -> None:
    out = RESULTS / "ablation.json"
    report = json.loads(out.read_text()) if out.exists() else {}
    if report.get("budget") != budget(args):
        report = {"budget": budget(args), "runs": {}}
    data = load(default_world_dir())
    split = split_world(data)
    for name in args.recipes:
        if name in report["runs"]:
            log.info("%s: measured before, kept", name)
            continue
        log.info("recipe %s ...", name)
        report["runs"][name] = run_recipe(name, data, split, args)
        _write(report, out)
    runs = {n: report["runs"][n] for n in args.recipes}
    report["runs"] = runs
    report["chosen"] = choose(runs)
    names = {tuple(r["validation_system_names"]) for r in runs.values()}
    if len(names) != 1:
        log.warning("the recipes validated on different systems: %s", names)
    report["shipped"] = shipped_reference(data, split, list(next(iter(names))))
    report["world"] = {"n_structures": len(data.rows), "frames": data.n_frames}
    report["command"] = "nice -n 5 .venv/bin/python " + " ".join(sys.argv)
    report["date"] = datetime.now(UTC).strftime("%Y-%m-%d")
    _write(report, out)
    DOCS.mkdir(parents=True, exist_ok=True)
    (DOCS / "ablation.md").write_text(markdown(report))
    print(markdown(report))


def unseen_by_both(val_systems: list[str], shipped_card: dict[str, Any]) -> list[str]:
    """Those of the candidate's validation systems the shipped model did not train on either
    (its own validation systems, and systems its card does not list): the only ones on which
    the two compare without one of them having learnt the answers. A card without its
    training systems leaves the candidate's validation systems as they are."""
    split = shipped_card.get("split", {})
    trained = set(split.get("train_systems") or []) - set(split.get("validation_systems") or [])
    return [s for s in val_systems if s not in trained]


def versions(args: argparse.Namespace) -> None:
    """A candidate model folder against the shipped model, on validation and held-out; the
    choice is made on the validation systems neither trained on."""
    data = load(default_world_dir())
    split = split_world(data)
    card = json.loads((args.candidate / "card.json").read_text())
    val_systems = card["split"]["validation_systems"]
    fair = unseen_by_both(val_systems, read_card())
    ensemble = Ensemble.load(args.candidate / card["weights"])
    cand = {"version": card["version"], "command": card["command"],
            "validation_systems": validation_metrics(ensemble, data, split,
                                                     rows_of(data, split, val_systems)),
            "validation_unseen_by_both": validation_metrics(ensemble, data, split,
                                                            rows_of(data, split, fair)),
            "heldout": heldout_metrics(ensemble, data, split.test)}
    report = {"candidate": cand, "shipped": shipped_reference(data, split, val_systems, fair),
              "unseen_by_both_systems": fair,
              "date": datetime.now(UTC).strftime("%Y-%m-%d")}
    runs = {cand["version"]: cand, report["shipped"]["version"]: report["shipped"]}
    fair_runs = {n: {"validation_systems": r["validation_unseen_by_both"]}
                 for n, r in runs.items()}
    report["better_on_validation"] = choose(fair_runs)
    _write(report, RESULTS / "versions.json")
    inputs = ("unrelaxed", "unrelaxed +TTA", "relaxed")
    text = "\n".join([
        f"# The shipped pretrained model: candidate vs shipped — {report['date']}", "",
        f"Command: `.venv/bin/python {' '.join(sys.argv)}`", "",
        f"Candidate made by `{cand['command']}`.", "",
        f"## Validation systems neither model trained on ({len(fair)} of the candidate's "
        f"{len(val_systems)}): decides", "",
        *table(runs, "validation_unseen_by_both", inputs), "",
        f"Better on validation (same rule as the ablation): `{report['better_on_validation']}`.",
        "", f"## All {len(val_systems)} validation systems of the candidate (the shipped model "
        "trained on some of them): reported", "",
        *table(runs, "validation_systems", inputs),
        "", "## Held-out systems (18): reported", "", *table(runs, "heldout", inputs), ""])
    DOCS.mkdir(parents=True, exist_ok=True)
    (DOCS / "pretrained-versions.md").write_text(text)
    print(text)


def _write(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(report), indent=1) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("ablation", "versions"), default="ablation")
    p.add_argument("--recipes", nargs="+", default=["relaxed", "relaxed+unrelaxed", "unrelaxed"],
                   choices=list(RECIPES))
    p.add_argument("--members", type=int, default=2)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--patience", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--candidate", type=Path, help="a model folder (--part versions)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    ablation(args) if args.part == "ablation" else versions(args)


if __name__ == "__main__":
    main()
