"""SAPS: symmetry-aware partial substitutions of template structures.

GNoME's structural pipeline (Merchant et al., Nature 2023) grows its candidate pool by
substituting ions of known crystals by similar ions, replacing either all sites of an
element or only some of them, chosen so that the outcomes are distinct up to the template's
symmetry. This module does that:

1. **Which substitutions.** Element A of the template may become element B when pymatgen's
   data-mined ionic substitution probability (Hautier et al., Inorg. Chem. 2011;
   :class:`~pymatgen.core.structure_prediction.substitution_probability.SubstitutionProbability`)
   ``P(B | A)`` reaches ``threshold`` for some pair of their ions with charges of the same sign.
   A's ion is taken from the template's most likely oxidation states; B's is the best-scoring
   one. Up to ``max_species`` template elements may be substituted at once (full replacement
   each); ``elements`` names the substituents and, with ``within_elements``, the chemical
   space every outcome must lie in. A full substitution never maps two elements onto one (that
   is another structure type); a partial one may put B on A sites when the template already
   holds B (excess Li on the Mn sites of LiMnO2, say).
2. **Which sites.** For a single-element substitution with ``partial`` on, the A sites to
   replace are enumerated up to the symmetry of the template cell (its space-group operations,
   lattice translations of a supercell included, as permutations of the sites):

   * ``partial_mode="wyckoff"`` (GNoME's choice): every non-empty union of the Wyckoff orbits
     the A sites occupy. The group maps each orbit onto itself, so distinct unions are
     distinct decorations.
   * ``partial_mode="sites"``: every non-empty subset of the A sites, one per orbit of the
     group acting on subsets (Burnside's classes). In a supercell this gives the orderings a
     crystallographer enumerates: rock salt's conventional cell gives the 1/4, 1/2 (CuAu-type
     layers), 3/4 and full substitutions; a 2x2x2 perovskite's B sites give 1, 3, 3, 6, 3, 3,
     1, 1 decorations for 1..8 replaced sites (rock-salt, layered and columnar orderings among
     the 6 at one half). Capped at ``max_enumerated_sites`` A sites; above it the Wyckoff
     unions are used.

   With ``verify`` (default) the outcomes of one template are also compared pairwise with
   StructureMatcher, so two outcomes that are equivalent through an operation outside the
   template's group (its normalizer) are reported once.
3. **Charge balance.** With ``charge_balance`` set (``strict``/``relaxed``), outcomes whose
   composition SMACT cannot balance are dropped (:mod:`.compositions`).
4. **Volume.** The lattice is scaled isotropically by the ratio of the summed cubed radii of
   the new and old sites (reference-lattice scaling, as pymatgen's RLSVolumePredictor), ionic
   radii where the oxidation state is known, atomic radii otherwise.

Two implementations give the same outcomes in the same order: ``method="fast"`` (default;
:mod:`.saps_fast`) works on site arrays with each template's symmetry analysed once and
cached, and builds no pymatgen Structure per outcome; ``method="reference"`` is the original
route (one Structure, spglib standardization and fingerprint per outcome), kept as the
reference the tests and ``bench/generation.py`` compare with. Their ids differ (see
:mod:`gnomon.pipeline.generation.identity`) unless ``identity="structure"``.

Every candidate records ``template_id``, ``substitution`` (``{A: B}`` for every substituted
element), ``replaced_fraction`` (of the partially substituted element's sites; 1.0 for full
substitutions), ``generator_version`` and ``seed``; ``extra`` holds the replaced site indices,
the substitution probability, the template's space group and the supercell.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from gnomon import __version__
from gnomon.pipeline.generation.compositions import BalanceMode, is_balanced, parse_elements
from gnomon.pipeline.generation.fingerprint import fingerprint
from gnomon.pipeline.generation.identity import candidate_from_structure
from gnomon.pipeline.generation.saps_fast import expand_fast
from gnomon.pipeline.generation.site_symmetry import (
    distinct_subsets,
    site_orbits,
    site_permutations,
)
from gnomon.pipeline.generation.streaming import parallel_map, shard
from gnomon.pipeline.generation.substitution import (
    GENERATOR,
    oxidation_guess,
    radius_cube_change,
    site_radius,
    substitution_probability,
    table_elements,
)
from gnomon.pipeline.generation.templates import (
    SkippedTemplate,
    Template,
    TemplateResult,
    template_problem,
)
from gnomon.storage import Candidate

logger = logging.getLogger(__name__)

SAPS_VERSION = "1"


# -- the generator ----------------------------------------------------------------------------
@dataclass
class SAPSGenerator:
    """Symmetry-aware partial substitutions of templates (see the module docstring).

    Example::

        saps = SAPSGenerator(elements=("Li", "Mn", "O"), max_species=2)
        for candidate in saps.generate(prototype_templates()):
            ...
    """

    elements: tuple[str, ...] | None = None
    within_elements: bool = True
    threshold: float = 0.01
    max_species: int = 1
    partial: bool = True
    partial_mode: str = "wyckoff"
    supercell: tuple[int, int, int] | None = None
    max_enumerated_sites: int = 16
    max_per_template: int | None = None
    charge_balance: BalanceMode | None = None
    rescale_volume: bool = True
    verify: bool = True
    symprec: float = 0.01
    method: str = "fast"
    identity: str = "decoration"
    seed: int = 0
    campaign: str | None = None
    round: int | None = None
    skipped: list[SkippedTemplate] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.elements is not None:
            self.elements = tuple(parse_elements(self.elements))
        if self.partial_mode not in ("wyckoff", "sites"):
            raise ValueError(
                f"partial_mode must be 'wyckoff' or 'sites', not {self.partial_mode!r}"
            )
        if self.method not in ("fast", "reference"):
            raise ValueError(f"method must be 'fast' or 'reference', not {self.method!r}")
        if self.identity not in ("decoration", "structure"):
            raise ValueError(f"identity must be 'decoration' or 'structure', not {self.identity!r}")
        if self.max_species < 1:
            raise ValueError("max_species must be at least 1")
        if self.charge_balance is not None:
            self.charge_balance = BalanceMode(self.charge_balance)

    @property
    def version(self) -> str:
        return f"gnomon-{__version__}/saps-{SAPS_VERSION}"

    # -- streaming over templates -----------------------------------------------------
    def generate(
        self,
        templates: Iterable[TemplateResult],
        limit: int | None = None,
        processes: int = 1,
        shard_of: tuple[int, int] | None = None,
    ) -> Iterator[Candidate]:
        """Candidates from each template in turn; skipped templates are logged and kept in
        ``self.skipped``. ``processes > 1`` expands templates in a process pool (same output,
        same order); ``shard_of=(i, n)`` takes every n-th template from the i-th, so n batch
        jobs together produce what one would."""
        n = 0
        if shard_of is not None:
            templates = shard(templates, *shard_of)
        usable = self._usable(templates)
        # in this process a template's outcomes stream as they are made: one template of four
        # substituted species over 40 elements has millions, which a list held in gigabytes
        batches: Iterable[Iterable[Candidate | SkippedTemplate]] = (
            (self._outcomes(t) for t in usable)
            if processes <= 1
            else parallel_map(self._expand_or_skip, usable, processes)
        )
        for batch in batches:
            for item in batch:
                if isinstance(item, SkippedTemplate):
                    self._skip(item)
                    continue
                yield item
                n += 1
                if limit is not None and n >= limit:
                    return

    def _usable(self, templates: Iterable[TemplateResult]) -> Iterator[Template]:
        for t in templates:
            if isinstance(t, SkippedTemplate):
                self._skip(t)
            else:
                yield t

    def _skip(self, skipped: SkippedTemplate) -> None:
        logger.warning("template %s skipped: %s", skipped.id, skipped.reason)
        self.skipped.append(skipped)

    def _outcomes(self, template: Template) -> Iterator[Candidate | SkippedTemplate]:
        """A template's outcomes as they are made; a substitution that fails ends them with
        the template's skip (after the outcomes made before it, in both paths alike)."""
        try:
            yield from self.expand(template)
        except (ValueError, KeyError, TypeError, RuntimeError) as exc:
            yield SkippedTemplate(template.id, f"substitution failed: {exc}")

    def _expand_or_skip(self, template: Template) -> list[Candidate | SkippedTemplate]:
        """A process pool's unit of work: one template's outcomes (and skip), listed."""
        return list(self._outcomes(template))

    # -- one template -----------------------------------------------------------------
    def outside(self, structure: Structure) -> set[str]:
        """The elements of ``structure`` outside the chemical space outcomes must lie in.

        Empty when the space is not constrained (no ``elements``, or ``within_elements`` off).
        """
        if not (self.within_elements and self.elements):
            return set()
        return {el.symbol for el in structure.composition.elements} - set(self.elements)

    def reachable(self, structure: Structure) -> bool:
        """Whether substituting at most ``max_species`` elements can land in ``elements``."""
        return len(self.outside(structure)) <= self.max_species

    def substitution_maps(
        self, structure: Structure, oxidation: dict[str, float]
    ) -> SubstitutionMaps:
        """``({A: B, ...}, probability)`` for every allowed map, most probable first (ties by
        the sorted map), as a lazy sequence: a template with four substituted species over 40
        elements has up to two million maps, of which a stream reads the first few."""
        present = sorted({el.symbol for el in structure.composition.elements})
        pool = list(self.elements) if self.elements is not None else table_elements()
        options: dict[str, list[tuple[str, float]]] = {}
        for a in present:
            opts = []
            for b in pool:
                if b == a:
                    continue
                p, _ = substitution_probability(a, b, oxidation.get(a))
                if p >= self.threshold:
                    opts.append((b, p))
            options[a] = opts
        outside = self.outside(structure)
        if len(outside) > self.max_species:
            return SubstitutionMaps(lambda: iter(()))  # cannot reach the chemical space
        groups = [
            species
            for r in range(1, self.max_species + 1)
            for species in itertools.combinations(present, r)
            if outside <= set(species)
        ]
        return SubstitutionMaps(
            lambda: _maps_by_probability(groups, options, set(present), self.partial)
        )

    def expand(self, template: Template) -> Iterator[Candidate]:
        """Every distinct substitution outcome of one template.

        ``method="fast"`` computes them on site arrays with the template's symmetry cached
        (:mod:`.saps_fast`); ``method="reference"`` is the original route, one pymatgen
        Structure, spglib standardization and fingerprint per outcome. Both give the same
        outcomes in the same order; their ids differ unless ``identity="structure"``.
        """
        if self.method == "fast":
            yield from expand_fast(self, template)
            return
        yield from self._expand_reference(template)

    def _expand_reference(self, template: Template) -> Iterator[Candidate]:
        problem = template_problem(template.structure)
        if problem is not None:
            raise ValueError(problem)
        structure = template.structure.copy()
        if self.supercell is not None:
            structure.make_supercell(self.supercell)
        if not self.reachable(structure):
            return
        oxidation = oxidation_guess(structure)
        maps = self.substitution_maps(structure, oxidation)
        if not maps:
            return
        perms = site_permutations(structure, self.symprec)
        present = {el.symbol for el in structure.composition.elements}
        spacegroup = _spacegroup_symbol(structure, self.symprec)
        matcher = StructureMatcher(primitive_cell=True, scale=True, attempt_supercell=False)
        kept: dict[str, list[Structure]] = {}
        n_out = 0
        for mapping, prob in maps:
            merges = bool(set(mapping.values()) & (present - set(mapping)))
            for sites_by_element, fraction in self._site_choices(structure, mapping, perms):
                if merges and fraction == 1.0:
                    continue  # all A onto B already present: only the partial outcomes are new
                new = self._substitute(structure, mapping, sites_by_element, oxidation)
                if self.outside(new):
                    continue
                formula = new.composition.reduced_formula
                if self.charge_balance is not None and not is_balanced(
                    formula, self.charge_balance
                ):
                    continue
                if self.verify:
                    same_formula = kept.setdefault(formula, [])
                    if any(matcher.fit(new, other) for other in same_formula):
                        continue
                    same_formula.append(new)
                replaced = sorted(i for sites in sites_by_element.values() for i in sites)
                yield candidate_from_structure(
                    new,
                    GENERATOR,
                    generator_version=self.version,
                    template_id=template.id,
                    substitution=dict(mapping),
                    replaced_fraction=fraction,
                    seed=self.seed,
                    campaign=self.campaign,
                    round=self.round,
                    fingerprint=fingerprint(new),
                    extra={
                        "replaced_sites": replaced,
                        "probability": prob,
                        "template_spacegroup": spacegroup,
                        "supercell": list(self.supercell) if self.supercell else None,
                        "partial_mode": self.partial_mode if fraction < 1 else None,
                    },
                )
                n_out += 1
                if self.max_per_template is not None and n_out >= self.max_per_template:
                    return

    def _site_choices(
        self, structure: Structure, mapping: dict[str, str], perms: np.ndarray
    ) -> Iterator[tuple[dict[str, tuple[int, ...]], float]]:
        """Which sites of each substituted element to replace, and the replaced fraction."""
        sites = {a: [i for i, s in enumerate(structure) if s.specie.symbol == a] for a in mapping}
        if len(mapping) > 1 or not self.partial:
            yield {a: tuple(ix) for a, ix in sites.items()}, 1.0
            return
        (a,) = mapping
        a_sites = sites[a]
        if self.partial_mode == "sites" and len(a_sites) <= self.max_enumerated_sites:
            subsets: Iterable[tuple[int, ...]] = distinct_subsets(perms, a_sites)
        else:
            if self.partial_mode == "sites":
                logger.info(
                    "%d %s sites exceed max_enumerated_sites=%d; using Wyckoff orbits",
                    len(a_sites),
                    a,
                    self.max_enumerated_sites,
                )
            orbits = site_orbits(perms, a_sites)
            subsets = (
                tuple(sorted(i for orbit in chosen for i in orbit))
                for r in range(1, len(orbits) + 1)
                for chosen in itertools.combinations(orbits, r)
            )
        for subset in subsets:
            yield {a: subset}, len(subset) / len(a_sites)

    def _substitute(
        self,
        structure: Structure,
        mapping: dict[str, str],
        sites_by_element: dict[str, tuple[int, ...]],
        oxidation: dict[str, float],
    ) -> Structure:
        """``structure`` with the chosen sites replaced, its volume rescaled (module docstring)."""
        new = structure.copy()
        old_r3 = sum(
            site_radius(s.specie.symbol, oxidation.get(s.specie.symbol)) ** 3 for s in structure
        )
        new_r3 = old_r3
        for a, indices in sites_by_element.items():
            b = mapping[a]
            for i in indices:
                new.replace(i, b)
            new_r3 += len(indices) * radius_cube_change(a, b, oxidation)
        if self.rescale_volume and old_r3 > 0 and new_r3 > 0:
            new.scale_lattice(structure.volume * new_r3 / old_r3)
        return new


