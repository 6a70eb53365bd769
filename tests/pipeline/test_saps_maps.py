"""SAPS's substitution maps are read lazily, in exactly the order of sorting them all.

``SAPSGenerator.substitution_maps`` once listed every product of the allowed elements over a
template's substituted species and sorted it; with four species over 40 elements that is up
to two million maps for one template (a 10^6-candidate round grew past 16 GB before its
second chunk). It now walks them best first. Here the full listing, as it was, is the
specification: the same maps, in the same order, on prototypes of one to four elements.
"""

from __future__ import annotations

import itertools
import math

import pytest

from gnomon.pipeline.generation.saps import SAPSGenerator, SubstitutionMaps
from gnomon.pipeline.generation.substitution import oxidation_guess, substitution_probability
from gnomon.pipeline.generation.templates import prototype_templates


def listed_maps(gen: SAPSGenerator, structure, oxidation) -> list[tuple[dict[str, str], float]]:
    """The maps as the generator listed and sorted them before they were read lazily."""
    present = sorted({el.symbol for el in structure.composition.elements})
    options = {
        a: [
            (b, p)
            for b in gen.elements
            if b != a
            and (p := substitution_probability(a, b, oxidation.get(a))[0]) >= gen.threshold
        ]
        for a in present
    }
    outside = gen.outside(structure)
    if len(outside) > gen.max_species:
        return []
    maps = []
    for r in range(1, gen.max_species + 1):
        for species in itertools.combinations(present, r):
            if not outside <= set(species):
                continue
            kept_species = set(present) - set(species)
            for choice in itertools.product(*(options[a] for a in species)):
                targets = [b for b, _ in choice]
                merges = len(set(targets)) < len(targets) or bool(kept_species & set(targets))
                if merges and not (gen.partial and r == 1):
                    continue
                maps.append((dict(zip(species, targets, strict=True)),
                             math.prod(p for _, p in choice)))
    maps.sort(key=lambda mp: (-mp[1], sorted(mp[0].items())))
    return maps


ELEMENTS = ("Li", "Na", "K", "Mg", "Ca", "Sr", "Al", "Ga", "Ti", "Zr", "Fe", "Mn", "O", "S", "F")


@pytest.mark.parametrize(("max_species", "threshold", "partial"),
                         [(1, 1e-3, True), (2, 1e-4, False), (3, 1e-3, True), (4, 1e-2, False)])
def test_lazy_maps_are_the_sorted_listing(max_species, threshold, partial):
    gen = SAPSGenerator(elements=ELEMENTS, threshold=threshold, max_species=max_species,
                        partial=partial)
    templates = [t for t in prototype_templates(max_sites=8) if hasattr(t, "structure")]
    by_species = {}
    for t in templates:  # a few of each number of elements, up to four
        by_species.setdefault(len(t.structure.composition.elements), []).append(t)
    checked = 0
    for group in by_species.values():
        for t in group[:3]:
            oxidation = oxidation_guess(t.structure)
            lazy = gen.substitution_maps(t.structure, oxidation)
            assert isinstance(lazy, SubstitutionMaps)
            want = listed_maps(gen, t.structure, oxidation)
            assert list(lazy) == want
            assert list(lazy) == want  # read again: the same, made again
            assert bool(lazy) == bool(want)
            checked += len(want)
    assert checked > 0


def test_only_what_is_read_is_made():
    """Four species over the 15 elements: the first ten maps cost ten, not the listing."""
    gen = SAPSGenerator(elements=ELEMENTS, threshold=1e-4, max_species=4)
    t = max((t for t in prototype_templates(max_sites=16) if hasattr(t, "structure")),
            key=lambda t: len(t.structure.composition.elements))
    lazy = gen.substitution_maps(t.structure, oxidation_guess(t.structure))
    first = list(itertools.islice(lazy, 10))
    assert len(first) == 10 and lazy.read == 10
    probs = [p for _, p in first]
    assert probs == sorted(probs, reverse=True)
