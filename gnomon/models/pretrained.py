"""The pretrained screening model that ships with gnomon: its card, its weights, its record.

``gnomon/data/pretrained/`` holds one ensemble (``<version>.pt``, written by
:meth:`Ensemble.save`) and its card (``card.json``): the data set it was trained on and its
manifest hash, the split (training systems, and the held-out systems it never saw), its
metrics on those held-out systems, the energy scheme it predicts (``mlip-chgnet-0.3.0``),
hyperparameters, date, code version and the command that made it. ``gnomon model pretrain``
(:mod:`gnomon.world.pretrain`) writes both.

Registered on first use, no download: :func:`ensure_registered` puts a ModelVersion for it into
a database the first time something that writes needs it (a campaign that starts from it, a
model fine-tuned from it; ``"pretrained"`` is its alias in :meth:`ModelRegistry.get`), and
keeps a copy of its weights in the models folder beside the ones trained there. The copy is
what the record points at: an upgrade of gnomon ships another model and removes this one from
the package, and a campaign screened by it must still resume, and its rounds still be
re-scored, with the weights that chose its candidates. What only reads (``gnomon model
show|predict|evaluate``) gets the same record from :func:`record`, stored nowhere and pointing
at the package data: showing the card must not register a model that ``model predict`` would
then pick as the latest. Its ``config["train_systems"]`` lets ``gnomon model evaluate --model
pretrained`` tell systems it has seen from systems it has not.

Carrying the model over to another scheme (fine-tuning, transfer) is
:mod:`gnomon.models.transfer`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from datetime import UTC, datetime
from importlib.resources import as_file, files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from gnomon.models.ensemble import Ensemble
from gnomon.models.errors import ModelNotFound
from gnomon.storage import ModelVersion, Repository

log = logging.getLogger(__name__)

ALIAS = "pretrained"
"""The name that always means the pretrained model shipped with this installation."""
SCHEME = "mlip-chgnet-0.3.0"
"""The energy scheme the shipped model predicts (the CHGNet engine's, the benchmark oracle's)."""
CARD_FILE = "card.json"


class PretrainedMissing(ModelNotFound):
    """This installation ships no pretrained weights (or its card names a missing file)."""


def version_name(scheme: str = SCHEME, number: int = 1) -> str:
    """The stable version id of a shipped model, e.g. ``pretrained-mlip-chgnet-0.3.0-v1``."""
    return f"pretrained-{re.sub(r'[^a-z0-9.+_-]', '-', scheme.lower())}-v{number}"


def package_dir() -> Traversable:
    """Where the shipped model lives: the package data folder ``gnomon/data/pretrained``."""
    return files("gnomon") / "data" / "pretrained"


def read_card() -> dict[str, Any]:
    """The shipped model's card; :class:`PretrainedMissing` when there are no weights."""
    folder = package_dir()
    card_file = folder / CARD_FILE
    if not card_file.is_file():
        raise PretrainedMissing(
            "no pretrained model ships with this installation (gnomon/data/pretrained/card.json "
            "is missing; gnomon model pretrain makes it)"
        )
    card = json.loads(card_file.read_text())
    if not (folder / card["weights"]).is_file():
        raise PretrainedMissing(
            f"the pretrained card names {card['weights']}, which is not in gnomon/data/pretrained"
        )
    return card


def available() -> bool:
    """Whether this installation ships pretrained weights."""
    try:
        read_card()
    except PretrainedMissing:
        return False
    return True


def names_shipped(version: str) -> bool:
    """Whether ``version`` names the shipped model: its alias, or its version id."""
    if version == ALIAS:
        return True
    return version.startswith("pretrained-") and available() and read_card()["version"] == version


def load_weights(file_name: str, device: str | None = "cpu") -> Ensemble:
    """The ensemble in package data file ``file_name``."""
    source = package_dir() / file_name
    if not source.is_file():
        raise PretrainedMissing(
            f"{file_name} is no longer shipped in gnomon/data/pretrained: it was registered by "
            "an earlier gnomon, which kept no copy of it"
        )
    with as_file(source) as path:
        return Ensemble.load(path, device=device)


