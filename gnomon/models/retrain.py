"""A scheme's next model version: choose its parent, train, register.

Above training, the registry and the transfer of references (:mod:`gnomon.models.transfer`),
so that none of them needs another: this module is the one that ties them together.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from gnomon.models.ensemble import Ensemble, IncompatibleWeights, Normalization
from gnomon.models.registry import ModelRegistry
from gnomon.models.spec import ModelSpec, TrainConfig
from gnomon.models.training import ProgressCallback, Sample, Trainer, TrainResult
from gnomon.models.transfer import fine_tune_normalization
from gnomon.storage import Candidate, Entry, ModelVersion, Repository

log = logging.getLogger(__name__)

RETRAIN_MODES = ("fine-tune", "scratch")


def _parent_record(registry: ModelRegistry, scheme: str, kind: str, retrain: str,
                   parent: str | None) -> ModelVersion | None:
    """The version to fine-tune from: ``parent`` when named, else the latest of the same
    kind and scheme; none when training from scratch."""
    if retrain != "fine-tune":
        return None
    if parent is not None:
        return registry.get(parent)
    return registry.repo.latest_model(scheme=scheme, kind=kind)


def _fine_tune_start(
    registry: ModelRegistry, parent: ModelVersion | None, samples: list[Sample], scheme: str
) -> tuple[Ensemble | None, Normalization | None, dict[str, Any], str | None]:
    """The parent's ensemble and the normalisation its child trains under, the lineage its
    record inherits, and why fine-tuning was refused (None when it was not)."""
    if parent is None:
        return None, None, {}, None
    try:
        ensemble = registry.load(parent)
    except IncompatibleWeights as exc:
        # A campaign must not stop at a round boundary because the network changed
        # under an old model; it starts afresh and records why.
        return None, None, {}, f"{parent.id}: {exc}"
    normalization, lineage = fine_tune_normalization(parent, ensemble, samples, scheme)
    if normalization is None:
        return None, None, {}, f"{parent.id}: {lineage['references']['reason']}"
    return ensemble, normalization, lineage, None


def scheme_samples(repo: Repository, entries: list[Entry]) -> list[Sample]:
    """Every entry, and the unrelaxed candidate it was relaxed from, labelled with the entry's
    relaxed energy: the screen judges unrelaxed candidates, so each round teaches it the
    answer for what it saw (the shipped model's recipe), not only relaxed geometry. A DFT
    entry started from an ML-relaxed structure is paired with the candidate the screen saw."""
    samples = [Sample.from_entry(e) for e in entries]
    ids = [e.candidate_id for e in entries if e.candidate_id]
    candidates = {c.id: c for c in repo.query(Candidate, {"id": ids})} if ids else {}
    parents = [c.parent_candidate_id for c in candidates.values() if c.parent_candidate_id]
    if parents:
        candidates.update({c.id: c for c in repo.query(Candidate, {"id": parents})})
    inputs = []
    for entry, sample in zip(entries, samples, strict=True):
        candidate = candidates.get(entry.candidate_id or "")
        while candidate is not None and candidate.parent_candidate_id in candidates:
            candidate = candidates[candidate.parent_candidate_id]
        if candidate is not None and candidate.structure:
            inputs.append(sample.paired(candidate.structure, "unrelaxed"))
    return samples + inputs


def train_scheme(
    repo: Repository,
    models_dir: str | Path,
    scheme: str,
    spec: ModelSpec | None = None,
    config: TrainConfig | None = None,
    *,
    retrain: str = "fine-tune",
    campaign: str | None = None,
    round: int | None = None,
    progress: ProgressCallback | None = None,
    parent: str | None = None,
) -> tuple[ModelVersion, TrainResult]:
    """Train on every entry of ``scheme`` in ``repo`` (and the unrelaxed candidates they came
    from, :func:`scheme_samples`) and register the new version.

    ``retrain="fine-tune"`` starts from ``parent`` (a version, or ``"pretrained"``) when given,
    else from the latest version of the same kind and scheme when there is one; ``"scratch"``
    always initialises afresh. A fine-tuned child keeps its parent's normalisation, with the
    element references refitted on this scheme's entries
    (:func:`gnomon.models.transfer.fine_tune_normalization`); a parent of another scheme is
    recorded as ``transfer_from``. Returns (ModelVersion, TrainResult).
    """
    if retrain not in RETRAIN_MODES:
        raise ValueError(f"retrain must be 'fine-tune' or 'scratch', not {retrain!r}")
    spec = spec or ModelSpec()
    registry = ModelRegistry(repo, models_dir)
    entries = repo.entries(scheme=scheme)
    if not entries:
        raise ValueError(f"no entries of scheme {scheme!r} to train on")
    parent_record = _parent_record(registry, scheme, spec.kind, retrain, parent)
    samples = scheme_samples(repo, entries)
    parent_ens, normalization, lineage, refused = _fine_tune_start(
        registry, parent_record, samples, scheme)
    if refused:
        log.warning("cannot fine-tune from %s; training from scratch", refused)
        parent_record = None
    result = Trainer(spec, config, progress).fit(samples, parent_ens, normalization)
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
            **lineage,
        },
        split=result.split,
    )
    return record, result
