"""The fast SAPS path: substitutions on integer site arrays, Structures only where needed.

:meth:`SAPSGenerator.expand <gnomon.pipeline.generation.saps.SAPSGenerator.expand>` with
``method="fast"`` (the default) enumerates exactly the outcomes of ``method="reference"``, in
the same order, with the same structures, but pays for the expensive parts once per template
instead of once per outcome:

* **Template symmetry, once.** spglib (through one SpacegroupAnalyzer) gives the template
  cell's operations as site permutations and its space-group symbol; with the oxidation guess,
  the template check and the per-site radii this is cached per template content
  (:func:`template_symmetry`), so a template reused for another chemical system, another
  round or another substitution setting costs nothing more. The spglib results are also kept
  on disk (:mod:`gnomon.pipeline.generation.template_cache`), so a new process (the next
  round, the next ``gnomon generate``) does not pay for them again.
* **Outcomes as arrays.** An outcome is the template's species array with some entries
  replaced; its composition, formula, charge balance and chemical-space check are computed
  from counts (cached per count vector), and its structure dict is the template's dict with
  species and scaled coordinates written in, the volume rescaled by the same arithmetic as the
  reference path. No pymatgen Structure is built for an outcome, except when another outcome
  of the same template has the same formula and ``verify`` must ask StructureMatcher (as the
  reference path does, in the same order).
* **Identity without spglib.** The reference path hashes each outcome's spglib-standardized
  primitive cell (tens of ms per high-symmetry cell with this spglib). The fast path's id is a
  content hash of the template's cell and the outcome's site decoration *made canonical under
  the template's group* (the lexicographically smallest image of the species array over the
  site permutations), plus the scaled lattice: the same structure from the same template always
  gets the same id, whichever symmetry-equivalent sites were enumerated. ``identity="structure"``
  computes the reference path's structure hash instead (same ids as the reference, at its
  cost). Outcomes equal across *different* templates get different fast ids; the deduplicator
  (:mod:`gnomon.pipeline.generation.dedup`), which compares structures with StructureMatcher,
  merges them.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

import numpy as np
import orjson
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Composition, Element, Lattice, Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from gnomon.pipeline.generation import template_cache
from gnomon.pipeline.generation.compositions import BalanceMode, is_balanced
from gnomon.pipeline.generation.identity import structure_hash
from gnomon.pipeline.generation.site_symmetry import (
    distinct_subsets,
    permutations_from_ops,
    site_orbits,
)
from gnomon.pipeline.generation.substitution import (
    GENERATOR,
    oxidation_guess,
    radius_cube_change,
    site_radius,
)
from gnomon.pipeline.generation.templates import Template, template_problem
from gnomon.storage import Candidate


class SAPSGenerator(Protocol):
    """What the fast path reads of :class:`gnomon.pipeline.generation.saps.SAPSGenerator`:
    its settings and its substitution maps (the fast path computes the sites, not the maps)."""

    elements: tuple[str, ...] | None
    within_elements: bool
    threshold: float
    max_species: int
    partial: bool
    partial_mode: str
    supercell: tuple[int, int, int] | None
    max_enumerated_sites: int
    max_per_template: int | None
    charge_balance: BalanceMode | None
    rescale_volume: bool
    verify: bool
    symprec: float
    identity: str
    seed: int
    campaign: str | None
    round: int | None

    @property
    def version(self) -> str: ...

    def reachable(self, structure: Structure) -> bool: ...

    def substitution_maps(
        self, structure: Structure, oxidation: dict[str, float]
    ) -> list[tuple[dict[str, str], float]]: ...


logger = logging.getLogger(__name__)

_SYMMETRY_CACHE = 4096


@dataclass
class TemplateSymmetry:
    """What one template costs to analyse, computed once per template content."""

    structure: Structure  # the template cell (supercell applied)
    problem: str | None
    perms: np.ndarray  # (n_ops, n_sites) site permutations
    spacegroup: str | None
    oxidation: dict[str, float]
    symbols: list[str]  # element per site
    base: dict[str, Any]  # structure.as_dict()
    key: str  # content hash of the cell
    choices: dict[tuple, SubsetTable] = field(default_factory=dict)  # site subsets
    scaling: tuple = ()  # lattice lengths, versors, geometric factor, ratios, volume
    content_key: tuple = ()  # where its disk record lives (template_cache)


_cache: OrderedDict[tuple, TemplateSymmetry] = OrderedDict()
# template structure object -> its content key (templates are not modified once made)
_by_object: dict[tuple, tuple[Structure, tuple]] = {}
cache_stats = {"hits": 0, "misses": 0, "disk": 0}


def _content_key(
    structure: Structure, supercell: tuple[int, int, int] | None, symprec: float
) -> tuple:
    return (
        np.round(structure.lattice.matrix, 6).tobytes(),
        tuple(s.species_string for s in structure),
        np.round(structure.frac_coords, 6).tobytes(),
        tuple(supercell) if supercell else None,
        symprec,
    )


def template_symmetry(
    template: Template, supercell: tuple[int, int, int] | None, symprec: float
) -> TemplateSymmetry:
    """The template's symmetry and everything else SAPS needs of it, cached by content."""
    same_object = _by_object.get((id(template.structure), supercell, symprec))
    if same_object is not None and same_object[0] is template.structure:
        key = same_object[1]  # the same template object again: skip hashing its content
    else:
        key = _content_key(template.structure, supercell, symprec)
        _by_object[(id(template.structure), supercell, symprec)] = (template.structure, key)
        if len(_by_object) > _SYMMETRY_CACHE:
            _by_object.pop(next(iter(_by_object)))
    hit = _cache.get(key)
    if hit is not None:
        _cache.move_to_end(key)
        cache_stats["hits"] += 1
        return hit
    cache_stats["misses"] += 1
    structure = template.structure.copy()
    if supercell is not None:
        structure.make_supercell(supercell)
    problem, perms, spacegroup, oxidation, base, fits = _analysed(
        template, structure, key, symprec
    )
    digest = hashlib.sha256(
        orjson.dumps(
            [
                base["lattice"]["matrix"],
                [s["abc"] for s in base["sites"]],
                [s.species_string for s in structure],
            ],
            option=orjson.OPT_SERIALIZE_NUMPY,
        )
    ).hexdigest()[:16]
    sym = TemplateSymmetry(
        structure,
        problem,
        perms,
        spacegroup,
        oxidation,
        [s.specie.symbol for s in structure],
        base,
        digest,
    )
    # Lattice.scale's arithmetic, with what does not depend on the new volume done once
    abc0 = np.array(structure.lattice.abc)
    versors = structure.lattice.matrix / abc0
    geo = abs(np.dot(np.cross(versors[0], versors[1]), versors[2]))
    sym.scaling = (abc0, versors, geo, abc0 / abc0[2], structure.volume)
    sym.content_key = key
    for first, second, fit in fits:
        _remember_fit((digest, tuple(first), tuple(second)), bool(fit))
    _cache[key] = sym
    if len(_cache) > _SYMMETRY_CACHE:
        _cache.popitem(last=False)
    return sym


