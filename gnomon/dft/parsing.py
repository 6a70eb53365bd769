"""Parsing: engine outputs into task documents, task documents into entries.

- ``task_from_forcefield``: atomate2's ForceFieldTaskDocument (CHGNet).
- ``task_from_vasp``: emmet's TaskDoc as atomate2's VASP makers produce it.
- ``entry_from_task``: a task document into a validated Entry of its scheme.

pw.x's output file is read in :mod:`gnomon.dft.qe_io`, beside its input files.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from pymatgen.core import Structure

from gnomon.dft.collapse import collapsed_pair
from gnomon.dft.errors import RelaxationError
from gnomon.dft.frames import frames_from_steps
from gnomon.dft.task import TaskDocument
from gnomon.pipeline.thermo.entries import entry_from_structure
from gnomon.storage.documents import Entry

log = logging.getLogger(__name__)


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
    code: str = "chgnet",
    package_version: str | None = None,
    code_version: str | None = None,
) -> TaskDocument:
    """gnomon's document from atomate2's ForceFieldTaskDocument.

    atomate2 records CHGNet's package version as the force field's whatever calculator ran;
    an engine on another package (SevenNet) names it with ``code``, ``package_version`` and
    ``code_version``.
    """
    out = doc.output
    if out is None or out.energy is None:
        raise RelaxationError("force-field relaxation produced no energy")
    structure = out.structure if getattr(out, "structure", None) is not None else doc.structure
    why = collapsed_pair(structure)
    if why:  # the potential's hole, not a phase: no energy of it may reach a hull
        raise RelaxationError(f"force-field relaxation ended {why}")
    n_steps = getattr(out, "n_steps", None)
    converged = bool(doc.is_force_converged)
    stress = None
    if out.stress is not None:
        # atomate2 reports stress in kBar with VASP's sign already
        stress = np.asarray(out.stress, dtype=float).reshape(3, 3).tolist()
    return TaskDocument(
        engine=engine,
        scheme=scheme,
        code=code,
        code_version=code_version or f"chgnet {doc.forcefield_version} model {model_version}",
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
        native={"forcefield_name": str(doc.forcefield_name),
                "forcefield_version": package_version or doc.forcefield_version},
        frames=[f.to_doc() for f in frames_from_steps(getattr(out, "ionic_steps", None) or [])],
    )


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
        corrections=[
            c if isinstance(c, dict) else {"correction": str(c)} for c in (doc.custodian or [])
        ],
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
            **({"frames": doc.frames} if doc.frames else {}),
        },
    )
