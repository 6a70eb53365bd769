"""The hull figure a scientist would publish (`gnomon hull --plot`, the explorer's static hull):
every phase in its window drawn, the unstable ones marked by their energy above the hull, a
title with the system and the scheme, axes in the field's words, and no label over another,
as matplotlib's renderer measures the text."""

from __future__ import annotations

import itertools
import json
import re

import numpy as np
import pytest
from matplotlib.text import Text
from pymatgen.analysis.phase_diagram import PhaseDiagram
from pymatgen.core import Composition
from pymatgen.entries.computed_entries import ComputedEntry
from typer.testing import CliRunner

from gnomon.cli import app
from gnomon.pipeline.thermo.entries import make_entry
from gnomon.pipeline.thermo.hull import HullEngine
from gnomon.pipeline.thermo.plots import hull_figure
from gnomon.serve.explorer.figures import hull_svg
from gnomon.storage import open_repository

SCHEME = "mlip-chgnet-0.3.0"
REFERENCE = {"Li": -1.9, "Mn": -9.0, "O": -4.9, "Fe": -8.3}  # eV/atom of the elements

# formation energies, eV/atom; LiO2 is 0.23 eV/atom above the Li2O2-O2 tie line (-1.10 at x=2/3)
LI_O = [("Li", 0.0), ("O2", 0.0), ("Li2O", -2.07), ("Li2O2", -1.65), ("LiO2", -0.87),
        ("Li2O2", -1.60)]
LI_MN_O = [
    ("Li", 0.0), ("Mn", 0.0), ("O2", 0.0), ("Li2O", -2.07), ("Li2O2", -1.65), ("MnO", -2.0),
    ("Mn3O4", -2.05), ("Mn2O3", -1.98), ("MnO2", -1.75), ("LiMnO2", -2.2), ("LiMn2O4", -2.1),
    ("Li2MnO3", -2.15), ("LiMnO2", -2.15), ("Mn3O4", -1.99), ("Li4Mn5O12", -2.0),
]
LI_MN_FE_O = LI_MN_O + [("Fe", 0.0), ("Fe2O3", -1.7), ("Fe3O4", -1.68), ("LiFeO2", -1.95),
                        ("LiFe5O8", -1.8), ("FeMn2O4", -1.9), ("LiFeMnO4", -1.9)]


SUBSCRIPTS = str.maketrans("₀₁₂₃₄₅₆₇₈₉", "0123456789")


def entries(spec: list[tuple[str, float]]) -> list[ComputedEntry]:
    out = []
    for i, (formula, e_form) in enumerate(spec):
        comp = Composition(formula)
        energy = sum(REFERENCE[str(el)] * n for el, n in comp.items()) + e_form * comp.num_atoms
        out.append(ComputedEntry(comp, energy, entry_id=f"{formula}-{i}"))
    return out


def phase_labels(fig) -> dict[str, Text]:
    """The figure's phase labels by entry id (gid ``phase-<id>``)."""
    return {
        t.get_gid().removeprefix("phase-"): t
        for ax in fig.axes
        for t in ax.texts
        if (t.get_gid() or "").startswith("phase-")
    }