def _analysed(
    template: Template, structure: Structure, key: tuple, symprec: float
) -> tuple[str | None, np.ndarray, str | None, dict[str, float], dict[str, Any], list]:
    """The template check, site permutations, space-group symbol, oxidation guess, the cell's
    ``as_dict()`` and the stored verify verdicts: read from the disk cache
    (:mod:`gnomon.pipeline.generation.template_cache`) when an earlier process computed them,
    else computed here and written there."""
    record = template_cache.load(key)
    if record is not None:
        perms = np.asarray(record["perms"], dtype=np.int64).reshape(-1, len(structure))
        base = record["base"]
        if "pbc" in base.get("lattice", {}):  # as_dict writes a tuple; JSON gave a list
            base["lattice"]["pbc"] = tuple(base["lattice"]["pbc"])
        cache_stats["disk"] += 1
        return (
            record["problem"],
            perms,
            record["spacegroup"],
            record["oxidation"],
            base,
            record.get("fits", []),
        )
    problem = template_problem(template.structure)
    perms, spacegroup = np.arange(len(structure))[None, :], None
    oxidation: dict[str, float] = {}
    if problem is None:
        perms, spacegroup = _symmetry(structure, symprec, permutations_from_ops)
        oxidation = oxidation_guess(structure)
    base = structure.as_dict()
    template_cache.store(
        key,
        {
            "problem": problem,
            "perms": perms.tolist(),
            "spacegroup": spacegroup,
            "oxidation": oxidation,
            "base": base,
        },
    )
    return problem, perms, spacegroup, oxidation, base, []


