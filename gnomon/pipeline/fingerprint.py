"""A cheap structural fingerprint that buckets candidates before StructureMatcher decides.

Two structures that pymatgen's StructureMatcher (default tolerances, ``scale=True``,
``primitive_cell=True``) calls equal almost always share

* the reduced formula (the matcher compares compositions first),
* the number of formula units in the primitive cell (the matcher reduces to primitive cells),
* the space group found at a loose tolerance (``symprec=0.1``; a matcher with ``stol=0.3``
  forgives distortions smaller than that, so a tight tolerance would split true duplicates).

The fingerprint is those three joined as text, ``"LiMnO2|166|1"``. It is stored on every
candidate and indexed, so finding the database's possible duplicates of a new candidate is one
index lookup whose cost does not grow with the number of stored candidates.

The fingerprint is a bucket key, not an identity: a structure whose symmetry sits right on
the tolerance can land in a neighbouring bucket, and then a duplicate is missed (never a
distinct structure thrown away). ``structure_hash`` in :mod:`gnomon.pipeline.identity` is the
identity.
"""

from __future__ import annotations

import logging

from pymatgen.core import Structure

logger = logging.getLogger(__name__)

FINGERPRINT_SYMPREC = 0.1
FINGERPRINT_VERSION = "1"


def fingerprint(structure: Structure, symprec: float = FINGERPRINT_SYMPREC) -> str:
    """``"<reduced formula>|<space group number>|<formula units per primitive cell>"``."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    formula = structure.composition.reduced_formula
    try:
        sga = SpacegroupAnalyzer(structure, symprec=symprec)
        number = int(sga.get_space_group_number())
        primitive = sga.find_primitive()
        nsites = len(primitive) if primitive is not None else len(structure)
    except (ValueError, TypeError, RuntimeError) as exc:
        logger.debug("symmetry of %s not found (%s); bucketing as P1", formula, exc)
        number, nsites = 1, len(structure)
    z = max(1, round(nsites / structure.composition.reduced_composition.num_atoms))
    return f"{formula}|{number}|{z}"


def formula_of(fp: str) -> str:
    """The reduced formula a fingerprint starts with."""
    return fp.split("|", 1)[0]
