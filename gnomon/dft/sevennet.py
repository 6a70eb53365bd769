"""The SevenNet-0 engine: a second universal potential, through atomate2's forcefield relax maker.

SevenNet-0 (Park et al., J. Chem. Theory Comput. 20, 4857, 2024; an equivariant NequIP-style
network trained on MPtrj) is an engine beside CHGNet so a campaign can pre-relax with one
potential and judge with another, or compare the two. Its weights ship in the ``sevenn`` wheel:
nothing is downloaded. atomate2 knows it (``MLFF.SevenNet``); the calculator atomate2 builds is
the one :func:`sevennet_calculator` loads, the single place gnomon loads SevenNet (the
zero-shot peer in :mod:`gnomon.models.peers` uses it too).

Its energies live in their own scheme, ``mlip-sevennet-<model>`` (``mlip-sevennet-0`` for
``7net-0``), so they never share a hull with CHGNet's or a DFT code's; elemental references
come, as for every engine, from relaxing the elements with this same engine (the campaign's
``references`` step).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pymatgen.core import Element, Structure

from gnomon.dft.engine import RelaxEngine
from gnomon.dft.errors import InputError
from gnomon.dft.parsing import task_from_forcefield
from gnomon.dft.task import TaskDocument
from gnomon.pipeline.thermo.schemes import sevennet_scheme
from gnomon.storage.documents import stable_hash

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator
    from atomate2.forcefields.jobs import ForceFieldRelaxMaker

log = logging.getLogger(__name__)

#: SevenNet-0 (11 July 2024), the checkpoint ``sevenn`` ships under this name.
SEVENNET_MODEL = "7net-0"

#: Import path atomate2 loads the calculator from (``calculator_meta``): this module's loader.
_LOADER = f"{__name__}.sevennet_calculator"


def sevennet_calculator(model: str = SEVENNET_MODEL, device: str = "cpu", **kwargs: Any) -> Calculator:
    """SevenNet's ASE calculator for ``model``; the weights of ``7net-0`` ship in the ``sevenn``
    wheel, so nothing is downloaded. ``kwargs`` go to ``SevenNetCalculator`` (``modal`` for a
    multi-fidelity model)."""
    try:
        from sevenn.calculator import SevenNetCalculator
    except ImportError as exc:
        raise ImportError("SevenNet needs the 'sevenn' package (pip install sevenn)") from exc
    return SevenNetCalculator(model, device=device, **kwargs)


@functools.lru_cache(maxsize=4)
def supported_elements(model: str = SEVENNET_MODEL) -> frozenset[str]:
    """The elements ``model`` was trained on (its checkpoint's type map), read once."""
    import sevenn._keys as keys
    from sevenn import util

    type_map = util.load_checkpoint(model).config[keys.TYPE_MAP]
    return frozenset(Element.from_Z(int(z)).symbol for z in type_map)


def sevenn_version() -> str:
    try:
        return version("sevenn")
    except PackageNotFoundError:  # an editable checkout without metadata
        return "unknown"


@dataclass
class SevenNetEngine(RelaxEngine):
    """SevenNet relaxation of cell and positions (FIRE, atomate2's ForceFieldRelaxMaker).

    ``device`` says where the model runs (``cpu``, ``cuda``); it is not part of the settings
    hash, as a binary's path is not: the same model on another device is the same calculation.
    """

    name: ClassVar[str] = "sevennet"

    model: str = SEVENNET_MODEL
    fmax: float = 0.05
    steps: int = 500
    relax_cell: bool = True
    optimizer: str = "FIRE"
    device: str = "cpu"

    @property
    def scheme(self) -> str:
        return sevennet_scheme(self.model)

    def settings_payload(self) -> dict[str, Any]:
        payload = asdict(self)
        payload.pop("device")
        return payload

    def spec(self) -> dict[str, Any]:
        return {"engine": self.name, "settings": asdict(self)}

    def check(self, structures: Sequence[Structure]) -> None:
        known = supported_elements(self.model)
        for structure in structures:
            if not structure.is_ordered:
                raise InputError(
                    f"{structure.composition.reduced_formula}: partial occupancies; "
                    "an ordered structure is required"
                )
            bad = sorted({el.symbol for el in structure.composition.elements} - known)
            if bad:
                raise InputError(
                    f"{structure.composition.reduced_formula}: SevenNet {self.model} does not "
                    f"support {', '.join(bad)} (trained on {len(known)} elements)"
                )

    def maker(self, structure: Structure) -> ForceFieldRelaxMaker:
        from atomate2.forcefields.jobs import ForceFieldRelaxMaker

        return ForceFieldRelaxMaker(
            force_field_name="SevenNet",
            calculator_meta=_LOADER,
            relax_cell=self.relax_cell,
            steps=self.steps,
            relax_kwargs={"fmax": self.fmax},
            optimizer_kwargs={"optimizer": self.optimizer},
            calculator_kwargs={"model": self.model, "device": self.device},
        )

    def inputs_hash(self, structure: Structure) -> str:
        return stable_hash({"settings": self.settings_payload(), "structure": structure.as_dict()})

    def to_task_document(self, output: Any, structure: Structure, workdir: Path) -> TaskDocument:
        package = sevenn_version()
        return task_from_forcefield(
            output,
            engine=self.name,
            scheme=self.scheme,
            settings_hash=self.settings_hash,
            inputs_hash=self.inputs_hash(structure),
            initial=structure,
            fmax=self.fmax,
            steps=self.steps,
            model_version=self.model,
            dir_name=str(workdir),
            code="sevenn",
            package_version=package,
            code_version=f"{package} model {self.model}",
        )
