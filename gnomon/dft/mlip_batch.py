"""Many CHGNet relaxations in lock-step: one batched model call per optimiser step.

A single small cell spends most of a CHGNet step in Python and tiny tensor kernels, so
relaxing thousands of candidates one after another (the engine's ``relax``) leaves the CPU
mostly idle between kernels. :class:`BatchRelaxer` keeps up to ``batch_size`` relaxations
in flight, evaluates all of them with one ``predict_graph`` call, then lets each take its own
ASE optimiser step: the dynamics of every structure are exactly those of the engine (the same
calculator object, FIRE on a FrechetCellFilter with ASE's defaults, the engine's ``fmax``
and ``steps``, ASE's ``irun`` order of check-then-step); only the scheduling differs.
Finished relaxations leave the batch and new ones join it, so the batch stays full. Each keeps
a few frames of its trajectory (:mod:`gnomon.dft.frames`): the geometries a screen meets.

Used where throughput matters more than per-calculation records: building the labelled
world (:mod:`gnomon.world`) and simulation. Campaign relaxations go through the engine and
its dispatchers, which record every calculation.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from ase.filters import FrechetCellFilter
from ase.optimize import FIRE
from pymatgen.core import Structure
from pymatgen.io.ase import AseAtomsAdaptor

from gnomon.dft.collapse import collapsed_pair
from gnomon.dft.forcefield import CHGNetEngine, ForceFieldEngine
from gnomon.dft.frames import DEFAULT_MAX_FRAMES, Frame, FrameRecorder
from gnomon.dft.potentials import CHGNET

log = logging.getLogger(__name__)


class _Precomputed(Calculator):
    """Holds the results the batch computed for exactly these positions and cell."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def hold(self, atoms, results: dict[str, Any]) -> None:
        self.atoms = atoms.copy()
        self.results = dict(results)

    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        raise RuntimeError("positions changed without a batched evaluation")


@dataclass
class BatchResult:
    """One finished relaxation."""

    structure: Structure
    energy: float  # eV, at the final structure
    initial_energy: float  # eV, at the input structure
    steps: int
    converged: bool
    frames: list[Frame] = field(default_factory=list)  # first, some intermediate, last


@dataclass
class _Run:
    key: Hashable
    atoms: Any
    optimizer: Any
    calc: _Precomputed
    initial_volume: float = 0.0
    steps: int = 0
    initial_energy: float | None = None
    energy: float = float("nan")
    recorder: FrameRecorder = field(default_factory=FrameRecorder)


