"""`gnomon serve` answers while a campaign writes to the same SQLite database.

A real `gnomon serve` process (its view rebuilt every second when the database changed) is
queried in a loop by several threads while this process ingests rounds of entries through
the hull engine (the code path a campaign's ingest takes: entries and the hull update in one
transaction), each round's transaction held open a while longer, as a large hull update is.
Every answer must be whole: its structures exactly the entries of one committed state (never
part of a round), and each e_above_hull that of pymatgen's hull of exactly those entries
(never a hull that was half updated). No answer may be an error ("database is locked")."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from pymatgen.analysis.phase_diagram import PhaseDiagram
from pymatgen.core import Composition
from pymatgen.entries.computed_entries import ComputedEntry
from serve_helpers import REFERENCE_ENERGY, SCHEME, free_port, grid_structure

from gnomon.pipeline.thermo.entries import make_entry
from gnomon.pipeline.thermo.hull import HullEngine
from gnomon.storage import Entry, open_repository

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ELEMENTS = ("Li", "Mn", "O")
ROUNDS = 12
PER_ROUND = 40
HOLD_S = 0.8  # each round's transaction stays open this long after its hull update
QUERY = "/v1/structures?page_limit=1000&response_fields=id,_gnomon_e_above_hull"


def _round_entries(rng: random.Random, index: int) -> list[Entry]:
    out = []
    for k in range(PER_ROUND):
        species = [el for el in ELEMENTS for _ in range(rng.randint(0, 3))] or ["Li", "O"]
        ref = sum(REFERENCE_ENERGY[el] for el in species)
        energy = ref + rng.uniform(-0.9, 0.4) * len(species)
        out.append(make_entry(None, energy, SCHEME, structure=grid_structure(species),
                              source=f"round-{index}-{k}", campaign="busy", round=index))
    return out


def _hull(entries: list[Entry]) -> dict[str, float]:
    """pymatgen's e_above_hull of every entry of one committed state."""
    computed = [ComputedEntry(Composition(e.composition), e.energy, entry_id=e.id)
                for e in entries]
    pd = PhaseDiagram(computed)
    return {c.entry_id: pd.get_e_above_hull(c) for c in computed}


class _Answers:
    """What the query threads saw: (status, body) per answer."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[tuple[int, str]] = []
        self.stop = threading.Event()

    def loop(self, base: str) -> None:
        while not self.stop.is_set():
            try:
                with urllib.request.urlopen(base + QUERY, timeout=60) as response:
                    answer = (response.status, response.read().decode())
            except urllib.error.HTTPError as exc:
                answer = (exc.code, exc.read().decode(errors="replace"))
            with self.lock:
                self.seen.append(answer)


def _serve(url: str, port: int, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "gnomon.cli", "serve", "--db", url, "--port", str(port),
         "--poll", "1"],
        stdout=log.open("w"), stderr=subprocess.STDOUT, env={**os.environ},
    )


def _wait_up(base: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            with urllib.request.urlopen(base + "/v1/info", timeout=5):
                return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"gnomon serve did not start: {log.read_text()}")


def _served(body: str) -> dict[str, float | None]:
    return {d["id"]: d["attributes"]["_gnomon_e_above_hull"] for d in json.loads(body)["data"]}


def test_every_answer_is_one_whole_committed_state(tmp_path):
    url = f"sqlite:///{tmp_path / 'gnomon.db'}"
    rng = random.Random(11)
    references = [make_entry(None, REFERENCE_ENERGY[el] * 2, SCHEME,
                             structure=grid_structure([el, el]), source="reference")
                  for el in ELEMENTS]
    repo = open_repository(url)
    HullEngine(repo).ingest(references)
    states = [list(references)]  # the entries of each committed state, in commit order

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    proc = _serve(url, port, log)
    answers = _Answers()
    try:
        _wait_up(base, proc, log)
        threads = [threading.Thread(target=answers.loop, args=(base,), daemon=True)
                   for _ in range(3)]
        for t in threads:
            t.start()
        for index in range(1, ROUNDS + 1):
            batch = _round_entries(rng, index)
            with repo.transaction():  # the round's ingest, held open like a large hull update
                HullEngine(repo).ingest(batch)
                time.sleep(HOLD_S)
            states.append(states[-1] + batch)
            time.sleep(rng.uniform(0.2, 1.2))
        final = {e.id for e in states[-1]}
        deadline = time.monotonic() + 120  # until the server shows the last state
        while time.monotonic() < deadline:
            with answers.lock:
                last = answers.seen[-1] if answers.seen else None
            if last and last[0] == 200 and set(_served(last[1])) == final:
                break
            time.sleep(0.5)
        answers.stop.set()
        for t in threads:
            t.join(timeout=120)
    finally:
        answers.stop.set()
        proc.terminate()
        proc.wait(timeout=60)
        repo.close()

    bad = [(status, body[:300]) for status, body in answers.seen if status != 200]
    assert not bad, bad
    hulls: dict[int, dict[str, float]] = {}
    by_ids = {frozenset(e.id for e in state): k for k, state in enumerate(states)}
    shown: set[int] = set()
    for _, body in answers.seen:
        served = _served(body)
        k = by_ids.get(frozenset(served))
        assert k is not None, f"an answer of {len(served)} structures is no committed state"
        if k not in hulls:
            hulls[k] = _hull(states[k])
        for entry_id, e_above in served.items():
            assert e_above == pytest.approx(hulls[k][entry_id], abs=1e-6), entry_id
        shown.add(k)
    # the server moved through several states while the rounds were written (the view was
    # rebuilt under load), and ended on the last one
    assert len(shown) >= 3, sorted(shown)
    assert len(states) - 1 in shown
    assert len(answers.seen) > 50
