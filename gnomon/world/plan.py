"""Planning the first build's waves: what the oracle will relax, system by system.

* **Elements:** every element's reference, ASE's dcdft set (the structures the Delta test
  uses).
* **Wave 1** per system: SAPS on pymatgen's AFLOW prototype library (full substitutions into
  the system, up to ``arity`` species at once) and pyxtal random search on SMACT-balanced
  compositions. Duplicates inside a system are dropped with StructureMatcher.
* **Wave 2**: SAPS on *known compounds*, the wave-1 phases near their hull (the world's own
  database, as GNoME grew from its own), partially and fully substituted into the systems of
  the world.
"""

from __future__ import annotations

import hashlib
import logging
import random
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ase.collections import dcdft
from pymatgen.core import Structure
from pymatgen.io.ase import AseAtomsAdaptor

from gnomon.pipeline.generation.compositions import CompositionError, CompositionGenerator
from gnomon.pipeline.generation.dedup import dedup_structures
from gnomon.pipeline.generation.identity import structure_hash
from gnomon.pipeline.generation.random_search import RandomSearch
from gnomon.pipeline.generation.saps import SAPSGenerator
from gnomon.pipeline.generation.streaming import parallel_map
from gnomon.pipeline.generation.templates import Template, make_template, prototype_templates
from gnomon.world.systems import ELEMENTS

log = logging.getLogger(__name__)

Drawn = tuple[str, str | None, Structure]
"""(generator, template id, structure): a structure drawn for a plan."""


@dataclass
class Planned:
    id: str
    chemsys: str
    generator: str  # saps-prototype | saps-known | random | element
    template: str | None
    structure: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def system_seed(tag: str) -> int:
    """A seed of its own for each system (and wave), stable across runs and machines."""
    return int(hashlib.sha256(tag.encode()).hexdigest()[:8], 16)


def plain(structure: Structure) -> dict[str, Any]:
    """A structure without site properties (magmoms etc. are not inputs of the oracle)."""
    s = Structure(structure.lattice, [site.specie for site in structure], structure.frac_coords)
    return s.as_dict()


def planned(system: str, generator: str, template: str | None, structure: Structure) -> Planned:
    return Planned(f"{system}:{structure_hash(structure)}", system, generator, template,
                   plain(structure))


def sample_distinct(structures: list[Drawn], k: int, seed: int) -> list[Drawn]:
    """Up to ``k`` of ``structures``, drawn at random, no two the same (StructureMatcher)."""
    rng = random.Random(seed)
    rng.shuffle(structures)
    keep = dedup_structures([s for _, _, s in structures[: 4 * k]])
    return [structures[i] for i in keep][:k]


def plan_elements(elements: Sequence[str] = tuple(ELEMENTS)) -> list[Planned]:
    """Every element's reference: ASE's dcdft structure (KeyError for one it lacks)."""
    planned_ = []
    for el in elements:
        s = AseAtomsAdaptor.get_structure(dcdft[el])
        planned_.append(Planned(f"el-{el}", el, "element", "ase:dcdft", plain(s)))
    return planned_


_PROTOTYPES: dict[int, list[Template]] = {}


def prototypes(max_sites: int) -> list[Template]:
    """The usable AFLOW prototype templates, read once per process."""
    if max_sites not in _PROTOTYPES:
        _PROTOTYPES[max_sites] = [t for t in prototype_templates(max_sites=max_sites)
                                  if isinstance(t, Template)]
    return _PROTOTYPES[max_sites]


def _wave1_saps(system: str, n_saps: int, max_sites: int, seed: int) -> list[Drawn]:
    elements = system.split("-")
    arity = len(elements)
    saps = SAPSGenerator(elements=tuple(elements), max_species=arity, partial=False, seed=seed,
                         max_per_template=4)
    pool = []
    templates = [t for t in prototypes(max_sites) if len(t.structure.composition) == arity]
    random.Random(seed).shuffle(templates)
    for c in saps.generate(templates):
        if c.chemsys == system:
            pool.append(("saps-prototype", c.template_id, Structure.from_dict(c.structure)))
        if len(pool) >= 3 * n_saps:
            break
    return sample_distinct(pool, n_saps, seed)


def _wave1_random(system: str, n_random: int, seed: int) -> list[Drawn]:
    elements = system.split("-")
    try:
        formulas = list(CompositionGenerator(max_atoms=8).generate(elements))
    except CompositionError:
        formulas = []
    rng = random.Random(seed)
    formulas = rng.sample(formulas, min(len(formulas), max(1, n_random // 3)))
    search = RandomSearch(n_per_composition=max(1, -(-n_random // max(len(formulas), 1))),
                          max_atoms=8, seed=seed)
    randoms: list[Drawn] = [("random", None, Structure.from_dict(c.structure))
                            for c in search.generate(formulas)]
    return sample_distinct(randoms, n_random, seed + 1)


def plan_wave1(system: str, n_saps: int, n_random: int, max_sites: int = 8) -> list[Planned]:
    """SAPS on the prototype library plus random search, for one system."""
    seed = system_seed(system)
    chosen = _wave1_saps(system, n_saps, max_sites, seed)
    chosen += _wave1_random(system, n_random, seed)
    return [planned(system, gen, tpl, s) for gen, tpl, s in chosen]


def _plan_one(args: tuple[str, int, int]) -> list[Planned]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyxtal/spglib chatter on odd draws; not our output
        return plan_wave1(*args)


def plan_wave1_all(systems: list[str], n_saps: int, n_random: int,
                   workers: int) -> list[Planned]:
    """The elements and wave 1 of every system, ``workers`` processes."""
    plans = list(plan_elements())
    jobs = [(s, n_saps, n_random) for s in systems]
    for i, batch in enumerate(parallel_map(_plan_one, jobs, workers), 1):
        plans += batch
        log.info("wave 1 planned %d/%d systems (%d structures)", i, len(systems), len(plans))
    return plans


def _near(templates: list[Template], target: set[str], max_templates: int,
          seed: int) -> list[Template]:
    """Known compounds one substitution away: at most one foreign element, no more elements
    than the target system; a seeded ``max_templates`` of them."""
    near = [t for t in templates
            if len(t.structure.composition) <= len(target)
            and len({e.symbol for e in t.structure.composition} - target) <= 1]
    random.Random(seed).shuffle(near)
    return near[:max_templates]


def plan_wave2(systems: list[str], known: list[tuple[str, Structure]], per_system: int,
               max_templates: int = 16) -> list[Planned]:
    """SAPS on known compounds (id, relaxed structure) into every system of the world."""
    templates = [t for kid, st in known
                 if isinstance(t := make_template(f"world:{kid}", st, "world"), Template)]
    out: list[Planned] = []
    for system in systems:
        elements = system.split("-")
        if len(elements) < 2:
            continue
        seed = system_seed("w2" + system)
        near = _near(templates, set(elements), max_templates, seed)
        saps = SAPSGenerator(elements=tuple(elements), max_species=2, partial=True, seed=seed,
                             max_per_template=3)
        pool: list[Drawn] = []
        for c in saps.generate(near):
            if c.chemsys == system:
                pool.append(("saps-known", c.template_id, Structure.from_dict(c.structure)))
            if len(pool) >= 3 * per_system:
                break
        out += [planned(system, g, t, s) for g, t, s in sample_distinct(pool, per_system, seed)]
        log.info("wave 2 planned %s: %d", system, len(out))
    return out
