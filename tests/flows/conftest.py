"""Campaign tests share one Prefect home per session (its database migrates once)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def prefect_home(tmp_path_factory):
    return tmp_path_factory.mktemp("prefect-home")


@pytest.fixture(autouse=True)
def _prefect_env(prefect_home, monkeypatch):
    monkeypatch.setenv("PREFECT_HOME", str(prefect_home))
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "300")
    monkeypatch.delenv("PREFECT_API_URL", raising=False)


DFT_TESTS = Path(__file__).resolve().parents[1] / "dft"


@pytest.fixture
def fake_engine(monkeypatch):
    """The instant test-double engine of tests/dft, importable here and in worker processes
    (the local dispatcher passes its environment on)."""
    monkeypatch.syspath_prepend(str(DFT_TESTS))
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(DFT_TESTS), os.environ.get("PYTHONPATH")]))
    )
    from gnomon_fake_engine import FakeEngine

    return FakeEngine()
