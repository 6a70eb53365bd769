"""``gnomon serve --workers N``: N server processes answering on one port.

One Python process answers ``/structures`` with about one core's worth of CPU (about 90
requests/s on these machines, see the README), so more needs more processes. uvicorn's
supervisor binds the port once and starts N worker processes that share its socket, each a
fresh interpreter making the app for itself through :func:`app_from_settings_file` (named to
uvicorn as an import string: an app object cannot be handed to another interpreter).

The settings reach the workers as a JSON file, mode 0600 in a private temporary directory,
whose path is the one thing put in the environment (:data:`SETTINGS_ENV`): the database URL
(which may hold a password) and the token file's path travel in the file; the token itself
travels nowhere, each worker reads the token file. Each worker takes the view kept in the view
store (built once, before the workers start, by the command) and refreshes it as one server
does; a refresh is built by the first worker to need it and taken by the others.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib
import uvicorn
from fastapi import FastAPI

from gnomon.credentials import MaskSecretsFilter, write_private
from gnomon.serve.app import create_app, freeze_startup_heap
from gnomon.serve.security import read_token_file
from gnomon.storage.optimade.limits import QUERY_TIME_LIMIT_S

SETTINGS_ENV = "GNOMON_SERVE_SETTINGS"
#: seconds a worker may take to answer uvicorn's health check (uvicorn's 5 s kills a worker
#: whose ping thread waits behind a view build on a busy machine)
_HEALTH_CHECK_S = 60


@dataclass(frozen=True)
class ServeSettings:
    """What each worker's app is made from (:func:`gnomon.serve.app.create_app`'s arguments,
    the token as the path of its file)."""

    db_url: str
    base_url: str | None = None
    refresh_s: float = 30.0
    token_file: str | None = None
    query_time_s: float = QUERY_TIME_LIMIT_S
    log_level: str = "INFO"

    def write(self, directory: Path) -> Path:
        """The settings as a private file (0600, its directory 0700) in ``directory``."""
        return write_private(directory / "settings.json", json.dumps(asdict(self)))

    @classmethod
    def read(cls, path: Path) -> ServeSettings:
        return cls(**json.loads(path.read_text()))


def app_from_settings_file() -> FastAPI:
    """A worker's app, from the settings file :data:`SETTINGS_ENV` names (uvicorn's factory)."""
    settings = ServeSettings.read(Path(os.environ[SETTINGS_ENV]))
    # a worker is its own program: it chooses its logging and figure backend as the command
    # does for one process (figures drawn off the main thread, with no display)
    logging.basicConfig(level=settings.log_level, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(MaskSecretsFilter())
    matplotlib.use("Agg")
    token = read_token_file(Path(settings.token_file)) if settings.token_file else None
    app = create_app(settings.db_url, base_url=settings.base_url, refresh_s=settings.refresh_s,
                     token=token, query_time_s=settings.query_time_s)
    freeze_startup_heap()
    return app


def run_workers(settings: ServeSettings, host: str, port: int, workers: int) -> None:
    """Serve with ``workers`` processes on ``host:port`` until stopped (Ctrl-C, SIGTERM)."""
    directory = Path(tempfile.mkdtemp(prefix="gnomon-serve-settings-"))
    try:
        os.environ[SETTINGS_ENV] = str(settings.write(directory))
        uvicorn.run(f"{__name__}:{app_from_settings_file.__name__}", factory=True, host=host,
                    port=port, workers=workers, log_level="warning",
                    timeout_worker_healthcheck=_HEALTH_CHECK_S)
    finally:
        os.environ.pop(SETTINGS_ENV, None)
        shutil.rmtree(directory, ignore_errors=True)
