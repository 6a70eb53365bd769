"""Relaxations: engines as atomate2/jobflow Makers (one force-field engine for every
universal potential, Quantum ESPRESSO, VASP), custodian handlers for pw.x, dispatchers
(local, SLURM, jobflow-remote), parsing into entries, and the service that ties
submit -> track -> collect -> ingest together.

Engines and dispatchers are found by name in :mod:`gnomon.dft.registry`; the factories take
the site's settings explicitly (any object shaped like :class:`~gnomon.dft.settings.SiteSettings`).
"""

from gnomon.dft.dispatcher import BatchState, BatchStatus, Dispatcher, make_dispatcher
from gnomon.dft.engine import RelaxEngine, engine_from_spec, make_engine
from gnomon.dft.errors import DispatchError, InputError, RelaxationError
from gnomon.dft.registry import DISPATCHERS, ENGINES
from gnomon.dft.task import TaskDocument

__all__ = [
    "DISPATCHERS",
    "ENGINES",
    "BatchState",
    "BatchStatus",
    "DispatchError",
    "Dispatcher",
    "InputError",
    "RelaxEngine",
    "RelaxationError",
    "TaskDocument",
    "engine_from_spec",
    "make_dispatcher",
    "make_engine",
]
