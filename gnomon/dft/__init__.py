"""Relaxations: engines (CHGNet, Quantum ESPRESSO, VASP) as atomate2/jobflow Makers,
custodian handlers for pw.x, dispatchers (local, SLURM, jobflow-remote), parsing into
entries, and the service that ties submit -> track -> collect -> ingest together."""

from gnomon.dft.dispatcher import BatchState, BatchStatus, Dispatcher
from gnomon.dft.engine import ENGINES, RelaxEngine, engine_from_spec, make_engine
from gnomon.dft.errors import DispatchError, InputError, RelaxationError
from gnomon.dft.task import TaskDocument

__all__ = [
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
    "make_engine",
]
