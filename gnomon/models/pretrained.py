"""The pretrained screening model that ships with gnomon, and carrying a model over to a scheme.

``gnomon/data/pretrained/`` holds one ensemble (``<version>.pt``, written by
:meth:`Ensemble.save`) and its card (``card.json``): the data set it was trained on and its
manifest hash, the split (training systems, and the held-out systems it never saw), its
metrics on those held-out systems, the energy scheme it predicts (``mlip-chgnet-0.3.0``),
hyperparameters, date and code version. ``bench/pretrain.py`` writes both.

Registered on first use, no download: :func:`ensure_registered` puts a ModelVersion for it into
a database the first time anything asks for it (``"pretrained"`` is its alias in
:meth:`ModelRegistry.get`). The record points at the package data, read through
:mod:`importlib.resources`; nothing is copied. Its ``config["train_systems"]`` lets
``gnomon model evaluate --model pretrained`` tell systems it has seen from systems it has not.

Fine-tuning and transfer (:func:`fine_tune_normalization`)
    A child keeps its parent's network and normalisation (shift, scale: the scale its outputs
    were trained on) and refits only the per-element reference energies on the entries of its
    own scheme: each element's reference moves by the parent's error on that element's
    lowest-energy elemental entry, so predicted formation energies are measured from the
    scheme's own elemental references; elements without an elemental entry are fitted by
    least squares on the compounds that hold them. For another scheme (QE, VASP) this is
    *transfer*, recorded as ``transfer_from``; an element whose reference cannot be refitted
    there makes the transfer impossible (the child trains from scratch, and the log says why).
    In the parent's own scheme such an element keeps the parent's reference, and the log says
    so. Entries of different schemes never share a hull: only the scheme's own entries are
    read.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.resources import as_file, files
from importlib.resources.abc import Traversable
from typing import TYPE_CHECKING, Any

import numpy as np

from gnomon.models.registry import ModelNotFound
from gnomon.storage import ModelVersion, Repository

if TYPE_CHECKING:
    from gnomon.models.ensemble import Ensemble, Normalization
    from gnomon.models.training import Sample

log = logging.getLogger(__name__)

ALIAS = "pretrained"
"""The name that always means the pretrained model shipped with this installation."""
SCHEME = "mlip-chgnet-0.3.0"
"""The energy scheme the shipped model predicts (the CHGNet engine's, the benchmark oracle's)."""
CARD_FILE = "card.json"


class PretrainedMissing(ModelNotFound):
    """This installation ships no pretrained weights (or its card names a file that is not there)."""


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
            "is missing; bench/pretrain.py makes it)"
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


def load_weights(file_name: str, device: str | None = "cpu") -> Ensemble:
    """The ensemble in package data file ``file_name``."""
    from gnomon.models.ensemble import Ensemble

    source = package_dir() / file_name
    if not source.is_file():
        raise PretrainedMissing(f"{file_name} is no longer shipped in gnomon/data/pretrained")
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


def ensure_registered(repo: Repository) -> ModelVersion:
    """The shipped model's ModelVersion in ``repo``, registered on first use (idempotent).

    The record points at the package data (``config["package_data"]``); its
    ``config["train_systems"]`` are the systems it was trained on and ``config["card"]`` is
    the whole card. A record already there with the same weights is returned unchanged.
    """
    card = read_card()
    existing = repo.get(ModelVersion, card["version"])
    if existing is not None and existing.config.get("weights_sha256") == card.get("weights_sha256"):
        return existing
    ens = load_weights(card["weights"])
    with as_file(package_dir() / card["weights"]) as path:
        weights_path = str(path)
    split = card.get("split", {})
    record = ModelVersion(
        id=card["version"],
        kind=ens.kind,
        scheme=card["scheme"],
        weights_path=weights_path,
        config={
            "hparams": ens.hparams,
            "ensemble_size": ens.size,
            "train": ens.train_config,
            "pretrained": True,
            "package_data": card["weights"],
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
    repo.put([record])
    log.info("registered the shipped pretrained model %s (%s)", record.id, record.scheme)
    return repo.get(ModelVersion, record.id)


# -- carrying a model over: references refitted on a scheme's own entries ---------------------
def _parent_energies(ensemble: Ensemble, samples: Sequence[Sample]) -> np.ndarray:
    """The ensemble's mean energy per atom of each sample, elements it never saw included (their
    reference is 0 until refitted), NaN where no graph can be made."""
    from gnomon.models.screening import Featurizer
    from gnomon.models.training import Trainer, predict_graphs

    featurizer = Featurizer(ensemble.kind, ensemble.cutoff)  # no seen-element check
    graphs, kept, _ = Trainer().featurize(samples, featurizer)
    out = np.full(len(samples), np.nan)
    if graphs:
        where = {s.key: i for i, s in enumerate(samples)}
        out[[where[s.key] for s in kept]] = predict_graphs(ensemble, graphs, featurizer).mean
    return out


def refit_references(
    ensemble: Ensemble, samples: Sequence[Sample], *, same_scheme: bool
) -> tuple[Normalization | None, dict[str, Any]]:
    """``ensemble``'s normalisation with its element references refitted on ``samples`` (the
    entries of one scheme), and a note of what was done (see the module).

    Returns ``(None, note)`` with ``note["reason"]`` when ``same_scheme`` is False and some
    element of the samples cannot be given a reference in their scheme.
    """
    from gnomon.models.ensemble import Normalization
    from gnomon.models.graphs import ATOMIC_NUMBER

    norm = ensemble.normalization
    energy = np.array([s.energy_per_atom for s in samples], dtype=float)
    residual = energy - _parent_energies(ensemble, samples)
    usable = [i for i in range(len(samples)) if np.isfinite(residual[i])]
    present = sorted({el for i in usable for el in samples[i].composition if el in ATOMIC_NUMBER})
    delta: dict[str, float] = {}
    for el in present:  # the lowest-energy elemental entry pins the element's reference
        elemental = [i for i in usable if set(samples[i].composition) == {el}]
        if elemental:
            delta[el] = float(residual[min(elemental, key=lambda i: energy[i])])
    pinned = sorted(delta)
    rest = [el for el in present if el not in delta]
    fitted: list[str] = []
    if rest:
        rows = [i for i in usable if set(samples[i].composition) & set(rest)]
        x = np.array([[samples[i].composition.get(el, 0.0) / sum(samples[i].composition.values())
                       for el in rest] for i in rows]).reshape(len(rows), len(rest))
        if rows and np.linalg.matrix_rank(x) == len(rest):
            known = np.array([sum(samples[i].composition.get(el, 0.0) * delta.get(el, 0.0)
                                  for el in pinned) / sum(samples[i].composition.values())
                              for i in rows])
            solution, *_ = np.linalg.lstsq(x, residual[rows] - known, rcond=None)
            delta.update({el: float(v) for el, v in zip(rest, solution, strict=True)})
            fitted = rest
    missing = [el for el in present if el not in delta]
    note: dict[str, Any] = {
        "n_entries": len(samples), "pinned_by_elements": pinned, "fitted_on_compounds": fitted,
        "shift_by_element": {el: round(delta[el], 6) for el in sorted(delta)},
    }
    if missing and not same_scheme:
        note["reason"] = (
            f"too few entries of the new scheme to refit the references of {', '.join(missing)} "
            f"({len(samples)} entries; each element needs an elemental entry or enough compounds)"
        )
        return None, note
    if missing:
        note["kept"] = missing
        log.warning("too few entries to refit the references of %s; keeping the parent's "
                    "(same scheme)", ", ".join(missing))
    refs = norm.element_refs.copy()
    seen = norm.seen.copy() if same_scheme else np.zeros_like(norm.seen)
    if not same_scheme:
        refs[:] = 0.0  # references of another scheme mean nothing here
        for el in delta:
            refs[ATOMIC_NUMBER[el]] = norm.element_refs[ATOMIC_NUMBER[el]]
    for el, d in delta.items():
        refs[ATOMIC_NUMBER[el]] += d
        seen[ATOMIC_NUMBER[el]] = True
    return Normalization(refs, seen, norm.shift, norm.scale), note


def fine_tune_normalization(
    parent: ModelVersion, ensemble: Ensemble, samples: Sequence[Sample], scheme: str
) -> tuple[Normalization | None, dict[str, Any]]:
    """The normalisation a child of ``parent`` trains under on ``samples`` of ``scheme``, and
    what its record inherits: ``references`` (the note of :func:`refit_references`),
    ``transfer_from`` (``parent`` when its scheme differs, else the parent's own, if any),
    ``train_systems`` (the parent's). ``(None, ...)`` when the transfer is impossible."""
    same = parent.scheme == scheme
    norm, note = refit_references(ensemble, samples, same_scheme=same)
    lineage: dict[str, Any] = {"references": note}
    transfer = parent.id if not same else parent.config.get("transfer_from")
    if transfer:
        lineage["transfer_from"] = transfer
    if parent.config.get("train_systems"):
        lineage["train_systems"] = list(parent.config["train_systems"])
    if norm is not None and not same:
        log.info("transfer from %s (%s) to %s: references refitted for %s", parent.id,
                 parent.scheme, scheme, ", ".join(sorted(note["shift_by_element"])))
    return norm, lineage


def start_model(
    repo: Repository, models_dir: Any, scheme: str, *, campaign: str | None = None,
    round: int | None = None,
) -> ModelVersion | None:
    """The model a campaign in ``scheme`` starts from: the shipped one when it predicts
    ``scheme``; otherwise a transfer of it (references refitted on the scheme's stored entries,
    weights unchanged) registered once per campaign. None, with the reason logged, when no
    model ships or the transfer is impossible."""
    from gnomon.models.registry import ModelRegistry
    from gnomon.models.training import Sample

    try:
        base = ensure_registered(repo)
    except PretrainedMissing as exc:
        log.warning("%s; the campaign starts without a model", exc)
        return None
    if base.scheme == scheme:
        return base
    for m in repo.query(ModelVersion, {"scheme": scheme, "campaign": campaign}):
        if m.config.get("retrain") == "transfer" and m.config.get("transfer_from") == base.id:
            return m
    registry = ModelRegistry(repo, models_dir)
    ensemble = registry.load(base)
    samples = [Sample.from_entry(e) for e in repo.entries(scheme=scheme)]
    norm, lineage = fine_tune_normalization(base, ensemble, samples, scheme)
    if norm is None:
        log.warning("cannot carry %s over to %s: %s; the campaign starts without a model",
                    base.id, scheme, lineage["references"]["reason"])
        return None
    ensemble.set_normalization(norm)
    return registry.register(
        ensemble, scheme, n_train=0, parent=base.id, campaign=campaign, round=round,
        extra_config={"retrain": "transfer", **lineage},
    )
