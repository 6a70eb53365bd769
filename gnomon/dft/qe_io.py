"""pw.x's files: the input as JSON (``qe_input.json``) rendered to ``pw.in``, and ``pw.out`` read
back (ASE's espresso-out reader for the images, plain text for the flags ASE does not report:
convergence, job done, code version).

Both the engine (:mod:`gnomon.dft.qe`) and custodian's handlers (:mod:`gnomon.dft.custodian`)
read and rewrite these files, so they live here, below both, and neither imports the other
for them.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase.calculators.calculator import PropertyNotImplementedError
from ase.io import read
from ase.stress import voigt_6_to_full_3x3_stress
from pymatgen.core import Element, Structure
from pymatgen.io.ase import AseAtomsAdaptor

log = logging.getLogger(__name__)

INPUT_JSON = "qe_input.json"
PW_IN = "pw.in"
PW_OUT = "pw.out"
PW_ERR = "pw.err"

EV_PER_A3_TO_KBAR = 1602.1766208


# -- input ----------------------------------------------------------------------------------------


def _fortran(value: Any) -> str:
    if isinstance(value, bool):
        return ".true." if value else ".false."
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value).replace("e", "d")
    return f"'{value}'"


def render_input(inp: dict[str, Any]) -> str:
    """pw.in text from the JSON that :func:`gnomon.dft.qe.build_input` makes."""
    structure = Structure.from_dict(inp["structure"])
    lines: list[str] = []
    for name in ("control", "system", "electrons", "ions", "cell"):
        lines.append(f"&{name.upper()}")
        lines += [f"  {k} = {_fortran(v)}" for k, v in inp[name].items()]
        lines.append("/")
    lines.append("ATOMIC_SPECIES")
    for el, upf in sorted(inp["pseudos"].items()):
        lines.append(f"  {el} {Element(el).atomic_mass:.4f} {upf}")
    lines.append("CELL_PARAMETERS angstrom")
    lines += ["  " + " ".join(f"{x:.10f}" for x in row) for row in structure.lattice.matrix]
    lines.append("ATOMIC_POSITIONS crystal")
    for site in structure:
        lines.append(f"  {site.specie.symbol} " + " ".join(f"{x:.10f}" for x in site.frac_coords))
    lines.append("K_POINTS automatic")
    lines.append("  " + " ".join(str(k) for k in inp["kpoints"]) + " 0 0 0")
    return "\n".join(lines) + "\n"


def write_input(inp: dict[str, Any], directory: str | Path) -> None:
    """Write ``qe_input.json`` (what handlers edit) and the ``pw.in`` rendered from it."""
    directory = Path(directory)
    (directory / INPUT_JSON).write_text(json.dumps(inp, indent=1))
    (directory / PW_IN).write_text(render_input(inp))


def read_input(directory: str | Path) -> dict[str, Any]:
    return json.loads((Path(directory) / INPUT_JSON).read_text())


# -- output ---------------------------------------------------------------------------------------

_VERSION = re.compile(r"Program PWSCF v\.?\s*([^\s]+)")
_SCF_FAIL = re.compile(r"convergence NOT achieved after\s+(\d+)\s+iterations")
_WALLTIME = re.compile(r"Maximum CPU time exceeded", re.I)
_BFGS_FAIL = re.compile(
    r"(bfgs failed|history already reset at previous step|"
    r"The maximum number of steps has been reached)",
    re.I,
)
_BFGS_OK = re.compile(r"bfgs converged", re.I)
_JOB_DONE = re.compile(r"JOB DONE")
# pw.x's errore() block: a row of %, "Error in routine NAME (CODE):", the message, a row of %
_ERROR = re.compile(
    r"%{20,}\s*\n\s*Error in routine\s+(\S+)\s*\((-?\d+)\):\s*\n(.*?)\n\s*%{20,}", re.S
)


@dataclass(frozen=True)
class PWError:
    """pw.x's own account of why it stopped (errore), as opposed to MPI's MPI_ABORT notice."""

    routine: str
    code: int
    message: str

    def __str__(self) -> str:
        return f"Error in routine {self.routine} ({self.code}): {self.message}"


@dataclass
class PWOutput:
    """What one pw.x output says."""

    path: Path
    text: str
    images: list = field(default_factory=list)  # ase.Atoms with single-point results

    @property
    def code_version(self) -> str | None:
        m = _VERSION.search(self.text)
        return m.group(1) if m else None

    @property
    def job_done(self) -> bool:
        return bool(_JOB_DONE.search(self.text))

    @property
    def scf_failed(self) -> bool:
        return bool(_SCF_FAIL.search(self.text))

    @property
    def walltime_reached(self) -> bool:
        return bool(_WALLTIME.search(self.text))

    @property
    def bfgs_failed(self) -> bool:
        return bool(_BFGS_FAIL.search(self.text))

    @property
    def bfgs_converged(self) -> bool:
        return bool(_BFGS_OK.search(self.text))

    @property
    def error(self) -> PWError | None:
        m = _ERROR.search(self.text)
        if m is None:
            return None
        return PWError(m.group(1), int(m.group(2)), " ".join(m.group(3).split()))

    @property
    def final_structure(self) -> Structure | None:
        if not self.images:
            return None
        return AseAtomsAdaptor.get_structure(self.images[-1])

    @property
    def energy(self) -> float | None:
        if not self.images:
            return None
        return float(self.images[-1].get_potential_energy())

    @property
    def forces(self) -> list[list[float]] | None:
        if not self.images:
            return None
        try:
            return np.asarray(self.images[-1].get_forces(), dtype=float).tolist()
        except (PropertyNotImplementedError, RuntimeError):
            return None

    @property
    def stress_kbar(self) -> list[list[float]] | None:
        """Stress in kBar with VASP's (and atomate2's) sign: ASE's eV/A^3 times -1602.18."""
        if not self.images:
            return None
        calc = self.images[-1].calc
        stress = None if calc is None else calc.results.get("stress")
        if stress is None:
            return None
        full = (
            voigt_6_to_full_3x3_stress(np.asarray(stress))
            if np.shape(stress) == (6,)
            else np.asarray(stress)
        )
        return (-full * EV_PER_A3_TO_KBAR).tolist()


def parse_pw_output(path: str | Path) -> PWOutput:
    """Read a pw.x output file; images are empty if pw.x stopped before the first SCF."""
    path = Path(path)
    text = path.read_text(errors="replace") if path.exists() else ""
    images: list = []
    if text:
        try:
            images = read(path, format="espresso-out", index=":")
        except (ValueError, IndexError, StopIteration, KeyError, AssertionError) as exc:
            log.debug("no complete image in %s: %s", path, exc)
            images = []
    return PWOutput(path=path, text=text, images=list(images))
