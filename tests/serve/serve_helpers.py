"""Helpers for the serve tests: a small campaign-like database built through gnomon's own
HullEngine, and the serve app live on a free loopback port."""

from __future__ import annotations

import itertools
import random
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from pymatgen.core import Lattice, Structure

from gnomon.pipeline.thermo.entries import make_entry
from gnomon.pipeline.thermo.hull import HullEngine
from gnomon.storage import Entry, open_repository

SCHEME = "test-pbe"
ELEMENTS = ["Li", "Mn", "O", "Na", "Cl", "Fe"]
REFERENCE_ENERGY = {"Li": -1.9, "Mn": -9.0, "O": -4.9, "Na": -1.3, "Cl": -1.8, "Fe": -8.3}


def grid_structure(species: list[str], spacing: float = 2.2) -> Structure:
    """A cubic cell with ``species`` on grid points ``spacing`` apart (never overlapping)."""
    k = 1
    while k**3 < len(species):
        k += 1
    points = list(itertools.product(range(k), repeat=3))[: len(species)]
    return Structure(
        Lattice.cubic(k * spacing), species, [[i / k, j / k, m / k] for i, j, m in points]
    )


def campaign_entries(seed: int = 7, n: int = 24) -> list[Entry]:
    """Elemental references plus ``n`` compounds (some stable, some not) with relaxed-looking
    structures, spread over two campaign rounds, as a campaign's database holds them."""
    rng = random.Random(seed)
    entries = [
        make_entry(None, REFERENCE_ENERGY[el] * 2, SCHEME, structure=grid_structure([el, el]),
                   source="reference")
        for el in ELEMENTS
    ]
    systems = [
        ("Li", "O"),
        ("Mn", "O"),
        ("Li", "Mn", "O"),
        ("Na", "Cl"),
        ("Fe", "O"),
        ("Li", "Fe", "O"),
    ]
    for i in range(n):
        chosen = systems[i % len(systems)]
        species = [el for el in chosen for _ in range(rng.randint(1, 3))]
        ref = sum(REFERENCE_ENERGY[el] for el in species)
        energy = ref + rng.uniform(-0.8, 0.3) * len(species)
        entries.append(make_entry(None, energy, SCHEME, structure=grid_structure(species),
                                  source=f"relax-{i}", campaign="demo", round=1 + i % 2,
                                  calculation_id=f"calc-{i}"))
    # an energy without a structure (a composition-only import) is not a structure resource
    entries.append(make_entry("Li2O", -8.4, SCHEME, source="table"))
    return entries


def fill(url: str, entries: list[Entry] | None = None) -> None:
    repo = open_repository(url)
    try:
        HullEngine(repo).ingest(entries if entries is not None else campaign_entries())
    finally:
        repo.close()


def new_url(backend: str, tmp_path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / f'gnomon-{uuid.uuid4().hex[:6]}.db'}"
    return f"mongomock://serve-{uuid.uuid4().hex[:8]}/gnomon"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def live_server(url: str, **kwargs) -> Iterator[str]:
    """``gnomon serve``'s app under uvicorn in a thread, on a free loopback port; yields its
    base URL."""
    import uvicorn

    from gnomon.serve.app import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(url, **kwargs), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
