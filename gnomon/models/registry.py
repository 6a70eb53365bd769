"""Model versions: weights on disk, the record of how they were made in the database.

Each trained ensemble gets a version id ``<kind>-<scheme>-v<N>`` and a directory
``<models_dir>/<version>/`` holding ``ensemble.pt`` (weights, hyperparameters,
normalisation, σ scale; loadable with ``torch.load(weights_only=True)``) and ``version.json``
(the ModelVersion record, for people and for recovery) and ``split.json`` (which entries were
train, validation and test). The database's ModelVersion record
names the weights file, the training-data hash, normalisation, calibration and metrics.
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path
from typing import Any

from gnomon.credentials import mask_url
from gnomon.models import pretrained
from gnomon.models.ensemble import Ensemble
from gnomon.models.errors import ModelNotFound
from gnomon.storage import ModelVersion, Repository

log = logging.getLogger(__name__)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.+_-]", "-", text.lower())


class ModelRegistry:
    """Save, find and load ensembles; the database is the index, the directory the store."""

    def __init__(self, repo: Repository, models_dir: str | Path):
        self.repo = repo
        self.models_dir = Path(models_dir)

    def next_version(self, kind: str, scheme: str) -> str:
        stem = f"{kind}-{_slug(scheme)}-v"
        taken = {m.id for m in self.repo.query(ModelVersion, {"kind": kind, "scheme": scheme})}
        n = 1
        while f"{stem}{n}" in taken or (self.models_dir / f"{stem}{n}").exists():
            n += 1
        return f"{stem}{n}"

    def register(
        self,
        ensemble: Ensemble,
        scheme: str,
        *,
        training_data_hash: str | None = None,
        n_train: int | None = None,
        metrics: dict[str, Any] | None = None,
        parent: str | None = None,
        campaign: str | None = None,
        round: int | None = None,
        version: str | None = None,
        extra_config: dict[str, Any] | None = None,
        split: dict[str, list[str]] | None = None,
    ) -> ModelVersion:
        """Write the weights and record the version; returns the stored record."""
        version = version or self.next_version(ensemble.kind, scheme)
        folder = self.models_dir / version
        folder.mkdir(parents=True, exist_ok=True)
        weights = folder / "ensemble.pt"
        ensemble.save(weights)
        record = ModelVersion(
            id=version,
            kind=ensemble.kind,
            scheme=scheme,
            weights_path=str(weights.resolve()),
            config={
                "hparams": ensemble.hparams,
                "ensemble_size": ensemble.size,
                "train": ensemble.train_config,
                **(extra_config or {}),
            },
            training_data_hash=training_data_hash,
            n_train=n_train,
            normalization=ensemble.normalization.to_dict(),
            calibration=dict(ensemble.calibration, sigma_scale=ensemble.sigma_scale),
            metrics=_jsonable(metrics or {}),
            parent=parent,
            campaign=campaign,
            round=round,
        )
        if split is not None:
            (folder / "split.json").write_text(json.dumps(split))
        (folder / "version.json").write_text(json.dumps(record.to_doc(), indent=1, default=str))
        self.repo.put([record])
        log.info("registered model %s (%s, %d members) at %s", version, scheme, ensemble.size,
                 weights)
        return record

    def get(self, version: str, register: bool = True) -> ModelVersion:
        """The version's record; ``"pretrained"`` (or the shipped model's version id) is the
        model shipped with gnomon, registered here on first use (gnomon.models.pretrained).

        ``register=False`` for what only reads: the shipped model's record is returned as
        stored, or built from its card and stored nowhere."""
        record = None if version == pretrained.ALIAS else self.repo.get(ModelVersion, version)
        if record is None and pretrained.names_shipped(version):
            if register:
                return pretrained.ensure_registered(self.repo, self.models_dir)
            return _stored_or_shipped(self.repo)
        if record is None:
            raise ModelNotFound(f"no model version {version!r} in {mask_url(self.repo.url)}")
        return record

    def latest(self, scheme: str | None = None, kind: str | None = None) -> ModelVersion:
        record = self.repo.latest_model(scheme=scheme, kind=kind)
        if record is None:
            for_scheme = f"for scheme {scheme}" if scheme else ""
            what = " ".join(x for x in (kind, "model", for_scheme) if x)
            raise ModelNotFound(f"no {what} has been trained yet (gnomon model train; "
                                "or --model pretrained, the model shipped with gnomon)")
        return record

    def versions(self, scheme: str | None = None, kind: str | None = None) -> list[ModelVersion]:
        filters = {k: v for k, v in {"scheme": scheme, "kind": kind}.items() if v is not None}
        return sorted(self.repo.query(ModelVersion, filters), key=lambda m: m.created_at)

    def training_keys(self, record: ModelVersion) -> set[str]:
        """Ids of the entries a version was fitted on (train split), when recorded."""
        path = Path(record.weights_path).parent / "split.json"
        if not path.exists():
            return set()
        return set(json.loads(path.read_text()).get("train", []))

    def load(self, version: str | ModelVersion, device: str | None = "cpu") -> Ensemble:
        record = self.get(version) if isinstance(version, str) else version
        path = Path(record.weights_path)
        if record.config.get("package_data") and not path.is_file():
            # registered by an earlier gnomon, which kept no copy: the package data, if still there
            return pretrained.load_weights(record.config["package_data"], device=device)
        if not path.exists():
            raise ModelNotFound(f"weights of {record.id} are missing: {path}")
        return Ensemble.load(path, device=device)


def _stored_or_shipped(repo: Repository) -> ModelVersion:
    """The shipped model's record: the one ``repo`` holds for these weights, else built from
    its card (what ``ensure_registered`` would store)."""
    card = pretrained.read_card()
    stored = repo.get(ModelVersion, card["version"])
    if stored is not None and stored.config.get("weights_sha256") == card.get("weights_sha256"):
        return stored
    return pretrained.record()


def _jsonable(value: Any) -> Any:
    """Metrics as plain JSON (NaN becomes None)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):
        return _jsonable(value.item())
    return value
