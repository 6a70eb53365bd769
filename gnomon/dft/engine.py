"""The one interface every relaxation engine offers.

An engine turns a structure into a :class:`~gnomon.dft.task.TaskDocument` by running a
jobflow Maker (``engine.maker(structure).make(structure)``), and names the energy scheme, the
settings hash (what makes two calculations "the same") and the inputs hash (what exactly was
fed to the code)::

    engine = make_engine("mlip", settings)
    engine.check([structure])                  # InputError before anything is submitted
    doc = engine.relax(structure, workdir)     # TaskDocument
    entry = entry_from_task(doc, candidate_id=...)

Engines are rebuilt on compute nodes from ``engine.spec()`` (plain JSON), so everything that
decides a result lives in the spec. Each concrete engine registers itself by ``name`` in
:data:`gnomon.dft.registry.ENGINES`; this module imports none of them.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pymatgen.core import Structure

from gnomon.dft.errors import RelaxationError
from gnomon.dft.registry import ENGINES
from gnomon.dft.task import TaskDocument
from gnomon.storage.documents import stable_hash

if TYPE_CHECKING:
    from jobflow import Maker

    from gnomon.dft.settings import SiteSettings

log = logging.getLogger(__name__)


class RelaxEngine(ABC):
    """A relaxation engine: a jobflow Maker plus what gnomon records about it."""

    name: ClassVar[str]
    #: seconds one relaxation may run before the worker stops it, unless the site's
    #: ``relax_limits.wall_time_s`` says otherwise (None: no limit of gnomon's own)
    wall_time_s: ClassVar[float | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A subclass that names itself is an engine: it joins the registry under that name."""
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            ENGINES.register(cls)

    @classmethod
    def from_settings(cls, settings: SiteSettings, **options: Any) -> RelaxEngine:
        """This engine configured from a site's settings; ``options`` override single fields."""
        return cls(**options)

    @classmethod
    def from_spec(cls, settings: dict[str, Any]) -> RelaxEngine:
        """The engine back from the ``"settings"`` part of its :meth:`spec`."""
        return cls(**settings)

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
    def maker(self, structure: Structure) -> Maker:
        """The jobflow Maker whose ``make(structure)`` relaxes ``structure``.

        It is given the structure because some codes' inputs depend on it (pw.x's
        pseudopotentials, cutoffs and k-points); the others ignore it.
        """

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
        from jobflow import run_locally  # heavy: jobflow (~1 s), only where a job runs

        workdir = Path(workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        job = self.maker(structure).make(structure)
        with contextlib.chdir(workdir):
            responses = run_locally(job, create_folders=False, log=False, raise_immediately=True)
        response = responses.get(job.uuid, {})
        if not response:
            raise RelaxationError(f"{self.name} job produced no output (see {workdir})")
        output = response[max(response)].output
        if output is None:
            raise RelaxationError(f"{self.name} job returned nothing (see {workdir})")
        return self.to_task_document(output, structure, workdir)


def make_engine(name: str, settings: SiteSettings, **options: Any) -> RelaxEngine:
    """The engine called ``name`` (see :data:`ENGINES`) configured from a site's settings.

    ``settings`` is required: defaulting it would silently read the environment here, far
    from where the caller chose its site.
    """
    return ENGINES.resolve(name).from_settings(settings, **options)


def engine_from_spec(spec: dict[str, Any]) -> RelaxEngine:
    """Rebuild an engine from :meth:`RelaxEngine.spec`.

    A spec with ``"class": "package.module:Name"`` names an engine outside gnomon (a plugin,
    or a test double); it is built as ``Name(**spec["settings"])``.
    """
    if "class" in spec:
        module, _, attr = spec["class"].partition(":")
        return getattr(importlib.import_module(module), attr)(**spec.get("settings", {}))
    return ENGINES.resolve(spec["engine"]).from_spec(spec["settings"])
