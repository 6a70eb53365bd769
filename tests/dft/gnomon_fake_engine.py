"""A test double engine: instant (or deliberately slow) "relaxations" with known energies.

It goes through the same path as the real engines (a jobflow Maker run by
``RelaxEngine.relax``, a TaskDocument, the worker's files) but needs no torch or pw.x, so the
dispatcher and SLURM tests spend their time on dispatching. Workers find it through
``PYTHONPATH`` (``fake_env`` in conftest).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from jobflow import Maker, job
from pymatgen.core import Structure

from gnomon.dft.engine import RelaxEngine
from gnomon.dft.errors import InputError, RelaxationError
from gnomon.dft.task import TaskDocument
from gnomon.storage.documents import stable_hash


@dataclass
class FakeRelaxMaker(Maker):
    name: str = "fake relax"
    sleep_s: float = 0.0
    sleep_first_attempt_only: bool = False
    fail: bool = False
    scale: float = 0.98

    @job
    def make(self, structure: Structure) -> dict[str, Any]:
        attempts = Path("attempts.log")
        first = not attempts.exists() or len(attempts.read_text().splitlines()) <= 1
        if self.sleep_s and (first or not self.sleep_first_attempt_only):
            time.sleep(self.sleep_s)
        if self.fail:
            raise RelaxationError("fake SCF did not converge")
        s = structure.copy()
        s.scale_lattice(structure.volume * self.scale**3)
        n = len(s)
        k = len(s.composition.elements)
        return {"structure": s.as_dict(), "energy": -n * (1.0 + 0.2 * (k - 1))}


@dataclass
class FakeEngine(RelaxEngine):
    name: ClassVar[str] = "fake"
    sleep_s: float = 0.0
    sleep_first_attempt_only: bool = False
    fail: bool = False
    scale: float = 0.98
    scheme_name: str = "mlip-fake-1"

    @property
    def scheme(self) -> str:
        return self.scheme_name

    def settings_payload(self) -> dict[str, Any]:
        return {"scale": self.scale, "fail": self.fail, "scheme": self.scheme_name}

    def spec(self) -> dict[str, Any]:
        return {
            "engine": self.name,
            "class": "gnomon_fake_engine:FakeEngine",
            "settings": asdict(self),
        }

    def check(self, structures: Sequence[Structure]) -> None:
        for s in structures:
            if "Og" in {str(e) for e in s.composition.elements}:
                raise InputError("fake engine does not support Og")

    def maker(self, structure: Structure) -> FakeRelaxMaker:
        return FakeRelaxMaker(
            sleep_s=self.sleep_s,
            sleep_first_attempt_only=self.sleep_first_attempt_only,
            fail=self.fail,
            scale=self.scale,
        )

    def inputs_hash(self, structure: Structure) -> str:
        return stable_hash({"s": self.settings_payload(), "structure": structure.as_dict()})

    def to_task_document(self, output: Any, structure: Structure, workdir: Path) -> TaskDocument:
        return TaskDocument(
            engine=self.name, scheme=self.scheme, code="fake", code_version="1.0",
            settings_hash=self.settings_hash, inputs_hash=self.inputs_hash(structure),
            structure=output["structure"], initial_structure=structure.as_dict(),
            energy=output["energy"], converged=True, n_ionic_steps=1, dir_name=str(workdir),
        )
