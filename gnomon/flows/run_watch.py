"""What ``gnomon campaign serve`` tells its log about the runs it serves: each run's start,
every round it finishes, its end with its outcome, and when the campaign is next due.

The runs themselves execute in processes Prefect's runner starts, and each records itself in
its campaign's run log (``Campaign.runs``, :mod:`gnomon.campaign.runs`) as it starts, after
every round and when it ends, however it ends. Serve reads that log every few seconds
(:class:`RunWatch`) rather than listening to Prefect: the database is what a run is sure to
reach, and the lines say what it recorded there.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from gnomon.plural import counted
from gnomon.storage import Campaign, Repository

#: outcomes a run entry ends with (``running`` is the only other)
ENDED = ("completed", "stopped", "failed", "interrupted", "skipped", "missed")


class RunWatch:
    """Reads the run logs of the campaigns ``names`` and says what changed since last time.

    ``next_due`` gives a campaign's next due time for its end-of-run line. The entries
    present at :meth:`prime` are history, not news: only later changes are told.
    """

    def __init__(self, repo: Repository, names: list[str],
                 next_due: Callable[[Campaign], str]) -> None:
        self.repo, self.names, self.next_due = repo, names, next_due
        self.seen: dict[tuple[str, str], dict[str, Any]] = {}

    def _entries(self) -> list[tuple[Campaign, dict[str, Any]]]:
        out = []
        for campaign in self.repo.query(Campaign, {"name": self.names}):
            out += [(campaign, entry) for entry in campaign.runs if entry.get("run")]
        return out

    def prime(self) -> None:
        for campaign, entry in self._entries():
            self.seen[(campaign.name, entry["run"])] = dict(entry)

    def poll(self) -> list[str]:
        lines: list[str] = []
        for campaign, entry in self._entries():
            key = (campaign.name, entry["run"])
            before = self.seen.get(key)
            if before != entry:
                lines += entry_lines(campaign, before, entry, self.next_due)
                self.seen[key] = dict(entry)
        return lines


def entry_lines(campaign: Campaign, before: dict[str, Any] | None, entry: dict[str, Any],
                next_due: Callable[[Campaign], str]) -> list[str]:
    """The lines for one run entry that went from ``before`` (None: new) to ``entry``."""
    head = f"campaign {campaign.name}: run {entry['run']}"
    outcome = entry.get("outcome")
    if outcome in ("missed", "skipped"):  # catch-up already logs the missed ones
        reason = entry.get("reason")
        return [f"{head} skipped: {reason}"] if outcome == "skipped" else []
    lines = []
    if before is None:
        lines.append(f"{head} started at {_seconds(entry.get('started_at'))}")
    old_rounds = set((before or {}).get("rounds") or [])
    lines += [f"{head}: round {index} done"
              for index in entry.get("rounds") or [] if index not in old_rounds]
    if outcome in ENDED and (before or {}).get("outcome") != outcome:
        lines.append(_end_line(head, campaign, entry, next_due))
    return lines


def _end_line(head: str, campaign: Campaign, entry: dict[str, Any],
              next_due: Callable[[Campaign], str]) -> str:
    rounds = entry.get("rounds") or []
    done = counted(len(rounds), "round") + " done"
    if rounds:
        done += f" ({'round' if len(rounds) == 1 else 'rounds'} {', '.join(map(str, rounds))})"
    took = _seconds_between(entry.get("started_at"), entry.get("finished_at"))
    line = f"{head} {entry['outcome']}: {done}" + (f" in {took:.0f} s" if took is not None
                                                  else "")
    reason = str(entry.get("reason") or "").rstrip(": ")  # "TerminationSignal: " says it all
    if reason:
        line += f"; {reason}"
    return f"{line}; {next_due(campaign)}"


def _seconds(value: str | None) -> str:
    """An ISO time as the log writes its own: to the second."""
    try:
        return datetime.fromisoformat(value).isoformat(timespec="seconds")
    except (TypeError, ValueError):
        return str(value)


def _seconds_between(start: str | None, end: str | None) -> float | None:
    try:
        return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except (TypeError, ValueError):
        return None


__all__ = ["ENDED", "RunWatch", "entry_lines"]
