"""A crystal structure in 3D for plotly.js: atoms, bonds, the unit cell and a legend.

Atoms are coloured by element in Jmol's scheme (pymatgen's ``ElementColorSchemes.yaml``) and
sized by atomic radius; atoms on a face, edge or corner of the cell are drawn on every one of
its images that lies in the cell, as a crystallographer draws a cell. Bonds join atoms nearer
than 1.2 times the sum of their covalent radii (pymatgen's table), each bond drawn as two
halves in its atoms' colours. ``cell`` picks the stored cell or spglib's conventional or
primitive standard cell. The browser rotates and zooms (plotly's scatter3d, WebGL).
"""

from __future__ import annotations

import itertools
from functools import cache
from importlib.resources import files
from typing import Any, Literal

import numpy as np
import yaml
from pymatgen.analysis.molecule_structure_comparator import CovalentRadius
from pymatgen.core import Element, Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from gnomon.serve.explorer.templates import fmt

Cell = Literal["stored", "conventional", "primitive"]
CELLS: tuple[Cell, ...] = ("conventional", "primitive", "stored")
BOND_TOLERANCE = 1.2  # a bond: nearer than this times the sum of covalent radii
MAX_ATOMS = 400  # atoms drawn (the cell with its boundary images); larger cells: stored only
_EDGE = 1e-3  # a fractional coordinate this near 0 or 1 sits on the cell's boundary
TRACE_TYPES = frozenset({"scatter3d"})  # the plotly.js trace types of the figure


@cache
def jmol_colours() -> dict[str, str]:
    schemes = yaml.safe_load((files("pymatgen.vis") / "ElementColorSchemes.yaml").read_text())
    return {el: "#{:02x}{:02x}{:02x}".format(*rgb) for el, rgb in schemes["Jmol"].items()}


def colour(symbol: str) -> str:
    return jmol_colours().get(symbol, "#ff1493")


def radius(symbol: str) -> float:
    """Å: the element's atomic radius (covalent where pymatgen has none)."""
    r = Element(symbol).atomic_radius
    return float(r) if r is not None else CovalentRadius.radius.get(symbol, 1.0)


def cell_of(structure: Structure, cell: Cell) -> Structure:
    """The structure in the asked-for cell; the stored cell where spglib finds no symmetry."""
    if cell == "stored":
        return structure
    try:
        sga = SpacegroupAnalyzer(structure, symprec=0.1)
        if cell == "conventional":
            return sga.get_conventional_standard_structure()
        return sga.get_primitive_standard_structure()
    except (ValueError, TypeError, RuntimeError):
        return structure


def _symbol(site) -> str:
    return site.specie.symbol if site.is_ordered else site.species.elements[0].symbol


def atoms_in_cell(structure: Structure) -> list[tuple[str, np.ndarray, int]]:
    """(element, fractional coordinates in [0, 1], site index) of every atom drawn: each site
    wrapped into the cell, plus its images on the faces, edges and corners it touches."""
    out = []
    for index, site in enumerate(structure):
        frac = np.mod(site.frac_coords, 1.0)
        frac[np.isclose(frac, 1.0, atol=_EDGE)] = 0.0
        shifts = [(0.0, 1.0) if abs(f) < _EDGE else (0.0,) for f in frac]
        for shift in itertools.product(*shifts):
            out.append((_symbol(site), frac + np.asarray(shift), index))
    return out


