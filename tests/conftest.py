"""Fixtures shared by the whole suite: repositories of every backend, an isolated workspace."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from gnomon.storage import open_repository
from gnomon.storage.backends import backend_for

#: how the contract suite runs each registered backend (gnomon.storage.backends): a new
#: backend adds its flavour here and its URL to make_repo_url
BACKENDS = ["sqlite", "mongomock"] + (
    ["mongodb"] if os.environ.get("GNOMON_TEST_MONGO_URI") else []
)


def pytest_report_header(config):
    if not os.environ.get("GNOMON_TEST_MONGO_URI"):
        return ("MongoDB: no real server (GNOMON_TEST_MONGO_URI unset); "
                "backend tested with mongomock")
    return f"MongoDB: real server at {os.environ['GNOMON_TEST_MONGO_URI']}"


def make_repo_url(backend: str, tmp_path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'gnomon.db'}"
    if backend == "mongomock":
        return f"mongomock://test-{uuid.uuid4().hex[:8]}"
    base = os.environ["GNOMON_TEST_MONGO_URI"].rstrip("/")
    return f"{base}/gnomon_test_{uuid.uuid4().hex[:8]}"


@pytest.fixture(params=BACKENDS)
def repo(request, tmp_path):
    url = make_repo_url(request.param, tmp_path)
    r = open_repository(url)
    yield r
    if request.param == "mongodb":
        r.client.drop_database(r.db.name)
    r.close()


@pytest.fixture
def covered_backends(tmp_path) -> set[str]:
    """The names of the registered backends that the ``repo`` fixture runs tests on."""
    return {backend_for(make_repo_url(flavour, tmp_path)).name for flavour in BACKENDS}


@pytest.fixture
def sqlite_repo(tmp_path):
    r = open_repository(f"sqlite:///{tmp_path / 'gnomon.db'}")
    yield r
    r.close()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (``make test`` runs two workers) the tests of the one live SLURM
    cluster run in one worker, one after another: its session fixture starts and stops the
    cluster, and a second worker's fixture would stop it under the first's jobs."""
    for item in items:
        if "slurm_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("slurm"))


@pytest.fixture(autouse=True)
def _isolated_workspace(tmp_path, monkeypatch):
    """Every test gets its own GNOMON_HOME so nothing leaks into the checkout."""
    monkeypatch.setenv("GNOMON_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("GNOMON_DB", raising=False)
    monkeypatch.delenv("GNOMON_CONFIG", raising=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI (CI=true) an integration test may not skip: the components it needs are installed
    by .ci/run, so a skip there means a broken install, and must fail the run."""
    outcome = yield
    report = outcome.get_result()
    if (
        os.environ.get("CI", "").lower() in ("1", "true", "yes")
        and report.skipped
        and item.get_closest_marker("integration") is not None
        and "GNOMON_TEST_MONGO_URI" not in str(report.longrepr)
    ):
        report.outcome = "failed"
        report.longrepr = f"integration test skipped in CI: {report.longrepr}"


@pytest.fixture
def small_filesystem(tmp_path):
    """A 24 MB tmpfs mounted for the test: a real filesystem to fill (the disk-full tests).

    Mounting needs root, which CI has; elsewhere the test skips, but in CI (CI=true) a mount
    that fails is a failure."""
    mount = tmp_path / "small-fs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        reason = f"cannot mount a small tmpfs here: {done.stderr.strip()}"
        in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
        if os.geteuid() != 0 and not in_ci:
            pytest.skip(reason)
        pytest.fail(reason)
    yield mount
    subprocess.run(["umount", "--lazy", str(mount)], capture_output=True)
