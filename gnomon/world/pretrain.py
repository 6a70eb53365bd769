"""Pretraining the screening model that ships with gnomon, on a world's training systems.

Data: a world (``gnomon world build``): oracle-relaxed structures in the scheme
``mlip-chgnet-0.3.0``, with ``heldout.json`` (whole chemical systems) and ``manifest.json``.

* **Training** uses the structures of the training systems only: every system not in
  ``heldout.json``. The trainer validates (early stopping, σ calibration) on a seeded 15 % of
  those training systems, whole systems (``group_by="chemsys"``), because screening judges
  systems the model has not seen.
* **What it learns from** is a :class:`PretrainRecipe` (``--recipe``). Every sample of a row is
  labelled with that row's RELAXED energy per atom, never another row's: the relaxed structure
  (kind ``relaxed``), the unrelaxed input (``unrelaxed``, the IS2RE task of Matbench Discovery,
  what screening sees) and, where a row stores trajectory frames (``frames``: items
  ``{"structure", "energy_per_atom", "step"}``), each frame (``frame``; the frame's own energy
  is not the label). The mix is set by per-kind weights, per row: the loss is the weighted
  mean of the samples' Huber losses, and a row's frames share their kind's weight, so a row
  with many frames weighs no more than one with few. Recipes that learn from unrelaxed inputs
  validate (early stopping, σ calibration) on the unrelaxed inputs of the validation systems,
  because that is what screening sees. The recipes (chosen before any result, compared by
  ``bench/ablation.py`` on validation systems drawn from the training systems):

  ===================  =====================================  ===============  ===========
  recipe               weights (relaxed, unrelaxed, frames)   validates on     note
  ===================  =====================================  ===============  ===========
  relaxed              1, –, –                                relaxed          v1–v3
  relaxed+unrelaxed    1, 1, 0.5                              unrelaxed        best (1), v6–v7
  unrelaxed-heavy      1, 3, 1                                unrelaxed
  unrelaxed            –, 1, –                                unrelaxed        v4–v5
  ===================  =====================================  ===============  ===========

  (1) the ablation's best on the validation systems of the covered world
  (``docs/bench/ablation.md``, 2026-12-07), so the default of ``gnomon model pretrain``
  (:data:`SHIPPED_RECIPE`).

* **Hyperparameters** are fixed here (:class:`PretrainOptions`), before any result is seen,
  and never tuned on the held-out systems: GNoME-style GNN (``gnomon.models.gnn``), width 48,
  3 message-passing layers, cutoff 5 Å, 5 members, AdamW at 2e-3 with a cosine schedule, up
  to 100 epochs, early-stopping patience 15, batches of 32 (v4-v5: 200 and 25; on the
  three-times larger relaxed+unrelaxed sample set every member stopped by epoch 47). The
  options exist to run it on other hardware or for a quick trial, not to search.
* **Evaluation** (``gnomon.models.evaluation``) on every structure of the held-out systems:
  MAE, RMSE, R² of energy per atom; precision, recall, F1 and DAF of "e_above_hull <= 0"
  against the world's hull (Matbench Discovery's convention); ±1σ/±2σ coverage and
  miscalibration area; on the relaxed structures, and on the unrelaxed inputs labelled with
  the relaxed energies (what screening sees), with and without volume test-time augmentation.

Writes ``<out>/<version>.pt`` (``Ensemble.save``) and ``card.json`` (data set and manifest
hashes, split, held-out, training and validation systems, the recipe and the samples of each
kind it saw, metrics on the held-out and on the validation systems, scheme, hyperparameters,
date, code version and the command that made it).
"""

from __future__ import annotations

import json
import logging
import subprocess
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure

from gnomon.models.ensemble import TTA, Ensemble
from gnomon.models.evaluation import (
    SystemSplit,
    evaluation_report,
    held_out_split,
    hull_distances,
    predict_samples,
)
from gnomon.models.pretrained import CARD_FILE, version_name
from gnomon.models.registry import _jsonable
from gnomon.models.spec import ModelSpec, TrainConfig
from gnomon.models.training import Sample, Trainer, TrainResult
from gnomon.pipeline.thermo.entries import entry_from_structure
from gnomon.storage import Entry
from gnomon.storage.chemsys import canonical_chemsys
from gnomon.world.files import WorldFiles, load_world, sha256
from gnomon.world.oracle import SCHEME

