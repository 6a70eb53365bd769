"""A phase's powder X-ray diffraction pattern: pymatgen's XRDCalculator, plotted and tabled.

The pattern an experimentalist compares with a measurement first: peak positions (2θ) and
relative intensities for a wavelength, Cu Kα by default, or any of the X-ray lines pymatgen
knows (Mo Kα, Co Kα, ...) or a wavelength in Å. Numbers are pymatgen's, unchanged: the
explorer only draws and tabulates them, and writes them as CSV.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import Any

from pymatgen.analysis.diffraction.xrd import WAVELENGTHS, XRDCalculator
from pymatgen.core import Structure

from gnomon.serve.explorer.templates import fmt

DEFAULT = "CuKa"
TWO_THETA_RANGE = (5.0, 90.0)
MIN_WAVELENGTH, MAX_WAVELENGTH = 0.1, 3.0  # Å accepted as a number
STRONGEST = 10  # peaks the page tables
TRACE_TYPES = frozenset({"scatter"})  # the plotly.js trace types of the pattern's figure


@dataclass(frozen=True)
class Radiation:
    label: str  # "CuKa" or "1.5406 Å"
    wavelength: float  # Å

    @property
    def value(self) -> str:
        """What the ``wavelength`` query parameter says for it."""
        return self.label if self.label in WAVELENGTHS else repr(self.wavelength)


def radiation(text: str | None) -> Radiation:
    """A ``wavelength`` parameter: a line pymatgen names (``CuKa``, ``MoKa1``) or a number of
    Å; ValueError names what was wrong."""
    text = (text or DEFAULT).strip()
    if text in WAVELENGTHS:
        return Radiation(text, WAVELENGTHS[text])
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"wavelength {text!r} is neither an X-ray line "
                         f"({', '.join(WAVELENGTHS)}) nor a number of Å") from None
    if not (math.isfinite(value) and MIN_WAVELENGTH <= value <= MAX_WAVELENGTH):
        raise ValueError(f"wavelength {text!r}: give {MIN_WAVELENGTH} to {MAX_WAVELENGTH} Å")
    return Radiation(f"{value:g} Å", value)


@dataclass(frozen=True)
class Peak:
    two_theta: float  # degrees
    intensity: float  # relative, strongest 100
    d: float  # Å
    hkl: str  # "(1 1 1), (1 -1 1)" as pymatgen lists the families
    multiplicity: int


def _hkl(families: list[dict[str, Any]]) -> str:
    return ", ".join("(" + " ".join(str(int(i)) for i in f["hkl"]) + ")" for f in families)


def pattern(structure: Structure, rad: Radiation) -> list[Peak]:
    """The peaks of ``structure`` between 5 and 90° 2θ, in order of 2θ."""
    calc = XRDCalculator(wavelength=rad.wavelength)
    pat = calc.get_pattern(structure, scaled=True, two_theta_range=TWO_THETA_RANGE)
    return [Peak(float(x), float(y), float(d), _hkl(h), sum(f["multiplicity"] for f in h))
            for x, y, d, h in zip(pat.x, pat.y, pat.d_hkls, pat.hkls, strict=True)]


def strongest(peaks: list[Peak], n: int = STRONGEST) -> list[Peak]:
    return sorted(peaks, key=lambda p: (-p.intensity, p.two_theta))[:n]


def csv_text(peaks: list[Peak], rad: Radiation, title: str) -> str:
    out = io.StringIO()
    out.write(f"# {title}; {rad.label} ({rad.wavelength:.5f} Å); pymatgen XRDCalculator\n")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["two_theta_deg", "intensity", "d_angstrom", "hkl", "multiplicity"])
    for p in peaks:
        writer.writerow([f"{p.two_theta:.4f}", f"{p.intensity:.3f}", f"{p.d:.5f}", p.hkl,
                         p.multiplicity])
    return out.getvalue()


def xrd_figure(peaks: list[Peak], rad: Radiation) -> dict[str, Any]:
    """A stick pattern: a line from 0 to each peak's intensity, its top hoverable."""
    xs: list[float | None] = []
    ys: list[float | None] = []
    for p in peaks:
        xs += [p.two_theta, p.two_theta, None]
        ys += [0.0, p.intensity, None]
    return {
        "data": [
            {"type": "scatter", "mode": "lines", "x": xs, "y": ys, "hoverinfo": "skip",
             "line": {"color": "#1f5fa8", "width": 2}, "showlegend": False},
            {"type": "scatter", "mode": "markers", "x": [p.two_theta for p in peaks],
             "y": [p.intensity for p in peaks], "showlegend": False,
             "marker": {"size": 6, "color": "#1f5fa8"},
             "customdata": [[p.hkl, fmt(p.d, 4)] for p in peaks],
             "hovertemplate": "2θ %{x:.3f}°<br>I %{y:.1f}<br>d %{customdata[1]} Å<br>"
                              "hkl %{customdata[0]}<extra></extra>"},
        ],
        "layout": {
            "xaxis": {"title": {"text": f"2θ (°), {rad.label}"}, "range": list(TWO_THETA_RANGE)},
            "yaxis": {"title": {"text": "intensity (strongest 100)"}, "range": [0, 105]},
            "margin": {"l": 60, "r": 20, "t": 10, "b": 50}, "height": 320, "autosize": True,
        },
    }
