"""A candidate's identity: a content hash of its structure.

Two cells of the same crystal (a supercell, a shifted origin, permuted sites) should get the
same hash as often as cheaply possible, so the hash is taken over spglib's standardized
primitive cell, rounded. Where symmetry analysis fails the Niggli-reduced cell is used.
The hash is an identity, not a similarity: near-duplicates are the dedup stage's job.

SAPS candidates made by the fast path (:mod:`gnomon.pipeline.generation.saps_fast`, the
default) carry a cheaper identity instead, computed without spglib: a hash of the template's
cell, the outcome's site decoration made canonical under the template's symmetry group, and
the rescaled lattice. The same outcome of the same template always gets the same id (whichever
chemical system or run produced it); ``SAPSGenerator(identity="structure")`` gives the hash
of this module instead. Either way, structures equal across different ids are merged by
StructureMatcher in :mod:`gnomon.pipeline.generation.dedup`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pymatgen.core import Structure

from gnomon.storage.documents import Candidate, stable_hash

_LATTICE_DECIMALS = 2
_FRAC_DECIMALS = 3


def canonical_cell(structure: Structure, symprec: float = 0.01) -> Structure:
    """spglib's standardized primitive cell, or the Niggli cell when that fails."""
    # heavy: pymatgen.symmetry
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        return SpacegroupAnalyzer(structure, symprec=symprec).get_primitive_standard_structure()
    except (ValueError, TypeError, RuntimeError):
        return structure.get_reduced_structure()


def structure_hash(structure: Structure) -> str:
    """A 16-hex-digit content hash: reduced formula + canonical lattice and sites."""
    cell = canonical_cell(structure)
    frac = np.mod(np.round(cell.frac_coords, _FRAC_DECIMALS), 1.0)
    frac = np.where(np.isclose(frac, 1.0, atol=10**-_FRAC_DECIMALS), 0.0, frac)
    sites = sorted(
        (site.species_string, *np.round(f, _FRAC_DECIMALS).tolist())
        for site, f in zip(cell, frac, strict=True)
    )
    payload = {
        "formula": structure.composition.reduced_formula,
        "abc": np.round(cell.lattice.abc, _LATTICE_DECIMALS).tolist(),
        "angles": np.round(cell.lattice.angles, _LATTICE_DECIMALS - 1).tolist(),
        "sites": sites,
    }
    return stable_hash(payload)


def candidate_from_structure(structure: Structure, generator: str, **provenance: Any) -> Candidate:
    """A Candidate record for ``structure`` with its provenance (template_id, substitution,
    replaced_fraction, seed, campaign, round, fingerprint, generator_version, extra)."""
    comp = structure.composition
    return Candidate(
        id=provenance.pop("id", None) or structure_hash(structure),
        structure=structure.as_dict(),
        formula=comp.formula.replace(" ", ""),
        reduced_formula=comp.reduced_formula,
        chemsys=comp.chemical_system,
        nsites=len(structure),
        generator=generator,
        **provenance,
    )
