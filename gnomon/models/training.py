"""Training an ensemble on one energy scheme's entries.

The recipe, in order:

1. Samples are the scheme's entries (structure and energy per atom); entries the model cannot
   read are set aside with their reason.
2. Split by group (reduced formula by default, or chemical system): no formula is in two of
   train / validation / test.
3. Per-element reference energies are fitted first, by least squares of energy per atom on
   atomic fractions, on the training split only. The networks learn the standardised residual.
4. K members (different seeds; bootstrap resamples optionally) train with AdamW and a cosine
   schedule, early-stopping on validation MAE and keeping their best weights; checkpoints are
   written per member when a directory is given. CUDA with mixed precision when present.
5. The ensemble's σ is calibrated on the validation split (a fitted scale, see
   :mod:`gnomon.models.calibration`); test-split metrics are reported with that scale.

Retraining either fine-tunes a previous ensemble (its weights as the starting point) or starts
from scratch.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from gnomon.models.calibration import calibration_report, fit_sigma_scale
from gnomon.models.composition import fraction_matrix
from gnomon.models.ensemble import (
    TTA,
    Ensemble,
    EnsembleOutput,
    IncompatibleWeights,
    ModelSpec,
    Normalization,
    autocast,
    build_member,
    pick_device,
)
from gnomon.models.graphs import MAX_Z, GraphRejected
from gnomon.models.screening import Featurizer
from gnomon.storage.documents import Entry, stable_hash

log = logging.getLogger(__name__)


@dataclass
class Sample:
    """One labelled example: a structure (dict) or composition, and its energy per atom (eV)."""

    key: str
    energy_per_atom: float
    composition: dict[str, float]
    structure: dict[str, Any] | None = None
    reduced_formula: str = ""
    chemsys: str = ""

    @classmethod
    def from_entry(cls, entry: Entry) -> Sample:
        return cls(
            entry.id,
            float(entry.energy_per_atom),
            dict(entry.composition),
            entry.structure,
            entry.reduced_formula,
            entry.chemsys,
        )

    @classmethod
    def from_structure(cls, key: str, structure, energy_per_atom: float) -> Sample:
        comp = structure.composition
        return cls(
            key,
            float(energy_per_atom),
            {str(el): float(v) for el, v in comp.items()},
            structure.as_dict(),
            comp.reduced_formula,
            comp.chemical_system,
        )


@dataclass
class TrainConfig:
    """How an ensemble is trained (recorded with the model version)."""

    ensemble_size: int = 5
    seed: int = 0
    bootstrap: bool = False
    max_epochs: int = 300
    patience: int = 30
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-5
    huber_delta: float = 0.1
    val_fraction: float = 0.15
    test_fraction: float = 0.0
    group_by: str = "composition"  # or "chemsys"
    ridge: float = 1e-6
    device: str | None = None  # None: CUDA when present
    amp: bool = True
    threads: int | None = None
    checkpoint_dir: str | None = None
    fine_tune_lr_factor: float = 0.3

    def __post_init__(self):
        if self.group_by not in ("composition", "chemsys"):
            raise ValueError(f"group_by must be 'composition' or 'chemsys', not {self.group_by!r}")
        if self.ensemble_size < 1:
            raise ValueError("ensemble_size must be at least 1")


@dataclass
class Split:
    train: list[int]
    val: list[int]
    test: list[int]


@dataclass
class TrainResult:
    ensemble: Ensemble
    metrics: dict[str, Any]
    split: dict[str, list[str]]
    training_data_hash: str
    rejected: dict[str, str] = field(default_factory=dict)


def training_data_hash(samples: Sequence[Sample]) -> str:
    return stable_hash(sorted((s.key, round(s.energy_per_atom, 6)) for s in samples))


def split_by_group(
    samples: Sequence[Sample], val_fraction: float, test_fraction: float, by: str, seed: int
) -> Split:
    """Assign whole groups (formulas or chemical systems) to train / validation / test."""
    groups = [s.reduced_formula if by == "composition" else s.chemsys for s in samples]
    names = sorted(set(groups))
    rng = np.random.default_rng(seed)
    rng.shuffle(names)
    n = len(names)
    n_test = int(round(test_fraction * n)) if test_fraction > 0 else 0
    n_val = max(1, int(round(val_fraction * n))) if val_fraction > 0 else 0
    if n_val + n_test >= n:
        raise ValueError(
            f"cannot split {n} distinct {'formulas' if by == 'composition' else 'chemical systems'} "
            "into train, validation and test; add data or lower the held-out fractions"
        )
    test_names, val_names = set(names[:n_test]), set(names[n_test : n_test + n_val])
    split = Split([], [], [])
    for i, g in enumerate(groups):
        (split.test if g in test_names else split.val if g in val_names else split.train).append(i)
    return split


def fit_element_references(
    compositions: Sequence[dict[str, float]], energies: np.ndarray, ridge: float = 1e-6
) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares μ with E/N ≈ Σ_el x_el μ_el; returns (μ by atomic number, seen mask)."""
    x = fraction_matrix(compositions, MAX_Z).astype(np.float64)
    seen = x.sum(axis=0) > 0
    cols = np.nonzero(seen)[0]
    a = x[:, cols]
    lhs = a.T @ a + ridge * np.eye(len(cols))
    mu = np.linalg.solve(lhs, a.T @ np.asarray(energies, float))
    refs = np.zeros(MAX_Z + 1)
    refs[cols] = mu
    return refs, seen


