"""Does the screening model learn? Peers side by side and a learning curve, on the world.

    .venv/bin/python bench/learning.py                    # peers + learning curve
    .venv/bin/python bench/learning.py --part peers       # the peer table only
    .venv/bin/python bench/learning.py --part curve       # the learning curve only
    .venv/bin/python bench/learning.py --part sevennet    # SevenNet-0 zero shot only (no training)
    .venv/bin/python bench/learning.py --epochs 40 --members 3   # a cheaper budget

Data: ``bench/world`` (``gnomon world build``), CHGNet-relaxed structures labelled with
their energies, formation energies and e_above_hull from gnomon's hull engine.

Splits (``gnomon.models.evaluation``):

* **held-out systems** (out of distribution): the world's fixed ``heldout.json``, whole
  chemical systems no model here or the shipped pretrained model ever trains on;
* **in distribution**: a seeded random 10 % of the training systems' structures, taken out
  of training too, so both test sets are scored by the same trained model.

Every model gets the same training items, the same validation rule (the trainer's own split
of the training items, by composition), the same epochs, patience and ensemble size:

* gnomon's GNoME-style ensemble (``kind="gnn"``);
* the composition-only model; SchNet; CGCNN (``gnomon.models.peers``);
* SevenNet-0 zero shot (not trained; formation energies against its own elemental
  references, compared on formation energy).

Metrics per test set: MAE, RMSE, R² on energy per atom (for a trained model, its error on
energy per atom equals its error on formation energy per atom: the references are fixed);
precision, recall, F1 and DAF of "e_above_hull ≤ 0" against the world's hull, as Matbench
Discovery defines them; ±1σ/±2σ coverage and miscalibration area; and the same on the
*unrelaxed* inputs labelled with the relaxed energies (what screening really sees).

The learning curve trains gnomon's ensemble on 5+ log-spaced numbers of training systems
and fits the log-log slope of held-out MAE. Tables print; ``bench/results/`` gets JSON and
PNGs. Nothing here is tuned on the held-out systems. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from gnomon.world.files import WorldFiles, default_world_dir, load_world

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SCHEME = "mlip-chgnet-0.3.0"
log = logging.getLogger("learning")


# -- data -------------------------------------------------------------------------------------
def world_data() -> dict[str, Any]:
    """Rows, held-out systems, Entries, samples (relaxed and unrelaxed) and e_above_hull_true."""
    from pymatgen.core import Structure

    from gnomon.models.evaluation import hull_distances
    from gnomon.models.training import Sample
    from gnomon.pipeline.thermo.entries import entry_from_structure

    rows, held = load_world(WorldFiles(default_world_dir()))
    entries, relaxed, unrelaxed = [], [], []
    for r in rows:
        structure = Structure.from_dict(r["relaxed"])
        entry = entry_from_structure(structure, r["energy"], SCHEME, source=r["generator"])
        entries.append(entry)
        relaxed.append(Sample.from_entry(entry))
        start = Sample.from_entry(entry)
        start.structure = r["unrelaxed"]
        start.key = f"{entry.id}:unrelaxed"
        unrelaxed.append(start)
    return {
        "rows": rows,
        "held": held,
        "entries": entries,
        "relaxed": relaxed,
        "unrelaxed": unrelaxed,
        "chemsys": [e.chemsys for e in entries],
        "e_above_hull": hull_distances(entries),
    }


def splits(data: dict[str, Any], seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, in-distribution test, held-out-system test) indices."""
    from gnomon.models.evaluation import held_out_split

    split = held_out_split(data["chemsys"], data["held"])
    assert not split.leaks, split.leaks
    train = np.asarray(split.train, dtype=int)
    rng = np.random.default_rng(seed)
    in_dist = rng.choice(train, size=max(1, len(train) // 10), replace=False)
    train = np.setdiff1d(train, in_dist)
    return train, np.sort(in_dist), np.asarray(split.test, dtype=int)


# -- models -----------------------------------------------------------------------------------
def train(kind: str, samples: list, args: argparse.Namespace):
    from gnomon.models.spec import ModelSpec, TrainConfig
    from gnomon.models.training import Trainer

    spec = ModelSpec(kind=kind, hidden=args.hidden, num_layers=args.layers)
    config = TrainConfig(
        ensemble_size=args.members,
        max_epochs=args.epochs,
        patience=args.patience,
        seed=args.seed,
        threads=args.threads,
    )
    t0 = time.perf_counter()
    result = Trainer(spec, config).fit(samples)
    return result, time.perf_counter() - t0


def score(ensemble, data: dict[str, Any], idx: np.ndarray, label: str) -> list[dict[str, Any]]:
    from gnomon.models.ensemble import TTA
    from gnomon.models.evaluation import evaluation_report, predict_samples

    rows = []
    energy = np.asarray([data["relaxed"][i].energy_per_atom for i in idx])
    hull = data["e_above_hull"][idx]
    for inputs in ("relaxed", "unrelaxed"):
        samples = [data[inputs][i] for i in idx]
        tta = TTA() if (inputs == "unrelaxed" and ensemble.kind != "composition") else None
        pred = predict_samples(ensemble, samples, tta=tta)
        row = {"test": label, "input": inputs + (" +TTA" if tta else "")}
        row.update(evaluation_report(energy, pred.energy_per_atom, hull, pred.sigma))
        rows.append(row)
    return rows


SEVENNET_BLOWUP = 15.0
"""eV/atom: a zero-shot formation energy beyond this is SevenNet-0 extrapolating, not judging.
No compound comes near it (the most negative known are about -4.5 eV/atom, the world's most
positive oracle label +10.5, a cell CHGNet left collapsed). On cells outside its training
data (pairs far inside their covalent radii, odd halides) SevenNet-0 returns 10^2 to 10^11
eV/atom, which would swamp any mean; such structures are reported as missing predictions."""


def sevennet_rows(data: dict[str, Any], idx_sets: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """SevenNet-0 zero shot: formation energies against its own elemental references."""
    from pymatgen.core import Structure

    from gnomon.models.evaluation import evaluation_report
    from gnomon.models.peers import elemental_references, sevennet_energies

    elements = [r for r in data["rows"] if r["generator"] == "element"]
    el_struct = [Structure.from_dict(r["relaxed"]) for r in elements]
    el_pred = sevennet_energies(el_struct)
    refs = elemental_references(el_struct, el_pred)
    world_refs = {r["chemsys"]: r["energy_per_atom"] for r in elements}
    rows = []
    for label, idx in idx_sets.items():
        for inputs, key in (("relaxed", "relaxed"), ("unrelaxed", "unrelaxed")):
            structures = [Structure.from_dict(data["rows"][i][key]) for i in idx]
            pred = sevennet_energies(structures)
            # compare formation energies: each model against its own elemental references
            ef_pred = np.asarray(
                [
                    p - sum(frac * refs[el] for el, frac in _fractions(s))
                    for p, s in zip(pred, structures, strict=True)
                ]
            )
            ef_true = np.asarray(
                [
                    data["relaxed"][i].energy_per_atom
                    - sum(frac * world_refs[el] for el, frac in _fractions(s))
                    for i, s in zip(idx, structures, strict=True)
                ]
            )
            # a blow-up is a failed prediction, counted in n_missing, not a number to average
            blown = ~np.isfinite(ef_pred) | (np.abs(ef_pred) > SEVENNET_BLOWUP)
            ef_pred = np.where(blown, np.nan, ef_pred)
            row = {"test": label, "input": inputs, "blown_up": int(blown.sum())}
            row.update(evaluation_report(ef_true, ef_pred, data["e_above_hull"][idx], None))
            rows.append(row)
    return rows


def _fractions(structure):
    comp = structure.composition.fractional_composition
    return [(el.symbol, float(x)) for el, x in comp.items()]


# -- tables -----------------------------------------------------------------------------------
COLUMNS = [
    ("model", "{}"),
    ("test", "{}"),
    ("input", "{}"),
    ("n", "{}"),
    ("n_missing", "{}"),
    ("mae", "{:.3f}"),
    ("rmse", "{:.3f}"),
    ("r2", "{:.3f}"),
    ("precision", "{:.2f}"),
    ("recall", "{:.2f}"),
    ("f1", "{:.2f}"),
    ("daf", "{:.2f}"),
    ("coverage_1sigma", "{:.2f}"),
    ("coverage_2sigma", "{:.2f}"),
    ("miscalibration_area", "{:.3f}"),
]


def print_table(rows: list[dict[str, Any]], columns=COLUMNS) -> None:
    names = [c for c, _ in columns]
    print("| " + " | ".join(names) + " |")
    print("|" + "---|" * len(names))
    for r in rows:
        cells = []
        for c, fmt in columns:
            v = r.get(c, "")
            try:
                cells.append(
                    fmt.format(v) if v != "" and not (isinstance(v, float) and np.isnan(v)) else "–"
                )
            except (ValueError, TypeError):
                cells.append(str(v))
        print("| " + " | ".join(cells) + " |")


# -- parts ------------------------------------------------------------------------------------
def peers(data: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    train_idx, in_idx, out_idx = splits(data, args.seed)
    print(
        f"\ntraining items {len(train_idx)}, in-distribution test {len(in_idx)}, "
        f"held-out-system test {len(out_idx)} ({len(data['held'])} systems)"
    )
    samples = [data["relaxed"][i] for i in train_idx]
    rows: list[dict[str, Any]] = []
    for kind in args.kinds:
        result, seconds = train(kind, samples, args)
        ens = result.ensemble
        for label, idx in (("in-distribution", in_idx), ("held-out systems", out_idx)):
            for row in score(ens, data, idx, label):
                rows.append({"model": f"{kind} x{ens.size}", "train_s": round(seconds), **row})
        log.info("%s trained in %.0f s", kind, seconds)
        if kind == "gnn" and args.save_model:
            ens.save(args.save_model)
    if args.sevennet:
        rows.extend(sevennet_peer(data, in_idx, out_idx))
    print(
        "\nPeers, same split and budget "
        f"({args.members} members, {args.epochs} epochs, patience {args.patience}, "
        f"width {args.hidden}, {args.layers} layers); energies eV/atom"
    )
    print_table(rows)
    return rows


def sevennet_peer(
    data: dict[str, Any], in_idx: np.ndarray, out_idx: np.ndarray
) -> list[dict[str, Any]]:
    try:
        return [
            {"model": "SevenNet-0 zero-shot (E_form)", **row}
            for row in sevennet_rows(data, {"in-distribution": in_idx, "held-out systems": out_idx})
        ]
    except ImportError as exc:
        print(f"SevenNet-0 skipped: {exc}")
        return []


def curve(data: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    from gnomon.models.evaluation import held_out_split, learning_curve, trainer_fit_predict
    from gnomon.models.evaluation_plots import plot_learning_curve
    from gnomon.models.spec import ModelSpec, TrainConfig

    split = held_out_split(data["chemsys"], data["held"])
    spec = ModelSpec(kind="gnn", hidden=args.hidden, num_layers=args.layers)
    config = TrainConfig(
        ensemble_size=args.members,
        max_epochs=args.epochs,
        patience=args.patience,
        seed=args.seed,
        threads=args.threads,
    )
    fit_predict = trainer_fit_predict(
        data["relaxed"], spec, config, inputs={"unrelaxed": data["unrelaxed"]}
    )
    energy = [s.energy_per_atom for s in data["relaxed"]]
    lc = learning_curve(
        data["chemsys"],
        energy,
        split,
        fit_predict,
        e_above_hull_true=data["e_above_hull"],
        n_sizes=args.sizes,
        seed=args.seed,
    )
    print("\nLearning curve: gnomon ensemble, held-out systems")
    print_table(
        lc.table(),
        [
            ("input", "{}"),
            ("n_systems", "{}"),
            ("n_train", "{}"),
            ("n", "{}"),
            ("n_missing", "{}"),
            ("mae", "{:.3f}"),
            ("rmse", "{:.3f}"),
            ("r2", "{:.3f}"),
            ("f1", "{:.2f}"),
            ("daf", "{:.2f}"),
            ("coverage_1sigma", "{:.2f}"),
        ],
    )
    for label, slope in lc.slopes.items():
        print(f"log-log slope of MAE vs training systems ({label}): {slope:.3f}")
    RESULTS.mkdir(exist_ok=True)
    png = plot_learning_curve(
        lc, RESULTS / "learning_curve.png", "gnomon ensemble, held-out systems"
    )
    print(f"plot: {png}")
    return {"rows": lc.table(), "slopes": lc.slopes}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=["peers", "curve", "sevennet", "all"], default="all")
    p.add_argument("--kinds", nargs="+", default=["gnn", "composition", "schnet", "cgcnn"])
    p.add_argument("--members", type=int, default=5)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--patience", type=int, default=12)
    p.add_argument("--hidden", type=int, default=48)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--sizes", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-sevennet", dest="sevennet", action="store_false")
    p.add_argument("--save-model", type=Path, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    warnings.filterwarnings("ignore", message=".*detach.*")
    t0 = time.time()
    data = world_data()
    print(
        f"world: {len(data['rows'])} structures, {len(set(data['chemsys']))} systems, "
        f"{len(data['held'])} held out; loaded in {time.time() - t0:.0f} s"
    )
    out: dict[str, Any] = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    if args.part in ("peers", "all"):
        out["peers"] = peers(data, args)
    if args.part == "sevennet":  # the zero-shot reference alone, on the peers' splits
        _, in_idx, out_idx = splits(data, args.seed)
        out["peers"] = sevennet_peer(data, in_idx, out_idx)
        print(
            "\nSevenNet-0 zero shot, the peers' splits; formation energies eV/atom "
            f"(|E_f| > {SEVENNET_BLOWUP:g} counted missing)"
        )
        print_table(out["peers"], [*COLUMNS[:4], ("blown_up", "{}"), *COLUMNS[4:]])
    if args.part in ("curve", "all"):
        out["curve"] = curve(data, args)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"learning-{args.part}.json"
    path.write_text(json.dumps(out, indent=1, default=float))
    print(f"\nresults: {path}; {time.time() - t0:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
