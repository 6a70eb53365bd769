"""Random structure search: N random crystals per composition at a target volume.

GNoME's compositional pipeline relaxed 100 random structures per composition made by AIRSS
(Pickard & Needs, J. Phys.: Condens. Matter 2011). Two backends draw the raw structures:

* ``pyxtal`` (default): pyxtal's symmetric random crystals (Fredericks et al., Comput. Phys.
  Commun. 2021) in a random space group compatible with the composition;
* ``airss``: AIRSS ``buildcell`` fed a seed ``.cell`` file (:mod:`.airss`); needs buildcell
  on PATH;
* ``auto``: ``airss`` when buildcell is on PATH, ``pyxtal`` otherwise.

Either backend runs in worker processes with ``generate(..., processes=n)``: work is split
into (composition, index) items handed to a process pool with bounded look-ahead
(:func:`.streaming.parallel_map`), and the output does not depend on ``n``.

Both go through the same finish: the cell is scaled isotropically to the target volume
(``volume_per_atom`` x atoms) and the structure is kept only if no pair of atoms, periodic
images included, is closer than the minimum separation for that pair of elements; otherwise
another draw is made, up to ``max_attempts`` per structure. So every structure yielded has
exactly the requested composition, volume and separations.

Reproducibility: structure ``i`` of composition ``c`` is drawn from a random generator seeded
by ``derive_seed(seed, c, i)``, so the output does not depend on how the work is sharded.
(buildcell draws from its own random numbers; the AIRSS backend is reproducible only through
the seed files it writes.)
"""

from __future__ import annotations

import itertools
import logging
import math
import shutil
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
from pymatgen.core import Composition, Element, Structure

from gnomon import __version__
from gnomon.pipeline.generation.airss import BuildcellError, run_buildcell, seed_text
from gnomon.pipeline.generation.compositions import CompositionError, parse_composition
from gnomon.pipeline.generation.fingerprint import fingerprint
from gnomon.pipeline.generation.identity import candidate_from_structure
from gnomon.pipeline.generation.streaming import derive_seed, parallel_map, shard
from gnomon.storage import Candidate

logger = logging.getLogger(__name__)

RANDOM_VERSION = "1"
PACKING_FACTOR = 1.3  # cell volume / summed atomic-sphere volumes, typical of inorganic solids
MINSEP_FACTOR = 0.75  # default minimum separation: this fraction of the summed covalent radii


class RandomSearchError(RuntimeError):
    """A backend could not produce the requested structures."""


def covalent_radius(element: str) -> float:
    # heavy: ase
    from ase.data import atomic_numbers, covalent_radii

    return float(covalent_radii[atomic_numbers[element]])


def estimate_volume_per_atom(composition: Composition) -> float:
    """Target volume per atom: atomic-sphere volumes times a packing factor."""
    total = 0.0
    for el, amount in composition.element_composition.items():
        with warnings.catch_warnings():  # pymatgen warns for elements without a calculated radius
            warnings.simplefilter("ignore")
            r = float(
                Element(el.symbol).atomic_radius
                or Element(el.symbol).atomic_radius_calculated
                or 1.5
            )
        total += amount * 4.0 / 3.0 * math.pi * r**3
    return PACKING_FACTOR * total / composition.num_atoms


def min_separations(
    elements: Iterable[str], min_separation: float | Mapping[str, float] | None = None
) -> dict[tuple[str, str], float]:
    """Minimum separation (Å) for every unordered pair of elements.

    ``min_separation`` is one number for every pair, a mapping ``{"Li-O": 1.8, ...}``
    (pairs not named get the default), or None for the default of ``MINSEP_FACTOR`` times the
    summed covalent radii.
    """
    els = sorted(set(elements))
    named: dict[frozenset[str], float] = {}
    default: float | None = None
    if isinstance(min_separation, (int, float)):
        default = float(min_separation)
    elif min_separation is not None:
        for key, value in min_separation.items():
            pair = key.split("-")
            if len(pair) != 2 or not all(Element.is_valid_symbol(p) for p in pair):
                raise ValueError(f"minimum separation key {key!r} is not a pair like 'Li-O'")
            named[frozenset(pair)] = float(value)
    out = {}
    for a, b in itertools.combinations_with_replacement(els, 2):
        value = named.get(frozenset((a, b)))
        if value is None:
            value = (
                default
                if default is not None
                else MINSEP_FACTOR * (covalent_radius(a) + covalent_radius(b))
            )
        out[(a, b)] = value
    return out


def separation_violations(
    structure: Structure, minsep: Mapping[tuple[str, str], float]
) -> list[tuple[str, str, float]]:
    """Pairs of atoms (periodic images included) closer than allowed: ``(A, B, distance)``."""
    cutoff = max(minsep.values())
    centers, points, _, distances = structure.get_neighbor_list(cutoff)
    species = [site.specie.symbol for site in structure]
    bad = []
    for i, j, d in zip(centers, points, distances, strict=True):
        a, b = sorted((species[i], species[j]))
        if d < minsep[(a, b)] - 1e-8:
            bad.append((a, b, float(d)))
    return bad