def is_pretrained(record: ModelVersion) -> bool:
    """Whether ``record`` is a shipped pretrained model (not a model trained from it)."""
    return bool(record.config.get("pretrained"))


def _card_date(card: dict[str, Any]) -> datetime:
    """When the shipped model was trained: its record's ``created_at``, so that registering it
    later does not make it newer than the models a user trained since."""
    try:
        when = datetime.fromisoformat(str(card["date"]))
    except (KeyError, ValueError):
        return datetime(2000, 1, 1, tzinfo=UTC)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def record(ensemble: Ensemble | None = None, kept: Path | None = None) -> ModelVersion:
    """The shipped model's ModelVersion, as :func:`ensure_registered` would store it, stored
    nowhere (for commands that only read).

    It points at the package data (``config["package_data"]``), or at ``kept``, the copy
    :func:`ensure_registered` keeps; its ``config["train_systems"]`` are the systems it was
    trained on and ``config["card"]`` is the whole card. ``ensemble`` is the shipped weights
    where the caller has loaded them already (a prediction need not load them twice).
    """
    card = read_card()
    ens = ensemble if ensemble is not None else load_weights(card["weights"])
    if kept is not None:
        weights_path, source = str(kept), {"shipped_as": card["weights"]}
    else:
        with as_file(package_dir() / card["weights"]) as path:
            weights_path, source = str(path), {"package_data": card["weights"]}
    split = card.get("split", {})
    return ModelVersion(
        id=card["version"],
        kind=ens.kind,
        scheme=card["scheme"],
        weights_path=weights_path,
        config={
            "hparams": ens.hparams,
            "ensemble_size": ens.size,
            "train": ens.train_config,
            "pretrained": True,
            **source,
            "weights_sha256": card.get("weights_sha256"),
            "train_systems": split.get("train_systems", []),
            "heldout_systems": split.get("heldout_systems", []),
            "card": card,
        },
        training_data_hash=card.get("data", {}).get("training_data_hash"),
        n_train=split.get("n_train"),
        normalization=ens.normalization.to_dict(),
        calibration=dict(ens.calibration, sigma_scale=ens.sigma_scale),
        metrics=card.get("metrics", {}),
        created_at=_card_date(card),
    )


def ensure_registered(repo: Repository, models_dir: str | Path) -> ModelVersion:
    """The shipped model's ModelVersion in ``repo``, registered on first use (idempotent): a
    record already there with the same weights, kept in the models folder, is returned
    unchanged; one registered by an earlier gnomon, pointing at the package data, gets its
    copy now."""
    card = read_card()
    existing = repo.get(ModelVersion, card["version"])
    if (
        existing is not None
        and existing.config.get("weights_sha256") == card.get("weights_sha256")
        and not existing.config.get("package_data")
        and Path(existing.weights_path).is_file()
    ):
        return existing
    kept = _keep_copy(card, Path(models_dir))
    shipped = record(kept=kept)
    repo.put([shipped])
    log.info("registered the shipped pretrained model %s (%s), its weights kept at %s",
             shipped.id, shipped.scheme, kept)
    return repo.get(ModelVersion, shipped.id)


def _keep_copy(card: dict[str, Any], models_dir: Path) -> Path:
    """The shipped weights copied to ``models_dir/<version>/ensemble.pt`` (written whole, then
    renamed: a crash leaves no half file), checked against the card's sha256."""
    data = (package_dir() / card["weights"]).read_bytes()
    expected = card.get("weights_sha256")
    if expected and hashlib.sha256(data).hexdigest() != expected:
        raise PretrainedMissing(
            f"gnomon/data/pretrained/{card['weights']} does not match its card's sha256; "
            "reinstall gnomon"
        )
    folder = models_dir / card["version"]
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "ensemble.pt"
    if target.is_file() and target.read_bytes() == data:
        return target.resolve()
    partial = folder / "ensemble.pt.partial"
    partial.write_bytes(data)
    os.replace(partial, target)
    return target.resolve()
