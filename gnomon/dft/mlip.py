"""The ML-potential engine: CHGNet through atomate2's forcefield relax maker.

The embedded default: its weights ship in the chgnet wheel, it runs on a laptop CPU in
seconds, and its energies live in their own scheme (``mlip-chgnet-<model version>``) so they
never mix with DFT hulls.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pymatgen.core import Element, Structure

from gnomon.dft.engine import RelaxEngine
from gnomon.dft.errors import InputError
from gnomon.dft.parsing import task_from_forcefield
from gnomon.dft.task import TaskDocument
from gnomon.pipeline.thermo.schemes import mlip_scheme
from gnomon.storage.documents import stable_hash

if TYPE_CHECKING:
    from atomate2.forcefields.jobs import ForceFieldRelaxMaker

log = logging.getLogger(__name__)

CHGNET_MAX_Z = 94  # CHGNet's element embedding covers H..Pu


@dataclass
class CHGNetEngine(RelaxEngine):
    """CHGNet relaxation of cell and positions (FIRE, atomate2's ForceFieldRelaxMaker)."""

    name: ClassVar[str] = "mlip"

    model_version: str = "0.3.0"
    fmax: float = 0.05
    steps: int = 500
    relax_cell: bool = True
    optimizer: str = "FIRE"
    calculator_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def scheme(self) -> str:
        return mlip_scheme("chgnet", self.model_version)

    def settings_payload(self) -> dict[str, Any]:
        return asdict(self)

    def spec(self) -> dict[str, Any]:
        return {"engine": self.name, "settings": asdict(self)}

    def check(self, structures: Sequence[Structure]) -> None:
        for structure in structures:
            bad = sorted(
                {str(el) for el in structure.composition.elements if Element(str(el)).Z > CHGNET_MAX_Z}
            )
            if bad:
                raise InputError(
                    f"{structure.composition.reduced_formula}: CHGNet {self.model_version} does not "
                    f"support {', '.join(bad)} (elements up to Z={CHGNET_MAX_Z}, Pu, only)"
                )
            if not structure.is_ordered:
                raise InputError(
                    f"{structure.composition.reduced_formula}: partial occupancies; "
                    "an ordered structure is required"
                )

    def maker(self, structure: Structure) -> ForceFieldRelaxMaker:
        from atomate2.forcefields.jobs import ForceFieldRelaxMaker

        return ForceFieldRelaxMaker(
            force_field_name="CHGNet",
            relax_cell=self.relax_cell,
            steps=self.steps,
            relax_kwargs={"fmax": self.fmax},
            optimizer_kwargs={"optimizer": self.optimizer},
            calculator_kwargs=dict(self.calculator_kwargs),
        )

    def inputs_hash(self, structure: Structure) -> str:
        return stable_hash({"settings": self.settings_payload(), "structure": structure.as_dict()})

    def to_task_document(self, output: Any, structure: Structure, workdir: Path) -> TaskDocument:
        return task_from_forcefield(
            output,
            engine=self.name,
            scheme=self.scheme,
            settings_hash=self.settings_hash,
            inputs_hash=self.inputs_hash(structure),
            initial=structure,
            fmax=self.fmax,
            steps=self.steps,
            model_version=self.model_version,
            dir_name=str(workdir),
        )