MAX_BYTES = 5 * 1024 * 1024
PACKAGE_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = PACKAGE_ROOT / "data" / "pretrained"
"""Where the shipped model lives: the package data folder ``gnomon/data/pretrained``."""
log = logging.getLogger(__name__)

METRIC_KEYS = ("n", "n_missing", "mae", "rmse", "r2", "precision", "recall", "f1", "accuracy",
               "prevalence", "daf", "mean_sigma", "coverage_1sigma", "coverage_2sigma",
               "miscalibration_area")


KINDS = ("relaxed", "unrelaxed", "frame")
"""The kinds of sample a world row gives, each labelled with the row's relaxed energy."""


class PretrainError(ValueError):
    """The world cannot give a model that ships (a leaking split, weights too big)."""


@dataclass(frozen=True)
class PretrainRecipe:
    """What the model learns from: which kinds of sample, their weights, what validates.

    ``weights`` are per kind and per row (a row's frames share the ``frame`` weight);
    ``validate_on`` names the kinds early stopping and σ calibration are judged on.
    """

    name: str
    inputs: tuple[str, ...] = ("relaxed",)
    weights: tuple[tuple[str, float], ...] = (("relaxed", 1.0),)
    validate_on: tuple[str, ...] = ("relaxed",)

    def __post_init__(self) -> None:
        unknown = (set(self.inputs) | set(self.validate_on) | set(self.weight)) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown sample kinds {sorted(unknown)}; expected {KINDS}")
        if not set(self.validate_on) <= set(self.inputs):
            raise ValueError("a recipe validates on kinds it learns from")

    @property
    def weight(self) -> dict[str, float]:
        return dict(self.weights)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "inputs": list(self.inputs), "weights": self.weight,
                "validate_on": list(self.validate_on)}


RECIPES = {r.name: r for r in (
    PretrainRecipe("relaxed"),
    PretrainRecipe("relaxed+unrelaxed", ("relaxed", "unrelaxed", "frame"),
                   (("relaxed", 1.0), ("unrelaxed", 1.0), ("frame", 0.5)), ("unrelaxed",)),
    PretrainRecipe("unrelaxed-heavy", ("relaxed", "unrelaxed", "frame"),
                   (("relaxed", 1.0), ("unrelaxed", 3.0), ("frame", 1.0)), ("unrelaxed",)),
    PretrainRecipe("unrelaxed", ("unrelaxed",), (("unrelaxed", 1.0),), ("unrelaxed",)),
)}
"""The recipes, fixed before any was measured (see the module's table)."""
SHIPPED_RECIPE = "relaxed+unrelaxed"
"""The recipe ``gnomon model pretrain`` uses by default: the ablation's best on validation."""


#: The `gnomon model pretrain` option of each field whose name differs (the CLI spells an
#: ensemble's size and width as `model train` does).
OPTION_NAMES = {"members": "ensemble", "width": "hidden"}


@dataclass
class PretrainOptions:
    """The shipped model's recipe; the defaults are the shipped model's."""

    version: int = 1  # N of pretrained-<scheme>-vN
    members: int = 5
    epochs: int = 100
    patience: int = 15
    width: int = 48  # feature width (hidden)
    layers: int = 3
    cutoff: float = 5.0
    batch_size: int = 32
    lr: float = 2e-3
    val_fraction: float = 0.15
    seed: int = 0
    threads: int | None = None  # torch threads (default: torch's)
    device: str | None = None  # cpu, cuda (default: CUDA when present)
    recipe: str = SHIPPED_RECIPE  # a name of RECIPES

    @property
    def the_recipe(self) -> PretrainRecipe:
        if self.recipe not in RECIPES:
            raise PretrainError(f"unknown recipe {self.recipe!r}; expected one of "
                                f"{', '.join(RECIPES)}")
        return RECIPES[self.recipe]

    def command(self, world: Path | None = None, out: Path | None = None) -> str:
        """The command line that pretrains with these options (defaults left out)."""
        parts = ["gnomon", "model", "pretrain"]
        parts += [f"--world {world}"] if world is not None else []
        parts += [f"--out {out}"] if out is not None else []
        for f in fields(self):
            value = getattr(self, f.name)
            if value != f.default or f.name == "recipe":  # the recipe: always said
                parts.append(f"--{OPTION_NAMES.get(f.name, f.name).replace('_', '-')} {value}")
        return " ".join(parts)

    def spec(self) -> ModelSpec:
        return ModelSpec(kind="gnn", hidden=self.width, num_layers=self.layers,
                         cutoff=self.cutoff)

    def train_config(self) -> TrainConfig:
        return TrainConfig(ensemble_size=self.members, seed=self.seed, max_epochs=self.epochs,
                           patience=self.patience, batch_size=self.batch_size, lr=self.lr,
                           val_fraction=self.val_fraction, group_by="chemsys",
                           threads=self.threads, device=self.device, checkpoint_dir=None,
                           val_kinds=self.the_recipe.validate_on)


