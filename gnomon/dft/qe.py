"""Quantum ESPRESSO: pw.x ``vc-relax`` as a jobflow Maker run under custodian.

Inputs come from the structure and the site's :class:`~gnomon.dft.settings.QESettings`
(pseudopotential directory and family, cutoffs, k-point spacing, smearing, spin). The input
lives as JSON (``qe_input.json``, files in :mod:`gnomon.dft.qe_io`) so custodian's handlers
can change it and re-render ``pw.in``; see :mod:`gnomon.dft.custodian` for the handlers::

    engine = QEEngine(QESettings(pseudo_dir="/usr/share/espresso/pseudo", ecutwfc=30))
    engine.check([si])                     # InputError: pw.x missing, a pseudopotential missing
    doc = engine.relax(si, "runs/si")      # TaskDocument, scheme "qe-pbe-pslibrary"
"""

from __future__ import annotations

import logging
import math
import os
import re
import shlex
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from jobflow import Maker, job
from pymatgen.core import Structure

from gnomon.dft.custodian import run_pw_custodian
from gnomon.dft.engine import RelaxEngine
from gnomon.dft.errors import InputError, RelaxationError
from gnomon.dft.qe_io import PW_OUT, parse_pw_output, read_input, render_input, write_input
from gnomon.dft.settings import QESettings, SiteSettings
from gnomon.dft.task import TaskDocument
from gnomon.pipeline.thermo.schemes import qe_scheme
from gnomon.storage.documents import stable_hash

log = logging.getLogger(__name__)

DEFAULT_PSEUDO_DIRS = ("~/espresso/pseudo", "/usr/share/espresso/pseudo")
USPP_PAW_DUAL = 8.0  # ecutrho / ecutwfc for ultrasoft and PAW pseudopotentials


# -- pseudopotentials -----------------------------------------------------------------------------


def pseudo_dir_of(settings: QESettings) -> Path | None:
    """The pseudopotential directory in force: settings, $ESPRESSO_PSEUDO, then the usual places."""
    candidates = [settings.pseudo_dir, os.environ.get("ESPRESSO_PSEUDO"), *DEFAULT_PSEUDO_DIRS]
    for c in candidates:
        if c and Path(c).expanduser().is_dir():
            return Path(c).expanduser().resolve()
    return None


def _tokens(name: str) -> set[str]:
    return {t for t in re.split(r"[._\-]", name.lower()) if t}


def _matches_family(filename: str, family: str, functional: str) -> bool:
    tokens = _tokens(filename)
    if functional.lower() not in tokens:
        return False
    family = family.lower()
    if family == "pslibrary":
        return any(t.startswith("psl") for t in tokens)
    return family in filename.lower()


def find_pseudos(
    elements: Sequence[str],
    pseudo_dir: Path,
    family: str,
    functional: str,
    overrides: dict[str, str],
) -> dict[str, str]:
    """Element -> UPF file name in ``pseudo_dir`` for ``family`` and ``functional``.

    ``overrides`` (QESettings.pseudo_map) wins. Among several matches the newest library
    version (highest version number in the name) is taken, so choices are reproducible.
    Raises InputError naming every element without a pseudopotential.
    """
    files = sorted(p.name for p in pseudo_dir.iterdir() if p.suffix.lower() == ".upf")
    chosen: dict[str, str] = {}
    missing: list[str] = []
    for el in sorted(set(elements)):
        if el in overrides:
            if not (pseudo_dir / overrides[el]).is_file():
                missing.append(f"{el} ({overrides[el]} not in {pseudo_dir})")
                continue
            chosen[el] = overrides[el]
            continue
        matches = [
            f
            for f in files
            if re.match(rf"^{el}[._\-]", f) and _matches_family(f, family, functional)
        ]
        if not matches:
            missing.append(el)
            continue
        chosen[el] = max(matches, key=lambda f: [int(x) for x in re.findall(r"\d+", f)] or [0])
    if missing:
        raise InputError(
            f"no {functional.upper()} {family} pseudopotential for {', '.join(missing)} in "
            f"{pseudo_dir}: add the UPF files or map them in qe.pseudo_map"
        )
    return chosen


def is_norm_conserving(upf: Path) -> bool:
    head = upf.read_text(errors="replace")[:20000].lower()
    return 'pseudo_type="nc"' in head or "norm-conserving" in head or "norm conserving" in head


# -- input ----------------------------------------------------------------------------------------


