"""Every database URL problem is one line, with no traceback and never the password (issue 27,
item 4): a URL pymongo cannot parse, a server that does not answer (named by host, with the
time waited, not pymongo's topology dump), a scheme gnomon has no backend for."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from gnomon.cli import app
from gnomon.credentials import mask_url
from gnomon.storage import StorageError, open_repository
from gnomon.storage.mongodb.repository import REACH_TIMEOUT_S

SECRET = "Sentinel9pw"
runner = CliRunner()

MALFORMED = {
    "unescaped @ in the password": f"mongodb://alice:{SECRET}@x@localhost:27017/gnomon",
    "unescaped / in the password": f"mongodb://alice:{SECRET[:4]}/{SECRET[4:]}@localhost/gnomon",
    "non-numeric port": f"mongodb://alice:{SECRET}@localhost:abc/gnomon",
    "port out of range": f"mongodb://alice:{SECRET}@localhost:99999/gnomon",
    "no host": f"mongodb://alice:{SECRET}@/gnomon",
    "unknown option": f"mongodb://alice:{SECRET}@localhost/gnomon?replicaSett=rs0",
}
UNREACHABLE = f"mongodb://alice:{SECRET}@127.0.0.1:1/gnomon"
UNSUPPORTED = f"postgres://alice:{SECRET}@db.example.org/gnomon"


def _secret_free(text: str) -> None:
    for piece in (SECRET, SECRET[:4] + "/", SECRET[4:]):
        assert piece not in text, text


def _one_line_error(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert "Traceback" not in output and "Topology" not in output
    _secret_free(output)
    return lines[0]


@pytest.mark.parametrize("url", list(MALFORMED.values()), ids=list(MALFORMED))
def test_a_malformed_url_is_one_line_without_the_password(url):
    with pytest.raises(StorageError) as err:
        open_repository(url)
    message = str(err.value)
    assert "\n" not in message and "malformed MongoDB URL" in message
    _secret_free(message)
    result = runner.invoke(app, ["phases", "--db", url])
    assert result.exit_code == 1
    line = _one_line_error(result.output)
    assert "malformed MongoDB URL mongodb://alice:***@" in line


@pytest.mark.parametrize("read_only", [False, True], ids=["writable", "read-only"])
def test_an_unreachable_server_names_its_host_and_the_time_waited(read_only):
    with pytest.raises(StorageError) as err:
        open_repository(UNREACHABLE, read_only=read_only)
    message = str(err.value)
    assert "\n" not in message
    assert "cannot reach MongoDB at mongodb://alice:***@127.0.0.1:1/gnomon" in message
    assert f"no answer from 127.0.0.1:1 within {REACH_TIMEOUT_S:g} s" in message
    assert "refused" in message.lower()  # the socket's own reason, not pymongo's topology
    _secret_free(message)


def test_an_unsupported_url_is_one_line_in_every_command():
    importing = ["db", "import", "x.json", "--scheme", "vasp-r2scan"]
    for args in (["phases"], ["db", "stats"], importing):
        result = runner.invoke(app, [*args, "--db", UNSUPPORTED])
        assert result.exit_code != 0
        line = _one_line_error(result.output)
        assert "unsupported database URL" in line and "sqlite:///" in line, line


def test_the_real_cli_prints_one_line_for_each_problem(tmp_path):
    """Through a real process: what a person at a terminal sees on stderr, and the exit code."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GNOMON_")}
    env["GNOMON_HOME"] = str(tmp_path / "home")
    for url, expected in (
        (MALFORMED["unescaped @ in the password"], "malformed MongoDB URL"),
        (UNREACHABLE, "cannot reach MongoDB"),
        (UNSUPPORTED, "unsupported database URL"),
    ):
        run = subprocess.run(
            [sys.executable, "-m", "gnomon.cli", "db", "stats", "--db", url],
            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
        )
        assert run.returncode == 1, run.stderr
        line = _one_line_error(run.stdout + run.stderr)
        assert expected in line
    assert not (tmp_path / "home").exists() or not any((tmp_path / "home").rglob("*.db"))


def test_a_password_with_a_slash_is_masked_even_where_the_url_does_not_parse():
    shown = mask_url(MALFORMED["unescaped / in the password"])
    _secret_free(shown)
    assert shown.startswith("mongodb://alice:***@")