@dataclass
class WorldData:
    """A world's rows as entries and samples, and its held-out systems.

    ``relaxed[i]``, ``unrelaxed[i]`` and every item of ``frames[i]`` all come from row ``i``
    and carry its relaxed energy per atom.
    """

    rows: list[dict[str, Any]]
    held: set[str]
    entries: list[Entry] = field(default_factory=list)
    relaxed: list[Sample] = field(default_factory=list)
    unrelaxed: list[Sample] = field(default_factory=list)
    frames: list[list[Sample]] = field(default_factory=list)

    @property
    def chemsys(self) -> list[str]:
        return [e.chemsys for e in self.entries]

    @property
    def n_frames(self) -> int:
        return sum(len(f) for f in self.frames)


def row_samples(row: dict[str, Any]) -> tuple[Entry, Sample, Sample, list[Sample]]:
    """One world row's entry and its relaxed, unrelaxed and frame samples (same label)."""
    entry = entry_from_structure(Structure.from_dict(row["relaxed"]), row["energy"], SCHEME,
                                 source=row["generator"])
    relaxed = Sample.from_entry(entry)
    frames = [relaxed.paired(f["structure"], "frame", f"frame{f.get('step', n)}")
              for n, f in enumerate(row.get("frames") or [])]
    return entry, relaxed, relaxed.paired(row["unrelaxed"], "unrelaxed"), frames


def world_data(rows: list[dict[str, Any]], held: set[str]) -> WorldData:
    """Rows and held-out systems as :class:`WorldData`."""
    data = WorldData(rows, {canonical_chemsys(s) for s in held})
    for r in rows:
        entry, relaxed, unrelaxed, frames = row_samples(r)
        data.entries.append(entry)
        data.relaxed.append(relaxed)
        data.unrelaxed.append(unrelaxed)
        data.frames.append(frames)
    return data


def load(world_dir: Path) -> WorldData:
    """The world in ``world_dir`` as entries and samples (unrelaxed: the input structures
    labelled with the relaxed energies, which is what screening sees)."""
    rows, held = load_world(WorldFiles(world_dir))
    return world_data(rows, held)


def training_samples(data: WorldData, index: list[int], recipe: PretrainRecipe) -> list[Sample]:
    """The samples ``recipe`` learns from, of rows ``index`` only, weighted per kind."""
    weight = recipe.weight
    out: list[Sample] = []
    for i in index:
        if "relaxed" in recipe.inputs:
            out.append(replace(data.relaxed[i], weight=weight.get("relaxed", 1.0)))
        if "unrelaxed" in recipe.inputs:
            out.append(replace(data.unrelaxed[i], weight=weight.get("unrelaxed", 1.0)))
        if "frame" in recipe.inputs and data.frames[i]:
            share = weight.get("frame", 1.0) / len(data.frames[i])
            out.extend(replace(f, weight=share) for f in data.frames[i])
    return out


def split_world(data: WorldData) -> SystemSplit:
    """Training systems and the held-out ones; :class:`PretrainError` when they leak."""
    split = held_out_split(data.chemsys, data.held)
    if split.leaks or set(split.train_systems) & data.held:
        raise PretrainError(f"held-out systems leak into training: {sorted(split.leaks)}")
    return split


