"""Only physical candidates reach the screen: each is brought to a predicted volume, and one
with a pair of atoms closer than their radii allow is refused, with its reason counted.

A substitution keeps its template's density, so a Ga template gives "Al" at a sixth of its
real volume and a prototype from the library can hold a binary sulfide at 0.6 Å^3/atom. A
screen trained on relaxed crystals has never seen such a cell; the ML potential that relaxes
it can spend 24 GB of neighbour lists on it. The volume prediction is the radii rule random
search already packs to (:func:`~gnomon.pipeline.generation.random_search.
estimate_volume_per_atom`: atomic spheres times a packing factor), applied by an isotropic
scaling, so the cell's shape and fractional coordinates are kept. A pair nearer than
``min_pair_fraction`` of its covalent bond length (Cordero et al. 2008, as
``ase.data.covalent_radii``) after that is no crystal to screen: real bonds stay above about
0.75 of it (N≡N, the shortest, at 0.77). Inputs get 0.7, a stricter line than the 0.6 a
relaxation's result is judged collapsed by (:mod:`gnomon.dft.collapse`, drawn where the
world's collapsed results and its shortest real ones parted): an input is nobody's result, and
one this close (an O-O pair at 0.85 Å) only spends a relaxation.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from ase.data import covalent_radii
from pymatgen.core import Structure

from gnomon.pipeline.generation.random_search import estimate_volume_per_atom
from gnomon.storage import Candidate

TOO_CLOSE_FRACTION = 0.7
"""Of a pair's covalent radii sum: an input pair nearer than this is refused."""


@dataclass(frozen=True)
class ClosePair:
    """The closest offending pair of a structure, in the words a refusal needs."""

    i: int
    j: int
    distance: float
    bond: float

    def describe(self, structure: Structure, fraction: float) -> str:
        a = structure[self.i].species.elements[0]
        b = structure[self.j].species.elements[0]
        where = (
            f"site {self.i} and its periodic image"
            if self.i == self.j
            else f"sites {self.i} and {self.j}"
        )
        return (
            f"{a}-{b} ({where}) at {self.distance:.2f} Å, under {fraction:g} of their "
            f"covalent bond length {self.bond:.2f} Å"
        )


def close_pair(structure: Structure, fraction: float = TOO_CLOSE_FRACTION) -> ClosePair | None:
    """The pair (periodic images count) nearest to ``fraction`` of its covalent bond length
    and under it, or None. Disordered sites are judged by their first species."""
    z = np.array([site.species.elements[0].Z for site in structure])
    radius = covalent_radii[z]
    reach = fraction * 2.0 * float(radius.max())
    centres, neighbours, _, distances = structure.get_neighbor_list(reach)
    if len(distances) == 0:
        return None
    ratio = distances / (fraction * (radius[centres] + radius[neighbours]))
    worst = int(np.argmin(ratio))
    if ratio[worst] >= 1.0:
        return None
    i, j = int(centres[worst]), int(neighbours[worst])
    return ClosePair(i, j, float(distances[worst]), float(radius[i] + radius[j]))


@dataclass
class PhysicalCheck:
    """Rescale every candidate to its predicted volume, refuse those with a pair too close.

    ``rescale`` off keeps the generator's volume (then only the pair check runs).
    ``refused`` counts the refusals by reason (``too_close``, ``unreadable``) for the round's
    record; ``rescaled`` counts the candidates whose volume changed by more than 1 %.
    """

    rescale: bool = True
    min_pair_fraction: float = TOO_CLOSE_FRACTION
    refused: Counter[str] | None = None
    rescaled: int = 0

    def __post_init__(self) -> None:
        if self.refused is None:
            self.refused = Counter()

    def structure(self, structure: Structure) -> tuple[Structure | None, str | None]:
        """The structure at its predicted volume, or None and why it is refused."""
        out = structure
        if self.rescale:
            target = estimate_volume_per_atom(structure.composition) * len(structure)
            if abs(structure.volume / target - 1.0) > 0.01:
                out = structure.copy()
                out.scale_lattice(target)
                self.rescaled += 1
        pair = close_pair(out, self.min_pair_fraction)
        if pair is not None:
            return None, "too close: " + pair.describe(out, self.min_pair_fraction)
        return out, None

    def candidates(self, stream: Iterable[Candidate]) -> Iterator[Candidate]:
        """The physical candidates of ``stream``, rescaled; the rest counted in ``refused``."""
        assert self.refused is not None
        for candidate in stream:
            try:
                structure = Structure.from_dict(candidate.structure)
            except (KeyError, ValueError, TypeError):
                self.refused["unreadable"] += 1
                continue
            kept, reason = self.structure(structure)
            if kept is None:
                self.refused["too_close"] += 1
                continue
            if kept is not structure:
                candidate = candidate.model_copy(update={"structure": kept.as_dict()})
            yield candidate

    def counts(self) -> dict[str, int]:
        """What the round's record keeps: refusals by reason and how many were rescaled."""
        assert self.refused is not None
        return {"refused": dict(self.refused), "rescaled": self.rescaled}
