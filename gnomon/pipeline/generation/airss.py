"""AIRSS glue: buildcell seed files in, structures out.

``buildcell`` (from AIRSS, https://airss-docs.github.io) reads a CASTEP-style seed ``.cell``
on stdin and writes one random structure as a ``.cell`` on stdout. This module writes seeds
(composition via ``% NUM=``, ``#VARVOL``, ``#MINSEP`` with per-pair values, ``#SYMMOPS``,
``#COMPACT``), runs buildcell with a timeout, and reads what it wrote. AIRSS's own pipeline
stores results as SHELX ``.res`` files; those are read with pymatgen.io.res
(:func:`read_res`, :func:`read_res_dir`), e.g. to import the output of an ``airss.pl`` run
made elsewhere; when AIRSS's ``cabal`` converter is on PATH, buildcell's output takes the same
route (``cabal cell res``, then pymatgen.io.res), otherwise the ``.cell`` is parsed directly.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
from pymatgen.core import Composition, Lattice, Structure

logger = logging.getLogger(__name__)


class BuildcellError(RuntimeError):
    """buildcell is missing, failed, timed out, or wrote something unreadable."""


def seed_text(
    composition: Composition,
    volume_per_atom: float,
    minsep: Mapping[tuple[str, str], float],
    symmops: str | None = "2-4",
    compact: bool = True,
) -> str:
    """A buildcell seed for exactly ``composition`` at ``volume_per_atom``.

    One POSITIONS row per element with ``% NUM=`` its count; ``#VARVOL`` is the volume per row
    times the rows (buildcell scales by the NUM expansion); ``#MINSEP`` gives the smallest
    separation as the default and every pair explicitly.
    """
    counts = {el.symbol: int(round(n)) for el, n in composition.element_composition.items()}
    natoms = sum(counts.values())
    edge = (volume_per_atom * natoms) ** (1 / 3)
    lines = [f"# gnomon seed for {composition.formula.replace(' ', '')}", "%BLOCK LATTICE_CART"]
    lines += [" ".join(f"{edge if i == j else 0.0:.4f}" for j in range(3)) for i in range(3)]
    lines += ["%ENDBLOCK LATTICE_CART", "", "%BLOCK POSITIONS_FRAC"]
    for el, n in counts.items():
        lines.append(f"{el} 0.0 0.0 0.0 # {el}1 % NUM={n}")
    lines += ["%ENDBLOCK POSITIONS_FRAC", ""]
    lines.append(f"#VARVOL={volume_per_atom * len(counts):.4f}")
    pairs = " ".join(f"{a}-{b}={d:.3f}" for (a, b), d in sorted(minsep.items()))
    lines.append(f"#MINSEP={min(minsep.values()):.3f} {pairs}")
    if symmops:
        lines.append(f"#SYMMOPS={symmops}")
    if compact:
        lines.append("#COMPACT")
    return "\n".join(lines) + "\n"


def write_seed(path: str | Path, text: str) -> Path:
    path = Path(path)
    path.write_text(text)
    return path


def run_buildcell(
    seed: str, executable: str = "buildcell", timeout: float = 60.0, label: str = "seed"
) -> Structure:
    """One structure from buildcell for the seed text; BuildcellError on any failure."""
    exe = shutil.which(executable)
    if exe is None:
        raise BuildcellError(
            f"{executable!r} is not on PATH; install AIRSS (https://airss-docs.github.io) "
            "or use the pyxtal backend"
        )
    try:
        proc = subprocess.run(
            [exe],
            input=seed,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
    except subprocess.TimeoutExpired as exc:
        raise BuildcellError(
            f"buildcell timed out after {timeout:g} s on the {label} seed"
        ) from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise BuildcellError(
            f"buildcell failed on the {label} seed (exit {proc.returncode}): {' | '.join(tail)}"
        )
    cabal = shutil.which("cabal")
    if cabal is not None:  # AIRSS's converter: the .res route airss.pl itself takes
        return _cell_to_res_structure(cabal, proc.stdout, timeout, label)
    try:
        return parse_cell(proc.stdout)
    except ValueError as exc:
        raise BuildcellError(
            f"buildcell wrote an unreadable cell for the {label} seed: {exc}"
        ) from exc


def _cell_to_res_structure(cabal: str, cell: str, timeout: float, label: str) -> Structure:
    # heavy: pymatgen.io
    from pymatgen.io.res import ResIO

    try:
        proc = subprocess.run(
            [cabal, "cell", "res"], input=cell, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        raise BuildcellError(f"cabal timed out converting the {label} structure") from exc
    if proc.returncode != 0:
        raise BuildcellError(
            f"cabal cell res failed on the {label} structure (exit {proc.returncode})"
        )
    try:
        return ResIO.structure_from_str(proc.stdout)
    except Exception as exc:  # noqa: BLE001 - pymatgen's res parser raises several types
        raise BuildcellError(f"unreadable .res for the {label} structure: {exc}") from exc


def _blocks(text: str) -> dict[str, list[str]]:
    blocks: dict[str, list[str]] = {}
    current: str | None = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        upper = line.upper()
        if upper.startswith("%BLOCK"):
            current = upper.split()[1]
            blocks[current] = []
        elif upper.startswith("%ENDBLOCK"):
            current = None
        elif current is not None:
            blocks[current].append(line)
    return blocks


def parse_cell(text: str) -> Structure:
    """A structure from a CASTEP ``.cell`` as buildcell writes it (LATTICE_ABC or
    LATTICE_CART; POSITIONS_FRAC or POSITIONS_ABS)."""
    blocks = _blocks(text)
    if "LATTICE_ABC" in blocks:
        rows = [r for r in blocks["LATTICE_ABC"] if not r.upper().startswith("ANG")]
        abc = [float(x) for x in rows[0].split()[:3]]
        angles = [float(x) for x in rows[1].split()[:3]]
        lattice = Lattice.from_parameters(*abc, *angles)
    elif "LATTICE_CART" in blocks:
        rows = [r for r in blocks["LATTICE_CART"] if not r.upper().startswith("ANG")]
        lattice = Lattice(np.array([[float(x) for x in r.split()[:3]] for r in rows[:3]]))
    else:
        raise ValueError("no LATTICE_ABC or LATTICE_CART block")
    if "POSITIONS_FRAC" in blocks:
        rows, frac = blocks["POSITIONS_FRAC"], True
    elif "POSITIONS_ABS" in blocks:
        rows, frac = blocks["POSITIONS_ABS"], False
    else:
        raise ValueError("no POSITIONS_FRAC or POSITIONS_ABS block")
    rows = [r for r in rows if not r.upper().startswith("ANG")]
    if not rows:
        raise ValueError("no atoms")
    species = [r.split()[0] for r in rows]
    coords = [[float(x) for x in r.split()[1:4]] for r in rows]
    return Structure(lattice, species, coords, coords_are_cartesian=not frac)


def read_res(path: str | Path) -> Structure:
    """A structure from an AIRSS/SHELX ``.res`` file (pymatgen.io.res)."""
    # heavy: pymatgen.io
    from pymatgen.io.res import ResIO

    try:
        return ResIO.structure_from_file(str(path))
    except Exception as exc:  # noqa: BLE001 - pymatgen's res parser raises several types
        raise BuildcellError(f"{path}: not a readable .res file ({exc})") from exc


def read_res_dir(directory: str | Path) -> Iterator[tuple[str, Structure]]:
    """``(name, structure)`` for every ``.res`` file of an AIRSS run, sorted by name."""
    for path in sorted(Path(directory).glob("*.res")):
        yield path.stem, read_res(path)


def write_res(path: str | Path, structure: Structure) -> Path:
    # heavy: pymatgen.io
    from pymatgen.io.res import ResIO

    path = Path(path)
    path.write_text(ResIO.structure_to_str(structure))
    return path
