"""A Prefect server for one workspace, started and stopped by ``gnomon campaign serve``.

Prefect's ephemeral API (what a flow gets without ``PREFECT_API_URL``) runs no scheduler
service, so a deployment's schedule never produces a run there. ``LocalPrefectServer`` runs
``prefect server start`` (scheduler included) as a child process: loopback only, its state
(``prefect.db``) in ``$GNOMON_HOME/prefect`` so schedules and run history stay with the
campaigns' database. The child dies with its parent: it is stopped on exit, and on Linux it
is also told to exit should ``serve`` be killed without a chance to stop it (SIGKILL), so a
restarted ``serve`` never finds a stray server holding the workspace's Prefect database.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


class ServerError(RuntimeError):
    """The workspace's Prefect server did not start; the message carries its log's tail."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGTERM the child when its parent dies, else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None

    def _set() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)

    return _set


def healthy(api_url: str, timeout_s: float = 5.0) -> bool:
    """Whether a Prefect API answers its health check at ``api_url``."""
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout_s) as response:
            return json.loads(response.read()) is True
    except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
        return False


def running_server(home: Path) -> str | None:
    """The API URL of this workspace's server if a ``serve`` runs it now, else None."""
    info = home / "server.json"
    if not info.exists():
        return None
    try:
        url = json.loads(info.read_text())["api_url"]
    except (ValueError, KeyError, OSError):
        return None
    return url if healthy(url, timeout_s=2.0) else None


@dataclass
class LocalPrefectServer:
    """``prefect server start`` in ``home`` on the loopback interface, until :meth:`stop`.

    ``port`` None picks a free one. ``ui`` False serves the API only (faster first start).
    The API URL is written to ``home/server.json`` while the server runs, so other gnomon
    commands of the workspace (``campaign schedule``) can find it.
    """

    home: Path
    host: str = "127.0.0.1"
    port: int | None = None
    ui: bool = True
    start_timeout_s: float = 300.0
    stop_timeout_s: float = 30.0
    proc: subprocess.Popen | None = field(default=None, init=False, repr=False)

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}/api"

    @property
    def ui_url(self) -> str | None:
        """Prefect's web UI, served with the API when ``ui``."""
        return f"http://{self.host}:{self.port}" if self.ui else None

    @property
    def log_path(self) -> Path:
        return self.home / "server.log"

    def environment(self) -> dict[str, str]:
        """The server's environment: the caller's, with Prefect's home and settings fixed."""
        env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        env.update(
            {
                "PREFECT_HOME": str(self.home),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_UI_ENABLED": str(self.ui).lower(),
                "PREFECT_SERVER_UI_ENABLED": str(self.ui).lower(),
                "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "true",
            }
        )
        return env

    def start(self) -> str:
        """Start the server and wait until it answers; returns its API URL."""
        self.home.mkdir(parents=True, exist_ok=True)
        if self.port is None:
            self.port = free_port(self.host)
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "prefect",
                    "server",
                    "start",
                    "--host",
                    self.host,
                    "--port",
                    str(self.port),
                ],
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent(),
            )
        log.info(
            "starting Prefect server for %s on %s (log: %s)", self.home, self.api_url, self.log_path
        )
        try:
            self._wait_healthy()
        except BaseException:  # noqa: BLE001 - never leave the child behind, then re-raise
            self.stop()
            raise
        (self.home / "server.json").write_text(
            json.dumps({"api_url": self.api_url, "pid": self.proc.pid})
        )
        log.info("Prefect server ready: API %s, UI %s", self.api_url,
                 self.ui_url or "off (--no-ui)")
        return self.api_url

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(
                    f"prefect server exited with {self.proc.returncode}:\n{self._tail()}"
                )
            if healthy(self.api_url):
                return
            time.sleep(1.0)
        raise ServerError(
            f"prefect server not healthy after {self.start_timeout_s:.0f} s:\n{self._tail()}"
        )

    def stop(self) -> None:
        """Stop the server: SIGTERM, then SIGKILL if it has not exited in ``stop_timeout_s``."""
        (self.home / "server.json").unlink(missing_ok=True)
        if self.proc is None or self.proc.poll() is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=self.stop_timeout_s)
                log.info("Prefect server on %s stopped", self.api_url)
                return
            except subprocess.TimeoutExpired:
                log.warning("Prefect server on %s ignored %s", self.api_url, sig.name)

    def _tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def __enter__(self) -> LocalPrefectServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


__all__ = ["LocalPrefectServer", "ServerError", "free_port", "healthy", "running_server"]
