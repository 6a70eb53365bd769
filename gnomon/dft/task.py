"""The task document every engine returns: what one relaxation produced.

Engines keep their native documents (atomate2's ForceFieldTaskDocument, emmet's TaskDoc, a
parsed pw.x output) in ``native``; the fields gnomon needs to make an Entry and to trace it
back to its inputs are the same for all of them. It is what a worker writes to
``result.json`` and what the Calculation record keeps as ``task_doc``.
"""

from __future__ import annotations

from typing import Any

from monty.json import jsanitize
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pymatgen.core import Structure


class TaskDocument(BaseModel):
    """A finished relaxation. ``energy`` is the total energy in eV, uncorrected."""

    model_config = ConfigDict(extra="forbid")

    engine: str
    scheme: str
    code: str
    code_version: str | None = None
    settings_hash: str
    inputs_hash: str
    structure: dict[str, Any] = Field(description="Final (relaxed) structure, pymatgen as_dict().")
    initial_structure: dict[str, Any] | None = None
    energy: float
    forces: list[list[float]] | None = None
    stress: list[list[float]] | None = Field(None, description="kBar (VASP sign convention).")
    converged: bool = Field(description="Ionic (and electronic) convergence reached.")
    electronic_converged: bool | None = None
    n_ionic_steps: int | None = None
    walltime_s: float | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    corrections: list[dict[str, Any]] = Field(
        default_factory=list, description="What custodian's handlers changed, in order."
    )
    dir_name: str | None = None
    native: dict[str, Any] = Field(default_factory=dict)
    frames: list[dict[str, Any]] = Field(
        default_factory=list,
        description="A few trajectory frames (gnomon.dft.frames): first, some intermediate, last.",
    )

    @model_validator(mode="before")
    @classmethod
    def _plain_json(cls, data: Any) -> Any:
        """numpy scalars/arrays (pymatgen, ASE, torch outputs) become plain JSON values."""
        return jsanitize(data, strict=False) if isinstance(data, dict) else data

    @property
    def final_structure(self) -> Structure:
        return Structure.from_dict(self.structure)

    @property
    def max_force(self) -> float | None:
        if not self.forces:
            return None
        return max(sum(c * c for c in f) ** 0.5 for f in self.forces)