def text_boxes(fig) -> dict[str, np.ndarray]:
    """Each phase label's text box on the page, as the renderer draws it (leader lines left out)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    return {
        key: np.asarray(Text.get_window_extent(t, renderer).extents)
        for key, t in phase_labels(fig).items()
    }


def overlapping(boxes: dict[str, np.ndarray]) -> list[tuple[str, str]]:
    return [
        (a, b)
        for (a, p), (b, q) in itertools.combinations(boxes.items(), 2)
        if p[0] < q[2] and q[0] < p[2] and p[1] < q[3] and q[1] < p[3]
    ]


def unlabelled_text(fig) -> str:
    return " ".join(
        t.get_text() for ax in fig.axes for t in ax.texts if t.get_gid() == "unlabelled-phases"
    )


def plotted_points(fig) -> int:
    return sum(
        len(c.get_offsets())
        for ax in fig.axes
        for c in ax.collections
        if c.get_gid() in ("phases-on-hull", "phases-above-hull")
    )


def test_binary_hull_draws_every_phase_with_its_energy_above_the_hull():
    pd = PhaseDiagram(entries(LI_O))
    fig = hull_figure(pd, SCHEME)
    labels = phase_labels(fig)
    assert set(labels) == {str(e.entry_id) for e in pd.all_entries}  # LiO2 and the polymorph too
    assert plotted_points(fig) == len(pd.all_entries)
    lio2 = next(e for e in pd.all_entries if e.composition.reduced_formula == "LiO2")
    assert pd.get_e_above_hull(lio2) == pytest.approx(0.23, abs=1e-9)
    assert labels[lio2.entry_id].get_text() == "LiO₂ +0.230"
    polymorph = next(e for e in pd.all_entries if e.entry_id == "Li2O2-5")
    assert labels[polymorph.entry_id].get_text() == "Li₂O₂ +0.050"

    title = fig.get_suptitle()
    assert "Li-O" in title and SCHEME in title
    ax = fig.axes[0]
    assert "fraction of O" in ax.get_xlabel() and ax.get_xlabel() != "Fraction"
    assert ax.get_ylabel() == "Formation energy (eV/atom)"
    assert ax.yaxis.label.get_fontsize() <= 12 and ax.xaxis.label.get_fontsize() <= 12
    assert all(t.get_fontsize() <= 12 for t in labels.values())
    assert not overlapping(text_boxes(fig))
    # labels sit inside the axes, not on them
    frame = ax.get_window_extent(fig.canvas.get_renderer())
    for box in text_boxes(fig).values():
        assert frame.x0 <= box[0] and box[2] <= frame.x1 and frame.y0 <= box[1]
        assert box[3] <= frame.y1


@pytest.mark.parametrize("spec", [LI_MN_O, LI_MN_FE_O], ids=["Li-Mn-O", "Fe-Li-Mn-O"])
def test_ternary_and_quaternary_labels_never_overlap(spec):
    pd = PhaseDiagram(entries(spec))
    stable = {e.composition.reduced_formula for e in pd.stable_entries}
    assert {"LiMnO2", "LiMn2O4", "Mn3O4"} <= stable  # the crowded corner of the issue
    fig = hull_figure(pd, SCHEME)
    boxes = text_boxes(fig)
    assert not overlapping(boxes)
    # every phase is named: by its label, or (no room left) in the list under the figure
    listed = unlabelled_text(fig).translate(SUBSCRIPTS)
    for e in pd.all_entries:
        assert e.entry_id in boxes or e.composition.reduced_formula in listed
    for formula in ("LiMnO2", "LiMn2O4", "Mn3O4"):
        (stable_entry,) = [e for e in pd.stable_entries
                           if e.composition.reduced_formula == formula]
        assert stable_entry.entry_id in boxes, formula
    assert plotted_points(fig) == len(pd.all_entries)


def test_window_leaves_out_phases_further_above_the_hull():
    pd = PhaseDiagram(entries(LI_O))
    fig = hull_figure(pd, SCHEME, window=0.1)
    shown = {e.composition.reduced_formula for e in pd.all_entries
             if e.entry_id in phase_labels(fig)}
    assert "LiO2" not in shown and {"Li2O", "Li2O2"} <= shown
    assert plotted_points(fig) == len(pd.all_entries) - 1


@pytest.fixture
def lio_db(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'hull.db'}"
    repo = open_repository(url)
    HullEngine(repo).ingest(
        [make_entry(e.composition, e.energy, SCHEME) for e in entries(LI_O)]
    )
    repo.close()
    return url


def test_cli_plot_and_explorer_svg_name_every_phase(lio_db, tmp_path):
    svg = tmp_path / "figures" / "hull.svg"
    result = CliRunner().invoke(app, ["hull", "Li-O", "--plot", str(svg), "--db", lio_db])
    assert result.exit_code == 0, result.output
    text = svg.read_text()
    for words in ("Li-O convex hull", SCHEME, "LiO₂ +0.230", "Li₂O₂ +0.050", "Li₂O",
                  "Formation energy (eV/atom)"):
        assert words in text, words
    repo = open_repository(lio_db)
    pd = HullEngine(repo).phase_diagram(SCHEME, "Li-O")
    repo.close()
    served = hull_svg(pd, SCHEME)
    assert "LiO₂ +0.230" in served and f"Li-O convex hull, scheme {SCHEME}" in served
    assert len(re.findall(r'id="phase-', served)) == len(pd.all_entries)

    report = CliRunner().invoke(app, ["hull", "Li-O", "--plot", str(svg), "--format", "json",
                                      "--db", lio_db])
    assert json.loads(report.stdout)["plot"] == str(svg.resolve())
