"""One check for every structure a person hands gnomon: ``db import``, ``model predict``,
``relax`` and ``generate --templates`` all refuse the same inputs, for the same reason, in the
same words.

A structure worth a hull, a screen or a relaxation is one ordered crystal: it has sites, a
cell with a volume, real elements, and no two atoms on top of each other (closer than
:data:`MIN_DISTANCE`, far below any bond: two Li 0.04 Å apart are a broken file, not a
prediction to make). A CIF must also be the file it says it is. One cut at a line boundary
keeps its header, so it still declares ``_chemical_formula_sum 'Li8 O4'`` while its atom loop
holds only the four Li; read as it is, it becomes a lithium reference at -14 eV/atom. So a
CIF block whose declared formula disagrees with its sites is refused, naming both
compositions, and what pymatgen only warns about while parsing (occupancies summing past 1,
implicit hydrogens, a block with no structure) is an error here. Its harmless notes (P1
assumed, coordinates rounded) are not.

Generated candidates get a stricter, radius-aware pair check on top
(:mod:`gnomon.pipeline.generation.physical`): an input of ours is nobody's result.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from pymatgen.core import Composition, DummySpecies, Structure

MIN_DISTANCE = 0.5
"""Å: closer pairs (periodic images included) are overlapping atoms, not a crystal."""

DECLARED_FORMULA_KEYS = ("_chemical_formula_sum", "_chemical_formula_structural")
"""The CIF items that declare a block's composition, most trusted first."""

FORMULA_TOLERANCE = 0.01
"""Largest difference of any element's atomic fraction between a CIF's declared formula and
its sites (pymatgen's own ``comp_tol``): a formula rounded to two decimals still passes."""

# What pymatgen's CIF parser only warns about but which means the structure is not the one in
# the file (matched case-insensitively against its warning texts).
_CORRUPTING_WARNINGS = (
    "occupanc",
    "implicit hydrogens",
    "no structure parsed",
    "missing elements",
    "incorrect stoichiometry",
    "cannot determine chemical composition",
)


class StructureInputError(ValueError):
    """A structure file, or one structure in it, that gnomon refuses: ``where`` names it (the
    file, and the block or record), ``problem`` says why."""

    def __init__(self, where: str, problem: str):
        self.where = where
        self.problem = problem
        super().__init__(f"{where}: {problem}")


def structure_problem(structure: Structure) -> str | None:
    """Why ``structure`` cannot be a gnomon input, in a few words; None when it can."""
    if len(structure) == 0:
        return "the structure has no sites"
    if not structure.is_ordered:
        disordered = sorted({s.species_string for s in structure if not s.is_ordered})
        return (
            f"the structure is disordered (partial occupancies on {', '.join(disordered[:3])}); "
            "a single ordered structure is required (order it first, e.g. with pymatgen's "
            "OrderDisorderedStructureTransformation)"
        )
    dummies = sorted({str(sp) for sp in structure.composition if isinstance(sp, DummySpecies)})
    if dummies:
        return f"the structure holds dummy species {dummies}"
    volume = structure.lattice.volume
    if not np.isfinite(volume) or np.linalg.det(structure.lattice.matrix) <= 1e-8:
        return f"the cell volume is {volume:.4g} Å^3 (must be positive)"
    return _overlap(structure)


def _overlap(structure: Structure) -> str | None:
    centres, neighbours, images, distances = structure.get_neighbor_list(
        MIN_DISTANCE, exclude_self=False
    )
    itself = (centres == neighbours) & np.all(images == 0, axis=1)
    centres, neighbours, distances = centres[~itself], neighbours[~itself], distances[~itself]
    if not len(distances):
        return None
    k = int(np.argmin(distances))
    i, j, d = int(centres[k]), int(neighbours[k]), float(distances[k])
    where = (
        f"site {i} ({structure[i].species_string}) and its periodic image"
        if i == j
        else f"sites {i} ({structure[i].species_string}) and {j} ({structure[j].species_string})"
    )
    return f"overlapping atoms: {where} are {d:.3f} Å apart (< {MIN_DISTANCE} Å)"


def check_structure(structure: Structure, where: str) -> Structure:
    """``structure`` if it can be an input, else StructureInputError naming ``where``."""
    problem = structure_problem(structure)
    if problem is not None:
        raise StructureInputError(where, problem)
    return structure


