"""Carrying a model over to a scheme: element references refitted on the scheme's own entries.

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

A campaign's first model (:func:`start_model`) is the shipped one
(:mod:`gnomon.models.pretrained`), carried over this way when the campaign's scheme is not
the one it predicts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gnomon.models.ensemble import Ensemble, Normalization
from gnomon.models.graphs import ATOMIC_NUMBER
from gnomon.models.pretrained import PretrainedMissing, ensure_registered
from gnomon.models.registry import ModelRegistry
from gnomon.models.screening import Featurizer
from gnomon.models.training import Sample, Trainer, predict_graphs
from gnomon.storage import ModelVersion, Repository

log = logging.getLogger(__name__)


def _parent_energies(ensemble: Ensemble, samples: Sequence[Sample]) -> np.ndarray:
    """The ensemble's mean energy per atom of each sample, elements it never saw included (their
    reference is 0 until refitted), NaN where no graph can be made."""
    featurizer = Featurizer(ensemble.kind, ensemble.cutoff)  # no seen-element check
    graphs, kept, _ = Trainer().featurize(samples, featurizer)
    out = np.full(len(samples), np.nan)
    if graphs:
        where = {s.key: i for i, s in enumerate(samples)}
        out[[where[s.key] for s in kept]] = predict_graphs(ensemble, graphs, featurizer).mean
    return out


def _fraction(sample: Sample, el: str) -> float:
    return sample.composition.get(el, 0.0) / sum(sample.composition.values())


def _pinned_by_elements(samples: Sequence[Sample], usable: list[int], present: list[str],
                        energy: np.ndarray, residual: np.ndarray) -> dict[str, float]:
    """Each element's shift from its lowest-energy elemental entry, where it has one."""
    delta: dict[str, float] = {}
    for el in present:
        elemental = [i for i in usable if set(samples[i].composition) == {el}]
        if elemental:
            delta[el] = float(residual[min(elemental, key=lambda i: energy[i])])
    return delta


def _fitted_on_compounds(samples: Sequence[Sample], usable: list[int], rest: list[str],
                         pinned: dict[str, float], residual: np.ndarray) -> dict[str, float]:
    """The shifts of the elements in ``rest`` by least squares on the compounds holding them
    (the pinned elements' shifts taken off first); empty when they are not determined."""
    rows = [i for i in usable if set(samples[i].composition) & set(rest)]
    x = np.array([[_fraction(samples[i], el) for el in rest]
                  for i in rows]).reshape(len(rows), len(rest))
    if not rows or np.linalg.matrix_rank(x) != len(rest):
        return {}
    known = np.array([sum(samples[i].composition.get(el, 0.0) * d for el, d in pinned.items())
                      / sum(samples[i].composition.values()) for i in rows])
    solution, *_ = np.linalg.lstsq(x, residual[rows] - known, rcond=None)
    return {el: float(v) for el, v in zip(rest, solution, strict=True)}


def _shifted(norm: Normalization, delta: dict[str, float], same_scheme: bool) -> Normalization:
    """``norm`` with the references of ``delta``'s elements moved by their shifts; in another
    scheme the other references are dropped (they mean nothing there)."""
    refs = norm.element_refs.copy()
    seen = norm.seen.copy() if same_scheme else np.zeros_like(norm.seen)
    if not same_scheme:
        refs[:] = 0.0
        for el in delta:
            refs[ATOMIC_NUMBER[el]] = norm.element_refs[ATOMIC_NUMBER[el]]
    for el, d in delta.items():
        refs[ATOMIC_NUMBER[el]] += d
        seen[ATOMIC_NUMBER[el]] = True
    return Normalization(refs, seen, norm.shift, norm.scale)


def refit_references(
    ensemble: Ensemble, samples: Sequence[Sample], *, same_scheme: bool
) -> tuple[Normalization | None, dict[str, Any]]:
    """``ensemble``'s normalisation with its element references refitted on ``samples`` (the
    entries of one scheme), and a note of what was done (see the module).

    Returns ``(None, note)`` with ``note["reason"]`` when ``same_scheme`` is False and some
    element of the samples cannot be given a reference in their scheme.
    """
    energy = np.array([s.energy_per_atom for s in samples], dtype=float)
    residual = energy - _parent_energies(ensemble, samples)
    usable = [i for i in range(len(samples)) if np.isfinite(residual[i])]
    present = sorted({el for i in usable for el in samples[i].composition if el in ATOMIC_NUMBER})
    delta = _pinned_by_elements(samples, usable, present, energy, residual)
    pinned = sorted(delta)
    rest = [el for el in present if el not in delta]
    fitted = _fitted_on_compounds(samples, usable, rest, dict(delta), residual) if rest else {}
    delta.update(fitted)
    missing = [el for el in present if el not in delta]
    note: dict[str, Any] = {
        "n_entries": len(samples), "pinned_by_elements": pinned,
        "fitted_on_compounds": rest if fitted else [],
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
    return _shifted(ensemble.normalization, delta, same_scheme), note
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
    repo: Repository, models_dir: str | Path, scheme: str, *, campaign: str | None = None,
    round: int | None = None,
) -> ModelVersion | None:
    """The model a campaign in ``scheme`` starts from: the shipped one when it predicts
    ``scheme``; otherwise a transfer of it (references refitted on the scheme's stored entries,
    weights unchanged) registered once per campaign. None, with the reason logged, when no
    model ships or the transfer is impossible."""
    try:
        base = ensure_registered(repo, models_dir)
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
