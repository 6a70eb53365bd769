"""Hull diagrams as PNG files, through pymatgen's PDPlotter (matplotlib backend)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from pymatgen.analysis.phase_diagram import PDPlotter, PhaseDiagram  # noqa: E402


def plot_hull(pd: PhaseDiagram, path: Path | str) -> Path:
    # heavy: matplotlib
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    plotter = PDPlotter(pd, backend="matplotlib", show_unstable=0.2)
    ax = plotter.get_plot()
    fig = ax.figure if hasattr(ax, "figure") else plt.gcf()
    for axes in fig.axes:
        # a ternary diagram fixes both limits and an equal aspect with adjustable data limits,
        # which matplotlib cannot honour at once (it logs "Ignoring fixed y limits"); keep the
        # limits and the equilateral triangle by adjusting the axes box instead
        if axes.get_aspect() != "auto":
            axes.set_adjustable("box")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