def bonds(structure: Structure) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(site index, its Cartesian position in the cell, the bonded neighbour's position) of
    every bond from a site in the cell, the neighbour's periodic image included."""
    cut = {el: CovalentRadius.radius.get(el, 1.5) for el in
           {_symbol(s) for s in structure}}
    reach = BOND_TOLERANCE * 2 * max(cut.values())
    out = []
    for i, site in enumerate(structure):
        home = structure.lattice.get_cartesian_coords(np.mod(site.frac_coords, 1.0))
        shift = home - site.coords
        for nb in structure.get_neighbors(site, reach):
            limit = BOND_TOLERANCE * (cut[_symbol(site)] + cut[_symbol(nb)])
            if nb.nn_distance <= limit:
                out.append((i, home, nb.coords + shift))
    return out


def _cell_edges(structure: Structure) -> dict[str, list[float | None]]:
    m = structure.lattice.matrix
    corners = {c: np.dot(c, m) for c in itertools.product((0, 1), repeat=3)}
    xs: dict[str, list[float | None]] = {"x": [], "y": [], "z": []}
    for a, b in itertools.combinations(corners, 2):
        if sum(abs(p - q) for p, q in zip(a, b, strict=True)) == 1:
            for axis, k in zip("xyz", range(3), strict=True):
                xs[axis] += [float(corners[a][k]), float(corners[b][k]), None]
    return xs


def _atom_traces(structure: Structure) -> list[dict[str, Any]]:
    by_element: dict[str, list[tuple[np.ndarray, np.ndarray, int]]] = {}
    for symbol, frac, index in atoms_in_cell(structure)[:MAX_ATOMS]:
        cart = structure.lattice.get_cartesian_coords(frac)
        by_element.setdefault(symbol, []).append((frac, cart, index))
    traces = []
    for symbol in sorted(by_element, key=lambda s: Element(s).Z):
        atoms = by_element[symbol]
        traces.append({
            "type": "scatter3d", "mode": "markers", "name": symbol, "legendgroup": symbol,
            "x": [float(c[0]) for _, c, _ in atoms], "y": [float(c[1]) for _, c, _ in atoms],
            "z": [float(c[2]) for _, c, _ in atoms],
            "text": [f"{symbol} (site {i})<br>" + ", ".join(fmt(float(v), 4) for v in f)
                     for f, _, i in atoms],
            "hovertemplate": "%{text}<extra></extra>",
            "marker": {"size": 4 + 8 * radius(symbol), "color": colour(symbol), "opacity": 1.0,
                       "line": {"color": "#333", "width": 1}},
        })
    return traces


def _bond_traces(structure: Structure) -> list[dict[str, Any]]:
    halves: dict[str, dict[str, list[float | None]]] = {}
    for i, start, end in bonds(structure):
        mid = (start + end) / 2
        xs = halves.setdefault(_symbol(structure[i]), {"x": [], "y": [], "z": []})
        for axis, k in zip("xyz", range(3), strict=True):
            xs[axis] += [float(start[k]), float(mid[k]), None]
    return [{"type": "scatter3d", "mode": "lines", "name": f"{symbol} bonds",
             "legendgroup": symbol, "showlegend": False, "hoverinfo": "skip",
             "line": {"color": colour(symbol), "width": 5}, **xs}
            for symbol, xs in sorted(halves.items())]


def structure_figure(structure: Structure, cell: Cell = "conventional") -> dict[str, Any]:
    """The plotly figure (a JSON-ready dict) of ``structure`` drawn in ``cell``."""
    shown = cell_of(structure, cell)
    if len(shown) > MAX_ATOMS:
        shown = structure
    axis = {"visible": False, "showbackground": False}
    edges = {"type": "scatter3d", "mode": "lines", "name": "unit cell", "hoverinfo": "skip",
             "line": {"color": "#555", "width": 3}, **_cell_edges(shown)}
    a, b, c = shown.lattice.abc
    return {
        "data": [edges, *_bond_traces(shown), *_atom_traces(shown)],
        "layout": {
            "scene": {"xaxis": axis, "yaxis": axis, "zaxis": axis, "aspectmode": "data",
                      "camera": {"eye": {"x": 1.6, "y": 1.3, "z": 0.9}}},
            "margin": {"l": 0, "r": 0, "t": 10, "b": 0}, "height": 460, "autosize": True,
            "legend": {"itemsizing": "constant", "title": {"text": "element"}},
            "meta": {"cell": cell, "nsites": len(shown), "formula": shown.formula,
                     "abc": [a, b, c]},
        },
    }
