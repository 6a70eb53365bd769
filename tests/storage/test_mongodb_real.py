"""The MongoDB backend against a real server; skipped visibly without one."""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.skipif(
    not os.environ.get("GNOMON_TEST_MONGO_URI"),
    reason="no MongoDB server: set GNOMON_TEST_MONGO_URI=mongodb://host:port to run the "
    "contract suite against a real server (mongomock covers it otherwise)",
)


def test_real_server_reachable():
    from gnomon.storage import open_repository

    repo = open_repository(os.environ["GNOMON_TEST_MONGO_URI"].rstrip("/") + "/gnomon_ping")
    assert repo.count("entries") >= 0
    repo.client.drop_database("gnomon_ping")
