"""Known phases shipped with gnomon: published crystal structures a campaign starts its hull from.

Without them a campaign's first hull holds only the elements, and whatever compound it
relaxes first is "stable" for want of competition (Li3O on a hull that never saw Li2O).
Each phase is stored in ``gnomon/data/known/*.yaml`` the way a paper reports it: space group,
lattice parameters, one position per Wyckoff site, and the source. Building it through
:meth:`pymatgen.core.Structure.from_spacegroup` and checking the formula and every Wyckoff
multiplicity catches a mistyped coordinate or a wrong origin choice when the file is read,
not as a strange energy three rounds later.

Example::

    for phase in known_phases_in(["Li", "Mn", "O"]):
        structure = phase.structure()   # primitive cell, ready to relax
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml
from pymatgen.core import Composition, Lattice, Structure

from gnomon.storage import Candidate, Repository

HEXAGONAL_PREFIXES = ("P6", "P-6", "P3", "P-3", "R")


class KnownPhaseError(ValueError):
    """A known-phase record that does not build the structure it claims."""


@dataclass(frozen=True)
class WyckoffSite:
    species: str
    wyckoff: str  # multiplicity and letter in the conventional cell, e.g. "8c"
    coords: tuple[float, float, float]

    @property
    def multiplicity(self) -> int:
        match = re.fullmatch(r"(\d+)[a-zA-Z]", self.wyckoff)
        if match is None:
            raise KnownPhaseError(f"Wyckoff label {self.wyckoff!r} is not <multiplicity><letter>")
        return int(match.group(1))


@dataclass(frozen=True)
class KnownPhase:
    """A published crystal structure: space group, lattice, Wyckoff sites, literature source."""

    name: str
    formula: str
    spacegroup: str
    lattice: dict[str, float]
    sites: tuple[WyckoffSite, ...]
    source: str

    @property
    def elements(self) -> frozenset[str]:
        return frozenset(str(el) for el in Composition(self.formula).elements)

    @property
    def reduced_formula(self) -> str:
        return Composition(self.formula).reduced_formula

    def _lattice(self) -> Lattice:
        p = self.lattice
        a = p["a"]
        gamma_default = 120.0 if self.spacegroup.startswith(HEXAGONAL_PREFIXES) else 90.0
        return Lattice.from_parameters(
            a,
            p.get("b", a),
            p.get("c", a),
            p.get("alpha", 90.0),
            p.get("beta", 90.0),
            p.get("gamma", gamma_default),
        )

    def conventional(self) -> Structure:
        """The conventional cell, checked against the formula and the Wyckoff multiplicities."""
        lattice = self._lattice()
        for site in self.sites:
            orbit = Structure.from_spacegroup(
                self.spacegroup, lattice, [site.species], [list(site.coords)]
            )
            if len(orbit) != site.multiplicity:
                raise KnownPhaseError(
                    f"{self.name}: {site.species} at {site.coords} in {self.spacegroup} "
                    f"gives {len(orbit)} sites, Wyckoff {site.wyckoff} has {site.multiplicity} "
                    "(wrong coordinates or origin choice?)"
                )
        structure = Structure.from_spacegroup(
            self.spacegroup,
            lattice,
            [s.species for s in self.sites],
            [list(s.coords) for s in self.sites],
        )
        if structure.composition.reduced_formula != self.reduced_formula:
            raise KnownPhaseError(
                f"{self.name}: the sites give {structure.composition.reduced_formula}, "
                f"not {self.reduced_formula}"
            )
        return structure

    def structure(self) -> Structure:
        """The primitive cell (fewest atoms to relax), with no site properties."""
        return self.conventional().get_primitive_structure()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KnownPhase:
        try:
            sites = tuple(
                WyckoffSite(
                    str(s["species"]), str(s["wyckoff"]), tuple(float(x) for x in s["coords"])
                )
                for s in data["sites"]
            )
            return cls(
                name=str(data["name"]),
                formula=str(data["formula"]),
                spacegroup=str(data["spacegroup"]),
                lattice={k: float(v) for k, v in data["lattice"].items()},
                sites=sites,
                source=" ".join(str(data["source"]).split()),
            )
        except (KeyError, TypeError) as exc:
            raise KnownPhaseError(
                f"known phase record {data.get('name', data)!r}: missing or bad field {exc}"
            ) from exc


def _data_dir() -> Path:
    return Path(str(files("gnomon") / "data" / "known"))


def load_known_phases(paths: Sequence[Path] | None = None) -> tuple[KnownPhase, ...]:
    """Every phase in ``paths`` (default: the YAML files shipped in ``gnomon/data/known``)."""
    if paths is None:
        return _shipped()
    return tuple(phase for p in paths for phase in _read_file(Path(p)))


@functools.lru_cache(maxsize=1)
def _shipped() -> tuple[KnownPhase, ...]:
    return tuple(phase for path in sorted(_data_dir().glob("*.yaml")) for phase in _read_file(path))


def _read_file(path: Path) -> tuple[KnownPhase, ...]:
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict) or not isinstance(data.get("phases"), list):
        raise KnownPhaseError(f"{path}: expected a mapping with a list under 'phases'")
    return tuple(KnownPhase.from_dict(item) for item in data["phases"])


def known_phases_in(
    elements: Iterable[str], phases: Sequence[KnownPhase] | None = None
) -> list[KnownPhase]:
    """The known compounds whose elements all lie in ``elements`` (a campaign's space)."""
    space = frozenset(elements)
    return [p for p in (load_known_phases() if phases is None else phases) if p.elements <= space]


def phase_origins(repo: Repository, rows: Sequence[dict[str, Any]]) -> list[str]:
    """Where each phase row (``PhaseQuery`` output) came from: ``known`` (a shipped phase
    relaxed before round 0), ``reference`` (an element), ``campaign`` (found by a campaign's
    generators) or ``imported`` (no candidate behind it). A report counts only ``campaign``
    rows as discoveries."""
    ids = [r["candidate_id"] for r in rows if r.get("candidate_id")]
    generators = {c.id: c.generator for c in repo.query(Candidate, {"id": ids})} if ids else {}
    out = []
    for r in rows:
        generator = generators.get(r.get("candidate_id"))
        if not r.get("candidate_id"):
            out.append("imported")
        elif generator == "known":
            out.append("known")
        elif generator == "reference" or len(r["chemsys"].split("-")) == 1:
            out.append("reference")
        else:
            out.append("campaign")
    return out
