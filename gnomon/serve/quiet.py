"""optimade's logger, kept to warnings and out of stdout and /var/log.

``optimade.server.logger`` builds its logger when first imported (its app factory and
exception handlers import it): unless the ``optimade`` logger has a handler already, it
announces its settings file and backend at INFO on stdout and writes files under
/var/log/optimade. gnomon keeps only optimade's warnings, through the standard logging tree;
:mod:`gnomon.serve` calls :func:`quiet_optimade_logger` when it is imported, before any of
its modules imports optimade's server.
"""

from __future__ import annotations

import logging


class _WarningsOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


def quiet_optimade_logger() -> None:
    """Give optimade's logger a do-nothing handler and a warnings-only filter (idempotent)."""
    logger = logging.getLogger("optimade")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    if not any(isinstance(f, _WarningsOnly) for f in logger.filters):
        logger.addFilter(_WarningsOnly())
