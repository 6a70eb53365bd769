"""Coverage, miscalibration area and the fitted σ scale."""

from __future__ import annotations

import numpy as np
import pytest

from gnomon.models.calibration import (
    ONE_SIGMA,
    calibration_report,
    coverage,
    fit_sigma_scale,
    miscalibration_area,
)


def gaussian(n=20000, seed=0):
    rng = np.random.default_rng(seed)
    sigma = rng.uniform(0.01, 0.1, n)
    return rng.normal(0, sigma), sigma


def test_gaussian_errors_are_calibrated():
    err, sigma = gaussian()
    assert coverage(err, sigma, 1) == pytest.approx(0.683, abs=0.01)
    assert coverage(err, sigma, 2) == pytest.approx(0.954, abs=0.01)
    assert miscalibration_area(err, sigma) < 0.01


def test_overconfident_spread_is_rescaled():
    err, sigma = gaussian()
    small = sigma / 4
    assert coverage(err, small) < 0.3
    assert miscalibration_area(err, small) > 0.2
    scale = fit_sigma_scale(err, small)
    assert scale == pytest.approx(4.0, rel=0.05)
    assert coverage(err, scale * small) == pytest.approx(ONE_SIGMA, abs=0.01)


def test_degenerate_inputs():
    assert fit_sigma_scale(np.array([]), np.array([])) == 1.0
    assert fit_sigma_scale(np.array([0.1, 0.2]), np.zeros(2)) == 1.0
    report = calibration_report(np.array([0.1, -0.1]), np.array([0.2, 0.05]))
    assert report["n"] == 2 and report["mae"] == pytest.approx(0.1)
    assert report["coverage_1sigma"] == 0.5 and report["coverage_2sigma"] == 1.0
