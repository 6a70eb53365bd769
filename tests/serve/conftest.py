"""Fixtures of the serve tests: the same campaign on SQLite and mongomock, and the app over each."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_helpers import fill, new_url  # noqa: E402


@pytest.fixture(scope="module")
def campaign_urls(tmp_path_factory) -> dict[str, str]:
    """The same campaign stored on SQLite and on mongomock."""
    tmp = tmp_path_factory.mktemp("serve")
    urls = {b: new_url(b, tmp) for b in ("sqlite", "mongomock")}
    for url in urls.values():
        fill(url)
    return urls


@pytest.fixture(scope="module")
def clients(campaign_urls):
    """TestClients of the serve app over each backend's database."""
    from fastapi.testclient import TestClient

    from gnomon.serve.app import create_app

    out = {}
    stack = []
    for backend, url in campaign_urls.items():
        client = TestClient(create_app(url))
        client.__enter__()
        stack.append(client)
        out[backend] = client
    yield out
    for client in stack:
        client.__exit__(None, None, None)