def _batches(graphs: Sequence, index: np.ndarray, batch_size: int, featurizer: Featurizer):
    for start in range(0, len(index), batch_size):
        sel = index[start : start + batch_size]
        yield sel, featurizer.collate([graphs[i] for i in sel])


def predict_graphs(
    ensemble: Ensemble,
    graphs: Sequence,
    featurizer: Featurizer,
    batch_size: int = 256,
    tta: TTA | None = None,
) -> EnsembleOutput:
    means, sigmas, members = [], [], []
    for _, batch in _batches(graphs, np.arange(len(graphs)), batch_size, featurizer):
        out = ensemble.predict(batch, tta)
        means.append(out.mean)
        sigmas.append(out.sigma)
        members.append(out.members)
    if not means:
        k = ensemble.size
        return EnsembleOutput(np.zeros(0), np.zeros(0), np.zeros((k, 0)))
    return EnsembleOutput(np.concatenate(means), np.concatenate(sigmas), np.concatenate(members, 1))


class Trainer:
    """Trains (or fine-tunes) an ensemble of ``spec`` under ``config``."""

    def __init__(
        self,
        spec: ModelSpec | None = None,
        config: TrainConfig | None = None,
        progress: Callable[[str, int, int, float], None] | None = None,
    ):
        self.spec = spec or ModelSpec()
        self.config = config or TrainConfig()
        self.progress = progress

    # -- data -----------------------------------------------------------------------------
    def featurize(self, samples: Sequence[Sample], featurizer: Featurizer):
        graphs, kept, rejected = [], [], {}
        for s in samples:
            item = s.composition if featurizer.kind == "composition" else s.structure
            if item is None:
                rejected[s.key] = "entry has no structure"
                continue
            try:
                graphs.append(featurizer(item))
            except GraphRejected as exc:
                rejected[s.key] = exc.reason
                continue
            kept.append(s)
        if rejected:
            log.warning("%d of %d samples set aside (e.g. %s)", len(rejected), len(samples),
                        next(iter(rejected.values())))
        return graphs, kept, rejected

    # -- the recipe -----------------------------------------------------------------------
    def fit(self, samples: Sequence[Sample], parent: Ensemble | None = None) -> TrainResult:
        cfg = self.config
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        device = pick_device(cfg.device)
        spec = self.spec
        kind = parent.kind if parent is not None else spec.kind
        cutoff = float(parent.hparams.get("cutoff", spec.cutoff)) if parent else spec.cutoff
        featurizer = Featurizer(kind, cutoff)
        t0 = time.perf_counter()
        graphs, samples, rejected = self.featurize(samples, featurizer)
        if len(samples) < 3:
            raise ValueError(f"need at least 3 usable samples to train, got {len(samples)}")
        split = split_by_group(samples, cfg.val_fraction, cfg.test_fraction, cfg.group_by, cfg.seed)
        energies = np.array([s.energy_per_atom for s in samples])
        refs, seen = fit_element_references(
            [samples[i].composition for i in split.train], energies[split.train], cfg.ridge
        )
        # Held-out samples with elements the training split never saw cannot be judged.
        split.val = [i for i in split.val if self._all_seen(samples[i], seen)]
        split.test = [i for i in split.test if self._all_seen(samples[i], seen)]
        baseline = self._reference_energies(samples, refs)
        residual = energies - baseline
        shift = float(residual[split.train].mean())
        scale = float(max(residual[split.train].std(), 1e-3))
        norm = Normalization(refs, seen, shift, scale)
        if parent is not None:
            hparams = dict(parent.hparams)
        elif kind == "gnn":
            edges = sum(int(graphs[i].edge_index.shape[1]) for i in split.train)
            nodes = sum(int(graphs[i].num_nodes) for i in split.train)
            hparams = spec.hparams(avg_num_neighbors=edges / max(nodes, 1))
        else:
            hparams = spec.hparams(avg_num_neighbors=1.0)
        targets = torch.tensor((residual - shift) / scale, dtype=torch.float32)
        log.info(
            "training %d x %s on %d samples (%d val, %d test), reference MAE %.4f eV/atom",
            cfg.ensemble_size, kind, len(split.train), len(split.val), len(split.test),
            float(np.mean(np.abs(residual[split.train] - shift))),
        )
        members, histories = [], []
        for k in range(cfg.ensemble_size):
            seed = cfg.seed + 1000 * k
            torch.manual_seed(seed)
            model = build_member(kind, hparams)
            if parent is not None:
                model.load_state_dict(parent.members[k % parent.size].state_dict())
            model, history = self._train_member(
                k, model, graphs, targets, split, energies, baseline, norm, featurizer, seed,
                device, lr=cfg.lr * (cfg.fine_tune_lr_factor if parent is not None else 1.0),
            )
            members.append(model.cpu())
            histories.append(history)
        ensemble = Ensemble(kind, hparams, members, norm, train_config=asdict(cfg)).to(device)
        metrics: dict[str, Any] = {
            "n_train": len(split.train),
            "n_val": len(split.val),
            "n_test": len(split.test),
            "n_rejected": len(rejected),
            "reference_mae_val": float(np.mean(np.abs(residual[split.val] - shift)))
            if split.val else None,
            "members": histories,
        }
        if split.val:
            out = predict_graphs(ensemble, [graphs[i] for i in split.val], featurizer)
            err = out.mean - energies[split.val]
            metrics["val_uncalibrated"] = calibration_report(err, out.sigma)
            ensemble.sigma_scale = fit_sigma_scale(err, out.sigma)
            metrics["val"] = calibration_report(err, out.sigma * ensemble.sigma_scale)
        if split.test:
            out = predict_graphs(ensemble, [graphs[i] for i in split.test], featurizer)
            metrics["test"] = calibration_report(out.mean - energies[split.test], out.sigma)
        metrics["sigma_scale"] = ensemble.sigma_scale
        metrics["train_seconds"] = time.perf_counter() - t0
        metrics["device"] = str(device)
        ensemble.calibration = {
            "sigma_scale": ensemble.sigma_scale,
            "fitted_on": "validation split",
            **{k: v for k, v in metrics.get("val", {}).items()},
        }
        names = {
            "train": [samples[i].key for i in split.train],
            "val": [samples[i].key for i in split.val],
            "test": [samples[i].key for i in split.test],
        }
        return TrainResult(ensemble.cpu().eval(), metrics, names, training_data_hash(samples), rejected)

    @staticmethod
    def _all_seen(sample: Sample, seen: np.ndarray) -> bool:
        from gnomon.models.graphs import ATOMIC_NUMBER

        return all(seen[ATOMIC_NUMBER[el]] for el in sample.composition if el in ATOMIC_NUMBER)

    @staticmethod
    def _reference_energies(samples: Sequence[Sample], refs: np.ndarray) -> np.ndarray:
        return fraction_matrix([s.composition for s in samples], MAX_Z).astype(np.float64) @ refs

    def _train_member(
        self, k, model, graphs, targets, split, energies, baseline, norm, featurizer, seed, device, lr
    ):
        cfg = self.config
        rng = np.random.default_rng(seed)
        train_idx = np.asarray(split.train)
        if cfg.bootstrap:
            train_idx = rng.choice(train_idx, size=len(train_idx), replace=True)
        model = model.to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.max_epochs, eta_min=lr * 0.01)
        use_scaler = device.type == "cuda" and cfg.amp and not torch.cuda.is_bf16_supported()
        scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
        val_graphs = [graphs[i] for i in split.val]
        val_true = energies[split.val]
        val_base = baseline[split.val]
        best = (math.inf, None, 0)
        history = {"seed": seed, "epochs": 0, "best_epoch": 0, "best_val_mae": None}
        ckpt_dir = Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else None
        if ckpt_dir:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
        for epoch in range(cfg.max_epochs):
            model.train()
            order = rng.permutation(train_idx)
            total = 0.0
            for sel, batch in _batches(graphs, order, cfg.batch_size, featurizer):
                batch = batch.to(device)
                y = targets[sel].to(device)
                with autocast(device, cfg.amp):
                    pred = self._forward(model, batch, featurizer.kind)
                loss = F.huber_loss(pred.float(), y, delta=cfg.huber_delta)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
                scaler.step(opt)
                scaler.update()
                total += float(loss.detach()) * len(sel)
            sched.step()
            val_mae = self._val_mae(model, val_graphs, val_true, val_base, norm, featurizer, device)
            if val_mae is None:  # no validation split: keep the last weights
                val_mae = total / max(len(order), 1)
            if val_mae < best[0] - 1e-6:
                best = (val_mae, copy.deepcopy(model.state_dict()), epoch)
                if ckpt_dir:
                    torch.save(model.state_dict(), ckpt_dir / f"member{k}-best.pt")
            if ckpt_dir:
                torch.save({"epoch": epoch, "model": model.state_dict(), "optimizer": opt.state_dict()},
                           ckpt_dir / f"member{k}-last.pt")
            history["epochs"] = epoch + 1
            if self.progress is not None:
                self.progress(f"member {k + 1}/{cfg.ensemble_size}", epoch + 1, cfg.max_epochs, val_mae)
            if epoch - best[2] >= cfg.patience:
                log.info("member %d: early stop at epoch %d (best %d)", k, epoch, best[2])
                break
        model.load_state_dict(best[1])
        history["best_epoch"] = best[2] + 1
        history["best_val_mae"] = float(best[0])
        return model.eval(), history

    @staticmethod
    def _forward(model, batch, kind):
        if kind == "composition":
            return model(batch.fractions)
        return model(batch.z, batch.edge_index, batch.dist, batch.batch, batch.num_graphs)

    def _val_mae(self, model, graphs, true, base, norm, featurizer, device) -> float | None:
        if not graphs:
            return None
        model.eval()
        preds = []
        with torch.inference_mode():
            for _, batch in _batches(graphs, np.arange(len(graphs)), 256, featurizer):
                batch = batch.to(device)
                with autocast(device, self.config.amp):
                    preds.append(self._forward(model, batch, featurizer.kind).float().cpu().numpy())
        pred = base + norm.shift + norm.scale * np.concatenate(preds)
        return float(np.mean(np.abs(pred - true)))


