"""Candidate files: JSON (pymatgen dicts with provenance), JSON lines, and extended XYZ.

* ``.json``: a JSON array of candidate documents (``Candidate.to_doc()``: the pymatgen
  structure dict plus every provenance field), written one item at a time so memory stays
  flat however many candidates stream through.
* ``.jsonl``: one candidate document per line; reading it is streamed too.
* ``.extxyz`` / ``.xyz``: one frame per candidate, provenance in the frame's info line
  (``substitution`` as ``A:B,C:D``, ``extra`` as a JSON string), readable by ASE and OVITO.

Reading also accepts plain structure files: anything pymatgen reads (CIF, POSCAR, ...), a
Structure dict, a list of them or of ``{"structure": ...}`` records in JSON, and ASE
trajectories (``.traj``); those become candidates with generator ``file``.
:func:`read_structures` is the one reader every command that takes structures uses, so every
format is accepted everywhere and a bad file gives the same one-line error; every structure it
yields has passed :func:`gnomon.pipeline.generation.structure_checks.check_structure` (and a
CIF the strict reading of :func:`~gnomon.pipeline.generation.structure_checks.cif_blocks`),
the check ``db import`` makes too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError
from pymatgen.core import Structure

from gnomon.pipeline.generation.identity import candidate_from_structure
from gnomon.pipeline.generation.structure_checks import (
    StructureInputError,
    check_structure,
    read_structure_file,
)
from gnomon.storage import Candidate

logger = logging.getLogger(__name__)

_XYZ = {".extxyz", ".xyz"}
_ASE = {".traj"}
_INFO_SCALARS = (
    "generator",
    "generator_version",
    "template_id",
    "replaced_fraction",
    "seed",
    "campaign",
    "round",
    "fingerprint",
)


class CandidateFileError(ValueError):
    """A candidate file, or one record in it, could not be read."""


def file_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix in _XYZ:
        return "extxyz"
    if suffix == ".jsonl":
        return "jsonl"
    if suffix == ".json":
        return "json"
    if suffix in _ASE:
        return "ase"
    return "structure"


# -- writing ----------------------------------------------------------------------------------
def write_candidates(
    path: str | Path, candidates: Iterable[Candidate], fmt: str | None = None
) -> int:
    """Write candidates one at a time; returns how many were written."""
    path = Path(path)
    fmt = fmt or file_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    if fmt == "extxyz":
        # heavy: ase
        from ase.io import write as ase_write

        with path.open("w") as fh:
            for c in candidates:
                ase_write(fh, candidate_to_atoms(c), format="extxyz")
                n += 1
        return n
    if fmt not in ("json", "jsonl"):
        raise CandidateFileError(
            f"{path}: cannot write candidates as {fmt!r}; use .json, .jsonl or .extxyz"
        )
    with path.open("wb") as fh:
        if fmt == "json":
            fh.write(b"[")
        for c in candidates:
            if fmt == "json":
                fh.write(b"\n" if n == 0 else b",\n")
            fh.write(orjson.dumps(c.to_doc()))
            if fmt == "jsonl":
                fh.write(b"\n")
            n += 1
        if fmt == "json":
            fh.write(b"\n]\n")
    return n


def candidate_to_atoms(c: Candidate):
    # heavy: pymatgen.io
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = AseAtomsAdaptor.get_atoms(Structure.from_dict(c.structure))
    atoms.info = {"candidate_id": c.id}
    for key in _INFO_SCALARS:
        value = getattr(c, key)
        if value is not None and value != "":
            atoms.info[key] = value
    if c.substitution:
        atoms.info["substitution"] = ",".join(f"{a}:{b}" for a, b in c.substitution.items())
    if c.extra:
        atoms.info["extra"] = orjson.dumps(c.extra).decode()
    return atoms


# -- reading ----------------------------------------------------------------------------------
def read_candidates(path: str | Path) -> Iterator[Candidate]:
    """Candidates from a candidate file or a plain structure file, in file order."""

    path = Path(path)
    if not path.exists():
        raise CandidateFileError(f"{path}: no such file")
    fmt = file_format(path)
    if fmt == "extxyz":
        yield from _read_xyz(path)
        return
    if fmt in ("json", "jsonl"):
        for label, item in _json_items(path):
            where = f"{path} {label}"
            if isinstance(item, dict) and "generator" in item and "structure" in item:
                try:
                    yield Candidate.from_doc(item)
                except ValidationError as exc:
                    raise CandidateFileError(
                        f"{where} (id {item.get('id')}): {_first_error(exc)}"
                    ) from exc
            else:
                structure = _structure(_structure_doc(item, where), where)
                yield candidate_from_structure(structure, "file", extra={"source": str(path)})
        return
    for label, structure in read_structures(path):
        yield candidate_from_structure(
            structure, "file", extra={"source": str(path), "label": label}
        )


def read_structures(path: str | Path) -> Iterator[tuple[str, Structure]]:
    """``(label, structure)`` pairs from any file gnomon reads structures from.

    A candidate is labelled by its id; a structure by the file's name, with ``[k]`` appended
    where the file holds several. Every problem, in the file or in one of its structures
    (:func:`~gnomon.pipeline.generation.structure_checks.check_structure`), is a
    :class:`CandidateFileError` naming the file and, where there is one, the record.
    """
    path = Path(path)
    if not path.exists():
        raise CandidateFileError(f"{path}: no such file")
    try:
        for label, structure, where in _structures(path):
            yield label, check_structure(structure, where)
    except StructureInputError as exc:
        raise CandidateFileError(str(exc)) from None


def _structures(path: Path) -> Iterator[tuple[str, Structure, str]]:
    """``(label, structure, where)``, unchecked; ``where`` names the record in a message."""
    fmt = file_format(path)
    if fmt in ("json", "jsonl"):
        items = list(_json_items(path))
        for k, (where, item) in enumerate(items):
            at = f"{path} {where}" if len(items) > 1 else str(path)
            if isinstance(item, dict) and "generator" in item and "structure" in item:
                label = str(item.get("id") or f"{path.name}[{k}]")
                yield label, _structure(item["structure"], f"{path} {where}"), at
                continue
            label = f"{path.name}[{k}]" if len(items) > 1 else path.name
            doc = _structure_doc(item, f"{path} {where}")
            yield label, _structure(doc, f"{path} {where}"), at
        return
    if fmt == "extxyz":
        for k, c in enumerate(read_candidates(path)):
            yield c.id, Structure.from_dict(c.structure), f"{path}[frame {k}]"
        return
    if fmt == "ase":
        frames = _read_ase(path)
        for k, structure in enumerate(frames):
            several = len(frames) > 1
            yield (
                f"{path.name}[{k}]" if several else path.name,
                structure,
                f"{path}[frame {k}]" if several else str(path),
            )
        return
    yield from read_structure_file(path)


def _structure_doc(item: Any, where: str) -> dict[str, Any]:
    """A pymatgen Structure dict, bare or under ``"structure"`` (a task or entry record)."""
    if isinstance(item, dict) and "lattice" not in item and isinstance(item.get("structure"), dict):
        item = item["structure"]
    if isinstance(item, dict) and "lattice" in item and "sites" in item:
        return item
    raise CandidateFileError(f"{where}: neither a candidate nor a pymatgen Structure dict")


def _read_ase(path: Path) -> list[Structure]:
    # heavy: ase, pymatgen.io
    from ase.io import read
    from pymatgen.io.ase import AseAtomsAdaptor

    try:
        return [AseAtomsAdaptor.get_structure(atoms) for atoms in read(str(path), index=":")]
    except Exception as exc:  # noqa: BLE001 - ASE's readers raise anything; report it per file
        raise CandidateFileError(f"{path}: not a trajectory ASE can read ({exc})") from exc


def _json_items(path: Path) -> Iterator[tuple[str, Any]]:
    """``(where, item)``: ``line N`` of a JSON-lines file, ``record N`` of a JSON array."""
    if file_format(path) == "jsonl":
        with path.open("rb") as fh:
            for lineno, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        item = orjson.loads(line)
                    except orjson.JSONDecodeError as exc:
                        raise CandidateFileError(
                            f"{path} line {lineno}: invalid JSON ({exc})"
                        ) from exc
                    yield f"line {lineno}", item
        return
    try:
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise CandidateFileError(f"{path}: invalid JSON ({exc})") from exc
    if isinstance(data, list):
        for n, item in enumerate(data):
            yield f"record {n}", item
    else:
        yield "record 0", data


def _structure(doc: dict[str, Any], where: str) -> Structure:
    try:
        return Structure.from_dict(doc)
    except (KeyError, ValueError, TypeError) as exc:
        raise CandidateFileError(f"{where}: unreadable structure ({exc})") from exc


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    return f"{'.'.join(map(str, err['loc']))}: {err['msg']}"


def _read_xyz(path: Path) -> Iterator[Candidate]:
    # heavy: ase, pymatgen.io
    from ase.io import iread
    from pymatgen.io.ase import AseAtomsAdaptor

    try:
        frames = iread(str(path), index=":", format="extxyz")
        for atoms in frames:
            structure = AseAtomsAdaptor.get_structure(atoms)
            info = dict(atoms.info)
            prov: dict[str, Any] = {k: info[k] for k in _INFO_SCALARS if k in info}
            for key in ("seed", "round"):
                if key in prov:
                    prov[key] = int(prov[key])
            if "replaced_fraction" in prov:
                prov["replaced_fraction"] = float(prov["replaced_fraction"])
            for key in ("generator", "generator_version", "template_id", "campaign", "fingerprint"):
                if key in prov:
                    prov[key] = str(prov[key])
            if "substitution" in info:
                prov["substitution"] = dict(
                    pair.split(":", 1) for pair in str(info["substitution"]).split(",") if pair
                )
            if "extra" in info:
                extra = info["extra"]
                prov["extra"] = extra if isinstance(extra, dict) else orjson.loads(str(extra))
            generator = prov.pop("generator", "file")
            cid = info.get("candidate_id")
            yield candidate_from_structure(
                structure, generator, id=str(cid) if cid else None, **prov
            )
    except (ValueError, KeyError, IndexError) as exc:
        raise CandidateFileError(f"{path}: not a readable extended XYZ file ({exc})") from exc
