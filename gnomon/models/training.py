"""Training an ensemble on one energy scheme's entries.

The recipe, in order:

1. Samples are the scheme's entries (structure and energy per atom); entries the model cannot
   read are set aside with their reason.
2. Split by group (reduced formula by default, or chemical system): no formula is in two of
   train / validation / test.
3. Per-element reference energies are fitted first, by least squares of energy per atom on
   atomic fractions, on the training split only. The networks learn the standardised residual.
4. K members (different seeds; bootstrap resamples optionally) train with AdamW and a cosine
   schedule, early-stopping on validation MAE (on the training loss when there is no
   validation split; the history names which) and keeping their best weights; checkpoints are
   written per member when a directory is given. CUDA with mixed precision when present.
5. The ensemble's σ is calibrated on the validation split (a fitted scale, see
   :mod:`gnomon.models.calibration`); test-split metrics are reported with that scale.

Samples carry a ``kind`` (``relaxed`` by default; ``unrelaxed`` or ``frame`` for inputs paired
with the relaxed energy, see :mod:`gnomon.world.pretrain`) and a ``weight``: the loss is the
weighted mean of the per-sample Huber losses, so a mix of kinds is learnt in the proportions
asked for. ``TrainConfig.val_kinds`` restricts validation (early stopping, σ calibration) to
some kinds, so that a model which screens unrelaxed inputs is judged on unrelaxed inputs.

Retraining either fine-tunes a previous ensemble (its weights as the starting point) or starts
from scratch; choosing the parent and registering the new version is
:func:`gnomon.models.retrain.train_scheme`.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
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
    Normalization,
    autocast,
    build_member,
    pick_device,
)
from gnomon.models.graphs import ATOMIC_NUMBER, MAX_Z, GraphRejected
from gnomon.models.screening import Featurizer
from gnomon.models.spec import ModelSpec, TrainConfig
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
    kind: str = "relaxed"  # what the structure is: relaxed, unrelaxed input, trajectory frame
    weight: float = 1.0  # its share of the training loss (relative to the other samples)

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

    def paired(self, structure: dict[str, Any], kind: str, suffix: str | None = None) -> Sample:
        """Another geometry of the same calculation (its unrelaxed input, a trajectory frame)
        labelled with this sample's relaxed energy: what screening sees, taught the answer the
        relaxation gives (the IS2RE pairing)."""
        return replace(self, structure=structure, kind=kind,
                       key=f"{self.key}:{suffix or kind}")

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
    """Assign whole groups (formulas or chemical systems) to train / validation / test.

    Elemental structures always train: they are the references every formation energy is
    measured against, and an element seen only in a held-out group would leave the model unable
    to judge any compound of it (its items would be set aside, and the held-out sets of two
    trainings on nested data would differ). A first round may hold too few compounds for that:
    then the elements are drawn like any other group, as the only way to have a validation set.
    """
    groups = [s.reduced_formula if by == "composition" else s.chemsys for s in samples]
    elemental = {g for g, s in zip(groups, samples, strict=True) if len(s.composition) == 1}
    names = _held_out_counts(sorted(set(groups) - elemental), val_fraction, test_fraction)
    if names is None:
        names = _held_out_counts(sorted(set(groups)), val_fraction, test_fraction)
    if names is None:
        n = len(set(groups))
        raise ValueError(
            f"cannot split {n} distinct "
            f"{'formulas' if by == 'composition' else 'chemical systems'} "
            "into train, validation and test; add data or lower the held-out fractions"
        )
    names, n_test, n_val = names
    rng = np.random.default_rng(seed)
    rng.shuffle(names)
    test_names, val_names = set(names[:n_test]), set(names[n_test : n_test + n_val])
    split = Split([], [], [])
    for i, g in enumerate(groups):
        (split.test if g in test_names else split.val if g in val_names else split.train).append(i)
    return split


def _held_out_counts(
    names: list[str], val_fraction: float, test_fraction: float
) -> tuple[list[str], int, int] | None:
    """``(names, n_test, n_val)``, or None when the groups cannot leave one to train on."""
    n = len(names)
    n_test = int(round(test_fraction * n)) if test_fraction > 0 else 0
    n_val = max(1, int(round(val_fraction * n))) if val_fraction > 0 else 0
    return None if n_val + n_test >= n else (names, n_test, n_val)


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


ProgressCallback = Callable[[str, int, int, str, float], None]
"""Called after every epoch with (member label, epoch, most epochs, monitor, value); ``monitor``
names what ``value`` measures, one of :data:`MONITORS`."""

MONITORS = {
    "val_mae": "validation MAE of energy per atom (eV/atom)",
    "train_loss": "training Huber loss on the standardised residual "
                  "(unitless; no validation split)",
}
"""What early stopping watches and best weights are picked by, with its meaning and unit."""


def early_stopping(metrics: dict[str, Any]) -> tuple[str, list[float | None]]:
    """(monitor, each member's best value) from a training run's metrics.

    Also reads metrics stored before the monitor was recorded: those kept the best value as
    ``best_val_mae`` even when there was no validation split, where it was the training loss.
    """
    monitor = metrics.get("monitor") or ("val_mae" if metrics.get("n_val") else "train_loss")
    best = [h.get(f"best_{monitor}", h.get("best_val_mae")) for h in metrics.get("members", [])]
    return monitor, best


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the body with ``threads`` intra-op threads, then give the caller back its own.

    ``torch.set_num_threads`` is process-wide: a campaign that trains with one thread must not
    leave a screening or relaxation that runs next in the same process on one thread too.
    """
    if not threads:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class Prepared:
    """Everything the members of one ensemble train on, computed once before the first member.

    ``targets`` are the standardised residuals ``(E/N - reference - shift) / scale`` of every
    kept sample; ``baseline`` is the per-element reference energy of each.
    """

    kind: str
    hparams: dict[str, Any]
    featurizer: Featurizer
    samples: list[Sample]
    graphs: list[Any]
    rejected: dict[str, str]
    split: Split
    energies: np.ndarray
    baseline: np.ndarray
    norm: Normalization
    targets: torch.Tensor
    weights: torch.Tensor | None = None  # per-sample loss weights; None: all equal

    @property
    def monitor(self) -> str:
        """What early stopping watches: validation MAE, or training loss without a split."""
        return "val_mae" if self.split.val else "train_loss"

    def residual_mae(self, part: list[int]) -> float | None:
        """MAE of the reference energies plus shift alone (what the network must beat)."""
        if not part:
            return None
        residual = self.energies[part] - self.baseline[part] - self.norm.shift
        return float(np.mean(np.abs(residual)))

    def names(self) -> dict[str, list[str]]:
        return {
            part: [self.samples[i].key for i in getattr(self.split, part)]
            for part in ("train", "val", "test")
        }


class Trainer:
    """Trains (or fine-tunes) an ensemble of ``spec`` under ``config``.

    :meth:`fit` runs the recipe of this module in three parts, each usable alone:
    :meth:`prepare` (graphs, split, normalisation, hyperparameters), :meth:`train_member` (one
    member, early-stopped) and :meth:`calibrate` (σ scale and held-out metrics).
    """

    def __init__(
        self,
        spec: ModelSpec | None = None,
        config: TrainConfig | None = None,
        progress: ProgressCallback | None = None,
    ):
        self.spec = spec or ModelSpec()
        self.config = config or TrainConfig()
        self.progress = progress

    # -- data -----------------------------------------------------------------------------
    def featurize(
        self, samples: Sequence[Sample], featurizer: Featurizer
    ) -> tuple[list[Any], list[Sample], dict[str, str]]:
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
    def fit(
        self,
        samples: Sequence[Sample],
        parent: Ensemble | None = None,
        normalization: Normalization | None = None,
    ) -> TrainResult:
        """Prepare, train ``ensemble_size`` members (from ``parent``'s weights when given),
        and calibrate on the validation split. ``normalization`` fixes the reference energies,
        shift and scale instead of fitting them (fine-tuning keeps its parent's; see
        :func:`gnomon.models.pretrained.fine_tune_normalization`)."""
        cfg = self.config
        with torch_threads(cfg.threads):
            t0 = time.perf_counter()
            device = pick_device(cfg.device)
            data = self.prepare(samples, parent, normalization)
            log.info(
                "training %d x %s on %d samples (%d val, %d test), reference MAE %.4f eV/atom",
                cfg.ensemble_size, data.kind, len(data.split.train), len(data.split.val),
                len(data.split.test), data.residual_mae(data.split.train),
            )
            lr = cfg.lr * (cfg.fine_tune_lr_factor if parent is not None else 1.0)
            members, histories = [], []
            for k in range(cfg.ensemble_size):
                seed = cfg.seed + 1000 * k
                torch.manual_seed(seed)
                model = build_member(data.kind, data.hparams)
                if parent is not None:
                    model.load_state_dict(parent.members[k % parent.size].state_dict())
                model, history = self.train_member(
                    data, model, index=k, seed=seed, lr=lr, device=device
                )
                members.append(model.cpu())
                histories.append(history)
            ensemble = Ensemble(
                data.kind, data.hparams, members, data.norm, train_config=asdict(cfg)
            ).to(device)
            metrics: dict[str, Any] = {
                "n_train": len(data.split.train),
                "n_val": len(data.split.val),
                "n_test": len(data.split.test),
                "n_rejected": len(data.rejected),
                "reference_mae_val": data.residual_mae(data.split.val),
                "monitor": data.monitor,
                "members": histories,
            }
            metrics.update(self.calibrate(ensemble, data))
            metrics["train_seconds"] = time.perf_counter() - t0
            metrics["device"] = str(device)
        return TrainResult(
            ensemble.cpu().eval(), metrics, data.names(), training_data_hash(data.samples),
            data.rejected,
        )

    def prepare(
        self,
        samples: Sequence[Sample],
        parent: Ensemble | None = None,
        normalization: Normalization | None = None,
    ) -> Prepared:
        """Graphs, the split by group, reference energies and normalisation, hyperparameters.

        A parent fixes the kind, cutoff and hyperparameters (its weights must fit); otherwise
        the spec does, with the GNN's average neighbour count measured on the training graphs.
        A given ``normalization`` is used as it is; otherwise references, shift and scale are
        fitted on the training split.
        """
        cfg, spec = self.config, self.spec
        kind = parent.kind if parent is not None else spec.kind
        cutoff = float(parent.hparams.get("cutoff", spec.cutoff)) if parent else spec.cutoff
        featurizer = Featurizer(kind, cutoff)
        graphs, kept, rejected = self.featurize(samples, featurizer)
        if len(kept) < 3:
            raise ValueError(f"need at least 3 usable samples to train, got {len(kept)}")
        split = split_by_group(kept, cfg.val_fraction, cfg.test_fraction, cfg.group_by, cfg.seed)
        energies = np.array([s.energy_per_atom for s in kept])
        if normalization is not None:
            refs, seen = normalization.element_refs, normalization.seen
        else:
            refs, seen = fit_element_references(
                [kept[i].composition for i in split.train], energies[split.train], cfg.ridge
            )
        # Held-out samples with elements the training split never saw cannot be judged.
        split.val = [i for i in self._validation_kinds(kept, split.val)
                     if self._all_seen(kept[i], seen)]
        split.test = [i for i in split.test if self._all_seen(kept[i], seen)]
        baseline = self._reference_energies(kept, refs)
        residual = energies - baseline
        if normalization is not None:
            shift, scale = normalization.shift, normalization.scale
        else:
            shift = float(residual[split.train].mean())
            scale = float(max(residual[split.train].std(), 1e-3))
        if parent is not None:
            hparams = dict(parent.hparams)
        elif kind == "gnn":
            edges = sum(int(graphs[i].edge_index.shape[1]) for i in split.train)
            nodes = sum(int(graphs[i].num_nodes) for i in split.train)
            hparams = spec.hparams(avg_num_neighbors=edges / max(nodes, 1))
        else:
            hparams = spec.hparams(avg_num_neighbors=1.0)
        return Prepared(
            kind=kind,
            hparams=hparams,
            featurizer=featurizer,
            samples=kept,
            graphs=graphs,
            rejected=rejected,
            split=split,
            energies=energies,
            baseline=baseline,
            norm=Normalization(refs, seen, shift, scale),
            targets=torch.tensor((residual - shift) / scale, dtype=torch.float32),
            weights=self._loss_weights(kept),
        )

    def _validation_kinds(self, samples: Sequence[Sample], val: list[int]) -> list[int]:
        """The validation samples of the kinds ``val_kinds`` names (all when it names none, or
        when none of the validation samples is of those kinds)."""
        kinds = set(self.config.val_kinds)
        chosen = [i for i in val if samples[i].kind in kinds]
        return chosen if kinds and chosen else val

    @staticmethod
    def _loss_weights(samples: Sequence[Sample]) -> torch.Tensor | None:
        """Per-sample loss weights; None when all are equal (the plain mean then)."""
        w = np.array([s.weight for s in samples], dtype=np.float64)
        if np.any(w < 0) or not np.all(np.isfinite(w)):
            raise ValueError("sample weights must be finite and non-negative")
        return None if np.all(w == w[0]) else torch.tensor(w, dtype=torch.float32)

    def calibrate(self, ensemble: Ensemble, data: Prepared) -> dict[str, Any]:
        """Fit the ensemble's σ scale on the validation split and report held-out metrics.

        Sets ``ensemble.sigma_scale`` and ``ensemble.calibration``; returns the metrics
        (``val_uncalibrated``, ``val``, ``test`` where those splits exist, and ``sigma_scale``).
        """
        split, featurizer = data.split, data.featurizer
        metrics: dict[str, Any] = {}
        if split.val:
            out = predict_graphs(ensemble, [data.graphs[i] for i in split.val], featurizer)
            err = out.mean - data.energies[split.val]
            metrics["val_uncalibrated"] = calibration_report(err, out.sigma)
            ensemble.sigma_scale = fit_sigma_scale(err, out.sigma)
            metrics["val"] = calibration_report(err, out.sigma * ensemble.sigma_scale)
        if split.test:
            out = predict_graphs(ensemble, [data.graphs[i] for i in split.test], featurizer)
            metrics["test"] = calibration_report(out.mean - data.energies[split.test], out.sigma)
        metrics["sigma_scale"] = ensemble.sigma_scale
        ensemble.calibration = {
            "sigma_scale": ensemble.sigma_scale,
            "fitted_on": "validation split",
            **metrics.get("val", {}),
        }
        return metrics

    @staticmethod
    def _all_seen(sample: Sample, seen: np.ndarray) -> bool:
        return all(seen[ATOMIC_NUMBER[el]] for el in sample.composition if el in ATOMIC_NUMBER)

    @staticmethod
    def _reference_energies(samples: Sequence[Sample], refs: np.ndarray) -> np.ndarray:
        return fraction_matrix([s.composition for s in samples], MAX_Z).astype(np.float64) @ refs

    def train_member(
        self,
        data: Prepared,
        model: torch.nn.Module,
        *,
        index: int,
        seed: int,
        lr: float,
        device: torch.device,
    ) -> tuple[torch.nn.Module, dict[str, Any]]:
        """Train member ``index`` from ``model``'s weights; return it with its best weights.

        The best epoch is the one with the lowest validation MAE, or, without a validation
        split, the lowest training loss; the history records which (``monitor``) and the
        value under ``best_<monitor>``. ``seed`` drives the member's shuffling and bootstrap.
        """
        cfg = self.config
        rng = np.random.default_rng(seed)
        train_idx = np.asarray(data.split.train)
        if cfg.bootstrap:
            train_idx = rng.choice(train_idx, size=len(train_idx), replace=True)
        model = model.to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.max_epochs,
                                                           eta_min=lr * 0.01)
        use_scaler = device.type == "cuda" and cfg.amp and not torch.cuda.is_bf16_supported()
        scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
        monitor = data.monitor
        best = (math.inf, None, 0)
        history: dict[str, Any] = {
            "seed": seed, "epochs": 0, "best_epoch": 0, "monitor": monitor, f"best_{monitor}": None,
        }
        ckpt_dir = Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else None
        if ckpt_dir:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
        for epoch in range(cfg.max_epochs):
            order = rng.permutation(train_idx)
            train_loss = self._train_epoch(model, data, order, opt, scaler, device)
            sched.step()
            value = self._val_mae(model, data, device) if monitor == "val_mae" else train_loss
            if value < best[0] - 1e-6:
                best = (value, copy.deepcopy(model.state_dict()), epoch)
                if ckpt_dir:
                    torch.save(model.state_dict(), ckpt_dir / f"member{index}-best.pt")
            if ckpt_dir:
                torch.save({"epoch": epoch, "model": model.state_dict(),
                            "optimizer": opt.state_dict()}, ckpt_dir / f"member{index}-last.pt")
            history["epochs"] = epoch + 1
            if self.progress is not None:
                self.progress(f"member {index + 1}/{cfg.ensemble_size}", epoch + 1, cfg.max_epochs,
                              monitor, value)
            if epoch - best[2] >= cfg.patience:
                log.info("member %d: early stop at epoch %d (best %d)", index, epoch, best[2])
                break
        model.load_state_dict(best[1])
        history["best_epoch"] = best[2] + 1
        history[f"best_{monitor}"] = float(best[0])
        return model.eval(), history

    def _train_epoch(
        self,
        model: torch.nn.Module,
        data: Prepared,
        order: np.ndarray,
        opt: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        device: torch.device,
    ) -> float:
        """One pass over ``order``; returns the mean Huber loss per sample."""
        cfg, featurizer = self.config, data.featurizer
        model.train()
        total = 0.0
        for sel, batch in _batches(data.graphs, order, cfg.batch_size, featurizer):
            batch = batch.to(device)
            y = data.targets[sel].to(device)
            with autocast(device, cfg.amp):
                pred = self._forward(model, batch, featurizer.kind)
            loss = self._loss(pred.float(), y, data.weights, sel, device)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            scaler.step(opt)
            scaler.update()
            total += float(loss.detach()) * len(sel)
        return total / max(len(order), 1)

    def _loss(self, pred: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None,
              sel: np.ndarray, device: torch.device) -> torch.Tensor:
        """Huber loss on the standardised residual, weighted by the samples' weights."""
        delta = self.config.huber_delta
        if weights is None:
            return F.huber_loss(pred, y, delta=delta)
        w = weights[sel].to(device)
        per = F.huber_loss(pred, y, delta=delta, reduction="none")
        return (w * per).sum() / w.sum().clamp_min(1e-12)

    @staticmethod
    def _forward(model: torch.nn.Module, batch: Any, kind: str) -> torch.Tensor:
        if kind == "composition":
            return model(batch.fractions)
        return model(batch.z, batch.edge_index, batch.dist, batch.batch, batch.num_graphs)

    def _val_mae(self, model: torch.nn.Module, data: Prepared, device: torch.device) -> float:
        """MAE (eV/atom) of one member on the validation split."""
        val = data.split.val
        featurizer = data.featurizer
        graphs = [data.graphs[i] for i in val]
        model.eval()
        preds = []
        with torch.inference_mode():
            for _, batch in _batches(graphs, np.arange(len(graphs)), 256, featurizer):
                batch = batch.to(device)
                with autocast(device, self.config.amp):
                    preds.append(self._forward(model, batch, featurizer.kind).float().cpu().numpy())
        pred = data.baseline[val] + data.norm.shift + data.norm.scale * np.concatenate(preds)
        return float(np.mean(np.abs(pred - data.energies[val])))


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
