"""Planning a grow's waves (3, 4, ...): more of the same for every system, nothing twice.

Partial and full SAPS on the prototype library and on the world's own compounds near their
hull (as GNoME's later rounds substituted into its own discoveries), with a low probability
cut-off (less likely substitutions too); random search (SMACT-balanced, else relaxed balance)
where substitution finds too few. Nothing the world already holds is planned again
(StructureMatcher at gnomon's dedup tolerances).
"""

from __future__ import annotations

import logging
import random
import warnings
from collections import defaultdict
from typing import Any

from pymatgen.core import Composition, Structure

from gnomon.pipeline.generation.compositions import (
    BalanceMode,
    CompositionError,
    CompositionGenerator,
)
from gnomon.pipeline.generation.dedup import dedup_structures
from gnomon.pipeline.generation.random_search import RandomSearch
from gnomon.pipeline.generation.saps import SAPSGenerator
from gnomon.pipeline.generation.streaming import parallel_map
from gnomon.pipeline.generation.templates import Template, make_template
from gnomon.world.oracle import oracle_input
from gnomon.world.plan import Drawn, Planned, planned, prototypes, system_seed
from gnomon.world.systems import world_systems

log = logging.getLogger(__name__)

GROW_NEAR_HULL = 0.1  # eV/atom: world compounds used as templates in the grown waves
GROW_SAPS_THRESHOLD = 0.0005  # substitution probability cut-off of the grow (campaigns: 0.01)
GROW_MAX_RANDOM = 10  # random structures per system at most: pyxtal takes 2-15 s a quaternary


def _elements_of(formula: str) -> list[str]:
    return [e.symbol for e in Composition(formula).elements]


def new_against(existing: list[dict[str, Any]], pool: list[Drawn], k: int) -> list[Drawn]:
    """Up to ``k`` of ``pool``, distinct from each other and from every ``existing`` structure
    (StructureMatcher at gnomon's dedup tolerances)."""
    old = [Structure.from_dict(d) for d in existing]
    keep = dedup_structures(old + [s for _, _, s in pool[: 4 * k]])
    return [pool[i - len(old)] for i in keep if i >= len(old)][:k]


def _templates(elements: list[str], known: list[tuple[str, Structure]],
               max_sites: int) -> list[Template]:
    """Prototypes of at most the system's arity, and known compounds one substitution away."""
    arity, target = len(elements), set(elements)
    templates = [t for t in prototypes(max_sites) if len(t.structure.composition) <= arity]
    templates += [t for kid, st in known
                  if len(st.composition) <= arity
                  and len({e.symbol for e in st.composition} - target) <= 1
                  and isinstance(t := make_template(f"world:{kid}", st, "world"), Template)]
    return templates


def _saps_pool(system: str, templates: list[Template], need: int, seed: int) -> list[Drawn]:
    elements = system.split("-")
    saps = SAPSGenerator(elements=tuple(elements), max_species=len(elements), partial=True,
                         seed=seed, max_per_template=4, threshold=GROW_SAPS_THRESHOLD)
    pool: list[Drawn] = []
    for c in saps.generate(templates):
        if c.chemsys != system:
            continue
        structure = Structure.from_dict(c.structure)
        if oracle_input(structure)[1] is not None:
            # less likely substitutions keep the template's cell, often far too dense for the
            # new ions; the oracle would refuse them, so the plan takes the next one instead
            continue
        gen = "saps-known" if c.template_id.startswith("world:") else "saps-prototype"
        pool.append((gen, c.template_id, structure))
        if len(pool) >= 3 * need:
            break
    return pool


def balanced_formulas(elements: list[str]) -> list[str]:
    """Compositions of exactly ``elements``: SMACT-balanced, else with relaxed balance."""
    for mode in (BalanceMode.strict, BalanceMode.relaxed):
        try:
            formulas = [f for f in CompositionGenerator(max_atoms=8, mode=mode).generate(elements)
                        if set(_elements_of(f)) == set(elements)]
        except CompositionError:
            formulas = []
        if formulas:
            return formulas
    return []


def _random_fill(elements: list[str], short: int, rng: random.Random,
                 seed: int) -> list[Drawn]:
    """Random-search structures for ``short`` missing ones (twice as many, to dedup from)."""
    formulas = balanced_formulas(elements)
    if not formulas:
        return []
    formulas = rng.sample(formulas, min(len(formulas), max(1, short // 3)))
    search = RandomSearch(n_per_composition=max(1, -(-2 * short // len(formulas))),
                          max_atoms=8, seed=seed)
    return [("random", None, Structure.from_dict(c.structure)) for c in search.generate(formulas)]


def plan_grow_wave(system: str, need: int, existing: list[dict[str, Any]],
                   known: list[tuple[str, Structure]], wave: int = 3,
                   max_sites: int = 10) -> list[Planned]:
    """Up to ``need`` new structures for ``system`` that match none of ``existing`` (its
    world inputs, structure dicts): SAPS with a low probability cut-off (less likely
    substitutions too, as GNoME's later rounds did), random search only where SAPS finds
    under ``GROW_MAX_RANDOM`` (quaternaries few templates reach)."""
    if need <= 0:
        return []
    elements = system.split("-")
    seed = system_seed(f"w{wave}" + system)
    rng = random.Random(seed)
    templates = _templates(elements, known, max_sites)
    rng.shuffle(templates)
    pool = _saps_pool(system, templates, need, seed)
    rng.shuffle(pool)
    chosen = new_against(existing, pool, need)
    if len(chosen) < GROW_MAX_RANDOM:  # substitution finds (almost) nothing: random search
        short = min(need - len(chosen), GROW_MAX_RANDOM)
        randoms = _random_fill(elements, short, rng, seed)
        if randoms:
            chosen += new_against(existing + [s.as_dict() for _, _, s in chosen], randoms, short)
    return [planned(system, g, t, s) for g, t, s in chosen[:need]]


GrowJob = tuple[str, int, list[dict[str, Any]], list[tuple[str, dict[str, Any]]], int]


def _plan_grow_one(args: GrowJob) -> list[Planned]:
    system, need, existing, known, wave = args
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return plan_grow_wave(system, need, existing,
                              [(k, Structure.from_dict(d)) for k, d in known], wave)


def plan_grow(wave: int, per_system: int, rows: list[dict[str, Any]],
              workers: int) -> list[Planned]:
    """Wave ``wave``: every system up to ``per_system`` structures, templated on ``rows`` (the
    labelled world before the wave) within GROW_NEAR_HULL of their hull, as GNoME's later
    rounds substituted into its own discoveries."""
    by_system: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_system[r["planned_chemsys"]].append(r["unrelaxed"])
    known = [(r["id"], r["relaxed"]) for r in rows
             if r["generator"] != "element" and r["e_above_hull"] is not None
             and r["e_above_hull"] <= GROW_NEAR_HULL and r["nsites"] <= 12]
    jobs = [(s, per_system - len(by_system[s]), by_system[s], known, wave)
            for s in world_systems() if "-" in s and per_system > len(by_system[s])]
    out: list[Planned] = []
    for i, batch in enumerate(parallel_map(_plan_grow_one, jobs, workers), 1):
        out += batch
        log.info("wave %d planned %d/%d systems (%d structures)", wave, i, len(jobs), len(out))
    return out
