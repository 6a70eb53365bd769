"""Log lines fit for a daemon's log (``gnomon campaign serve`` under nohup, systemd or a
terminal): one line per event, an ISO 8601 timestamp (UTC), the level, the message; no
colour and no markup, so journald, ``nohup.out`` and ``grep`` read them as they are.

gnomon's loggers get a handler of their own on stderr and stop passing records up to the root
logger: the root's handler is Prefect's console handler (its config sets the root at WARNING),
where serve's INFO lines would never show.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

from gnomon.credentials import MaskSecretsFilter

FORMAT = "%(asctime)s %(levelname)s %(message)s"


class IsoTimeFormatter(logging.Formatter):
    """Times as ``2026-01-02T03:04:05+00:00``, in UTC to the second: the zone of every time the
    lines quote (a run's start, the next due time), as gnomon's records store them."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="seconds")


class _DaemonHandler(logging.StreamHandler):
    """The handler :func:`daemon_log` installs (found again, and replaced, by its type)."""


def daemon_log(level: str | int = logging.INFO, stream: TextIO | None = None) -> None:
    """gnomon's log records at ``level`` and above, one plain line each, on ``stream``
    (default stderr). Idempotent: a second call replaces the first one's handler."""
    logger = logging.getLogger("gnomon")
    for old in [h for h in logger.handlers if isinstance(h, _DaemonHandler)]:
        logger.removeHandler(old)
    handler = _DaemonHandler(stream or sys.stderr)
    handler.setFormatter(IsoTimeFormatter(FORMAT))
    handler.addFilter(MaskSecretsFilter())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


__all__ = ["FORMAT", "IsoTimeFormatter", "daemon_log"]