def _symmetry(structure: Structure, symprec: float, to_perms) -> tuple[np.ndarray, str | None]:
    """Site permutations and space-group symbol from one SpacegroupAnalyzer (one spglib run)."""
    identity = np.arange(len(structure))[None, :]
    try:
        sga = SpacegroupAnalyzer(structure, symprec=symprec)
    except (ValueError, TypeError, RuntimeError) as exc:
        logger.debug("no symmetry for %s (%s); using the identity", structure.formula, exc)
        return identity, None
    try:
        symbol = sga.get_space_group_symbol()
    except (ValueError, TypeError, RuntimeError):
        symbol = None
    try:
        ops = sga.get_symmetry_operations(cartesian=False)
    except (ValueError, TypeError, RuntimeError) as exc:
        logger.debug("no symmetry for %s (%s); using the identity", structure.formula, exc)
        return identity, symbol
    return to_perms(structure, ops, symprec), symbol


@lru_cache(maxsize=100_000)
def _composition(counts: tuple[tuple[str, int], ...]) -> tuple[str, str, str, frozenset[str]]:
    """(cell formula, reduced formula, chemical system, elements) of a site count vector."""
    comp = Composition(dict(counts))
    return (
        comp.formula.replace(" ", ""),
        comp.reduced_formula,
        comp.chemical_system,
        frozenset(el.symbol for el in comp.elements),
    )


def _canonical(species: np.ndarray, perms: np.ndarray) -> list[int]:
    """The smallest image of an integer species array over the site permutations.

    Row ``g`` of ``perms`` sends site ``i`` to ``perms[g, i]``, so the decoration moved by
    ``g`` has species ``species[i]`` at ``perms[g, i]``: ``image[g, perms[g]] = species``.
    """
    images = np.empty_like(perms)
    images[np.arange(len(perms))[:, None], perms] = species
    order = np.lexsort(images.T[::-1])
    return images[order[0]].tolist()


@dataclass
class SubsetTable:
    """The site subsets of one element that ``gen._site_choices`` enumerates, in its order,
    with their sizes. Wyckoff-orbit unions are kept as orbit combinations and turned into
    site tuples only when asked for: a large template has millions of unions, and a run over
    a few elements keeps only the sizes whose composition it can use."""

    sizes: np.ndarray
    sites: list[tuple[int, ...]] | None = None  # every subset (mode "sites")
    orbits: list[tuple[int, ...]] | None = None  # or the orbits and their combinations
    combos: list[tuple[int, ...]] | None = None

    def subset(self, k: int) -> tuple[int, ...]:
        if self.sites is not None:
            return self.sites[k]
        assert self.orbits is not None and self.combos is not None
        return tuple(sorted(i for o in self.combos[k] for i in self.orbits[o]))


def _subsets(gen: SAPSGenerator, sym: TemplateSymmetry, a: str) -> SubsetTable:
    """The site subsets of element ``a`` that ``gen._site_choices`` enumerates, cached on the
    template (they depend on the sites and the group, not on what replaces ``a``)."""
    key = (a, gen.partial_mode, gen.max_enumerated_sites)
    table = sym.choices.get(key)
    if table is None:
        a_sites = [i for i, el in enumerate(sym.symbols) if el == a]
        if gen.partial_mode == "sites" and len(a_sites) <= gen.max_enumerated_sites:
            sites = list(distinct_subsets(sym.perms, a_sites))
            table = SubsetTable(np.array([len(x) for x in sites], dtype=np.int64), sites=sites)
        else:
            if gen.partial_mode == "sites":
                logger.info(
                    "%d %s sites exceed max_enumerated_sites=%d; using Wyckoff orbits",
                    len(a_sites),
                    a,
                    gen.max_enumerated_sites,
                )
            orbits = [tuple(o) for o in site_orbits(sym.perms, a_sites)]
            combos = [
                chosen
                for r in range(1, len(orbits) + 1)
                for chosen in itertools.combinations(range(len(orbits)), r)
            ]
            lengths = [len(o) for o in orbits]
            sizes = np.fromiter(
                (sum(lengths[o] for o in c) for c in combos), dtype=np.int64, count=len(combos)
            )
            table = SubsetTable(sizes, orbits=orbits, combos=combos)
        sym.choices[key] = table
    return table