@dataclass
class BatchRelaxer:
    """Relax many structures with a CHGNet engine's settings, ``batch_size`` at a time.

    Example::

        relaxer = BatchRelaxer(CHGNetEngine(fmax=0.1, steps=150), batch_size=32)
        for key, result in relaxer.relax((s.formula, s) for s in structures):
            ...

    Structures CHGNet cannot take (an isolated atom beyond its cutoff, an unsupported element)
    and relaxations that diverge or end collapsed (:mod:`gnomon.dft.collapse`) come back as
    ``(key, reason)`` strings instead of results, never as exceptions.
    """

    engine: ForceFieldEngine = field(default_factory=CHGNetEngine)
    batch_size: int = 32
    min_volume_ratio: float = 0.33  # of the input volume; and at most its inverse
    max_frames: int = DEFAULT_MAX_FRAMES  # trajectory frames kept per relaxation (0: none)
    _calculator: Any = field(default=None, init=False, repr=False)

    @property
    def calculator(self):
        """The engine's own CHGNet calculator (loaded once)."""
        if self._calculator is None:
            self._calculator = self.engine.calculator()
        return self._calculator

    def relax(
        self, items: Iterable[tuple[Hashable, Structure]]
    ) -> Iterator[tuple[Hashable, BatchResult | str]]:
        if self.engine.potential is not CHGNET:
            raise ValueError(
                f"BatchRelaxer batches CHGNet's model calls; {self.engine.potential.label} "
                "relaxes through its engine"
            )
        if self.engine.optimizer != "FIRE" or not self.engine.relax_cell:
            raise ValueError("BatchRelaxer reproduces FIRE with a relaxed cell only")
        pending = iter(items)
        active: list[_Run] = []
        exhausted = False
        while active or not exhausted:
            while not exhausted and len(active) < self.batch_size:
                try:
                    key, structure = next(pending)
                except StopIteration:
                    exhausted = True
                    break
                atoms = AseAtomsAdaptor.get_atoms(structure)
                calc = _Precomputed()
                atoms.calc = calc
                optimizer = FIRE(FrechetCellFilter(atoms), logfile=None)
                optimizer.fmax = self.engine.fmax  # what Optimizer.run(fmax=...) sets
                active.append(_Run(key, atoms, optimizer, calc, atoms.get_volume(),
                                   recorder=FrameRecorder(self.max_frames)))
            if not active:
                break
            failed = self._evaluate(active)
            for run, reason in failed:
                active.remove(run)
                yield run.key, reason
            still: list[_Run] = []
            for run in active:
                gradient = run.optimizer.optimizable.get_gradient()
                converged = bool(run.optimizer.converged(gradient=gradient))
                if converged or run.steps >= self.engine.steps:
                    result = self._result(run, converged)
                    # a converged cell with atoms inside one another is the potential's hole
                    why = collapsed_pair(result.structure)
                    yield run.key, (f"relaxation ended {why}" if why else result)
                    continue
                run.optimizer.step()
                run.steps += 1
                still.append(run)
            active = still

    def _evaluate(self, runs: list[_Run]) -> list[tuple[_Run, str]]:
        calc = self.calculator
        model = calc.model
        graphs, ok, failed = [], [], []
        for run in runs:
            problem = self.diverged(run)
            if problem:
                failed.append((run, problem))
                continue
            structure = AseAtomsAdaptor.get_structure(run.atoms)
            try:
                graphs.append(model.graph_converter(structure))
                ok.append(run)
            except (ValueError, RuntimeError) as exc:
                failed.append((run, f"CHGNet graph: {exc}"))
        if not ok:
            return failed
        predictions = model.predict_graph(graphs, task="efs", batch_size=len(graphs))
        if isinstance(predictions, dict):
            predictions = [predictions]
        for run, pred in zip(ok, predictions, strict=True):
            n = len(run.atoms)
            energy = float(pred["e"]) * (n if model.is_intensive else 1)
            if not np.isfinite(energy):
                failed.append((run, "CHGNet returned a non-finite energy"))
                continue
            run.calc.hold(run.atoms, {
                "energy": energy, "free_energy": energy,
                "forces": np.asarray(pred["f"], dtype=float),
                "stress": np.asarray(pred["s"], dtype=float) * calc.stress_weight,
            })
            run.energy = energy
            if run.initial_energy is None:
                run.initial_energy = energy
            run.recorder.offer(run.steps, energy, *_geometry(run.atoms))
        return failed

    def diverged(self, run: _Run) -> str | None:
        """Why a relaxation is given up before its next evaluation, if it is.

        A cell that FIRE shrinks without bound makes CHGNet's neighbour lists grow with the
        inverse volume (gigabytes within a few steps), and one that grows without bound has
        left the physics: both are failed relaxations, reported with the volume change.
        """
        ratio = run.atoms.get_volume() / run.initial_volume
        per_atom = run.atoms.get_volume() / len(run.atoms)
        if not self.min_volume_ratio <= ratio <= 1 / self.min_volume_ratio or per_atom < 2.0:
            return (f"relaxation diverged after {run.steps} steps: volume x{ratio:.2f} "
                    f"({per_atom:.2f} Å^3/atom)")
        return None

    @staticmethod
    def _result(run: _Run, converged: bool) -> BatchResult:
        structure = AseAtomsAdaptor.get_structure(run.atoms)
        frames = run.recorder.finish(run.steps, run.energy, *_geometry(run.atoms))
        return BatchResult(structure=structure, energy=run.energy,
                           initial_energy=float(run.initial_energy), steps=run.steps,
                           converged=converged, frames=frames)


def _geometry(atoms: Any) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Cell, species and fractional coordinates of ASE atoms, for a frame."""
    return atoms.cell.array, atoms.get_chemical_symbols(), atoms.get_scaled_positions(wrap=False)