def _spacegroup_symbol(structure: Structure, symprec: float) -> str | None:
    try:
        return SpacegroupAnalyzer(structure, symprec=symprec).get_space_group_symbol()
    except (ValueError, TypeError, RuntimeError):
        return None


class SubstitutionMaps:
    """A lazy sequence of substitution maps, made afresh on every reading and never kept: a
    template of four species over 40 elements has up to two million maps, which a stream reads
    once, in order, and which kept (even lazily, as read) held gigabytes."""

    def __init__(self, maps: Callable[[], Iterator[tuple[dict[str, str], float]]]) -> None:
        self._maps = maps
        self.read = 0  # maps handed out so far, over every reading

    def __iter__(self) -> Iterator[tuple[dict[str, str], float]]:
        for item in self._maps():
            self.read += 1
            yield item

    def __bool__(self) -> bool:
        return next(self._maps(), None) is not None


def _maps_by_probability(
    groups: list[tuple[str, ...]],
    options: dict[str, list[tuple[str, float]]],
    present: set[str],
    partial: bool,
) -> Iterator[tuple[dict[str, str], float]]:
    """Every map of every group of substituted species, in the order of sorting them all by
    (-probability, sorted map), without listing them: a best-first walk over each group's
    option lists (sorted by probability, so a step along one list never raises the product),
    all groups in one heap; maps of exactly equal probability are gathered and sorted by their
    items before any is yielded. The probability is ``math.prod`` over the group's species in
    order, the same float the full sort compares."""
    ranked = {a: sorted(opts, key=lambda bp: -bp[1]) for a, opts in options.items()}
    heap: list[tuple[float, int, tuple[int, ...]]] = []

    def push(g: int, idx: tuple[int, ...]) -> None:
        prob = math.prod(ranked[a][i][1] for a, i in zip(groups[g], idx, strict=True))
        heapq.heappush(heap, (-prob, g, idx))

    for g, species in enumerate(groups):
        if all(ranked[a] for a in species):
            push(g, (0,) * len(species))
    while heap:
        top = heap[0][0]
        tied: list[tuple[dict[str, str], float]] = []
        while heap and heap[0][0] == top:
            neg, g, idx = heapq.heappop(heap)
            species = groups[g]
            # each index tuple is pushed once, by its one parent (the tuple with its last
            # non-zero index lowered by one), so no set of those met is kept: the heap holds
            # only the frontier, an antichain far smaller than the maps read
            last = max((j for j, i in enumerate(idx) if i), default=0)
            for j in range(last, len(idx)):
                if idx[j] + 1 < len(ranked[species[j]]):
                    push(g, idx[:j] + (idx[j] + 1,) + idx[j + 1 :])
            targets = [ranked[a][i][0] for a, i in zip(species, idx, strict=True)]
            kept_species = present - set(species)
            merges = len(set(targets)) < len(targets) or bool(kept_species & set(targets))
            if merges and not (partial and len(species) == 1):
                continue  # two elements would merge into one: a different structure type
            tied.append((dict(zip(species, targets, strict=True)), -neg))
        tied.sort(key=lambda mp: sorted(mp[0].items()))
        yield from tied