# -- CIF ---------------------------------------------------------------------------------------
def cif_blocks(path: Path) -> Iterator[tuple[str, Structure | StructureInputError]]:
    """``(block name, structure)`` for every data block of a CIF, read strictly.

    A block that cannot be trusted comes back as the StructureInputError saying why (its
    declared formula disagrees with its sites, pymatgen warned of a corrupting problem, or
    nothing could be read), so that an import can name each bad record; a file that is no
    CIF at all raises StructureInputError.
    """
    # heavy: pymatgen.io
    from pymatgen.io.cif import CifParser

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parser = CifParser(str(path), occupancy_tolerance=1.0, check_cif=False)
    # pymatgen's CIF reader raises whatever its parsing hits (ZeroDivisionError included) on
    # a malformed file; at this boundary any such error means "this file is not a CIF"
    except Exception as exc:  # noqa: BLE001
        raise StructureInputError(str(path), f"malformed CIF: {_one_line(exc)}") from None
    blocks = list(parser._cif.data.items())
    if not blocks:
        raise StructureInputError(str(path), "malformed CIF: no data blocks")
    file_notes = list(parser.warnings)
    for name, block in blocks:
        where = f"{path}[{name}]" if len(blocks) > 1 else str(path)
        try:
            yield name, _cif_block(parser, block, where, file_notes)
        except StructureInputError as exc:
            yield name, exc


def _cif_block(parser, block, where: str, file_notes: list[str]) -> Structure:
    before = len(parser.warnings)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            structure = parser._get_structure(block, primitive=False, symmetrized=False)
        # see cif_blocks: anything pymatgen raises on one block means that block is unreadable
        except Exception as exc:  # noqa: BLE001
            raise StructureInputError(where, f"unreadable structure: {_one_line(exc)}") from None
    notes = [*file_notes, *parser.warnings[before:], *(str(w.message) for w in caught)]
    corrupting = [n for n in notes if any(c in n.lower() for c in _CORRUPTING_WARNINGS)]
    if corrupting:
        raise StructureInputError(where, _one_line(corrupting[0]))
    if structure is None:
        raise StructureInputError(where, "no structure could be read from this block")
    mismatch = _declared_formula_mismatch(block, structure)
    if mismatch is not None:
        raise StructureInputError(where, mismatch)
    return structure


def _declared_formula_mismatch(block, structure: Structure) -> str | None:
    """Why the block's declared formula and its sites disagree (None when they agree or the
    block declares none)."""
    for key in DECLARED_FORMULA_KEYS:
        text = block.data.get(key)
        if isinstance(text, list):
            text = text[0] if text else None
        if text is None or str(text).strip() in ("", "?", "."):
            continue
        try:
            declared = Composition(str(text)).element_composition
        except (ValueError, KeyError) as exc:
            return f"cannot read the declared formula {key} {text!r} ({_one_line(exc)})"
        found = structure.composition.element_composition
        if _same_stoichiometry(declared, found):
            return None
        return (
            f"the declared formula {declared.formula} ({key}) disagrees with the sites, which "
            f"hold {found.formula} (was the file cut or edited?)"
        )
    return None


def _same_stoichiometry(a: Composition, b: Composition) -> bool:
    fa, fb = a.fractional_composition, b.fractional_composition
    if set(fa.elements) != set(fb.elements):
        return False
    return all(abs(fa[el] - fb[el]) <= FORMULA_TOLERANCE for el in fa.elements)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


# -- any structure file ------------------------------------------------------------------------
def read_structure_file(path: Path) -> list[tuple[str, Structure, str]]:
    """``(label, structure, where)`` of a structure file pymatgen reads: a CIF strictly
    (:func:`cif_blocks`), a POSCAR or another format as pymatgen reads it. ``where`` names
    the structure in a message; the caller checks each with :func:`check_structure`."""
    if path.suffix.lower() in (".cif", ".mcif"):
        blocks = list(cif_blocks(path))
        out = []
        for name, structure in blocks:
            if isinstance(structure, StructureInputError):
                raise structure
            several = len(blocks) > 1
            out.append((
                f"{path.name}[{name}]" if several else path.name,
                structure,
                f"{path}[{name}]" if several else str(path),
            ))
        return out
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = Structure.from_file(path)
    except Exception as exc:  # noqa: BLE001 - pymatgen's parsers raise anything; report it per file
        raise StructureInputError(
            str(path), f"not a structure file pymatgen can read ({_one_line(exc)})"
        ) from exc
    return [(path.name, structure, str(path))]
