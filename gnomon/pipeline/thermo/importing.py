"""Reading computed energies from files into entries.

Supported: JSON lists (or single objects) of pymatgen ComputedEntry / ComputedStructureEntry
dicts; extended XYZ with an energy per frame; CIF files whose energies come from an energy
table (CSV with a ``file`` column, an optional ``block`` column for multi-block CIFs, and
``energy`` in eV per cell or ``energy_per_atom``). Every record that cannot become an entry is
reported with the file, the record and the reason; callers decide whether that stops the
import.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pymatgen.core import Structure
from pymatgen.entries.computed_entries import ComputedEntry, ComputedStructureEntry

from gnomon.pipeline.generation.structure_checks import StructureInputError, cif_blocks
from gnomon.pipeline.thermo.entries import EntryValidationError, entry_from_computed, make_entry
from gnomon.storage.documents import Entry

log = logging.getLogger(__name__)

ENERGY_KEYS = ("energy", "Energy", "total_energy", "free_energy", "REF_energy")


@dataclass
class Rejected:
    record: str
    reason: str

    def __str__(self) -> str:
        return f"{self.record}: {self.reason}"


@dataclass
class ImportResult:
    entries: list[Entry] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    records: int = 0


class ImportFormatError(ValueError):
    """A file gnomon cannot read at all (not one bad record in it)."""


def _reject(result: ImportResult, record: str, reason: str) -> None:
    result.rejected.append(Rejected(record, reason))


def _append(result: ImportResult, build, record: str) -> None:
    result.records += 1
    try:
        result.entries.append(build())
    except EntryValidationError as exc:
        _reject(result, exc.record, exc.problem)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        _reject(result, record, f"{type(exc).__name__}: {exc}")


# -- JSON ------------------------------------------------------------------------------------
def _computed_from_dict(doc: Any, record: str) -> ComputedEntry:
    if not isinstance(doc, dict):
        raise EntryValidationError(record, f"expected an entry object, got {type(doc).__name__}")
    cls = doc.get("@class", "ComputedStructureEntry" if "structure" in doc else "ComputedEntry")
    if "energy" not in doc:
        raise EntryValidationError(record, "energy is missing")
    energy = doc["energy"]
    if energy is None or (isinstance(energy, float) and not math.isfinite(energy)):
        raise EntryValidationError(record, f"energy is {energy} (must be a finite number)")
    if cls == "ComputedStructureEntry":
        return ComputedStructureEntry.from_dict(doc)
    if cls == "ComputedEntry":
        return ComputedEntry.from_dict(doc)
    raise EntryValidationError(record, f"unsupported entry class {cls!r}")


def read_json(path: Path, scheme: str, **provenance: Any) -> ImportResult:
    result = ImportResult()
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ImportFormatError(
            f"{path}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except UnicodeDecodeError:
        raise ImportFormatError(f"{path}: not a text file") from None
    if isinstance(data, dict) and "entries" in data and isinstance(data["entries"], list):
        data = data["entries"]
    docs = data if isinstance(data, list) else [data]
    for i, doc in enumerate(docs):
        label = f"{path}[{i}]"
        if isinstance(doc, dict) and doc.get("entry_id") is not None:
            label += f" ({doc['entry_id']})"
        record_scheme = (
            (doc.get("data") or {}).get("scheme", scheme) if isinstance(doc, dict) else scheme
        )

        def build(doc=doc, label=label, record_scheme=record_scheme) -> Entry:
            computed = _computed_from_dict(doc, label)
            return entry_from_computed(
                computed, record_scheme, record=label, source=str(path), **provenance
            )

        _append(result, build, label)
    return result


# -- extended XYZ ----------------------------------------------------------------------------
def _frame_energy(atoms) -> float | None:
    for key in ENERGY_KEYS:
        if key in atoms.info:
            return atoms.info[key]
    if atoms.calc is not None:
        try:
            return atoms.get_potential_energy()
        except (RuntimeError, NotImplementedError, AttributeError):
            return None
    return None


def read_extxyz(path: Path, scheme: str, **provenance: Any) -> ImportResult:
    # heavy: ase, pymatgen.io
    from ase.io import read
    from ase.io.extxyz import XYZError
    from pymatgen.io.ase import AseAtomsAdaptor

    result = ImportResult()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frames = read(str(path), index=":", format="extxyz")
    except (ValueError, KeyError, IndexError, StopIteration, XYZError) as exc:
        raise ImportFormatError(
            f"{path}: malformed extended XYZ: {type(exc).__name__}: {exc}"
        ) from None
    for i, atoms in enumerate(frames):
        label = f"{path}[frame {i}]"

        def build(atoms=atoms, label=label) -> Entry:
            if not atoms.pbc.all():
                raise EntryValidationError(
                    label, "frame is not periodic in three directions (pbc must be T T T)"
                )
            structure = AseAtomsAdaptor.get_structure(atoms)
            energy = _frame_energy(atoms)
            if energy is None:
                raise EntryValidationError(
                    label, f"no energy (looked for {', '.join(ENERGY_KEYS)} and a calculator)"
                )
            return make_entry(
                structure.composition,
                energy,
                scheme,
                structure=structure,
                record=label,
                source=str(path),
                **provenance,
            )

        _append(result, build, label)
    return result


# -- CIF with an energy table ----------------------------------------------------------------
def read_energy_table(path: Path) -> dict[tuple[str, str | None], dict[str, str]]:
    """Rows of a CIF energy table keyed by (file name, block or None)."""
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or "file" not in reader.fieldnames:
                raise ImportFormatError(
                    f"{path}: an energy table needs a 'file' column "
                    "(and 'energy' or 'energy_per_atom')"
                )
            if not {"energy", "energy_per_atom"} & set(reader.fieldnames):
                raise ImportFormatError(
                    f"{path}: an energy table needs an 'energy' or 'energy_per_atom' column"
                )
            rows = {}
            for row in reader:
                key = (Path(row["file"]).name, row.get("block") or None)
                rows[key] = row
            return rows
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ImportFormatError(f"{path}: malformed CSV: {exc}") from None


def _cif_structures(path: Path) -> Iterator[tuple[str, Structure | Exception]]:
    """Every block of a CIF, read strictly (a declared formula that disagrees with the sites,
    or a corrupting parse warning, makes that block an error: structure_checks.cif_blocks)."""
    try:
        yield from cif_blocks(path)
    except StructureInputError as exc:
        raise ImportFormatError(str(exc)) from None


def read_cif(
    path: Path,
    scheme: str,
    table: dict[tuple[str, str | None], dict[str, str]] | None,
    **provenance: Any,
) -> ImportResult:
    result = ImportResult()
    for block, structure in _cif_structures(path):
        label = f"{path}[{block}]"

        def build(block=block, structure=structure, label=label) -> Entry:
            if isinstance(structure, StructureInputError):
                raise EntryValidationError(label, structure.problem)
            row = None
            if table is not None:
                row = table.get((path.name, block)) or table.get((path.name, None))
            if row is None:
                raise EntryValidationError(
                    label,
                    "no energy for this structure in the energy table "
                    "(pass a CSV with file[,block],energy columns)",
                )
            if row.get("energy") not in (None, ""):
                energy = float(row["energy"])
            else:
                energy = float(row["energy_per_atom"]) * structure.composition.num_atoms
            return make_entry(
                structure.composition,
                energy,
                scheme,
                structure=structure,
                record=label,
                source=str(path),
                **provenance,
            )

        _append(result, build, label)
    return result


def read_files(paths: list[Path], scheme: str, **provenance: Any) -> ImportResult:
    """Entries from every file; CSV files among ``paths`` are energy tables for the CIFs."""
    tables = [p for p in paths if p.suffix.lower() == ".csv"]
    table: dict[tuple[str, str | None], dict[str, str]] = {}
    for t in tables:
        table.update(read_energy_table(t))
    total = ImportResult()
    for path in paths:
        if path in tables:
            continue
        if not path.exists():
            raise ImportFormatError(f"{path}: no such file")
        suffix = "".join(path.suffixes[-1:]).lower()
        if suffix == ".json":
            part = read_json(path, scheme, **provenance)
        elif suffix in (".extxyz", ".xyz"):
            part = read_extxyz(path, scheme, **provenance)
        elif suffix == ".cif":
            part = read_cif(path, scheme, table if tables else None, **provenance)
        else:
            raise ImportFormatError(
                f"{path}: unknown format {suffix!r} (expected .json, .extxyz, .xyz, .cif, .csv)"
            )
        total.entries.extend(part.entries)
        total.rejected.extend(part.rejected)
        total.records += part.records
    return total