def _site_choices(
    gen: SAPSGenerator,
    sym: TemplateSymmetry,
    mapping: dict[str, str],
    usable: Callable[[int], bool] | None = None,
) -> Iterator[tuple[dict[str, tuple[int, ...]], float]]:
    """``gen._site_choices`` on the cached template: the same choices in the same order,
    less those replacing a number of sites ``usable`` refuses (its verdict depends on the
    number only: the outcome's composition)."""
    if len(mapping) > 1 or not gen.partial:
        yield {a: tuple(i for i, el in enumerate(sym.symbols) if el == a) for a in mapping}, 1.0
        return
    (a,) = mapping
    n_a = sym.symbols.count(a)
    table = _subsets(gen, sym, a)
    wanted = range(len(table.sizes))
    if usable is not None:
        keep = [int(n) for n in np.unique(table.sizes) if usable(int(n))]
        wanted = np.nonzero(np.isin(table.sizes, keep))[0].tolist()
    for k in wanted:
        subset = table.subset(k)
        yield {a: subset}, len(subset) / n_a


def _maps(
    gen: SAPSGenerator, sym: TemplateSymmetry
) -> Iterable[tuple[dict[str, str], float]]:
    """The template's substitution maps, made as read (never kept: see SubstitutionMaps)."""
    if not gen.reachable(sym.structure):
        return ()
    return gen.substitution_maps(sym.structure, sym.oxidation)


class _AtomicNumbers(dict):
    """Element symbol -> atomic number, looked up as met (the maps are read lazily)."""

    def __missing__(self, symbol: str) -> int:
        self[symbol] = z = Element(symbol).Z
        return z


def expand_fast(gen: SAPSGenerator, template: Template) -> Iterator[Candidate]:
    """The outcomes of ``gen.expand(template, method="reference")``, computed on arrays."""
    sym = template_symmetry(template, gen.supercell, gen.symprec)
    if sym.problem is not None:
        raise ValueError(sym.problem)
    maps = _maps(gen, sym)
    if not maps:
        return
    present = set(sym.symbols)
    allowed = set(gen.elements) if (gen.within_elements and gen.elements) else None
    # species as atomic numbers: a fixed order, so the canonical decoration (and the id) of an
    # outcome does not depend on which other elements the run could substitute
    codes = _AtomicNumbers()
    old_r3 = sum(site_radius(s, sym.oxidation.get(s)) ** 3 for s in sym.symbols)
    frac = np.array([site["abc"] for site in sym.base["sites"]], dtype=float)
    verifier = _Verifier(sym, present, frac)
    n_out = 0
    template_counts = Counter(sym.symbols)
    try:  # the verdicts found reach the disk record however the stream ends
        for mapping, prob in maps:
            merges = bool(set(mapping.values()) & (present - set(mapping)))

            def usable(n: int, mapping: dict[str, str] = mapping) -> bool:
                (a,) = mapping
                names = _composition(_replaced(template_counts, {a: n}, mapping))
                return _admitted(gen, names, allowed)

            for sites_by_element, fraction in _site_choices(gen, sym, mapping, usable):
                if merges and fraction == 1.0:
                    continue
                replaced = {a: len(ix) for a, ix in sites_by_element.items()}
                names = _composition(_replaced(template_counts, replaced, mapping))
                if not _admitted(gen, names, allowed):
                    continue
                cell_formula, formula, chemsys, _ = names
                new_symbols, new_r3 = _decorate(sym, mapping, sites_by_element, old_r3)
                matrix, abc, volume = _scaled_lattice(sym, gen.rescale_volume, old_r3, new_r3)
                if gen.verify and verifier.seen(formula, matrix, new_symbols):
                    continue
                doc = _structure_dict(sym.base, matrix, abc, volume, frac, new_symbols, sym.symbols)
                if gen.identity == "structure":
                    cid = structure_hash(Structure.from_dict(doc))
                else:
                    cid = _decoration_id(sym, codes, mapping, sites_by_element, matrix)
                yield _candidate(
                    gen,
                    template,
                    sym,
                    cid,
                    doc,
                    mapping,
                    prob,
                    sites_by_element,
                    fraction,
                    (cell_formula, formula, chemsys),
                )
                n_out += 1
                if gen.max_per_template is not None and n_out >= gen.max_per_template:
                    return
    finally:
        verifier.flush()


