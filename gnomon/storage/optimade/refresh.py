"""When a served view of the database is rebuilt: the one throttle both backends share.

A request never waits for a rebuild. At most every ``refresh_s`` seconds one request asks the
backend's :class:`~gnomon.storage.reader.PhaseReader` for its change token (SQLite's
``data_version``, MongoDB's counts and newest timestamps); if it moved, one background thread
rebuilds the view while the previous one keeps answering.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Hashable

from gnomon.storage.reader import PhaseReader


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
        """Build the view anew and start serving it (runs in a background thread)."""

    def maybe_refresh(self) -> None:
        """Start a rebuild in the background if the database changed since the last check."""
        now = time.monotonic()
        if now - self._checked < self.refresh_s or self._rebuilding:
            return
        with self._lock:
            if self._rebuilding or now - self._checked < self.refresh_s:
                return
            self._checked = now
            signature = self._signature()
            if signature == self._seen:
                return
            self._seen = signature
            self._rebuilding = True
        threading.Thread(target=self._rebuild_then_release, name="gnomon-serve-view",
                         daemon=True).start()

    def _rebuild_then_release(self) -> None:
        try:
            self._rebuild()
        finally:
            self._rebuilding = False
