"""Relaxations as a service over the repository: submit -> track -> collect -> ingest.

The database holds all state (the Calculation records); the dispatchers hold none, so any
process can pick up where another stopped::

    relax = Relaxations(repo, runs_dir, {"slurm": SlurmDispatcher(settings.slurm)})
    relax.submit(structures, engine, "slurm")     # checks first, then queues and submits
    relax.wait()                                  # or relax.track() from a scheduler

Guarantees:

- a candidate with a calculation of the same engine settings is never submitted again
  (the calculation id is ``<candidate>:<settings hash>``, inserted only if new);
- every state change is a compare-and-set on the record, so two orchestrators racing for
  the same calculation cannot both submit it;
- a batch id is stored the moment the queue gives it, and a batch submitted just before a
  crash is found again by its label, so a restarted orchestrator re-attaches;
- a batch that ends without a result (scancel, node loss, walltime) is resubmitted up to
  ``max_retries`` times, each failure recorded; a relaxation that fails in the code
  (custodian gave up) is marked failed with its reason;
- results are collected from the calculation directories and ingested all-or-nothing;
  collecting twice is harmless (entry ids are content hashes).
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pymatgen.core import Structure

from gnomon.dft import worker as files
from gnomon.dft.dispatcher import BatchState, BatchStatus, Dispatcher
from gnomon.dft.engine import RelaxEngine
from gnomon.dft.errors import DispatchError
from gnomon.dft.limits import RelaxLimits
from gnomon.dft.parsing import entry_from_task
from gnomon.pipeline.generation.identity import candidate_from_structure
from gnomon.pipeline.thermo.entries import EntryValidationError
from gnomon.pipeline.thermo.hull import HullEngine
from gnomon.storage.disk import check_room
from gnomon.storage.documents import CalcState, Calculation, Candidate, stable_hash
from gnomon.storage.repository import Repository

log = logging.getLogger(__name__)

ACTIVE = (CalcState.submitted, CalcState.running)
BATCH_FILE = "batch.json"


@dataclass
class SubmitReport:
    new: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    submitted_batches: list[str] = field(default_factory=list)


@dataclass
class TrackReport:
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)
    running: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    reattached: list[str] = field(default_factory=list)
    submitted_batches: list[str] = field(default_factory=list)
    entries: list[str] = field(default_factory=list)


def calc_dirname(calc_id: str) -> str:
    return calc_id.replace(":", "-").replace("/", "_")


@dataclass
class Relaxations:
    """Submit, track, collect and ingest relaxations through one or more dispatchers."""

    repo: Repository
    runs_dir: Path
    dispatchers: dict[str, Dispatcher]
    max_retries: int = 2
    pack: int = 1
    #: what each relaxation may use (written into its job.json; the worker enforces them)
    limits: RelaxLimits | None = None

    def __post_init__(self) -> None:
        self.runs_dir = Path(self.runs_dir).resolve()

    # -- submit ---------------------------------------------------------------------------
    def submit(
        self,
        items: Sequence[Structure | Candidate],
        engine: RelaxEngine,
        dispatcher: str,
        campaign: str | None = None,
        round: int | None = None,
        dispatch: bool = True,
    ) -> SubmitReport:
        """Queue a relaxation of each structure/candidate and start what capacity allows.

        Checks the engine's inputs and the dispatcher first: on InputError or DispatchError
        nothing is stored or submitted.
        """
        if dispatcher not in self.dispatchers:
            raise DispatchError(f"unknown dispatcher {dispatcher!r}: {', '.join(self.dispatchers)}")
        candidates = [
            it
            if isinstance(it, Candidate)
            else candidate_from_structure(it, generator="relax", campaign=campaign, round=round)
            for it in items
        ]
        structures = [Structure.from_dict(c.structure) for c in candidates]
        engine.check(structures)
        self.dispatchers[dispatcher].check()

        self.repo.add_candidates(candidates)
        calcs = self._calculations(candidates, structures, engine, dispatcher, campaign, round)
        existing = self.repo.existing_ids("calculations", list(calcs))
        report = SubmitReport(existing=sorted(existing))
        for cid, (calc, structure) in calcs.items():
            if cid in existing:
                continue
            files.write_job(Path(calc.workdir), cid, engine.spec(), structure.as_dict(),
                            self.limits)
        report.new = self.repo.insert_new(
            "calculations", [c for cid, (c, _) in calcs.items() if cid not in existing]
        )
        if report.existing:
            log.info("%d calculation(s) already known; not submitted again", len(report.existing))
        if dispatch:
            report.submitted_batches = self.dispatch()
        return report

    def _calculations(
        self,
        candidates: Sequence[Candidate],
        structures: Sequence[Structure],
        engine: RelaxEngine,
        dispatcher: str,
        campaign: str | None,
        round: int | None,
    ) -> dict[str, tuple[Calculation, Structure]]:
        """One Calculation record per distinct (candidate, engine settings), with its
        structure; the campaign and round default to the candidate's."""
        settings_hash = engine.settings_hash
        calcs: dict[str, tuple[Calculation, Structure]] = {}
        for cand, structure in zip(candidates, structures, strict=True):
            cid = Calculation.key(cand.id, settings_hash)
            if cid in calcs:
                continue
            calcs[cid] = (
                Calculation(
                    id=cid,
                    candidate_id=cand.id,
                    engine=engine.name,
                    scheme=engine.scheme,
                    settings_hash=settings_hash,
                    inputs_hash=engine.inputs_hash(structure),
                    dispatcher=dispatcher,
                    workdir=str(self.runs_dir / calc_dirname(cid)),
                    campaign=campaign if campaign is not None else cand.campaign,
                    round=round if round is not None else cand.round,
                ),
                structure,
            )
        return calcs

    # -- dispatch queued work -------------------------------------------------------------
    def _mine(self, calcs: Iterable[Calculation]) -> list[Calculation]:
        return [c for c in calcs if c.dispatcher in self.dispatchers]

    def dispatch(self) -> list[str]:
        """Submit queued calculations in packs, as far as each dispatcher's limit allows."""
        queued = self._mine(self.repo.calculations(state=CalcState.queued.value))
        active = self._mine(self.repo.query(Calculation, {"state": [s.value for s in ACTIVE]}))
        by_dispatcher: dict[str, list[Calculation]] = defaultdict(list)
        for c in sorted(queued, key=lambda c: c.created_at):
            by_dispatcher[c.dispatcher].append(c)
        submitted: list[str] = []
        for name, calcs in by_dispatcher.items():
            disp = self.dispatchers[name]
            running_batches = {c.batch_id or c.id for c in active if c.dispatcher == name}
            capacity = (
                None if disp.max_active is None else max(0, disp.max_active - len(running_batches))
            )
            packs = [calcs[i : i + self.pack] for i in range(0, len(calcs), self.pack)]
            if capacity is not None:
                packs = packs[:capacity]
            for pack in packs:
                batch_id = self._submit_pack(disp, pack)
                if batch_id:
                    submitted.append(batch_id)
        return submitted

    def _submit_pack(self, disp: Dispatcher, pack: list[Calculation]) -> str | None:
        claimed: list[Calculation] = []
        for c in pack:
            if self.repo.set_calculation_state(
                c.id, CalcState.submitted, expect_state=CalcState.queued,
                batch_id=None, attempts=c.attempts + 1, dispatcher=disp.name,
            ):
                claimed.append(c)
        if not claimed:
            return None
        attempt = max(c.attempts for c in claimed) + 1
        label = f"gnomon-{stable_hash(sorted(c.id for c in claimed), 12)}-{attempt}"
        workdirs = [Path(c.workdir) for c in claimed]
        for w in workdirs:
            files.clear_outcome(w)
            files.write_atomic(
                w / BATCH_FILE, json.dumps({"label": label, "dispatcher": disp.name})
            )
        try:
            batch_id = disp.submit(workdirs, label, self.runs_dir / "batches")
        except DispatchError as exc:
            for c in claimed:
                self.repo.set_calculation_state(
                    c.id, CalcState.queued, expect_state=CalcState.submitted,
                    attempts=c.attempts, failures=[*c.failures, str(exc)], failure_reason=str(exc),
                )
            raise
        for c in claimed:
            self.repo.update_fields("calculations", c.id, {"batch_id": batch_id},
                                    expect={"state": [s.value for s in ACTIVE]})
        log.info("batch %s (%s): %s", batch_id, disp.name, ", ".join(c.id for c in claimed))
        return batch_id

    # -- track ----------------------------------------------------------------------------
    def active(self) -> list[Calculation]:
        return self._mine(self.repo.query(Calculation, {"state": [s.value for s in ACTIVE]}))

    def pending_work(self) -> int:
        """Calculations not finished yet (queued, submitted or running) on these dispatchers."""
        states = [CalcState.queued.value, *(s.value for s in ACTIVE)]
        return len(self._mine(self.repo.query(Calculation, {"state": states})))

    def _reattach(self, calc: Calculation, report: TrackReport) -> Calculation | None:
        """A calculation claimed but without a batch id: the orchestrator died around sbatch."""
        disp = self.dispatchers[calc.dispatcher]
        try:
            label = json.loads((Path(calc.workdir) / BATCH_FILE).read_text())["label"]
        except (OSError, ValueError, KeyError):
            label = None
        batch_id = disp.find(label) if label else None
        if batch_id:
            self.repo.update_fields(
                "calculations", calc.id, {"batch_id": batch_id}, expect={"batch_id": None}
            )
            report.reattached.append(calc.id)
            log.info("re-attached %s to batch %s", calc.id, batch_id)
            return calc.model_copy(update={"batch_id": batch_id})
        if (Path(calc.workdir) / files.RESULT).exists():
            return calc  # it ran; collect below
        self.repo.set_calculation_state(calc.id, CalcState.queued, expect_state=calc.state,
                                        attempts=max(0, calc.attempts - 1))
        log.info("%s had no batch on record or in the queue; queued again", calc.id)
        return None

    def track(self, dispatch: bool = True) -> TrackReport:
        """Poll every active batch, collect finished results, retry lost jobs, dispatch more."""
        report = TrackReport()
        calcs: list[Calculation] = []
        for c in self.active():
            if c.batch_id is None:
                c = self._reattach(c, report)
            if c is not None:
                calcs.append(c)
        statuses: dict[tuple[str, str], BatchStatus] = {}
        by_disp: dict[str, set[str]] = defaultdict(set)
        for c in calcs:  # a calculation with its result on disk needs no question to the queue
            if c.batch_id and not (Path(c.workdir) / files.RESULT).exists():
                by_disp[c.dispatcher].add(c.batch_id)
        for name, ids in by_disp.items():
            for bid, st in self.dispatchers[name].poll(sorted(ids)).items():
                statuses[(name, bid)] = st

        finished: list[Calculation] = []
        for c in calcs:
            wd = Path(c.workdir)
            status = statuses.get(
                (c.dispatcher, c.batch_id or ""), BatchStatus(BatchState.unknown, "no batch id")
            )
            if (wd / files.RESULT).exists():
                finished.append(c)
            elif (wd / files.ERROR).exists():  # this attempt ran and failed in the code
                reason = files.read_error(wd)
                if self.repo.set_calculation_state(
                    c.id,
                    CalcState.failed,
                    expect_state=ACTIVE,
                    failure_reason=reason,
                    failures=[*c.failures, reason],
                ):
                    report.failed.append(c.id)
            elif status.state == BatchState.pending:
                report.pending.append(c.id)
            elif status.state == BatchState.running:
                if c.state == CalcState.submitted and (wd / files.STARTED).exists():
                    self.repo.set_calculation_state(
                        c.id, CalcState.running, expect_state=CalcState.submitted
                    )
                report.running.append(c.id)
            else:
                self._lost(c, status, report)
        if finished:
            self.collect(finished, report)
        if dispatch:
            report.submitted_batches = self.dispatch()
        return report

    def _lost(self, c: Calculation, status: BatchStatus, report: TrackReport) -> None:
        reason = (f"batch {c.batch_id} ({c.dispatcher}) ended without a result: "
                  f"{status.reason or status.state}")
        failures = [*c.failures, reason]
        if c.attempts <= self.max_retries:
            if self.repo.set_calculation_state(
                c.id,
                CalcState.queued,
                expect_state=ACTIVE,
                batch_id=None,
                failures=failures,
                failure_reason=reason,
            ):
                report.retried.append(c.id)
                log.warning("%s: %s; resubmitting (attempt %d of %d)", c.id, reason,
                            c.attempts + 1, self.max_retries + 1)
        elif self.repo.set_calculation_state(
            c.id, CalcState.failed, expect_state=ACTIVE, failures=failures,
            failure_reason=f"{reason} (gave up after {c.attempts} attempts)",
        ):
            report.failed.append(c.id)
            log.error("%s: %s; no retries left", c.id, reason)

    # -- collect --------------------------------------------------------------------------
    def collect(
        self, calcs: Sequence[Calculation], report: TrackReport | None = None
    ) -> TrackReport:
        """Parse finished results into entries, ingest them in one go, mark the calcs done."""
        report = report or TrackReport()
        entries, done = [], []
        for c in calcs:
            doc = files.read_result(Path(c.workdir))
            try:
                entry = entry_from_task(doc, candidate_id=c.candidate_id, calculation_id=c.id,
                                        campaign=c.campaign, round=c.round)
            except EntryValidationError as exc:
                reason = f"result rejected: {exc}"
                if self.repo.set_calculation_state(
                    c.id,
                    CalcState.failed,
                    expect_state=ACTIVE,
                    failure_reason=reason,
                    failures=[*c.failures, reason],
                    task_doc=doc.model_dump(mode="json"),
                ):
                    report.failed.append(c.id)
                continue
            entries.append(entry)
            done.append((c, doc, entry))
        if entries:
            HullEngine(self.repo).ingest(entries)
        for c, doc, entry in done:
            if self.repo.set_calculation_state(
                c.id,
                CalcState.done,
                expect_state=ACTIVE,
                task_doc=doc.model_dump(mode="json"),
                entry_id=entry.id,
                failure_reason=None,
            ):
                report.done.append(c.id)
                report.entries.append(entry.id)
        return report

    # -- wait, cancel, retry --------------------------------------------------------------
    def wait(
        self,
        poll_s: float = 5.0,
        timeout_s: float | None = None,
        on_track: Callable[[TrackReport], None] | None = None,
    ) -> TrackReport:
        """Track until nothing is queued, submitted or running; returns the merged report.

        A dispatcher that cannot be asked for a while (squeue failing during a controller
        restart) is logged and asked again at the next poll; nothing is declared lost for it.
        """
        total = TrackReport()
        start = time.monotonic()
        while True:
            try:
                rep = self.track()
            except DispatchError as exc:
                log.warning("tracking: %s; asking again in %.0f s", exc, poll_s)
                rep = TrackReport()
            for name in ("done", "failed", "retried", "reattached", "entries", "submitted_batches"):
                getattr(total, name).extend(getattr(rep, name))
            total.running, total.pending = rep.running, rep.pending
            if on_track:
                on_track(rep)
            if self.pending_work() == 0:
                return total
            if timeout_s is not None and time.monotonic() - start > timeout_s:
                raise TimeoutError(f"relaxations still unfinished after {timeout_s:.0f} s")
            self._check_room()
            time.sleep(poll_s)

    def _check_room(self) -> None:
        """Stop waiting, with DiskFull, once the disk under the runs (or a SQLite database)
        has filled: the workers wait there for room to write their results (gnomon.dft.worker),
        so nothing would change until someone frees space; the resumed campaign collects
        them."""
        database = getattr(self.repo, "path", None)  # a SQLite repository's file
        check_room(self.runs_dir, *([database] if database is not None else []))

    def cancel(self, calc_ids: Iterable[str]) -> list[str]:
        """Cancel calculations; an active batch is stopped, and other members of a packed
        batch go back to the queue."""
        cancelled = []
        batches: dict[tuple[str, str], None] = {}
        for cid in calc_ids:
            c = self.repo.get(Calculation, cid)
            if c is None or c.state not in (CalcState.queued, *ACTIVE):
                continue
            if self.repo.set_calculation_state(cid, CalcState.cancelled, expect_state=c.state,
                                               failure_reason="cancelled by user"):
                cancelled.append(cid)
                if c.batch_id and c.dispatcher in self.dispatchers:
                    batches[(c.dispatcher, c.batch_id)] = None
        for disp_name, bid in batches:
            self.dispatchers[disp_name].cancel(bid)
            for other in self.repo.calculations(batch_id=bid):
                if other.state in ACTIVE and not (Path(other.workdir) / files.RESULT).exists():
                    self.repo.set_calculation_state(
                        other.id, CalcState.queued, expect_state=other.state, batch_id=None
                    )
        return cancelled

    def retry(self, calc_ids: Iterable[str], dispatch: bool = True) -> list[str]:
        """Queue failed or cancelled calculations again (attempt count starts over)."""
        retried = []
        for cid in calc_ids:
            c = self.repo.get(Calculation, cid)
            if c is None or c.state not in (CalcState.failed, CalcState.cancelled):
                continue
            if c.dispatcher not in self.dispatchers:
                raise DispatchError(
                    f"{cid} ran on dispatcher {c.dispatcher!r}, which is not configured here"
                )
            files.clear_outcome(Path(c.workdir))
            # the reason belongs to the try that failed; `failures` keeps every one of them
            if self.repo.set_calculation_state(cid, CalcState.queued, expect_state=c.state,
                                               batch_id=None, attempts=0, failure_reason=None):
                retried.append(cid)
        if dispatch and retried:
            self.dispatch()
        return retried
