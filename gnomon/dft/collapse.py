"""A relaxation that ends with atoms inside one another has left its potential's domain.

Machine-learned potentials have holes. Started from a cell far denser than its ions allow
(a SAPS substitution keeps its template's volume), CHGNet can relax into a cell where a pair
sits at half its bond length, at an energy 5-10 eV/atom above the elements, and call it
converged. No DFT code would return that energy, and SevenNet-0 on the same cells returns
anything from 10^2 to 10^11 eV/atom. Such a result is a failed relaxation, not a data point:
kept, it would put a made-up energy into a hull and into every model trained on it.

The line drawn: the closest pair nearer than :data:`COLLAPSED_FRACTION` of the sum of its
covalent radii (Cordero et al., Dalton Trans. 2008, as ``ase.data.covalent_radii``). Real
bonds stay above about 0.75 of that sum (the shortest, triple bonds: N≡N is 1.10 Å against
1.42). In the benchmark world of 2026-12-02, 16 of 6,218 CHGNet results fell below 0.6, all
with formation energies of +4.9 to +10.5 eV/atom; the next ones up (0.63-0.70) were ordinary
Cs and Rb salts, whose covalent radii are generous.
"""

from __future__ import annotations

from pymatgen.core import Structure

from gnomon.pipeline.generation.physical import close_pair

COLLAPSED_FRACTION = 0.6
"""Of a pair's covalent radii sum: a pair nearer than this means the cell has collapsed."""


def collapsed_pair(structure: Structure, fraction: float = COLLAPSED_FRACTION) -> str | None:
    """Why ``structure`` is no crystal, naming its closest offending pair; None if it is one.

    The same line as the generators' physical check draws on their inputs
    (:func:`gnomon.pipeline.generation.physical.close_pair`), drawn here on results.
    """
    pair = close_pair(structure, fraction)
    return None if pair is None else "collapsed: " + pair.describe(structure, fraction)


__all__ = ["COLLAPSED_FRACTION", "collapsed_pair"]
