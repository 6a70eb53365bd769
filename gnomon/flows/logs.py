"""Prefect's log kept off the terminal unless a person asks for it (``-v``).

Prefect prints a line for every flow and task run it begins and finishes ("Beginning flow
run", "Finished in state Completed()"): some sixty lines for a three-round campaign, which
say nothing the campaign's progress display does not. Prefect sends those records to the
handlers that print (its console handler on the root logger, or whatever handler the process
gave the root logger before Prefect was imported) and to its API handler (the runs' logs in
its UI). Only the printing handlers are told to drop them (:class:`QuietPrefect`): Prefect's
records below WARNING, and the runs' own log, a failed run's traceback among it, below
CRITICAL: the command that runs the flow shows its progress and reports a failure in one
line. The UI keeps every line.

The flow runs ``gnomon campaign serve`` starts are processes of their own, which configure
Prefect's logging from the environment when they import it: ``prefect_console`` sets
``PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL`` (Prefect's override of its console handler's level)
for them, and the campaign flow's module adds the filter there when it is imported
(:func:`follow_parent_console`). A level the user set in that variable is left as it is.
"""

from __future__ import annotations

import logging
import os

from prefect.logging.configuration import ensure_logging_setup
from prefect.logging.handlers import PrefectConsoleHandler

CONSOLE_LEVEL_VAR = "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"
_SET_HERE = "_GNOMON_QUIETED_PREFECT_CONSOLE"


class QuietPrefect(logging.Filter):
    """Passes Prefect's records at WARNING and above, the runs' own at CRITICAL only (the
    runner's, ``prefect.flow_runs.runner``, at WARNING: a run's process that died), and every
    other logger's as they come."""

    RUN_LOGGERS = frozenset({"prefect.flow_runs", "prefect.task_runs"})

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name in self.RUN_LOGGERS:
            return record.levelno >= logging.CRITICAL
        if record.name == "prefect" or record.name.startswith("prefect."):
            return record.levelno >= logging.WARNING
        return True


def prefect_console(verbose: bool) -> None:
    """Prefect's log off the printing handlers (:class:`QuietPrefect`), or, ``verbose``, as
    Prefect configures it; the same for the processes started from here on. Prefect's
    logging is configured first if nothing has made it so yet (importing ``prefect.flow``
    does), so that its console handler is the root's, not one a later basicConfig installs."""
    ensure_logging_setup()
    if not (CONSOLE_LEVEL_VAR in os.environ and _SET_HERE not in os.environ):  # not the user's
        if verbose:
            os.environ.pop(CONSOLE_LEVEL_VAR, None)
            os.environ.pop(_SET_HERE, None)
        else:
            os.environ.update({CONSOLE_LEVEL_VAR: "WARNING", _SET_HERE: "1"})
    for handler in printing_handlers():
        for f in [f for f in handler.filters if isinstance(f, QuietPrefect)]:
            handler.removeFilter(f)
        if not verbose:
            handler.addFilter(QuietPrefect())


def follow_parent_console() -> None:
    """Quiet this process's Prefect log as the process that started it quieted its own (the
    flow runs ``gnomon campaign serve`` starts). Called when the campaign flow's module is
    imported, before Prefect logs the run's first line."""
    if os.environ.get(_SET_HERE):
        prefect_console(verbose=False)


def printing_handlers() -> list[logging.Handler]:
    """The root logger's handlers, and Prefect's console handlers wherever they are."""
    found = {id(h): h for h in logging.getLogger().handlers}
    for logger in list(logging.root.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            found.update({id(h): h for h in logger.handlers
                          if isinstance(h, PrefectConsoleHandler)})
    return list(found.values())


__all__ = [
    "CONSOLE_LEVEL_VAR",
    "QuietPrefect",
    "follow_parent_console",
    "prefect_console",
    "printing_handlers",
]
