"""Distilling a teacher into the screen: labels in the campaign's scheme, on what it screens."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Structure

from gnomon.campaign.distill import TeacherLabel, distill, teacher_samples
from gnomon.models.screening import Screener
from gnomon.pipeline.thermo.calibration import Calibration
from tests.models.conftest import REFS, tiny_config, toy_energy, toy_structures


def _labels(n: int, offset: float = 0.7) -> list[TeacherLabel]:
    """A teacher that relaxed each candidate (10 % smaller) and sits ``offset`` above."""
    out = []
    for i, relaxed in enumerate(toy_structures(n, seed=11)):
        candidate = relaxed.copy()
        candidate.scale_lattice(relaxed.volume * 1.1)
        out.append(TeacherLabel(f"c{i}", candidate, toy_energy(relaxed) + offset, relaxed))
    return out


def test_teacher_labels_reach_the_screen_in_the_campaigns_scheme():
    labels = _labels(6)
    cal = Calibration("teacher", "campaign", mu={el: -0.7 for el in REFS}, slope=1.0)
    samples = teacher_samples(labels, cal)
    assert len(samples) == 12  # the candidate and the teacher's relaxed geometry, each
    for label in labels:
        mine = [s for s in samples if s.key.startswith(f"{label.key}:")]
        assert {s.kind for s in mine} == {"teacher", "teacher-relaxed"}
        for s in mine:  # the calibrated energy: the teacher's offset removed
            assert s.energy_per_atom == pytest.approx(label.energy_per_atom - 0.7)
        unrelaxed = next(s for s in mine if s.kind == "teacher")
        assert Structure.from_dict(unrelaxed.structure).volume == pytest.approx(
            label.candidate.volume)
    # an element the calibration does not know: left out, never taught uncalibrated
    partial = Calibration("teacher", "campaign",
                          mu={el: -0.7 for el in list(REFS)[:-1]}, slope=1.0)
    kept = teacher_samples(labels, partial)
    last = list(REFS)[-1]
    assert all(last not in s.composition for s in kept)


def test_distilling_moves_the_screen_towards_the_teacher(tiny_ensemble):
    labels = _labels(40, offset=0.0)
    cal = Calibration("teacher", "campaign", mu={el: 0.5 for el in REFS}, slope=1.0)
    samples = teacher_samples(labels, cal)
    candidates = [lb.candidate for lb in labels]
    target = np.array([s.energy_per_atom for s in samples if s.kind == "teacher"])
    before = np.array([p.energy_per_atom for p in Screener(tiny_ensemble).predict(candidates)])
    student = distill(tiny_ensemble, samples, tiny_config(max_epochs=15, patience=15))
    after = np.array([p.energy_per_atom for p in Screener(student).predict(candidates)])
    assert np.abs(after - target).mean() < np.abs(before - target).mean()
    with pytest.raises(ValueError, match="nothing to distil"):
        distill(tiny_ensemble, [], tiny_config())