def train(data: WorldData, split: SystemSplit, options: PretrainOptions) -> TrainResult:
    """The ensemble, trained on the training systems' samples of the options' recipe."""
    samples = training_samples(data, split.train, options.the_recipe)
    leaked = {s.chemsys for s in samples} & data.held
    if leaked:
        raise PretrainError(f"held-out systems in the training samples: {sorted(leaked)}")
    return Trainer(options.spec(), options.train_config()).fit(samples)


def validation_rows(data: WorldData, split: SystemSplit, result: TrainResult) -> list[int]:
    """The rows of the systems the trainer validated on (drawn from the training systems)."""
    keys = {k.split(":")[0] for k in result.split.get("val", [])}
    systems = {data.entries[i].chemsys for i in split.train if data.entries[i].id in keys}
    return [i for i in split.train if data.entries[i].chemsys in systems]


def system_metrics(ensemble: Ensemble, data: WorldData, index: list[int],
                   reference: list[int] | None = None) -> dict[str, dict[str, Any]]:
    """Every metric on rows ``index``, per input (relaxed, unrelaxed, unrelaxed+TTA); the hull
    of ``reference`` rows (default: the whole world)."""
    chosen = [data.entries[i] for i in index]
    ref = data.entries if reference is None else [data.entries[i] for i in reference]
    hull = hull_distances(chosen, ref)
    energy = np.array([e.energy_per_atom for e in chosen])
    out: dict[str, dict[str, Any]] = {}
    for label, inputs, tta in (("relaxed", data.relaxed, None),
                               ("unrelaxed", data.unrelaxed, None),
                               ("unrelaxed +TTA", data.unrelaxed, TTA())):
        pred = predict_samples(ensemble, [inputs[i] for i in index], tta)
        report = evaluation_report(energy, pred.energy_per_atom, hull, pred.sigma)
        out[label] = {k: report[k] for k in METRIC_KEYS if k in report}
    return out


def heldout_metrics(ensemble: Ensemble, data: WorldData,
                    test: list[int]) -> dict[str, dict[str, Any]]:
    """Every metric on the held-out structures, per input (against the whole world's hull)."""
    out = system_metrics(ensemble, data, test)
    for label, row in out.items():
        log.info("held-out systems, %s input: MAE %.4f eV/atom", label, row["mae"])
    return out


def validation_metrics(ensemble: Ensemble, data: WorldData, split: SystemSplit,
                       val: list[int]) -> dict[str, dict[str, Any]]:
    """Every metric on the validation systems' rows, against the training systems' hull
    (what recipes and versions are chosen by; no held-out row takes part)."""
    return system_metrics(ensemble, data, val, split.train)


def metrics(result: TrainResult, data: WorldData, split: SystemSplit) -> dict[str, Any]:
    """The card's metrics: on the held-out systems, on the validation systems, and the
    trainer's own validation (on the recipe's ``validate_on`` kinds)."""
    val = result.metrics.get("val", {})
    rows = validation_rows(data, split, result)
    return {"heldout": heldout_metrics(result.ensemble, data, split.test),
            "validation_systems": validation_metrics(result.ensemble, data, split, rows),
            "validation": {k: val.get(k) for k in
                           ("n", "mae", "rmse", "coverage_1sigma", "coverage_2sigma")}}


def write_weights(ensemble: Ensemble, out: Path, number: int) -> Path:
    """``<out>/<version>.pt``; :class:`PretrainError` (and no file) when over 5 MB."""
    out.mkdir(parents=True, exist_ok=True)
    weights = out / f"{version_name(SCHEME, number)}.pt"
    ensemble.save(weights)
    size = weights.stat().st_size
    if size > MAX_BYTES:
        weights.unlink()
        raise PretrainError(f"{weights.name} would be {size / 2**20:.1f} MB (> 5 MB); use a "
                            "smaller --width or fewer --members")
    return weights


def code_version() -> str:
    """gnomon's version and the commit it ran at (``+dirty`` with local changes)."""
    try:
        v = version("gnomon")
    except PackageNotFoundError:
        v = "unknown"
    root = PACKAGE_ROOT.parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                                capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "gnomon"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return v
    return f"{v} ({commit[:12]}{'+dirty' if dirty else ''})"


