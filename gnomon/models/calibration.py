"""How honest an ensemble's spread is, measured on held-out data.

For Gaussian errors, |error| <= kσ should hold for erf(k/√2) of the cases (68.3% for k = 1,
95.4% for k = 2). :func:`calibration_report` measures the observed coverages and the
miscalibration area (the mean gap between observed and expected coverage over all interval
levels; 0 is perfect). :func:`fit_sigma_scale` finds the factor s that makes s·σ cover 68.3%
of held-out errors; it is stored with the model and applied to every later prediction.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import erf, erfinv

ONE_SIGMA = float(erf(1 / math.sqrt(2)))  # 0.6827
TWO_SIGMA = float(erf(2 / math.sqrt(2)))  # 0.9545


def coverage(errors: np.ndarray, sigma: np.ndarray, k: float = 1.0) -> float:
    """Fraction of |errors| within k·sigma."""
    errors, sigma = np.abs(np.asarray(errors, float)), np.asarray(sigma, float)
    if errors.size == 0:
        return float("nan")
    return float(np.mean(errors <= k * sigma))


def miscalibration_area(errors: np.ndarray, sigma: np.ndarray, levels: int = 99) -> float:
    """Mean |observed - expected| coverage of central Gaussian intervals over levels in (0, 1)."""
    errors, sigma = np.abs(np.asarray(errors, float)), np.asarray(sigma, float)
    if errors.size == 0:
        return float("nan")
    expected = np.linspace(0.01, 0.99, levels)
    k = math.sqrt(2) * erfinv(expected)
    z = errors / np.maximum(sigma, 1e-12)
    observed = np.mean(z[None, :] <= k[:, None], axis=1)
    return float(np.mean(np.abs(observed - expected)))


def fit_sigma_scale(errors: np.ndarray, sigma: np.ndarray, target: float = ONE_SIGMA) -> float:
    """The factor s with coverage(errors, s·sigma, 1) = target (a quantile of |error|/σ)."""
    errors, sigma = np.abs(np.asarray(errors, float)), np.asarray(sigma, float)
    if errors.size == 0 or not np.any(sigma > 0):
        return 1.0
    z = errors / np.maximum(sigma, 1e-12)
    scale = float(np.quantile(z, target))
    return scale if np.isfinite(scale) and scale > 0 else 1.0


def calibration_report(errors: np.ndarray, sigma: np.ndarray) -> dict[str, float]:
    """Coverages at ±1σ and ±2σ (with the Gaussian targets), miscalibration area, MAE."""
    errors = np.asarray(errors, float)
    return {
        "n": int(errors.size),
        "mae": float(np.mean(np.abs(errors))) if errors.size else float("nan"),
        "rmse": float(np.sqrt(np.mean(errors**2))) if errors.size else float("nan"),
        "mean_sigma": float(np.mean(sigma)) if errors.size else float("nan"),
        "coverage_1sigma": coverage(errors, sigma, 1.0),
        "coverage_2sigma": coverage(errors, sigma, 2.0),
        "expected_1sigma": ONE_SIGMA,
        "expected_2sigma": TWO_SIGMA,
        "miscalibration_area": miscalibration_area(errors, sigma),
    }