def _replaced(
    counts: Counter, replaced: dict[str, int], mapping: dict[str, str]
) -> tuple[tuple[str, int], ...]:
    """The site counts of an outcome: ``replaced[a]`` sites of ``a`` become ``mapping[a]``."""
    out = dict(counts)
    for a, n in replaced.items():
        out[a] -= n
        out[mapping[a]] = out.get(mapping[a], 0) + n
    return tuple(sorted((el, n) for el, n in out.items() if n > 0))


def _admitted(gen: SAPSGenerator, names: tuple, allowed: set[str] | None) -> bool:
    """Whether an outcome of this composition is kept: inside the chemical space, and
    charge balanced where the generator asks for it."""
    formula, elements = names[1], names[3]
    if allowed is not None and not elements <= allowed:
        return False
    return gen.charge_balance is None or is_balanced(formula, gen.charge_balance)


def _candidate(
    gen: SAPSGenerator,
    template: Template,
    sym: TemplateSymmetry,
    cid: str,
    doc: dict[str, Any],
    mapping: dict[str, str],
    prob: float,
    sites_by_element: dict[str, tuple[int, ...]],
    fraction: float,
    names: tuple[str, str, str],
) -> Candidate:
    """The outcome as a Candidate, with the provenance the reference path records."""
    cell_formula, formula, chemsys = names
    return Candidate(
        id=cid,
        structure=doc,
        formula=cell_formula,
        reduced_formula=formula,
        chemsys=chemsys,
        nsites=len(doc["sites"]),
        generator=GENERATOR,
        generator_version=gen.version,
        template_id=template.id,
        substitution=dict(mapping),
        replaced_fraction=fraction,
        seed=gen.seed,
        campaign=gen.campaign,
        round=gen.round,
        fingerprint=formula,
        extra={
            "replaced_sites": sorted(i for ix in sites_by_element.values() for i in ix),
            "probability": prob,
            "template_spacegroup": sym.spacegroup,
            "supercell": list(gen.supercell) if gen.supercell else None,
            "partial_mode": gen.partial_mode if fraction < 1 else None,
        },
    )


def _decorate(
    sym: TemplateSymmetry,
    mapping: dict[str, str],
    sites_by_element: dict[str, tuple[int, ...]],
    old_r3: float,
) -> tuple[list[str], float]:
    """The outcome's species per site, and its summed cubed radii (the volume rescaling's
    numerator, as the reference path's ``_substitute`` computes it)."""
    new_symbols = list(sym.symbols)
    new_r3 = old_r3
    for a, indices in sites_by_element.items():
        b = mapping[a]
        for i in indices:
            new_symbols[i] = b
        new_r3 += len(indices) * radius_cube_change(a, b, sym.oxidation)
    return new_symbols, new_r3


