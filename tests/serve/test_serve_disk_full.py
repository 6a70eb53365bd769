"""`gnomon serve`'s view on a filesystem that fills (a real tmpfs mounted by the test, as its
TMPDIR): a server that cannot build its view says so in one line naming the file; a running
server whose rebuild hits the full disk goes on answering from the view it has, and once space
is freed shows the new data without the database having to change again."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from serve_helpers import REFERENCE_ENERGY, SCHEME, free_port, grid_structure

from gnomon.pipeline.thermo.entries import make_entry
from gnomon.pipeline.thermo.hull import HullEngine
from gnomon.storage import open_repository

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _fill(directory: Path, leave: int = 0) -> Path:
    """Write a file in ``directory`` until its filesystem has no room left, then give back
    ``leave`` bytes (unbuffered: a buffered file would fail again when closed)."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for chunk in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
        if leave:
            os.ftruncate(fd, os.fstat(fd).st_size - leave)
    finally:
        os.close(fd)
    return filler


def _entries(elements: tuple[str, ...], tag: str) -> list:
    out = [make_entry(None, REFERENCE_ENERGY[el] * 2, SCHEME, structure=grid_structure([el, el]),
                      source=f"{tag}-ref") for el in elements]
    out.append(make_entry(None, sum(REFERENCE_ENERGY[el] for el in elements) - 1.0, SCHEME,
                          structure=grid_structure(list(elements)), source=f"{tag}-compound"))
    return out


def _serve(url: str, port: int, tmpdir: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "gnomon.cli", "serve", "--db", url, "--port", str(port),
         "--poll", "1"],
        stdout=log.open("w"), stderr=subprocess.STDOUT, env={**os.environ, "TMPDIR": str(tmpdir)})


def _count(base: str) -> int | None:
    try:
        with urllib.request.urlopen(f"{base}/v1/structures?page_limit=1", timeout=10) as r:
            assert r.status == 200
            return json.loads(r.read())["meta"]["data_returned"]
    except OSError:
        return None


def _until(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}")


def test_serve_cannot_build_its_view_on_a_full_disk_and_says_so(tmp_path, small_filesystem):
    url = f"sqlite:///{tmp_path / 'g.db'}"
    repo = open_repository(url)
    HullEngine(repo).ingest(_entries(("Li", "O"), "a"))
    repo.close()
    # room for Python to accept the directory as TMPDIR (it tries a small file there, and
    # silently takes /tmp instead when that fails), not for a view
    _fill(small_filesystem, leave=16 * 1024)
    log = tmp_path / "serve.log"
    proc = _serve(url, free_port(), small_filesystem, log)
    assert proc.wait(timeout=300) == 1
    text = log.read_text()
    lines = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in text, text
    assert lines[0].startswith(f"error: cannot serve {url}: disk full: could not write "
                               f"{small_filesystem}/gnomon-serve-"), lines[0]
    assert list(small_filesystem.iterdir()) == [small_filesystem / "filler"]  # nothing left


def test_a_rebuild_on_a_full_disk_keeps_the_old_view_and_retries_once_freed(
        tmp_path, small_filesystem):
    url = f"sqlite:///{tmp_path / 'g.db'}"
    repo = open_repository(url)
    HullEngine(repo).ingest(_entries(("Li", "O"), "a"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    proc = _serve(url, port, small_filesystem, log)
    try:
        first = _until(lambda: _count(base), 300, "the server to answer")
        filler = _fill(small_filesystem)
        HullEngine(repo).ingest(_entries(("Na", "Cl"), "b"))  # the database is elsewhere
        # requests drive the refresh checks: each may start a rebuild in the background
        _until(lambda: _count(base) == first and "could not rebuild the OPTIMADE view"
               in log.read_text(), 120, "the failed rebuild to be logged")
        failed = [line for line in log.read_text().splitlines() if "could not rebuild" in line]
        assert "disk full: could not write" in failed[0] and str(small_filesystem) in failed[0]
        for _ in range(10):  # meanwhile every answer comes from the view it had
            assert _count(base) == first
        filler.unlink()
        _until(lambda: _count(base) == first + 3, 120, "the new data once space was freed")
        assert "Traceback" not in log.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        repo.close()
