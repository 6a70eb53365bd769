"""Train the pretrained screening model that ships with gnomon, on the world's training systems.

    .venv/bin/python bench/pretrain.py                    # the shipped model, defaults below
    .venv/bin/python bench/pretrain.py --threads 2 --device cpu
    .venv/bin/python bench/pretrain.py --world DIR --out DIR --epochs 5   # a trial elsewhere

Data: the benchmark world (``bench/world.py build``): CHGNet-relaxed structures in the scheme
``mlip-chgnet-0.3.0``, with ``heldout.json`` (whole chemical systems) and ``manifest.json``.

* **Training** uses the structures of the training systems only: every system not in
  ``heldout.json``. The trainer validates (early stopping, σ calibration) on a seeded 15 % of
  those training systems, whole systems (``group_by="chemsys"``), because screening judges
  systems the model has not seen.
* **Hyperparameters** are fixed here, before any result is seen, and never tuned on the
  held-out systems: GNoME-style GNN (``gnomon.models.gnn``), width 48, 3 message-passing
  layers, cutoff 5 Å, 5 members, AdamW at 2e-3 with a cosine schedule, up to 200 epochs,
  early-stopping patience 25, batches of 32. The options exist to run it on other hardware
  or for a quick trial, not to search.
* **Evaluation** (``gnomon.models.evaluation``) on every structure of the held-out systems:
  MAE, RMSE, R² of energy per atom; precision, recall, F1 and DAF of "e_above_hull <= 0"
  against the world's hull (Matbench Discovery's convention); ±1σ/±2σ coverage and
  miscalibration area; on the relaxed structures, and on the unrelaxed inputs labelled with
  the relaxed energies (what screening sees), with and without volume test-time augmentation.

Writes ``gnomon/data/pretrained/<version>.pt`` (``Ensemble.save``) and ``card.json`` (data set
and manifest hashes, split, held-out and training systems, metrics, scheme, hyperparameters,
date, code version), and prints what it measured. Asserts nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import world  # noqa: E402

SCHEME = "mlip-chgnet-0.3.0"
MAX_BYTES = 5 * 1024 * 1024
log = logging.getLogger("pretrain")

METRIC_KEYS = ("n", "n_missing", "mae", "rmse", "r2", "precision", "recall", "f1", "accuracy",
               "prevalence", "daf", "mean_sigma", "coverage_1sigma", "coverage_2sigma",
               "miscalibration_area")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def code_version() -> str:
    """gnomon's version and the commit this script ran at (``+dirty`` with local changes)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("gnomon")
    except PackageNotFoundError:
        v = "unknown"
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "gnomon"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return v
    return f"{v} ({commit[:12]}{'+dirty' if dirty else ''})"


def load(world_dir: Path) -> dict[str, Any]:
    """The world's rows as entries and samples (relaxed, unrelaxed), and its held-out systems."""
    from pymatgen.core import Structure

    from gnomon.models.evaluation import canonical_chemsys
    from gnomon.models.training import Sample
    from gnomon.pipeline.thermo.entries import entry_from_structure

    rows = list(world.read_jsonl_gz(world_dir / "world.jsonl.gz"))
    held = {canonical_chemsys(s) for s in json.loads((world_dir / "heldout.json").read_text())["systems"]}
    entries, relaxed, unrelaxed = [], [], []
    for r in rows:
        entry = entry_from_structure(Structure.from_dict(r["relaxed"]), r["energy"], SCHEME,
                                     source=r["generator"])
        entries.append(entry)
        relaxed.append(Sample.from_entry(entry))
        start = Sample.from_entry(entry)
        start.structure, start.key = r["unrelaxed"], f"{entry.id}:unrelaxed"
        unrelaxed.append(start)
    return {"rows": rows, "held": held, "entries": entries, "relaxed": relaxed,
            "unrelaxed": unrelaxed}


def heldout_metrics(ensemble, data: dict[str, Any], test: list[int]) -> dict[str, dict[str, Any]]:
    """Every metric on the held-out structures, per input (relaxed, unrelaxed, unrelaxed+TTA)."""
    from gnomon.models.ensemble import TTA
    from gnomon.models.evaluation import evaluation_report, hull_distances, predict_samples

    held_entries = [data["entries"][i] for i in test]
    hull = hull_distances(held_entries, data["entries"])  # against the whole world's hull
    energy = np.array([e.energy_per_atom for e in held_entries])
    out: dict[str, dict[str, Any]] = {}
    for label, key, tta in (("relaxed", "relaxed", None), ("unrelaxed", "unrelaxed", None),
                            ("unrelaxed +TTA", "unrelaxed", TTA())):
        pred = predict_samples(ensemble, [data[key][i] for i in test], tta)
        report = evaluation_report(energy, pred.energy_per_atom, hull, pred.sigma)
        out[label] = {k: report[k] for k in METRIC_KEYS if k in report}
        log.info("held-out systems, %s input: MAE %.4f eV/atom", label, report["mae"])
    return out