def kpoint_grid(structure: Structure, kspacing: float) -> list[int]:
    """Monkhorst-Pack divisions for a spacing in 1/Angstrom (2*pi included), as ASE/VASP do."""
    return [max(1, math.ceil(b / kspacing)) for b in structure.lattice.reciprocal_lattice.abc]


def build_input(
    structure: Structure, settings: QESettings, pseudos: dict[str, str], pseudo_dir: Path
) -> dict[str, Any]:
    """The pw.x vc-relax input as JSON-able namelists + cards."""
    ecutrho = settings.ecutrho
    if ecutrho is None:
        nc = all(is_norm_conserving(pseudo_dir / f) for f in pseudos.values())
        ecutrho = settings.ecutwfc * (4.0 if nc else USPP_PAW_DUAL)
    elements = sorted({str(el) for el in structure.composition.elements})
    spin = settings.spin == "on" or (
        settings.spin == "auto" and any(el in settings.magnetic_elements for el in elements)
    )
    system: dict[str, Any] = {
        "ibrav": 0,
        "nat": len(structure),
        "ntyp": len(elements),
        "ecutwfc": settings.ecutwfc,
        "ecutrho": ecutrho,
        "occupations": "smearing",
        "smearing": settings.smearing,
        "degauss": settings.degauss,
    }
    if spin:
        system["nspin"] = 2
        for i, el in enumerate(elements, start=1):
            mag = settings.starting_magnetization if el in settings.magnetic_elements else 0.0
            system[f"starting_magnetization({i})"] = mag
    control: dict[str, Any] = {
        "calculation": "vc-relax",
        "prefix": "gnomon",
        "outdir": "./tmp",
        "pseudo_dir": str(pseudo_dir),
        "tprnfor": True,
        "tstress": True,
        "nstep": settings.nstep,
        "etot_conv_thr": settings.etot_conv_thr,
        "forc_conv_thr": settings.forc_conv_thr,
        "disk_io": "low",
    }
    if settings.timeout_s:
        control["max_seconds"] = float(settings.timeout_s)
    return {
        "control": control,
        "system": system,
        "electrons": {
            "conv_thr": settings.conv_thr_per_atom * len(structure),
            "mixing_beta": settings.mixing_beta,
            "electron_maxstep": settings.electron_maxstep,
            "diagonalization": "david",
        },
        "ions": {"ion_dynamics": "bfgs"},
        "cell": {"cell_dynamics": "bfgs", "press_conv_thr": settings.press_conv_thr},
        "pseudos": pseudos,
        "kpoints": kpoint_grid(structure, settings.kspacing),
        "structure": structure.as_dict(),
    }


# -- the Maker ------------------------------------------------------------------------------------


@dataclass
class QERelaxMaker(Maker):
    """pw.x vc-relax of one structure under custodian (handlers in gnomon.dft.custodian).

    ``input`` is the JSON from :func:`build_input` minus the structure; the job writes it into
    its working directory, runs custodian there and returns the parsed output as a dict.
    If a previous attempt left a pw.out with ionic steps in the directory (a walltime kill),
    the relaxation restarts from its last geometry.
    """

    name: str = "qe vc-relax"
    input: dict[str, Any] = field(default_factory=dict)
    pw_command: list[str] = field(default_factory=lambda: ["pw.x"])
    max_errors: int = 5

    @job
    def make(self, structure: Structure) -> dict[str, Any]:
        directory = Path.cwd()
        start = structure
        previous = parse_pw_output(directory / PW_OUT)
        if previous.images and not previous.job_done:
            start = previous.final_structure
            log.info("restarting %s from the last geometry of the previous attempt", directory)
        write_input({**self.input, "structure": start.as_dict()}, directory)
        corrections = run_pw_custodian(directory, self.pw_command, max_errors=self.max_errors)
        out = parse_pw_output(directory / PW_OUT)
        if not out.images:
            raise RelaxationError(f"pw.x produced no energy in {directory / PW_OUT}")
        if not out.bfgs_converged:
            raise RelaxationError(
                f"pw.x vc-relax did not converge in {directory} "
                f"(scf failed: {out.scf_failed}, bfgs failed: {out.bfgs_failed})"
            )
        return {
            "structure": out.final_structure.as_dict(),
            "energy": out.energy,
            "forces": out.forces,
            "stress": out.stress_kbar,
            "converged": out.bfgs_converged and out.job_done,
            "electronic_converged": not out.scf_failed,
            "n_ionic_steps": len(out.images),
            "code_version": out.code_version,
            "corrections": corrections,
            "input": read_input(directory),
        }