def _data_section(world_dir: Path, data: WorldData, result: TrainResult) -> dict[str, Any]:
    files = WorldFiles(world_dir)
    manifest = json.loads(files.manifest.read_text()) if files.manifest.exists() else {}
    return {
        "name": "gnomon benchmark world (gnomon world build, gnomon world grow)",
        "file": "bench/world/world.jsonl.gz",
        "sha256": sha256(files.world),
        "manifest_sha256": sha256(files.manifest) if files.manifest.exists() else None,
        "heldout_sha256": sha256(files.heldout),
        "built": manifest.get("built"),
        "oracle": manifest.get("oracle", {}),
        "n_structures": len(data.rows),
        "n_systems": len(set(data.chemsys)),
        "training_data_hash": result.training_data_hash,
    }


def _split_section(split: SystemSplit, result: TrainResult, options: PretrainOptions,
                   data: WorldData) -> dict[str, Any]:
    m = result.metrics
    return {
        "kind": "fixed held-out systems (bench/world/heldout.json), whole chemical systems",
        "validation": f"early stopping and σ calibration on {options.val_fraction:.0%} of the "
                      "training systems, whole systems",
        "n_train": m["n_train"], "n_val": m["n_val"], "n_heldout": len(split.test),
        "train_systems": split.train_systems,
        "validation_systems": sorted({data.entries[i].chemsys
                                      for i in validation_rows(data, split, result)}),
        "heldout_systems": split.test_systems,
    }


def sample_kind(key: str) -> str:
    """The kind of a training sample from its key (``id``, ``id:unrelaxed``, ``id:frameN``)."""
    suffix = key.split(":", 1)[1] if ":" in key else ""
    return "unrelaxed" if suffix == "unrelaxed" else "frame" if suffix.startswith("frame") \
        else "relaxed"


def _recipe_section(result: TrainResult, options: PretrainOptions,
                    data: WorldData) -> dict[str, Any]:
    """The recipe and what it saw: samples of each kind trained and validated on."""
    seen = {part: {k: 0 for k in KINDS} for part in ("train", "val")}
    for part, counts in seen.items():
        for key in result.split.get(part, []):
            counts[sample_kind(key)] += 1
    return {**options.the_recipe.as_dict(), "samples": seen,
            "frames_in_world": data.n_frames,
            "rows_with_frames": sum(1 for f in data.frames if f)}


def _training_section(result: TrainResult, options: PretrainOptions) -> dict[str, Any]:
    m = result.metrics
    return {"seconds": round(m["train_seconds"]), "device": m["device"],
            "threads": options.threads, "sigma_scale": m["sigma_scale"],
            "best_epochs": [h.get("best_epoch") for h in m["members"]],
            "epochs_run": [h.get("epochs") for h in m["members"]]}


def model_card(world_dir: Path, weights: Path, data: WorldData, split: SystemSplit,
               result: TrainResult, options: PretrainOptions, scores: dict[str, Any],
               command: str) -> dict[str, Any]:
    """The shipped model's card (see the module); ``command`` is what made it."""
    ensemble, config = result.ensemble, options.train_config()
    train_keys = ("ensemble_size", "seed", "max_epochs", "patience", "batch_size", "lr",
                  "weight_decay", "huber_delta", "val_fraction", "group_by")
    return {
        "version": version_name(SCHEME, options.version),
        "weights": weights.name,
        "weights_sha256": sha256(weights),
        "scheme": SCHEME,
        "kind": ensemble.kind,
        "ensemble_size": ensemble.size,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "code_version": code_version(),
        "command": command,
        "data": _data_section(world_dir, data, result),
        "split": _split_section(split, result, options, data),
        "recipe": _recipe_section(result, options, data),
        "hyperparameters": {"model": dict(ensemble.hparams),
                            "train": {k: getattr(config, k) for k in train_keys}},
        "training": _training_section(result, options),
        "metrics": scores,
    }


def write_card(out: Path, card: dict[str, Any]) -> Path:
    path = out / CARD_FILE
    path.write_text(json.dumps(_jsonable(card), indent=1) + "\n")
    return path