def evaluate(
    ensemble: Ensemble, samples: Sequence[Sample], tta: TTA | None = None, batch_size: int = 256
) -> dict[str, Any]:
    """MAE and calibration of ``ensemble`` on labelled samples (those it can judge)."""
    featurizer = Featurizer.for_ensemble(ensemble, tta)
    graphs, kept, rejected = Trainer().featurize(samples, featurizer)
    out = predict_graphs(ensemble, graphs, featurizer, batch_size, tta)
    report = calibration_report(out.mean - np.array([s.energy_per_atom for s in kept]), out.sigma)
    report["n_rejected"] = len(rejected)
    return report


def train_scheme(
    repo,
    models_dir,
    scheme: str,
    spec: ModelSpec | None = None,
    config: TrainConfig | None = None,
    *,
    retrain: str = "fine-tune",
    campaign: str | None = None,
    round: int | None = None,
    progress: Callable[[str, int, int, float], None] | None = None,
):
    """Train on every entry of ``scheme`` in ``repo`` and register the new version.

    ``retrain="fine-tune"`` starts from the latest version of the same kind and scheme when
    there is one; ``"scratch"`` always initialises afresh. Returns (ModelVersion, TrainResult).
    """
    from gnomon.models.registry import ModelRegistry

    if retrain not in ("fine-tune", "scratch"):
        raise ValueError(f"retrain must be 'fine-tune' or 'scratch', not {retrain!r}")
    spec = spec or ModelSpec()
    registry = ModelRegistry(repo, models_dir)
    entries = repo.entries(scheme=scheme)
    if not entries:
        raise ValueError(f"no entries of scheme {scheme!r} to train on")
    parent_record = repo.latest_model(scheme=scheme, kind=spec.kind) if retrain == "fine-tune" else None
    parent, refused = None, None
    if parent_record is not None:
        try:
            parent = registry.load(parent_record)
        except IncompatibleWeights as exc:
            # A campaign must not stop at a round boundary because the network changed
            # under an old model; it starts afresh and records why.
            refused = f"{parent_record.id}: {exc}"
            log.warning("cannot fine-tune from %s; training from scratch", refused)
            parent_record = None
    result = Trainer(spec, config, progress).fit([Sample.from_entry(e) for e in entries], parent)
    record = registry.register(
        result.ensemble,
        scheme,
        training_data_hash=result.training_data_hash,
        n_train=result.metrics["n_train"],
        metrics=result.metrics,
        parent=parent_record.id if parent_record is not None else None,
        campaign=campaign,
        round=round,
        extra_config={
            "retrain": "scratch" if refused else retrain,
            "split": {k: len(v) for k, v in result.split.items()},
            **({"fine_tune_refused": refused} if refused else {}),
        },
        split=result.split,
    )
    return record, result