def shortest_distance(structure: Structure) -> float:
    centers, _, _, distances = structure.get_neighbor_list(10.0)
    return float(distances.min()) if len(distances) else math.inf


@dataclass
class RandomSearch:
    """N random structures per composition (see the module docstring).

    Example::

        search = RandomSearch(n_per_composition=100, backend="pyxtal", seed=7)
        for candidate in search.generate(["Li2MnO3", "LiMnO2"]):
            ...
    """

    n_per_composition: int = 100
    backend: str = "pyxtal"
    volume_per_atom: float | None = None
    min_separation: float | dict[str, float] | None = None
    max_atoms: int = 20
    formula_units: tuple[int, ...] | None = None
    space_groups: tuple[int, ...] | None = None
    max_attempts: int = 20
    seed: int = 0
    buildcell: str = "buildcell"
    buildcell_timeout: float = 60.0
    campaign: str | None = None
    round: int | None = None
    failures: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.backend == "auto":  # AIRSS where buildcell is installed, pyxtal elsewhere
            self.backend = "airss" if shutil.which(self.buildcell) else "pyxtal"
        if self.backend not in ("pyxtal", "airss"):
            raise ValueError(f"unknown backend {self.backend!r}: use 'pyxtal', 'airss' or 'auto'")
        if self.n_per_composition < 1:
            raise ValueError("n_per_composition must be at least 1")

    @property
    def version(self) -> str:
        return f"gnomon-{__version__}/random-{self.backend}-{RANDOM_VERSION}"

    def check_composition(self, formula: str | Composition) -> Composition:
        """The reduced composition, or a CompositionError saying why it cannot be searched."""
        comp = parse_composition(formula) if isinstance(formula, str) else formula
        reduced = comp.reduced_composition
        if reduced.num_atoms > self.max_atoms:
            raise CompositionError(
                f"{reduced.reduced_formula} has {int(reduced.num_atoms)} atoms per formula unit, "
                f"more than max_atoms={self.max_atoms}"
            )
        return reduced

    def check_packing(self, reduced: Composition) -> None:
        """Fail early when no arrangement can keep the separations at the target volume.

        Spheres of diameter ``d`` (the smallest allowed separation) fill at most the density
        of close packing, one sphere per ``d**3 / sqrt(2)``.
        """
        minsep = min_separations([e.symbol for e in reduced.elements], self.min_separation)
        vpa = self.volume_per_atom or estimate_volume_per_atom(reduced)
        d = min(minsep.values())
        densest = d**3 / math.sqrt(2)
        if vpa < densest:
            raise RandomSearchError(
                f"{reduced.reduced_formula}: {vpa:.2f} Å^3 per atom cannot hold atoms {d:.2f} Å "
                f"apart (close packing needs {densest:.2f} Å^3 per atom)"
            )

    def formula_unit_choices(self, reduced: Composition) -> list[int]:
        zmax = int(self.max_atoms // reduced.num_atoms)
        choices = [z for z in (self.formula_units or range(1, zmax + 1)) if 1 <= z <= zmax]
        if not choices:
            raise CompositionError(
                f"no number of formula units of {reduced.reduced_formula} "
                f"fits max_atoms={self.max_atoms}"
            )
        return choices

    # -- streaming ------------------------------------------------------------------------
    def generate(
        self,
        compositions: Iterable[str | Composition],
        processes: int = 1,
        shard_of: tuple[int, int] | None = None,
    ) -> Iterator[Candidate]:
        """``n_per_composition`` candidates for each composition, in order.

        Work is split into (composition, index) items, so ``processes`` workers share even a
        single composition; output order and content do not depend on ``processes``.
        ``shard_of=(i, n)`` keeps every n-th item from the i-th: n batch jobs with the same
        seed together draw exactly the structures one job would.
        """
        if self.backend == "airss":
            if shutil.which(self.buildcell) is None:
                raise RandomSearchError(
                    f"{self.buildcell!r} is not on PATH: install AIRSS "
                    "(https://airss-docs.github.io) or use the pyxtal backend"
                )

        def items() -> Iterator[tuple[str, int]]:
            for formula in compositions:
                reduced = self.check_composition(formula)
                self.check_packing(reduced)
                for i in range(self.n_per_composition):
                    yield reduced.formula.replace(" ", ""), i

        work = items() if shard_of is None else shard(items(), *shard_of)
        for result in parallel_map(self._one, work, processes):
            if isinstance(result, str):
                self.failures.append(result)
                logger.warning("%s", result)
            else:
                yield result

    def _one(self, item: tuple[str, int]) -> Candidate | str:
        formula, index = item
        try:
            return self.structure_candidate(formula, index)
        except RandomSearchError as exc:
            return f"{formula} #{index}: {exc}"

    def structure_candidate(self, formula: str, index: int) -> Candidate:
        """Structure ``index`` of a composition, as a candidate with its provenance."""

        reduced = Composition(formula).reduced_composition
        seed = derive_seed(self.seed, reduced.reduced_formula, index)
        rng = np.random.default_rng(seed)
        minsep = min_separations([e.symbol for e in reduced.elements], self.min_separation)
        vpa = self.volume_per_atom or estimate_volume_per_atom(reduced)
        zs = self.formula_unit_choices(reduced)
        last_reason = "no attempt made"
        for attempt in range(self.max_attempts):
            z = int(rng.choice(zs))
            comp = reduced * z
            raw, info = self._draw(comp, minsep, vpa, rng)
            if raw is None:
                last_reason = info.get("reason", "the backend produced nothing")
                continue
            structure = raw.copy()
            structure.scale_lattice(vpa * len(structure))
            bad = separation_violations(structure, minsep)
            if bad:
                a, b, d = min(bad, key=lambda t: t[2])
                last_reason = f"{a}-{b} at {d:.2f} Å after scaling to the target volume"
                continue
            return candidate_from_structure(
                structure,
                f"random-{self.backend}",
                generator_version=self.version,
                seed=self.seed,
                campaign=self.campaign,
                round=self.round,
                fingerprint=fingerprint(structure),
                extra={
                    "index": index,
                    "item_seed": seed,
                    "attempts": attempt + 1,
                    "volume_per_atom": vpa,
                    "min_separation": {f"{a}-{b}": v for (a, b), v in minsep.items()},
                    **info,
                },
            )
        raise RandomSearchError(
            f"no acceptable structure in {self.max_attempts} attempts (last: {last_reason})"
        )

    # -- backends -------------------------------------------------------------------------
    def _draw(self, comp: Composition, minsep, vpa: float, rng: np.random.Generator):
        if self.backend == "airss":
            text = seed_text(comp, vpa, minsep)
            try:
                structure = run_buildcell(
                    text,
                    self.buildcell,
                    self.buildcell_timeout,
                    label=comp.formula.replace(" ", ""),
                )
            except BuildcellError as exc:
                return None, {"reason": str(exc)}
            return structure, {"backend": "airss"}
        return self._draw_pyxtal(comp, minsep, vpa, rng)

    def _draw_pyxtal(self, comp: Composition, minsep, vpa: float, rng: np.random.Generator):
        # heavy: pyxtal
        from pyxtal import pyxtal

        _cache_pyxtal_default_tolerances()
        # heavy: pyxtal
        from pyxtal.symmetry import Group
        from pyxtal.tolerance import Tol_matrix

        species = [el.symbol for el in comp.elements]
        counts = [int(round(comp[el])) for el in comp.elements]
        groups = list(self.space_groups or range(2, 231))
        # pyxtal places atoms at its own volume; ask for the separations that will hold after
        # scaling to ours, with 5% to spare
        tm = Tol_matrix(*[(a, b, d * 1.05) for (a, b), d in minsep.items()])
        for _ in range(10):
            sg = int(rng.choice(groups))
            try:
                ok, _free = Group(sg).check_compatible(counts)
            except (ValueError, IndexError):
                ok = False
            if not ok:
                continue
            crystal = pyxtal()
            try:
                crystal.from_random(
                    3, sg, species, counts, factor=1.0, tm=tm, random_state=int(rng.integers(2**31))
                )
            except Exception as exc:  # noqa: BLE001 - pyxtal signals a failed draw many ways
                logger.debug("pyxtal failed for %s in %d: %s", comp.formula, sg, exc)
                continue
            if not crystal.valid:
                continue
            return crystal.to_pymatgen(), {"backend": "pyxtal", "space_group": sg}
        return None, {"reason": "pyxtal found no compatible space group in 10 draws"}


def _cache_pyxtal_default_tolerances() -> None:
    """pyxtal's image check builds a fresh default Tol_matrix (a walk over the periodic table)
    on every call, about half of a draw's time. The default matrix is never modified, so one
    shared instance serves; explicit matrices are built as before."""
    # heavy: pyxtal
    import pyxtal.operations as ops

    if getattr(ops.Tol_matrix, "_gnomon_cached", False):
        return
    original = ops.Tol_matrix
    shared: dict[tuple, object] = {}

    def tol_matrix(*tuples, prototype="atomic", factor=1.0):
        if tuples:
            return original(*tuples, prototype=prototype, factor=factor)
        key = (prototype, factor)
        if key not in shared:
            shared[key] = original(prototype=prototype, factor=factor)
        return shared[key]

    tol_matrix._gnomon_cached = True  # type: ignore[attr-defined]
    ops.Tol_matrix = tol_matrix
