"""Batched screening: stream structures through an ensemble as fast as the device allows.

The hot path is arrays all the way: a candidate's stored structure dict is read into numpy
arrays (no pymatgen objects), its neighbour list comes from a compiled cell-list search, and
graphs are concatenated into a batch with a handful of tensor operations. On a GPU, graph
building runs ahead of the network in a background thread, a few batches deep, so the device
never waits for featurisation; on a CPU it runs inline (a thread would contend with the network
for the GIL; see :func:`default_depth`), or in worker processes with ``workers > 0``.

:func:`screen_candidates` is the pipeline's screening step: candidates in, Prediction records
(energy per atom, calibrated σ, predicted e_above_hull against the scheme's stored hull) out.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from pymatgen.core import Composition

from gnomon.models.composition import fraction_matrix
from gnomon.models.ensemble import TTA, Ensemble
from gnomon.models.graph_data import Data
from gnomon.models.graphs import (
    ATOMIC_NUMBER,
    MAX_Z,
    SYMBOL,
    GraphRejected,
    as_arrays,
    collate,
    crystal_graph,
)
from gnomon.storage import Candidate, Prediction, Repository

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Featurizer:
    """Turns one structure (or composition, for the composition model) into network input."""

    kind: str = "gnn"
    cutoff: float = 5.0
    allowed_z: np.ndarray | None = field(default=None, compare=False)
    max_z: int = MAX_Z

    @classmethod
    def for_ensemble(cls, ensemble: Ensemble, tta: TTA | None = None) -> Featurizer:
        cutoff = ensemble.cutoff
        if tta is not None and ensemble.kind != "composition":
            cutoff = tta.graph_cutoff(cutoff)
        return cls(ensemble.kind, cutoff, ensemble.normalization.seen.copy())

    def __call__(self, item: Any) -> Data:
        if self.kind == "composition":
            comp = _composition_of(item)
            self._check_seen(comp)
            return Data(fractions=torch.from_numpy(fraction_matrix([comp], self.max_z)))
        return crystal_graph(item, self.cutoff, self.max_z, self.allowed_z)

    def _check_seen(self, comp: Mapping[str, float]) -> None:
        if self.allowed_z is None:
            return
        unseen = [el for el in comp
                  if el in ATOMIC_NUMBER and not self.allowed_z[ATOMIC_NUMBER[el]]]
        if unseen:
            raise GraphRejected(
                f"unsupported element {', '.join(sorted(unseen))}: not in the model's training data"
            )

    def collate(self, items: Sequence[Data]) -> Data:
        if self.kind == "composition":
            return Data(fractions=torch.cat([d.fractions for d in items]), num_graphs=len(items))
        return collate(items)


def _composition_of(item: Any) -> dict[str, float]:
    """Element amounts of a composition mapping, formula string, Structure, or structure dict."""
    if isinstance(item, str):
        try:
            return {str(el): float(v) for el, v in Composition(item).items()}
        except ValueError as exc:
            raise GraphRejected(f"cannot read composition {item!r}: {exc}") from None
    if isinstance(item, Mapping) and "sites" not in item:
        return {str(k): float(v) for k, v in item.items()}
    arrays = as_arrays(item)
    zs, counts = np.unique(arrays.z, return_counts=True)
    return {SYMBOL.get(int(z), f"Z{int(z)}"): float(c) for z, c in zip(zs, counts, strict=True)}


@dataclass
class Featurized:
    """One batch on its way to the network: collated input, its keys, and the rejects."""

    keys: list[Any]
    batch: Data | None
    num_atoms: list[int]
    rejected: list[tuple[Any, str]]


def featurize_chunk(featurizer: Featurizer, chunk: Sequence[tuple[Any, Any]]) -> Featurized:
    graphs, keys, natoms, rejected = [], [], [], []
    for key, item in chunk:
        try:
            g = featurizer(item)
        except GraphRejected as exc:
            rejected.append((key, exc.reason))
            continue
        graphs.append(g)
        keys.append(key)
        natoms.append(int(g.num_nodes) if featurizer.kind != "composition" else 0)
    batch = featurizer.collate(graphs) if graphs else None
    return Featurized(keys, batch, natoms, rejected)


def _chunks(items: Iterable[tuple[Any, Any]], size: int) -> Iterator[list[tuple[Any, Any]]]:
    chunk: list[tuple[Any, Any]] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


_DONE = object()

FEATURIZE_THREAD = "gnomon-featurize"
"""Name of the thread :func:`prefetch` builds batches in (one per stream, ended with it)."""


def _produce(
    featurizer: Featurizer,
    items: Iterable[tuple[Any, Any]],
    batch_size: int,
    ahead: int,
    workers: int,
    out: queue.Queue,
    stop: threading.Event,
) -> None:
    """:func:`prefetch`'s producer: batches into ``out`` (in this thread, or farmed out to
    ``workers`` processes with at most ``ahead`` in flight) until done or ``stop`` is set;
    an exception is handed to the consumer, which re-raises it; ``_DONE`` always ends it."""
    try:
        if workers > 0:
            with ProcessPoolExecutor(workers) as pool:
                pending = []
                for chunk in _chunks(items, batch_size):
                    pending.append(pool.submit(featurize_chunk, featurizer, chunk))
                    while len(pending) >= ahead:
                        out.put(pending.pop(0).result())
                    if stop.is_set():
                        return
                for fut in pending:
                    out.put(fut.result())
        else:
            for chunk in _chunks(items, batch_size):
                out.put(featurize_chunk(featurizer, chunk))
                if stop.is_set():
                    return
    except BaseException as exc:  # handed to the consumer, which re-raises it
        out.put(exc)
    finally:
        out.put(_DONE)


def prefetch(
    featurizer: Featurizer,
    items: Iterable[tuple[Any, Any]],
    batch_size: int,
    depth: int = 4,
    workers: int = 0,
) -> Iterator[Featurized]:
    """Featurized batches built ahead of the consumer in a background thread.

    With ``workers > 0`` the thread farms chunks out to that many processes (keeping at most
    ``depth`` in flight), for hosts where one core cannot keep the device fed. With
    ``depth=0`` and no workers, batches are built inline, when the consumer asks for them;
    with workers, at least one batch is kept ahead.
    """
    if depth == 0 and workers == 0:
        for chunk in _chunks(items, batch_size):
            yield featurize_chunk(featurizer, chunk)
        return
    ahead = max(1, depth)
    out: queue.Queue = queue.Queue(maxsize=ahead)
    stop = threading.Event()

    def produce() -> None:
        _produce(featurizer, items, batch_size, ahead, workers, out, stop)

    thread = threading.Thread(target=produce, name=FEATURIZE_THREAD, daemon=True)
    thread.start()
    try:
        while True:
            got = out.get()
            if got is _DONE:
                break
            if isinstance(got, BaseException):
                raise got
            yield got
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                out.get(timeout=0.1)
            except queue.Empty:
                pass


@dataclass
class ScreenResult:
    key: Any
    energy_per_atom: float | None = None
    sigma: float | None = None
    rejected: str | None = None


CPU_BATCH_SIZE = 64
"""Structures per batch on a CPU: small enough that a batch's per-edge tensors (about 9,000
edges x 48 features for 5-atom candidates) stay in cache; 64 ran 1.5-2x faster than 256 in
``bench/screening.py`` on a 1 MiB-L2 host."""

CUDA_BATCH_SIZE = 512
"""Structures per batch on a GPU, where larger batches keep more cores busy."""


def default_batch_size(device: torch.device) -> int:
    return CUDA_BATCH_SIZE if device.type == "cuda" else CPU_BATCH_SIZE


def default_depth(device: torch.device, workers: int = 0) -> int:
    """Batches featurized ahead of the network: 4 on a GPU or with worker processes, none
    (inline) on a CPU.

    A GPU runs the network asynchronously, so a featurizing thread keeps it fed. On a CPU the
    network runs in this process's own threads, and a featurizing thread only contends with
    it for the GIL (graph building is Python between compiled calls; each of the network's
    ~1,500 operator calls per batch set must win the GIL back): on bench/screening.py's 300
    structures, building graphs inline was 1.10x faster end to end than the thread (median of
    20 interleaved rounds), while the network alone took two thirds of the threaded time. Hosts
    with cores to spare featurize in worker processes instead (``workers``).
    """
    return 4 if device.type == "cuda" or workers > 0 else 0


@dataclass
class Screener:
    """Streams ``(key, structure)`` pairs through an ensemble in batches.

    Structures may be pymatgen Structures, their dicts, or :class:`CrystalArrays` (or
    compositions, for a composition ensemble). Rejected inputs come back with the reason.
    """

    ensemble: Ensemble
    batch_size: int | None = None
    tta: TTA | None = None
    workers: int = 0
    depth: int | None = None  # batches built ahead; see default_depth
    amp: bool = True
    members: tuple[int, ...] | None = None  # only these members (by index); default: all

    def __post_init__(self):
        if self.batch_size is None:
            self.batch_size = default_batch_size(self.ensemble.device)
        if self.depth is None:
            self.depth = default_depth(self.ensemble.device, self.workers)
        if self.batch_size < 1:
            raise ValueError(f"batch size must be at least 1, not {self.batch_size}")
        self.featurizer = Featurizer.for_ensemble(self.ensemble, self.tta)

    def stream(self, items: Iterable[tuple[Any, Any]]) -> Iterator[list[ScreenResult]]:
        """Results batch by batch (rejects first in each batch)."""
        for fb in prefetch(self.featurizer, items, self.batch_size, self.depth, self.workers):
            results = [ScreenResult(k, rejected=r) for k, r in fb.rejected]
            if fb.batch is not None:
                out = self.ensemble.predict(fb.batch, self.tta, self.amp, self.members)
                results.extend(
                    ScreenResult(k, float(m), float(s))
                    for k, m, s in zip(fb.keys, out.mean, out.sigma, strict=True)
                )
            yield results

    def predict(self, structures: Iterable[Any]) -> list[ScreenResult]:
        """Results for a sequence of structures, in input order (keys are positions)."""
        results = [r for chunk in self.stream(enumerate(structures)) for r in chunk]
        return sorted(results, key=lambda r: r.key)


@dataclass
class ScreenStats:
    screened: int = 0
    rejected: int = 0
    written: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


def hull_function(repo: Repository, scheme: str) -> Callable[[str, float], float | None]:
    """e_above_hull(formula, energy_per_atom) against the stored hull of ``scheme``."""
    # heavy: pymatgen.analysis (the phase diagram; a prediction without a database skips it)
    from gnomon.pipeline.thermo.hull import HullEngine

    engine = HullEngine(repo)

    def e_above_hull(formula: str, energy_per_atom: float) -> float | None:
        return engine.e_above_hull(scheme, formula, energy_per_atom)

    return e_above_hull


def screen_candidates(
    repo: Repository,
    candidates: Iterable[Candidate],
    ensemble: Ensemble,
    model_version: str,
    scheme: str,
    *,
    tta: TTA | None = None,
    batch_size: int | None = None,
    workers: int = 0,
    with_hull: bool = True,
    campaign: str | None = None,
    round: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> ScreenStats:
    """Predict every candidate and upsert one Prediction per candidate that could be judged.

    Written batch by batch, so an interrupted screen resumes by skipping candidates that
    already have a prediction from this model version (the caller filters with
    ``repo.predictions_for``). Rejected candidates are counted by reason and logged.
    """
    stats = ScreenStats()
    ehull = hull_function(repo, scheme) if with_hull else None
    formulas: dict[str, str] = {}

    def items() -> Iterator[tuple[str, Any]]:
        for c in candidates:
            formulas[c.id] = c.formula
            yield c.id, (c.formula if ensemble.kind == "composition" else c.structure)

    screener = Screener(ensemble, batch_size=batch_size, tta=tta, workers=workers)
    for results in screener.stream(items()):
        preds = []
        for r in results:
            formula = formulas.pop(r.key, "")
            if r.rejected is not None:
                stats.rejected += 1
                stats.reasons[r.rejected] = stats.reasons.get(r.rejected, 0) + 1
                log.info("candidate %s not screened: %s", r.key, r.rejected)
                continue
            stats.screened += 1
            preds.append(
                Prediction(
                    id=Prediction.key(r.key, model_version),
                    candidate_id=r.key,
                    model_version=model_version,
                    scheme=scheme,
                    energy_per_atom=r.energy_per_atom,
                    sigma=r.sigma,
                    e_above_hull=ehull(formula, r.energy_per_atom) if ehull else None,
                    campaign=campaign,
                    round=round,
                )
            )
        stats.written += repo.upsert("predictions", preds) if preds else 0
        if progress is not None:
            progress(len(results))
    return stats
