"""``gnomon serve --token-file``: every request needs the bearer token (401 with an error
document otherwise), the token never reaches a log, an answer or the console, and ``--host``
beyond loopback without a token prints a one-line warning.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from serve_helpers import fill, free_port, live_server, new_url

from gnomon.serve.security import is_loopback, read_token_file

TOKEN = secrets.token_hex(24)


@pytest.fixture(scope="module")
def db_url(tmp_path_factory) -> str:
    url = new_url("sqlite", tmp_path_factory.mktemp("token"))
    fill(url)
    return url


def get(url: str, token: str | None = None, scheme: str = "Bearer") -> tuple[int, Any, str]:
    headers = {"Authorization": f"{scheme} {token}"} if token is not None else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=30) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read().decode()


def test_every_request_needs_the_token_and_it_is_never_logged(db_url, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    bodies = []
    with live_server(db_url, token=TOKEN) as base:
        for path in ("/v1/structures", "/versions", "/v1/info", "/", "/explorer/assets/explorer.js",
                     "/v1/nope"):
            for token, scheme in ((None, "Bearer"), ("wrong-" + TOKEN, "Bearer"),
                                  (TOKEN[:-1], "Bearer"), (TOKEN, "Basic"), ("", "Bearer")):
                status, headers, body = get(base + path, token, scheme)
                assert status == 401, (path, token, status)
                assert headers["WWW-Authenticate"].startswith("Bearer")
                error = json.loads(body)["errors"][0]
                assert error["status"] == "401" and "token" in error["detail"]
                assert headers["Content-Security-Policy"]
                bodies.append(body)
            status, _, body = get(base + path, TOKEN)
            assert status == (404 if path == "/v1/nope" else 200), (path, status)
            bodies.append(body)
        assert get(base + "/v1/info", TOKEN, "bearer")[0] == 200  # the scheme is case-blind
        assert get(f"{base}/v1/info?token={TOKEN}")[0] == 401  # never from the URL
    out, err = capfd.readouterr()
    for text in (caplog.text, out, err, *bodies):
        assert TOKEN not in text


def test_the_token_file_is_checked(tmp_path):
    good = tmp_path / "token"
    good.write_text(f"  {TOKEN}\n")
    assert read_token_file(good) == TOKEN
    for content in ("", "\n", "s3cr3t", "two words here and there", "tøkenwithunicodeletters"):
        bad = tmp_path / "bad"
        bad.write_text(content)
        with pytest.raises(ValueError, match=str(bad)) as caught:
            read_token_file(bad)
        if content.strip():
            assert content.strip() not in str(caught.value)  # the message never shows it
    with pytest.raises(ValueError, match="cannot read"):
        read_token_file(tmp_path / "absent")


def test_loopback_hosts():
    for host in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"):
        assert is_loopback(host)
    for host in ("0.0.0.0", "::", "192.0.2.1", "example.org", "10.0.0.1"):
        assert not is_loopback(host)


def _serve(args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gnomon.cli", "serve", *args],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, env={**os.environ})


def _wait_for(log: Path, proc: subprocess.Popen, text: str) -> str:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if text in log.read_text() or proc.poll() is not None:
            return log.read_text()
        time.sleep(0.3)
    return log.read_text()


@pytest.mark.slow
def test_the_command_serves_with_a_token_and_warns_when_exposed(db_url, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    port = free_port()
    log = tmp_path / "serve.log"
    proc = _serve(["--db", db_url, "--port", str(port), "--token-file", str(token_file)], log)
    try:
        text = _wait_for(log, proc, "serving")
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if get(base + "/versions", TOKEN)[0] == 200:
                    break
            except OSError:  # not listening yet
                time.sleep(0.3)
        assert get(base + "/v1/structures", TOKEN)[0] == 200
        assert get(base + "/v1/structures")[0] == 401
        assert "warning" not in text  # loopback
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert TOKEN not in log.read_text()

    # beyond loopback: one line of warning without a token, none with one (192.0.2.1 is a
    # documentation address no machine has, so nothing is exposed: the bind then fails)
    for extra, warned in (([], True), (["--token-file", str(token_file)], False)):
        log = tmp_path / f"exposed-{warned}.log"
        proc = _serve(["--db", db_url, "--host", "192.0.2.1", "--port", str(free_port()),
                       *extra], log)
        proc.wait(timeout=180)
        lines = [line for line in log.read_text().splitlines() if "warning:" in line]
        assert len(lines) == int(warned), log.read_text()
        if warned:
            assert "192.0.2.1" in lines[0] and "--token-file" in lines[0]
        assert TOKEN not in log.read_text()


def test_a_bad_token_file_is_one_line_and_serves_nothing(db_url, tmp_path):
    bad = tmp_path / "token"
    bad.write_text("tiny-secret")
    done = subprocess.run([sys.executable, "-m", "gnomon.cli", "serve", "--db", db_url,
                           "--port", str(free_port()), "--token-file", str(bad)],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode != 0
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and str(bad) in lines[0] and "too short" in lines[0], lines
    assert "tiny-secret" not in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
