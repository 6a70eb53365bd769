"""The space group a person reads beside a formula: what tells two polymorphs apart.

One tolerance for every place gnomon names a space group (the entry as the hull engine's
ingest stores it, the ``phases`` and ``hull`` tables, the explorer's phase page):
``SPACEGROUP_SYMPREC`` = 0.1 Å, pymatgen's usual choice for relaxed cells, loose enough that a
relaxation's residual forces do not drop a cubic cell to triclinic. The group is found when an
entry is stored, not when it is made: spglib takes a millisecond on most cells and up to a
second on a few, which the world's thousands of entries that are never stored need not pay.
"""

from __future__ import annotations

from typing import Any

from pymatgen.core import Structure

from gnomon.storage.documents import Entry

SPACEGROUP_SYMPREC = 0.1  # Å


def spacegroup_of(structure: Structure, symprec: float = SPACEGROUP_SYMPREC) -> str | None:
    """International symbol and number, ``"Fm-3m (225)"``; None where spglib finds none."""
    # heavy: pymatgen.symmetry
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        sga = SpacegroupAnalyzer(structure, symprec=symprec)
        return f"{sga.get_space_group_symbol()} ({sga.get_space_group_number()})"
    except (ValueError, TypeError, RuntimeError):
        return None


def stored_spacegroup(data: dict[str, Any] | None, structure: dict[str, Any] | None) -> str | None:
    """The space group stored with an entry (``data["spacegroup"]``, written at ingest), else
    computed from its structure dict (entries stored before gnomon kept it); None without a
    structure."""
    if data and data.get("spacegroup"):
        return str(data["spacegroup"])
    if structure is None:
        return None
    return spacegroup_of(Structure.from_dict(structure))


def with_spacegroup(entry: Entry) -> Entry:
    """``entry`` with its space group in ``data["spacegroup"]``, as the database stores it (so a
    table of 10^5 phases reads the groups instead of running spglib on each); unchanged without
    a structure or when it already has one."""
    if entry.structure is None or "spacegroup" in entry.data:
        return entry
    group = spacegroup_of(Structure.from_dict(entry.structure))
    return entry.model_copy(update={"data": {"spacegroup": group, **entry.data}})
