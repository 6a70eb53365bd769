"""VASP through atomate2's Materials Project relax makers, run by custodian as atomate2 does.

GGA/GGA+U (``MPGGARelaxMaker``, MPRelaxSet: scheme ``vasp-pbe-mp2020``, MP2020 corrections
apply) or r2SCAN (``MPMetaGGARelaxMaker``: scheme ``vasp-r2scan``). No VASP binary or POTCARs
ship with gnomon: :meth:`VaspEngine.write_inputs` produces INCAR, KPOINTS, POSCAR and
POTCAR.spec anywhere, and :func:`gnomon.dft.parsing.task_from_vasp` turns the TaskDoc that
atomate2 parses from a finished run into gnomon's task document.
"""

from __future__ import annotations

import logging
import shlex
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pymatgen.core import SETTINGS, Structure

from gnomon.dft.engine import RelaxEngine
from gnomon.dft.errors import InputError
from gnomon.dft.parsing import task_from_vasp
from gnomon.dft.settings import SiteSettings, VaspSettings
from gnomon.dft.task import TaskDocument
from gnomon.pipeline.thermo.schemes import VASP_MP2020, VASP_R2SCAN
from gnomon.storage.documents import stable_hash

if TYPE_CHECKING:
    from atomate2.vasp.jobs.base import BaseVaspMaker

log = logging.getLogger(__name__)

INPUT_FILES = ("INCAR", "KPOINTS", "POSCAR", "POTCAR.spec")


@dataclass
class VaspEngine(RelaxEngine):
    """A Materials-Project-compatible VASP relaxation (custodian handlers from atomate2)."""

    name: ClassVar[str] = "vasp"
    settings: VaspSettings = field(default_factory=VaspSettings)

    @classmethod
    def from_settings(cls, settings: SiteSettings, **options: Any) -> VaspEngine:
        return cls(settings.vasp.model_copy(update=options))

    @classmethod
    def from_spec(cls, settings: dict[str, Any]) -> VaspEngine:
        return cls(VaspSettings.model_validate(settings))

    @property
    def scheme(self) -> str:
        return VASP_R2SCAN if self.settings.use_r2scan else VASP_MP2020

    def settings_payload(self) -> dict[str, Any]:
        return {
            "use_r2scan": self.settings.use_r2scan,
            "user_incar_settings": self.settings.user_incar_settings,
        }

    def spec(self) -> dict[str, Any]:
        return {"engine": self.name, "settings": self.settings.model_dump(mode="json")}

    def input_generator(self):
        if self.settings.use_r2scan:
            from pymatgen.io.vasp.sets import MPScanRelaxSet  # heavy: reads its YAML sets

            return MPScanRelaxSet(user_incar_settings=dict(self.settings.user_incar_settings))
        from pymatgen.io.vasp.sets import MPRelaxSet  # heavy: reads its YAML sets

        return MPRelaxSet(
            force_gamma=True,
            auto_metal_kpoints=True,
            inherit_incar=False,
            user_incar_settings=dict(self.settings.user_incar_settings),
        )

    def maker(self, structure: Structure) -> BaseVaspMaker:
        from atomate2.vasp.jobs.mp import MPGGARelaxMaker, MPMetaGGARelaxMaker  # heavy: atomate2

        cls = MPMetaGGARelaxMaker if self.settings.use_r2scan else MPGGARelaxMaker
        return cls(
            input_set_generator=self.input_generator(),
            run_vasp_kwargs={
                "vasp_cmd": self.settings.vasp_command,
                "vasp_gamma_cmd": self.settings.gamma_command,
                "max_errors": self.settings.max_errors,
            },
        )

    def check(self, structures: Sequence[Structure]) -> None:
        exe = shlex.split(self.settings.vasp_command)[-1]
        if shutil.which(exe) is None:
            raise InputError(
                f"VASP not found: {exe!r} is not on PATH (set vasp.vasp_command to your site's "
                "VASP binary; gnomon cannot ship VASP)"
            )
        if not SETTINGS.get("PMG_VASP_PSP_DIR"):
            raise InputError(
                "VASP POTCARs not configured: set PMG_VASP_PSP_DIR in ~/.config/.pmgrc.yaml "
                "(pmg config -p <POTCAR dir> <target>)"
            )
        for s in structures:
            if not s.is_ordered:
                raise InputError(f"{s.composition.reduced_formula}: partial occupancies")

    def input_set(self, structure: Structure):
        return self.input_generator().get_input_set(structure, potcar_spec=True)

    def write_inputs(self, structure: Structure, directory: str | Path) -> list[Path]:
        """Write INCAR, KPOINTS, POSCAR and POTCAR.spec (no POTCARs needed) to ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.input_set(structure).write_input(directory)
        return [directory / f for f in INPUT_FILES]

    def inputs_hash(self, structure: Structure) -> str:
        vis = self.input_set(structure)
        return stable_hash({name: str(vis[name]) for name in INPUT_FILES if name in vis})

    def to_task_document(self, output: Any, structure: Structure, workdir: Path) -> TaskDocument:
        return task_from_vasp(
            output,
            scheme=self.scheme,
            settings_hash=self.settings_hash,
            inputs_hash=self.inputs_hash(structure),
        )
