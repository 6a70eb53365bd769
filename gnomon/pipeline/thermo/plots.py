"""Hull diagrams as PNG or SVG files, through pymatgen's PDPlotter (matplotlib backend).

PDPlotter draws with pyplot, so the figure is made on whatever backend the program chose;
this module chooses none (importing it must not change a notebook's backend). Headless,
matplotlib picks Agg itself; ``gnomon serve`` sets it before it draws off the main thread.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
from pymatgen.analysis.phase_diagram import PDPlotter, PhaseDiagram


def plot_hull(pd: PhaseDiagram, path: Path | str) -> Path:
    """The hull of ``pd`` written to ``path`` (format from its suffix)."""

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
