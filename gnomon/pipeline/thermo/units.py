"""The units of the numbers gnomon reports, and the resolution they are reported to.

One rule for every table and JSON writer (``gnomon phases``, ``gnomon hull``, the hull
figure): an energy per atom is reported to 1 meV/atom (three decimals in eV/atom) and a
distance to 0.001 Å. The methods resolve no finer: a DFT energy moves by about a meV/atom with
its k-point mesh, smearing and basis, and an MLIP's error is tens of meV/atom, so further
digits are noise (a stored ``-0.9700000000000006`` is ``-0.97``). Stored values keep full
precision; only what is shown is rounded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

EV_PER_ATOM = "eV/atom"
ANGSTROM = "Å"

#: decimals of each reported unit: 1 meV/atom, 0.001 Å
RESOLUTION: dict[str, int] = {EV_PER_ATOM: 3, ANGSTROM: 3}

#: the unit of every numeric field a phase row carries
UNITS: dict[str, str] = {
    "energy_per_atom": EV_PER_ATOM,
    "uncorrected_energy_per_atom": EV_PER_ATOM,
    "formation_energy_per_atom": EV_PER_ATOM,
    "e_above_hull": EV_PER_ATOM,
    "decomposition_energy": EV_PER_ATOM,
    "nearest_known_amd": ANGSTROM,
}

#: what each energy field means, for JSON readers (its unit is in :data:`UNITS`)
MEANINGS: dict[str, str] = {
    "energy_per_atom": "total energy per atom, the scheme's corrections applied",
    "uncorrected_energy_per_atom": "total energy per atom as the code gave it",
    "formation_energy_per_atom": "formation energy from the scheme's elemental references, "
    "corrected",
    "e_above_hull": "energy above the convex hull of the scheme (0 on the hull)",
    "decomposition_energy": "energy to the hull of every other composition: negative on the "
    "hull, e_above_hull above it",
    "nearest_known_amd": "average-minimum-distance to the nearest known phase",
}

_STEPS = {EV_PER_ATOM: "energies to 1 meV/atom", ANGSTROM: "distances to 0.001 Å"}


def resolution_note(fields) -> str:
    """What the rounding of ``fields`` is, in words: ``energies to 1 meV/atom``."""
    present = [unit for unit in RESOLUTION if any(UNITS.get(f) == unit for f in fields)]
    return ", ".join(_STEPS[unit] for unit in present)


def rounded(value: float | None, unit: str = EV_PER_ATOM) -> float | None:
    """``value`` to the resolution of ``unit``; never ``-0.0``."""
    if value is None:
        return None
    return round(float(value), RESOLUTION[unit]) + 0.0


def shown(value: float | None, unit: str = EV_PER_ATOM, signed: bool = False) -> str:
    """``value`` as a table cell at the resolution of ``unit`` (``-`` when missing)."""
    if value is None:
        return "-"
    number = rounded(value, unit)
    return f"{number:+.{RESOLUTION[unit]}f}" if signed else f"{number:.{RESOLUTION[unit]}f}"


def rounded_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``row`` with each field of known unit rounded to that unit's resolution."""
    return {
        key: rounded(value, UNITS[key]) if key in UNITS and value is not None else value
        for key, value in row.items()
    }


def yes_no(value: bool | None) -> str:
    """The one way a table says a yes/no field: ``yes``, ``no``, ``-`` when unknown."""
    if value is None:
        return "-"
    return "yes" if value else "no"
