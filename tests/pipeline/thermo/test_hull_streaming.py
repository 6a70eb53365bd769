"""A rebuild streamed a few systems at a time stores exactly the phases of a one-pass rebuild."""

from __future__ import annotations

import random

import pytest
from pymatgen.core import Composition

from gnomon.pipeline.thermo import hull as hull_module
from gnomon.pipeline.thermo.entries import make_entry
from gnomon.pipeline.thermo.hull import HullEngine

ELEMENTS = ["Li", "Na", "Mn", "O", "Cl"]


def entries(rng: random.Random, n: int):
    refs = {el: rng.uniform(-6, -1) for el in ELEMENTS}
    out = [make_entry(el, refs[el], "t") for el in ELEMENTS]
    for i in range(n):
        system = rng.sample(ELEMENTS, rng.randint(2, 4))
        comp = {el: rng.randint(1, 3) for el in system}
        energy = sum(refs[el] * k for el, k in comp.items()) + rng.gauss(-0.3, 0.4) * sum(
            comp.values()
        )
        out.append(make_entry(Composition(comp), energy, "t", source=f"e{i}"))
    return out


def snapshot(repo) -> dict:
    return {
        p.id: (
            p.chemsys,
            p.e_above_hull,
            p.decomposition_energy,
            p.formation_energy_per_atom,
            p.is_stable,
            tuple(p.decomposes_to),
            p.stable_at_ingest,
        )
        for p in repo.phases()
    }


@pytest.mark.parametrize("batch", [1, 3, 1000])
def test_a_streamed_rebuild_equals_the_ingested_hulls(sqlite_repo, monkeypatch, batch):
    rng = random.Random(7)
    engine = HullEngine(sqlite_repo)
    data = entries(rng, 120)
    engine.ingest(data[:60])
    engine.ingest(data[60:])  # stable_at_ingest verdicts a rebuild must keep
    ingested = snapshot(sqlite_repo)
    assert len({v[0] for v in ingested.values()}) > 10  # many systems: many batches below

    monkeypatch.setattr(hull_module, "REBUILD_BATCH", batch)
    report = engine.rebuild("t")
    rebuilt = snapshot(sqlite_repo)
    assert report.phases_written == len(ingested)
    assert rebuilt.keys() == ingested.keys()
    for pid, got in rebuilt.items():
        want = ingested[pid]
        assert got[0] == want[0] and got[4:] == want[4:], pid
        assert got[1:4] == pytest.approx(want[1:4], abs=1e-9), pid
