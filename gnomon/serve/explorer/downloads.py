"""A phase's relaxed structure as the files people open elsewhere: CIF, POSCAR, pymatgen JSON.

Written by pymatgen's own writers (CifWriter, Poscar, Structure.as_dict), so every file reads
back with pymatgen, VESTA, ASE and the rest.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pymatgen.io.cif import CifWriter
from pymatgen.io.vasp import Poscar


@dataclass(frozen=True)
class Format:
    extension: str
    media_type: str
    write: Callable[[Any, str], str]  # (structure, title) -> file text


def _cif(structure, title: str) -> str:
    return str(CifWriter(structure))


def _poscar(structure, title: str) -> str:
    return Poscar(structure, comment=title).get_str()


def _json(structure, title: str) -> str:
    return json.dumps(structure.as_dict(), indent=1)


FORMATS: dict[str, Format] = {
    "cif": Format("cif", "chemical/x-cif", _cif),
    "poscar": Format("vasp", "text/plain", _poscar),
    "json": Format("json", "application/json", _json),
}

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_stem(text: str, default: str = "structure") -> str:
    """``text`` with only characters every file system and header accepts, never starting
    with a dot (no ``..``, no hidden file, no path)."""
    return _UNSAFE.sub("_", text).strip("._") or default


def filename(formula: str, phase_id: str, fmt: str) -> str:
    """``LiMnO2_<id>.cif``: only characters every file system and header accepts."""
    stem = safe_stem(f"{formula}_{phase_id}")
    if fmt == "poscar":
        return f"POSCAR_{stem}.vasp"
    return f"{stem}.{FORMATS[fmt].extension}"


def content_disposition(name: str) -> str:
    return f'attachment; filename="{name}"'
