"""Who advances a campaign now, and what each of its runs did: both kept in the database.

Runs of one campaign never overlap. A run first takes the campaign's lease, a compare-and-set
on the Campaign record naming its host, process and run id; a second run that finds the lease
held by a live holder does nothing and is recorded as skipped. The holder renews the lease
while it works. A holder that died without letting go (its process killed) is recognised
either at once, when it ran on this host and its process is gone, or after ``LEASE_TTL_S``
without renewal, and the next run takes over and marks the dead one's run interrupted.

The lease lives in gnomon's database rather than in Prefect's deployment concurrency limit on
purpose: Prefect keeps that limit's leases in the server's memory, so a server killed together
with ``serve`` leaves the slot counted as taken and every later run waits or is cancelled for
good; the database survives both and needs no server. It also keeps ``gnomon campaign run``
and scheduled runs apart.

Each run leaves an entry in ``Campaign.runs`` (the latest ``MAX_RUNS_KEPT``): its id, when it
started and finished, its outcome (running, completed, stopped, failed, interrupted, skipped,
missed) and why.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from gnomon.storage import Campaign, Repository, StorageError, open_repository
from gnomon.storage.documents import utcnow

log = logging.getLogger(__name__)

LEASE_TTL_S = 300.0
RENEW_EVERY_S = 60.0
MAX_RUNS_KEPT = 200


class LeaseHeld(RuntimeError):
    """Another run advances the campaign now; the message names it."""


@dataclass(frozen=True)
class Holder:
    """A lease holder: the process of one run."""

    host: str
    pid: int
    run: str

    @property
    def token(self) -> str:
        return f"{self.host}:{self.pid}:{self.run}"

    @classmethod
    def parse(cls, token: str) -> Holder:
        host, pid, run = token.split(":", 2)
        return cls(host, int(pid), run)

    @classmethod
    def this_process(cls, run: str) -> Holder:
        return cls(socket.gethostname(), os.getpid(), run)

    def gone(self) -> bool:
        """Whether this holder's process is known to be dead (only knowable on its own host)."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


def _stale(record: Campaign, now: datetime, ttl_s: float) -> bool:
    holder = Holder.parse(record.lease)
    renewed = record.lease_renewed_at
    return holder.gone() or renewed is None or now - renewed > timedelta(seconds=ttl_s)


def _with_run(runs: list[dict[str, Any]], run: str, **fields: Any) -> list[dict[str, Any]]:
    """``runs`` with the entry of ``run`` updated (appended when new), the oldest dropped."""
    out = [dict(r) for r in runs]
    for entry in out:
        if entry.get("run") == run:
            entry.update(fields)
            break
    else:
        out.append({"run": run, **fields})
    return out[-MAX_RUNS_KEPT:]


def _iso(value: datetime) -> str:
    return value.isoformat()


def acquire(repo: Repository, campaign: str, run: str, ttl_s: float = LEASE_TTL_S) -> Holder:
    """Take the campaign's lease for ``run`` (this process) and record the run as running.

    Raises LeaseHeld, after recording ``run`` as skipped, when a live holder has it. A stale
    holder's run is marked interrupted and the lease taken over.
    """
    me = Holder.this_process(run)
    now = utcnow()
    held: str | None = None
    with repo.transaction():
        record = repo.get(Campaign, campaign)
        if record is None:
            raise KeyError(f"no campaign named {campaign!r}")
        runs = record.runs
        other = record.lease if record.lease and record.lease != me.token else None
        if other is not None and not _stale(record, now, ttl_s):
            holder = Holder.parse(other)
            held = (f"run {holder.run} (pid {holder.pid} on {holder.host}) is still "
                    "advancing the campaign")
            skipped = _with_run(runs, run, started_at=_iso(now), finished_at=_iso(now),
                                outcome="skipped", reason=held)
            repo.update_fields("campaigns", campaign, {"runs": skipped})
        else:
            if other is not None:
                runs = _taken_over(campaign, Holder.parse(other), runs, run, now)
            repo.update_fields("campaigns", campaign, {
                "lease": me.token, "lease_renewed_at": _iso(now),
                "runs": _with_run(runs, run, started_at=_iso(now), outcome="running", rounds=[]),
            })
    if held is not None:  # raised outside the transaction, which would roll the record back
        raise LeaseHeld(f"campaign {campaign}: {held}")
    return me


def _taken_over(campaign: str, dead: Holder, runs: list[dict[str, Any]], run: str,
                now: datetime) -> list[dict[str, Any]]:
    """The run log with the dead holder's run marked interrupted, ``run`` taking over."""
    log.warning("campaign %s: run %s (pid %d on %s) died holding it; run %s takes over",
                campaign, dead.run, dead.pid, dead.host, run)
    return _with_run(runs, dead.run, outcome="interrupted", finished_at=_iso(now),
                     reason=f"its process died; run {run} took over")


def renew(repo: Repository, campaign: str, holder: Holder) -> bool:
    """Renew the lease; False when ``holder`` no longer has it (another run took over)."""
    return repo.update_fields(
        "campaigns", campaign, {"lease_renewed_at": _iso(utcnow())}, expect={"lease": holder.token}
    )


def record(repo: Repository, campaign: str, run: str, **fields: Any) -> None:
    """Update the entry of ``run`` in the campaign's run log."""
    with repo.transaction():
        current = repo.get(Campaign, campaign)
        if current is not None:
            repo.update_fields(
                "campaigns", campaign, {"runs": _with_run(current.runs, run, **fields)}
            )


def release(repo: Repository, campaign: str, holder: Holder, **fields: Any) -> None:
    """Let go of the lease (if still ours) and record how the run ended."""
    with repo.transaction():
        current = repo.get(Campaign, campaign)
        if current is None:
            return
        update: dict[str, Any] = {
            "runs": _with_run(current.runs, holder.run, finished_at=_iso(utcnow()), **fields)
        }
        if current.lease == holder.token:
            update.update({"lease": None, "lease_renewed_at": None})
        repo.update_fields("campaigns", campaign, update)


class Renewer:
    """Renews a lease from a daemon thread every ``every_s`` until stopped.

    ``lost`` is set when the lease was taken over (this run was presumed dead): the run should
    stop at its next round boundary rather than race the new holder.
    """

    def __init__(
        self, db_url: str, campaign: str, holder: Holder, every_s: float = RENEW_EVERY_S
    ) -> None:
        self.db_url, self.campaign, self.holder, self.every_s = db_url, campaign, holder, every_s
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"lease-{campaign}", daemon=True)

    def _loop(self) -> None:
        repo = open_repository(self.db_url)
        try:
            while not self._stop.wait(self.every_s):
                try:
                    renewed = renew(repo, self.campaign, self.holder)
                except StorageError as exc:  # a full disk: the run itself stops on it
                    log.warning("campaign %s: lease not renewed (%s); trying again in %.0f s",
                                self.campaign, exc, self.every_s)
                    continue
                if not renewed:
                    log.error(
                        "campaign %s: run %s lost its lease to another run",
                        self.campaign,
                        self.holder.run,
                    )
                    self.lost.set()
                    return
        finally:
            repo.close()

    def __enter__(self) -> Renewer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


__all__ = ["LEASE_TTL_S", "Holder", "LeaseHeld", "Renewer", "acquire", "record", "release", "renew"]
