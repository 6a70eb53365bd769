"""Learning curves as PNG files: MAE against training systems on log-log axes, with the fitted
power law, and F1 beside it (a model can fit energies better and still classify worse)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")

from gnomon.models.evaluation import LearningCurve  # noqa: E402


def plot_learning_curve(curve: LearningCurve, path: Path | str, title: str = "") -> Path:
    """Write the curve of every input (relaxed, unrelaxed, ...) to ``path``; returns it."""
    import matplotlib.pyplot as plt  # heavy: matplotlib

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (ax_mae, ax_f1) = plt.subplots(1, 2, figsize=(9, 3.8))
    for label, slope in curve.slopes.items():
        rows = [r for r in curve.rows if r["input"] == label]
        x = np.array([r["n_systems"] for r in rows], float)
        mae = np.array([r["mae"] for r in rows], float) * 1000
        (line,) = ax_mae.plot(x, mae, "o", label=f"{label} (slope {slope:.2f})")
        if np.isfinite(slope):
            fit = np.exp(curve.intercepts[label]) * x**slope * 1000
            ax_mae.plot(x, fit, "--", color=line.get_color(), lw=1)
        ax_f1.plot(x, [r.get("f1", np.nan) for r in rows], "o-", color=line.get_color(),
                   label=label)
    ax_mae.set(xscale="log", yscale="log", xlabel="training systems",
               ylabel="MAE (meV/atom)", title="energy per atom")
    ax_f1.set(xscale="log", xlabel="training systems", ylabel="F1 (stable at 0 eV/atom)",
              ylim=(0, 1), title="stability")
    ax_mae.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
