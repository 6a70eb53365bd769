"""Distilling a teacher into the screen, before the first oracle call.

A universal potential that is not the oracle (SevenNet-0 beside a CHGNet oracle, or beside
DFT) already knows chemistry a campaign's screen has never seen. It relaxes candidates of the
campaign's own chemical space; its relaxed energies, mapped into the campaign's scheme by a
calibration fitted on entries both schemes know (:mod:`gnomon.pipeline.thermo.calibration`),
label the candidates' *unrelaxed* inputs, which is what the screen judges; the screen is
fine-tuned on those labels. The teacher may label held-out systems' candidates (that is the
point: it costs no oracle call), never with an oracle label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pymatgen.core import Structure

from gnomon.models.ensemble import Ensemble
from gnomon.models.spec import TrainConfig
from gnomon.models.training import Sample, Trainer
from gnomon.pipeline.thermo.calibration import Calibration


@dataclass(frozen=True)
class TeacherLabel:
    """The teacher's verdict on one candidate: its relaxed energy in the teacher's scheme."""

    key: str
    candidate: Structure  # the unrelaxed input, as generated
    energy_per_atom: float  # the teacher's, after relaxing ``candidate``
    relaxed: Structure | None = None  # where the teacher's relaxation ended
    cpu_s: float = 0.0  # what the teacher's relaxation cost


def teacher_samples(labels: Sequence[TeacherLabel], calibration: Calibration) -> list[Sample]:
    """Each label's candidate (and the teacher's relaxed geometry, when kept) with the
    teacher's energy in the campaign's scheme; compositions the calibration does not cover
    are left out, since an uncalibrated energy would teach the screen the teacher's offset."""
    samples: list[Sample] = []
    for label in labels:
        comp = label.candidate.composition
        if not calibration.covers(comp):
            continue
        energy = calibration.energy_per_atom(comp, label.energy_per_atom)
        sample = Sample.from_structure(label.key, label.candidate, energy)
        samples.append(sample.paired(sample.structure, "teacher"))
        if label.relaxed is not None:
            samples.append(sample.paired(label.relaxed.as_dict(), "teacher-relaxed"))
    return samples


def distill(model: Ensemble, samples: Sequence[Sample], config: TrainConfig) -> Ensemble:
    """``model`` fine-tuned on the teacher's samples under its own normalisation (element
    references, shift and scale stay the parent's: the labels are already in its scheme)."""
    if not samples:
        raise ValueError("no teacher label covered by the calibration: nothing to distil")
    result = Trainer(config=config).fit(list(samples), parent=model,
                                        normalization=model.normalization)
    return result.ensemble