def print_metrics(metrics: dict[str, dict[str, Any]]) -> None:
    names = list(metrics)
    print("| metric | " + " | ".join(f"{n} input" for n in names) + " |")
    print("|---|" + "---|" * len(names))
    for key in METRIC_KEYS:
        cells = []
        for n in names:
            v = metrics[n].get(key)
            cells.append("–" if v is None or (isinstance(v, float) and not np.isfinite(v))
                         else f"{v:.4f}" if isinstance(v, float) else str(v))
        print(f"| {key} | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--world", type=Path, default=world.WORLD_DIR,
                   help="folder with world.jsonl.gz, heldout.json, manifest.json")
    p.add_argument("--out", type=Path, default=ROOT / "gnomon" / "data" / "pretrained")
    p.add_argument("--version", type=int, default=1, help="N of pretrained-<scheme>-vN")
    p.add_argument("--members", type=int, default=5)
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--patience", type=int, default=25)
    p.add_argument("--width", type=int, default=48, help="feature width (hidden)")
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--cutoff", type=float, default=5.0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--val-fraction", type=float, default=0.15)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--device", default=None, help="cpu, cuda (default: CUDA when present)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    from gnomon.models.evaluation import held_out_split
    from gnomon.models.pretrained import CARD_FILE, version_name
    from gnomon.models.registry import _jsonable
    from gnomon.models.spec import ModelSpec, TrainConfig
    from gnomon.models.training import Trainer

    t0 = time.time()
    data = load(args.world)
    chemsys = [e.chemsys for e in data["entries"]]
    split = held_out_split(chemsys, data["held"])
    if split.leaks or set(split.train_systems) & data["held"]:
        raise SystemExit(f"held-out systems leak into training: {sorted(split.leaks)}")
    train = [data["relaxed"][i] for i in split.train]
    print(f"world {args.world}: {len(data['rows'])} structures, {len(set(chemsys))} systems; "
          f"training on {len(train)} structures of {len(split.train_systems)} systems, "
          f"{len(split.test)} structures of {len(split.test_systems)} held-out systems never seen")

    spec = ModelSpec(kind="gnn", hidden=args.width, num_layers=args.layers, cutoff=args.cutoff)
    config = TrainConfig(ensemble_size=args.members, seed=args.seed, max_epochs=args.epochs,
                         patience=args.patience, batch_size=args.batch_size, lr=args.lr,
                         val_fraction=args.val_fraction, group_by="chemsys", threads=args.threads,
                         device=args.device, checkpoint_dir=None)
    result = Trainer(spec, config).fit(train)
    ensemble = result.ensemble
    m = result.metrics
    print(f"trained {ensemble.size} members in {m['train_seconds']:.0f} s on {m['device']}: "
          f"{m['n_train']} train / {m['n_val']} validation structures, {m['n_rejected']} set aside; "
          f"σ scale {m['sigma_scale']:.3g}")

    metrics = {"heldout": heldout_metrics(ensemble, data, split.test),
               "validation": {k: m.get("val", {}).get(k) for k in
                              ("n", "mae", "rmse", "coverage_1sigma", "coverage_2sigma")}}
    print(f"\nHeld-out systems ({len(split.test_systems)} systems, {len(split.test)} structures), "
          "energies eV/atom:")
    print_metrics(metrics["heldout"])

    version = version_name(SCHEME, args.version)
    args.out.mkdir(parents=True, exist_ok=True)
    weights = args.out / f"{version}.pt"
    ensemble.save(weights)
    size = weights.stat().st_size
    if size > MAX_BYTES:
        weights.unlink()
        raise SystemExit(f"{weights.name} would be {size / 2**20:.1f} MB (> 5 MB); use a smaller "
                         "--width or fewer --members")
    manifest_path = args.world / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    card = {
        "version": version,
        "weights": weights.name,
        "weights_sha256": sha256(weights),
        "scheme": SCHEME,
        "kind": ensemble.kind,
        "ensemble_size": ensemble.size,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "code_version": code_version(),
        "data": {
            "name": "gnomon benchmark world (bench/world.py)",
            "file": "bench/world/world.jsonl.gz",
            "sha256": sha256(args.world / "world.jsonl.gz"),
            "manifest_sha256": sha256(manifest_path) if manifest_path.exists() else None,
            "heldout_sha256": sha256(args.world / "heldout.json"),
            "built": manifest.get("built"),
            "oracle": manifest.get("oracle", {}),
            "n_structures": len(data["rows"]),
            "n_systems": len(set(chemsys)),
            "training_data_hash": result.training_data_hash,
        },
        "split": {
            "kind": "fixed held-out systems (bench/world/heldout.json), whole chemical systems",
            "validation": f"early stopping and σ calibration on {args.val_fraction:.0%} of the "
                          "training systems, whole systems",
            "n_train": m["n_train"], "n_val": m["n_val"], "n_heldout": len(split.test),
            "train_systems": split.train_systems,
            "heldout_systems": split.test_systems,
        },
        "hyperparameters": {"model": {k: v for k, v in ensemble.hparams.items()},
                            "train": {k: getattr(config, k) for k in (
                                "ensemble_size", "seed", "max_epochs", "patience", "batch_size",
                                "lr", "weight_decay", "huber_delta", "val_fraction", "group_by")}},
        "training": {"seconds": round(m["train_seconds"]), "device": m["device"],
                     "threads": args.threads, "sigma_scale": m["sigma_scale"],
                     "best_epochs": [h.get("best_epoch") for h in m["members"]],
                     "epochs_run": [h.get("epochs") for h in m["members"]]},
        "metrics": metrics,
    }
    (args.out / CARD_FILE).write_text(json.dumps(_jsonable(card), indent=1) + "\n")
    print(f"\nwrote {weights} ({size / 2**20:.2f} MB) and {args.out / CARD_FILE}; "
          f"{time.time() - t0:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
