"""When a served view of the database is rebuilt: the one throttle both backends share.

A request never waits for a rebuild. At most every ``refresh_s`` seconds one request asks the
backend's :class:`~gnomon.storage.reader.PhaseReader` for its change token (SQLite's
``data_version``, MongoDB's counts and newest timestamps); if it moved, one background thread
rebuilds the view while the previous one keeps answering. A rebuild that fails (the disk
under the view full, the database unreachable) is logged in one line, the previous view goes
on answering, and the next check tries again even if the database has not changed since: a
view is never left behind for good by one failed build.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Hashable

from gnomon.storage.reader import PhaseReader

log = logging.getLogger(__name__)

_NEVER_SEEN = object()


class RefreshingView(ABC):
    """A view rebuilt in the background when its reader's change token moves."""

    refresh_s: float
    reader: PhaseReader

    def _start_watching(self, refresh_s: float) -> None:
        """Take the database's signature now: later changes are measured against it."""
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._rebuilding = False
        self._checked = time.monotonic()
        self._seen = self._signature()

    def _signature(self) -> Hashable:
        """A cheap value that changes whenever the served records may have."""
        return self.reader.change_token()

    @abstractmethod
    def _rebuild(self) -> None:
        """Build the view anew and start serving it (runs in a background thread); raise if
        the build fails, leaving the previous view in service."""

    def maybe_refresh(self) -> None:
        """Start a rebuild in the background if the database changed since the last check."""
        now = time.monotonic()
        if now - self._checked < self.refresh_s or self._rebuilding:
            return
        with self._lock:
            if self._rebuilding or now - self._checked < self.refresh_s:
                return
            self._checked = now
            try:
                signature = self._signature()
            except Exception as exc:  # noqa: BLE001 - a request never fails for a refresh check
                log.warning("could not ask the database for changes (asking again later): %s",
                            exc)
                return
            if signature == self._seen:
                return
            self._seen = signature
            self._rebuilding = True
        threading.Thread(target=self._rebuild_then_release, name="gnomon-serve-view",
                         daemon=True).start()

    def _rebuild_then_release(self) -> None:
        try:
            self._rebuild()
        except Exception as exc:  # noqa: BLE001 - a server thread: logged, retried next check
            log.error("could not rebuild the OPTIMADE view (serving the previous one; retrying "
                      "at the next check): %s", exc)
            with self._lock:
                self._seen = _NEVER_SEEN
        finally:
            self._rebuilding = False