def _scaled_lattice(
    sym: TemplateSymmetry, rescale: bool, old_r3: float, new_r3: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """``Lattice.scale``'s arithmetic (a uniform scaling of the columns, as pymatgen does),
    with what does not depend on the new volume done once per template."""
    abc0, versors, geo, ratios, volume0 = sym.scaling
    if not (rescale and old_r3 > 0 and new_r3 > 0):
        return sym.structure.lattice.matrix, abc0, volume0
    new_c = (volume0 * new_r3 / old_r3 / (geo * np.prod(ratios))) ** (1 / 3.0)
    factor = new_c / abc0[2]
    return versors * (new_c * ratios), abc0 * factor, volume0 * factor**3


def _decoration_id(
    sym: TemplateSymmetry,
    codes: dict[str, int],
    mapping: dict[str, str],
    sites_by_element: dict[str, tuple[int, ...]],
    matrix: np.ndarray,
) -> str:
    """The fast id: the template's key, the decoration made canonical under the template's
    group, and the scaled lattice (module docstring)."""
    species = np.array([codes[s] for s in sym.symbols], dtype=np.int64)
    for a, indices in sites_by_element.items():
        species[list(indices)] = codes[mapping[a]]
    names = {z: el for el, z in codes.items()}  # after the lookups: codes fill as met
    canon = ",".join(names[k] for k in _canonical(species, sym.perms)).encode()
    return hashlib.sha256(
        b"|".join(
            [
                sym.key.encode(),
                canon,
                np.round(matrix, 4).tobytes(),
            ]
        )
    ).hexdigest()[:16]


class _Verifier:
    """``verify``: an outcome StructureMatcher finds equal to an earlier one of the same
    template and formula is dropped; pair verdicts are cached across templates by labels.

    An outcome is kept as its scaled lattice and species only (the template's fractional
    coordinates are every outcome's): a template of four species may yield millions of
    outcomes, and a structure dict each held them in gigabytes."""

    def __init__(self, sym: TemplateSymmetry, present: set[str], frac: np.ndarray) -> None:
        self.sym = sym
        self.present = present
        self.frac = frac
        self.matcher: StructureMatcher | None = None
        self.kept: dict[str, list[tuple[np.ndarray, list[str]]]] = {}
        self.new_fits: list[tuple[tuple, tuple, bool]] = []  # for the template's disk record

    def flush(self) -> None:
        """The verdicts computed here, to the template's disk record (once per expansion)."""
        if self.sym.content_key:
            template_cache.add_fits(self.sym.content_key, self.new_fits)
        self.new_fits = []

    def seen(self, formula: str, matrix: np.ndarray, symbols: list[str]) -> bool:
        same = self.kept.setdefault(formula, [])
        new = None
        for other_matrix, other_symbols in same:
            if self.matcher is None:
                self.matcher = StructureMatcher(
                    primitive_cell=True, scale=True, attempt_supercell=False
                )
            key = (self.sym.key, *_pair_labels(symbols, other_symbols, self.present))
            fit = _fits.get(key)
            if fit is None:
                new = new or self._structure(matrix, symbols)
                fit = bool(self.matcher.fit(new, self._structure(other_matrix, other_symbols)))
                _remember_fit(key, fit)
                self.new_fits.append((key[1], key[2], fit))
            if fit:
                return True
        same.append((matrix, symbols))
        return False

    def _structure(self, matrix: np.ndarray, symbols: list[str]) -> Structure:
        return Structure(Lattice(matrix), symbols, self.frac)


_fits: OrderedDict[tuple, bool] = OrderedDict()
_FIT_CACHE = 200_000


def _pair_labels(
    first: list[str], second: list[str], template_elements: set[str]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Two outcomes' species per site with the elements new to the template renamed, in both
    alike, in order of first appearance (``#0``, ``#1``, ...).

    The verify step asks StructureMatcher whether two outcomes of one template with the same
    formula are one structure. Renaming species consistently in both, and scaling both to
    another common volume (outcomes with one formula share their volume), does not change the
    answer (the matcher compares species only for equality and, with ``scale=True``, works in
    volume-normalised units), so the answer is cached per template and pair of labels: the
    same decorations met again in another chemical system cost nothing.
    """
    names: dict[str, str] = {}

    def label(symbols: list[str]) -> tuple[str, ...]:
        return tuple(
            el if el in template_elements else names.setdefault(el, f"#{len(names)}")
            for el in symbols
        )

    return label(first), label(second)


def _remember_fit(key: tuple, fit: bool) -> None:
    """Cache a verify verdict in memory (new ones reach the template's disk record through
    :meth:`_Verifier.flush`, so later processes find them)."""
    _fits[key] = fit
    if len(_fits) > _FIT_CACHE:
        _fits.popitem(last=False)


def _structure_dict(
    base: dict[str, Any],
    matrix: np.ndarray,
    abc: np.ndarray,
    volume: float,
    frac: np.ndarray,
    symbols: list[str],
    old: list[str],
) -> dict[str, Any]:
    """``base`` (a Structure.as_dict()) on the lattice ``matrix`` with the species
    ``symbols``: what ``Structure.as_dict()`` writes for the substituted, rescaled structure
    (angles are unchanged by an isotropic scaling)."""
    lat = dict(base["lattice"])
    lat["matrix"] = matrix.tolist()
    if "a" in lat:
        lat["a"], lat["b"], lat["c"] = abc.tolist()
        lat["volume"] = float(volume)
    xyz = (frac @ matrix).tolist()
    sites = []
    for k, site in enumerate(base["sites"]):
        new = dict(site)
        new["xyz"] = xyz[k]
        if symbols[k] != old[k]:
            new["species"] = [{"element": symbols[k], "occu": 1}]
            new["label"] = symbols[k]
        sites.append(new)
    out = dict(base)
    out["lattice"] = lat
    out["sites"] = sites
    return out