@dataclass
class QEEngine(RelaxEngine):
    """Quantum ESPRESSO vc-relax with a site's pseudopotential family; scheme qe-<xc>-<family>."""

    name: ClassVar[str] = "qe"
    settings: QESettings = field(default_factory=QESettings)

    @classmethod
    def from_settings(cls, settings: SiteSettings, **options: Any) -> QEEngine:
        return cls(settings.qe.model_copy(update=options))

    @classmethod
    def from_spec(cls, settings: dict[str, Any]) -> QEEngine:
        return cls(QESettings.model_validate(settings))

    @property
    def scheme(self) -> str:
        return qe_scheme(self.settings.functional, self.settings.pseudo_family)

    def settings_payload(self) -> dict[str, Any]:
        s = self.settings.model_dump(mode="json")
        for local_only in ("pw_command", "mpi_command", "pseudo_dir", "timeout_s", "max_errors"):
            s.pop(local_only, None)
        return s

    def spec(self) -> dict[str, Any]:
        return {"engine": self.name, "settings": self.settings.model_dump(mode="json")}

    @property
    def pw_command(self) -> list[str]:
        cmd = shlex.split(self.settings.mpi_command or "") + shlex.split(self.settings.pw_command)
        return cmd

    def check(self, structures: Sequence[Structure]) -> None:
        exe = shlex.split(self.settings.pw_command)[0]
        if shutil.which(exe) is None:
            raise InputError(
                f"pw.x not found: {exe!r} is not on PATH (install Quantum ESPRESSO, e.g. "
                "the Debian package quantum-espresso, or set qe.pw_command)"
            )
        pseudo_dir = pseudo_dir_of(self.settings)
        if pseudo_dir is None:
            raise InputError(
                "no pseudopotential directory: set qe.pseudo_dir (GNOMON_QE__PSEUDO_DIR) or "
                "ESPRESSO_PSEUDO"
            )
        elements = sorted({str(el) for s in structures for el in s.composition.elements})
        find_pseudos(elements, pseudo_dir, self.settings.pseudo_family, self.settings.functional,
                     self.settings.pseudo_map)
        for s in structures:
            if not s.is_ordered:
                raise InputError(f"{s.composition.reduced_formula}: partial occupancies")

    def input_for(self, structure: Structure) -> dict[str, Any]:
        pseudo_dir = pseudo_dir_of(self.settings)
        if pseudo_dir is None:
            raise InputError("no pseudopotential directory configured (qe.pseudo_dir)")
        elements = [str(el) for el in structure.composition.elements]
        pseudos = find_pseudos(elements, pseudo_dir, self.settings.pseudo_family,
                               self.settings.functional, self.settings.pseudo_map)
        return build_input(structure, self.settings, pseudos, pseudo_dir)

    def maker(self, structure: Structure) -> QERelaxMaker:
        """The Maker with ``structure``'s pw.x input (pseudopotentials, cutoffs, k-points)."""
        inp = self.input_for(structure)
        inp.pop("structure", None)
        return QERelaxMaker(
            input=inp, pw_command=self.pw_command, max_errors=self.settings.max_errors
        )

    def inputs_hash(self, structure: Structure) -> str:
        inp = self.input_for(structure)
        inp["control"].pop("pseudo_dir", None)
        inp["control"].pop("max_seconds", None)
        return stable_hash({"pw.in": render_input(inp)})

    def to_task_document(self, output: Any, structure: Structure, workdir: Path) -> TaskDocument:
        inp = output["input"]
        return TaskDocument(
            engine=self.name,
            scheme=self.scheme,
            code="pw.x",
            code_version=output.get("code_version"),
            settings_hash=self.settings_hash,
            inputs_hash=self.inputs_hash(structure),
            structure=output["structure"],
            initial_structure=structure.as_dict(),
            energy=output["energy"],
            forces=output["forces"],
            stress=output["stress"],
            converged=output["converged"],
            electronic_converged=output["electronic_converged"],
            n_ionic_steps=output["n_ionic_steps"],
            parameters={
                "functional": self.settings.functional,
                "pseudo_family": self.settings.pseudo_family,
                "pseudos": inp["pseudos"],
                "ecutwfc": inp["system"]["ecutwfc"],
                "ecutrho": inp["system"]["ecutrho"],
                "kpoints": inp["kpoints"],
                "smearing": inp["system"]["smearing"],
                "degauss": inp["system"]["degauss"],
                "nspin": inp["system"].get("nspin", 1),
            },
            corrections=output["corrections"],
            dir_name=str(workdir),
        )
