"""The one interface every relaxation engine offers.

An engine turns a structure into a :class:`~gnomon.dft.task.TaskDocument` by running a
jobflow Maker (``engine.maker()``), and names the energy scheme, the settings hash (what
makes two calculations "the same") and the inputs hash (what exactly was fed to the code)::

    engine = make_engine("mlip", settings)
    engine.check([structure])                  # InputError before anything is submitted
    doc = engine.relax(structure, workdir)     # TaskDocument
    entry = entry_from_task(doc, candidate_id=...)

Engines are rebuilt on compute nodes from ``engine.spec()`` (plain JSON), so everything that
decides a result lives in the spec.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from pymatgen.core import Structure

from gnomon.dft.errors import RelaxationError
from gnomon.dft.task import TaskDocument
from gnomon.storage.documents import stable_hash

log = logging.getLogger(__name__)


class RelaxEngine(ABC):
    """A relaxation engine: a jobflow Maker plus what gnomon records about it."""

    name: ClassVar[str]

    @property
    @abstractmethod
    def scheme(self) -> str:
        """The energy scheme its energies belong to (one hull per scheme)."""

    @abstractmethod
    def settings_payload(self) -> dict[str, Any]:
        """Everything that changes the result (not where binaries live)."""

    @abstractmethod
    def spec(self) -> dict[str, Any]:
        """JSON that :func:`engine_from_spec` turns back into this engine on a compute node."""

    @abstractmethod
    def check(self, structures: Sequence[Structure]) -> None:
        """Raise InputError for anything that would fail before the code starts."""

    @abstractmethod
    def maker(self):
        """The jobflow Maker that relaxes one structure."""

    @abstractmethod
    def inputs_hash(self, structure: Structure) -> str:
        """A hash of exactly what the code is given for ``structure``."""

    @abstractmethod
    def to_task_document(self, output: Any, structure: Structure, workdir: Path) -> TaskDocument:
        """gnomon's task document from the Maker's output."""

    @property
    def settings_hash(self) -> str:
        return stable_hash({"engine": self.name, "scheme": self.scheme, **self.settings_payload()})

    def relax(self, structure: Structure, workdir: str | Path) -> TaskDocument:
        """Run the Maker's job for ``structure`` inside ``workdir`` and return its document.

        Raises RelaxationError (with the reason) when the job fails.
        """
        from jobflow import run_locally

        workdir = Path(workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        job = self.maker().make(structure)
        with _chdir(workdir):
            responses = run_locally(job, create_folders=False, log=False, raise_immediately=True)
        response = responses.get(job.uuid, {})
        if not response:
            raise RelaxationError(f"{self.name} job produced no output (see {workdir})")
        output = response[max(response)].output
        if output is None:
            raise RelaxationError(f"{self.name} job returned nothing (see {workdir})")
        return self.to_task_document(output, structure, workdir)


@contextmanager
def _chdir(path: Path):
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


ENGINES = ("mlip", "qe", "vasp")


def make_engine(name: str, settings=None, **options: Any) -> RelaxEngine:
    """The engine called ``name`` (mlip, qe, vasp) configured from a site's Settings."""
    from gnomon.config import Settings

    settings = settings or Settings()
    if name == "mlip":
        from gnomon.dft.mlip import CHGNetEngine

        return CHGNetEngine(**options)
    if name == "qe":
        from gnomon.dft.qe import QEEngine

        return QEEngine(settings.qe.model_copy(update=options))
    if name == "vasp":
        from gnomon.dft.vasp import VaspEngine

        return VaspEngine(settings.vasp.model_copy(update=options))
    raise ValueError(f"unknown engine {name!r}: choose one of {', '.join(ENGINES)}")


def engine_from_spec(spec: dict[str, Any]) -> RelaxEngine:
    """Rebuild an engine from :meth:`RelaxEngine.spec`.

    A spec with ``"class": "package.module:Name"`` names an engine outside gnomon (a plugin,
    or a test double); it is built as ``Name(**spec["settings"])``.
    """
    if "class" in spec:
        import importlib

        module, _, attr = spec["class"].partition(":")
        return getattr(importlib.import_module(module), attr)(**spec.get("settings", {}))
    name = spec["engine"]
    if name == "mlip":
        from gnomon.dft.mlip import CHGNetEngine

        return CHGNetEngine(**spec["settings"])
    if name == "qe":
        from gnomon.dft.qe import QEEngine
        from gnomon.dft.settings import QESettings

        return QEEngine(QESettings.model_validate(spec["settings"]))
    if name == "vasp":
        from gnomon.dft.settings import VaspSettings
        from gnomon.dft.vasp import VaspEngine

        return VaspEngine(VaspSettings.model_validate(spec["settings"]))
    raise ValueError(f"unknown engine {name!r} in spec")
