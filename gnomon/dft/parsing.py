"""Parsing: engine outputs into task documents, task documents into entries.

- ``task_from_forcefield``: atomate2's ForceFieldTaskDocument (CHGNet).
- ``parse_pw_output``: a pw.x output file (ASE's espresso-out reader for the images, plain
  text for the flags ASE does not report: convergence, job done, code version).
- ``task_from_vasp``: emmet's TaskDoc as atomate2's VASP makers produce it.
- ``entry_from_task``: a task document into a validated Entry of its scheme.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure

from gnomon.dft.errors import RelaxationError
from gnomon.dft.task import TaskDocument
from gnomon.storage.documents import Entry

log = logging.getLogger(__name__)

EV_PER_A3_TO_KBAR = 1602.1766208


def task_from_forcefield(
    doc: Any,
    *,
    engine: str,
    scheme: str,
    settings_hash: str,
    inputs_hash: str,
    initial: Structure,
    fmax: float,
    steps: int,
    model_version: str,
    dir_name: str | None = None,
) -> TaskDocument:
    """gnomon's document from atomate2's ForceFieldTaskDocument."""
    out = doc.output
    if out is None or out.energy is None:
        raise RelaxationError("force-field relaxation produced no energy")
    structure = out.structure if getattr(out, "structure", None) is not None else doc.structure
    n_steps = getattr(out, "n_steps", None)
    converged = bool(doc.is_force_converged)
    stress = None
    if out.stress is not None:
        # atomate2 reports stress in kBar with VASP's sign already
        stress = np.asarray(out.stress, dtype=float).reshape(3, 3).tolist()
    return TaskDocument(
        engine=engine,
        scheme=scheme,
        code="chgnet",
        code_version=f"chgnet {doc.forcefield_version} model {model_version}",
        settings_hash=settings_hash,
        inputs_hash=inputs_hash,
        structure=structure.as_dict(),
        initial_structure=initial.as_dict(),
        energy=float(out.energy),
        forces=np.asarray(out.forces, dtype=float).tolist() if out.forces is not None else None,
        stress=stress,
        converged=converged,
        n_ionic_steps=n_steps,
        walltime_s=getattr(out, "elapsed_time", None),
        parameters={"fmax": fmax, "steps": steps, "model_version": model_version},
        dir_name=dir_name,
        native={"forcefield_name": str(doc.forcefield_name), "forcefield_version": doc.forcefield_version},
    )


# -- Quantum ESPRESSO ---------------------------------------------------------------------------

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
    def final_structure(self) -> Structure | None:
        if not self.images:
            return None
        from pymatgen.io.ase import AseAtomsAdaptor

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
        from ase.calculators.calculator import PropertyNotImplementedError

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
        from ase.stress import voigt_6_to_full_3x3_stress

        full = voigt_6_to_full_3x3_stress(np.asarray(stress)) if np.shape(stress) == (6,) else np.asarray(stress)
        return (-full * EV_PER_A3_TO_KBAR).tolist()


def parse_pw_output(path: str | Path) -> PWOutput:
    """Read a pw.x output file; images are empty if pw.x stopped before the first SCF."""
    from ase.io import read

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


# -- VASP ----------------------------------------------------------------------------------------


def task_from_vasp(doc: Any, *, scheme: str, settings_hash: str, inputs_hash: str) -> TaskDocument:
    """gnomon's document from emmet's TaskDoc (what atomate2's VASP makers return).

    Parameters needed by MaterialsProject2020Compatibility (run_type, is_hubbard, hubbards,
    potcar_spec) are carried over so the vasp-pbe-mp2020 scheme can apply its corrections.
    """
    out = doc.output
    if out is None or out.energy is None:
        raise RelaxationError("VASP task has no output energy")
    entry = doc.entry if getattr(doc, "entry", None) is not None else None
    parameters = dict(entry.parameters) if entry is not None else {}
    parameters.setdefault("run_type", str(getattr(doc, "run_type", "") or ""))
    forces = getattr(out, "forces", None)
    stress = getattr(out, "stress", None)
    state = str(getattr(doc, "state", "") or "")
    return TaskDocument(
        engine="vasp",
        scheme=scheme,
        code="vasp",
        code_version=str(getattr(doc, "vasp_version", None) or "") or None,
        settings_hash=settings_hash,
        inputs_hash=inputs_hash,
        structure=out.structure.as_dict(),
        initial_structure=doc.input.structure.as_dict() if doc.input is not None else None,
        energy=float(out.energy),
        forces=np.asarray(forces, dtype=float).tolist() if forces is not None else None,
        stress=np.asarray(stress, dtype=float).tolist() if stress is not None else None,
        converged=state.lower().endswith("successful"),
        parameters=parameters,
        corrections=[c if isinstance(c, dict) else {"correction": str(c)} for c in (doc.custodian or [])],
        dir_name=str(doc.dir_name) if getattr(doc, "dir_name", None) else None,
    )


# -- entries --------------------------------------------------------------------------------------


def entry_from_task(
    doc: TaskDocument,
    *,
    candidate_id: str | None = None,
    calculation_id: str | None = None,
    campaign: str | None = None,
    round: int | None = None,
) -> Entry:
    """A validated Entry of the document's scheme (corrections of that scheme applied).

    Raises ``gnomon.pipeline.thermo.entries.EntryValidationError`` for an energy or final structure
    the hull must not see.
    """
    from gnomon.pipeline.thermo.entries import entry_from_structure

    return entry_from_structure(
        doc.final_structure,
        doc.energy,
        doc.scheme,
        source=f"relax:{doc.engine}",
        candidate_id=candidate_id,
        calculation_id=calculation_id,
        parameters=doc.parameters,
        code_version=f"{doc.code} {doc.code_version}" if doc.code_version else doc.code,
        inputs_hash=doc.inputs_hash,
        campaign=campaign,
        round=round,
        data={
            "settings_hash": doc.settings_hash,
            "converged": doc.converged,
            "max_force": doc.max_force,
            "n_ionic_steps": doc.n_ionic_steps,
            "corrections": doc.corrections,
        },
    )
