"""The hull engine must give pymatgen's numbers, recompute only what changed, and never mix
energy schemes."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymatgen.analysis.phase_diagram import PhaseDiagram
from pymatgen.core import Composition
from pymatgen.entries.computed_entries import ComputedEntry

from gnomon.pipeline.thermo.entries import make_entry
from gnomon.pipeline.thermo.hull import HullEngine, supersets
from gnomon.storage import Entry, open_repository
from gnomon.storage.chemsys import subsystems

POOL = ["Li", "Na", "Mn", "Fe", "O", "S", "Cl", "Mg"]


def random_entries(rng: random.Random, elements: list[str], n: int, scheme: str = "test") -> list:
    """Elemental references plus ``n`` random compounds (polymorphs and unstable ones included)."""
    entries = [
        make_entry(el, rng.uniform(-5, -1), scheme, source=f"ref-{el}-{i}")
        for el in elements
        for i in range(rng.randint(1, 2))
    ]
    for i in range(n):
        k = rng.randint(1, len(elements))
        chosen = rng.sample(elements, k)
        comp = Composition({el: rng.randint(1, 4) for el in chosen})
        ref = sum(-3.0 * amt for amt in comp.values())
        energy = ref + rng.uniform(-2.0, 1.0) * comp.num_atoms
        entries.append(make_entry(comp, energy, scheme, source=f"rand-{i}"))
        if rng.random() < 0.2:  # a polymorph of the same composition
            entries.append(
                make_entry(comp, energy + rng.uniform(-0.2, 0.2), scheme, source=f"poly-{i}")
            )
    return entries


def pymatgen_reference(entries) -> dict[str, tuple[float, float, bool, list[str]]]:
    """e_above_hull, decomposition energy, stable and decomposition products for each entry,
    per chemsys as pymatgen does."""
    out = {}
    for chemsys in {e.chemsys for e in entries}:
        pool = [
            ComputedEntry(Composition(e.composition), e.energy, entry_id=e.id)
            for e in entries
            if set(e.elements) <= set(chemsys.split("-"))
        ]
        pd = PhaseDiagram(pool)
        stable = {x.entry_id for x in pd.stable_entries}
        for x in pool:
            if set(x.composition.chemical_system.split("-")) != set(chemsys.split("-")):
                continue
            products = (
                []
                if x.entry_id in stable
                else sorted({p.reduced_formula for p in pd.get_decomposition(x.composition)})
            )
            out[x.entry_id] = (
                pd.get_e_above_hull(x, allow_negative=True),
                pd.get_phase_separation_energy(x),
                x.entry_id in stable,
                products,
            )
    return out


# GNOMON_HULL_EXAMPLES=400 for a deeper run after changing the engine
@settings(
    max_examples=int(os.environ.get("GNOMON_HULL_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    seed=st.integers(0, 2**31),
    nel=st.integers(1, 5),
    n=st.integers(0, 25),
    batches=st.integers(1, 3),
)
def test_hull_equals_pymatgen(tmp_path_factory, seed, nel, n, batches):
    rng = random.Random(seed)
    elements = rng.sample(POOL, nel)
    entries = random_entries(rng, elements, n)
    repo = open_repository(f"sqlite:///{tmp_path_factory.mktemp('h') / 'g.db'}")
    engine = HullEngine(repo)
    rng.shuffle(entries)
    # references first so every batch has a hull to land on
    entries.sort(key=lambda e: len(e.elements) > 1)
    cuts = (
        sorted(rng.sample(range(1, len(entries)), min(batches - 1, len(entries) - 1)))
        if len(entries) > 1
        else []
    )
    start = 0
    for cut in [*cuts, len(entries)]:
        engine.ingest(entries[start:cut])
        start = cut
    expected = pymatgen_reference(list({e.id: e for e in entries}.values()))
    phases = {p.id: p for p in repo.phases()}
    assert set(phases) == set(expected)
    for eid, (e_hull, decomp, stable, products) in expected.items():
        p = phases[eid]
        assert p.e_above_hull == pytest.approx(e_hull, abs=1e-6)
        assert p.decomposition_energy == pytest.approx(decomp, abs=1e-6)
        assert p.is_stable == stable
        assert p.decomposes_to == products
        if stable:
            assert p.decomposition_energy <= 1e-9
    repo.close()


def test_ingest_recomputes_only_systems_containing_the_change(sqlite_repo):
    engine = HullEngine(sqlite_repo)
    rng = random.Random(1)
    engine.ingest(
        random_entries(rng, ["Li", "O"], 5)
        + random_entries(rng, ["Na", "Cl"], 5)
        + random_entries(rng, ["Li", "Mn", "O"], 8)
    )
    report = engine.ingest([make_entry("LiO2", -20.0, "test")])
    recomputed = set(report.recomputed["test"])
    assert "Li-O" in recomputed
    assert recomputed <= {"Li-O", "Li-Mn-O"}
    assert not recomputed & {"Cl-Na", "Na", "Cl", "Li", "O", "Mn", "Mn-O", "Li-Mn"}
    # and the stored result equals a full rebuild
    before = {
        p.id: (p.e_above_hull, p.decomposition_energy, p.is_stable) for p in sqlite_repo.phases()
    }
    engine.rebuild()
    after = {
        p.id: (p.e_above_hull, p.decomposition_energy, p.is_stable) for p in sqlite_repo.phases()
    }
    assert before.keys() == after.keys()
    for k in before:
        assert before[k][2] == after[k][2]
        assert before[k][0] == pytest.approx(after[k][0], abs=1e-9)


def test_stable_before_ingest_flag(sqlite_repo):
    engine = HullEngine(sqlite_repo)
    engine.ingest([make_entry("Li", -2.0, "t"), make_entry("O2", -10.0, "t")])
    low = make_entry("Li2O", -20.0, "t")  # far below the Li-O tie line
    high = make_entry("LiO", -5.0, "t", source="x")  # above the tie line
    report = engine.ingest([low, high])
    assert report.stable_at_ingest == [low.id]
    phases = {p.id: p for p in sqlite_repo.phases()}
    assert phases[low.id].stable_at_ingest is True and phases[low.id].is_stable
    assert phases[high.id].stable_at_ingest is False and not phases[high.id].is_stable
    # a later, lower polymorph dethrones Li2O, but Li2O keeps its at-ingest verdict
    engine.ingest([make_entry("Li2O", -21.0, "t", source="poly")])
    phases = {p.id: p for p in sqlite_repo.phases()}
    assert phases[low.id].is_stable is False
    assert phases[low.id].stable_at_ingest is True


def test_reingest_is_a_no_op(sqlite_repo):
    engine = HullEngine(sqlite_repo)
    entries = random_entries(random.Random(3), ["Fe", "S"], 6)
    engine.ingest(entries)
    n = sqlite_repo.count("entries")
    report = engine.ingest(entries)
    assert report.new_entry_ids == [] and len(report.known_entry_ids) == len(entries)
    assert sqlite_repo.count("entries") == n


def test_schemes_never_share_a_hull(sqlite_repo):
    engine = HullEngine(sqlite_repo)
    engine.ingest(
        [make_entry("Li", -2.0, "a"), make_entry("O2", -10.0, "a"), make_entry("Li2O", -20.0, "a")]
    )
    # scheme b has references of its own and a much lower Li2O energy scale
    engine.ingest(
        [make_entry("Li", -1.0, "b"), make_entry("O2", -4.0, "b"), make_entry("Li2O", -4.5, "b")]
    )
    a = {p.reduced_formula: p for p in sqlite_repo.phases(scheme="a")}
    b = {p.reduced_formula: p for p in sqlite_repo.phases(scheme="b")}
    assert a["Li2O"].is_stable and a["Li2O"].formation_energy_per_atom == pytest.approx(
        (-20 + 2 * 2 + 5) / 3
    )
    assert b["Li2O"].is_stable and b["Li2O"].formation_energy_per_atom == pytest.approx(
        (-4.5 + 2 * 1 + 2) / 3
    )
    assert engine.e_above_hull("a", "Li2O", -20 / 3) == pytest.approx(0.0, abs=1e-9)
    assert engine.e_above_hull("b", "Li2O", -20 / 3) < -4


def test_hulls_kept_for_queries_are_bounded_and_answers_do_not_depend_on_them(sqlite_repo):
    """A screen over a large space asks for the hull of every system it meets: the engine
    keeps the most recently used ones only, and a system asked again is rebuilt the same."""
    refs = {"Li": -2.0, "Na": -1.5, "K": -1.2, "O2": -10.0, "S": -4.0, "F2": -3.0}
    HullEngine(sqlite_repo).ingest([make_entry(f, e, "a") for f, e in refs.items()]
                                   + [make_entry("Li2O", -20.0, "a")])
    formulas = [f"{c}{a}" for c in ("Li", "Na", "K") for a in ("O", "S", "F")]
    unbounded = HullEngine(sqlite_repo)
    unbounded.pd_cache_size = 1000
    want = [unbounded.e_above_hull("a", f, -3.0) for f in formulas]
    engine = HullEngine(sqlite_repo)
    engine.pd_cache_size = 3
    for _ in range(2):
        assert [engine.e_above_hull("a", f, -3.0) for f in formulas] == want
        assert len(engine._pd_cache) == 3
    pd = PhaseDiagram([ComputedEntry(f, e) for f, e in [*refs.items(), ("Li2O", -20.0)]])
    hull = pd.get_hull_energy_per_atom(Composition("LiO"))  # between Li2O and O2
    assert want[0] == pytest.approx(-3.0 - hull) and None not in want
    assert len(unbounded._pd_cache) == len(formulas)


def test_missing_reference_gives_phase_without_hull(sqlite_repo):
    engine = HullEngine(sqlite_repo)
    engine.ingest([make_entry("Li", -2.0, "t"), make_entry("Li2O", -14.0, "t")])
    p = sqlite_repo.phases(chemsys="Li-O")[0]
    assert p.e_above_hull is None and p.is_stable is None
    assert "O" in p.note
    assert engine.e_above_hull("t", "Li2O", -5.0) is None
    engine.ingest([make_entry("O2", -10.0, "t")])
    p = sqlite_repo.phases(chemsys="Li-O")[0]
    assert p.is_stable is True


def test_subsystems():
    assert sorted(subsystems("Li-Mn-O")) == sorted(
        ["Li", "Mn", "O", "Li-Mn", "Li-O", "Mn-O", "Li-Mn-O"]
    )


def test_entries_above_their_hull_leave_supersets_alone(sqlite_repo):
    engine = HullEngine(sqlite_repo)
    rng = random.Random(5)
    engine.ingest(random_entries(rng, ["Li", "Mn", "O"], 30))
    before = {p.id: p for p in sqlite_repo.phases()}
    high = make_entry("LiO", 10.0, "test", source="far above")  # above any Li-O hull
    report = engine.ingest([high])
    assert report.recomputed["test"] == ["Li-O"]
    after = {p.id: p for p in sqlite_repo.phases()}
    engine.rebuild()
    rebuilt = {p.id: p for p in sqlite_repo.phases()}
    for pid, p in after.items():
        assert p.e_above_hull == pytest.approx(rebuilt[pid].e_above_hull, abs=1e-9)
        assert p.decomposition_energy == pytest.approx(rebuilt[pid].decomposition_energy, abs=1e-6)
        assert p.is_stable == rebuilt[pid].is_stable
    assert after[high.id].stable_at_ingest is False
    assert all(after[k].e_above_hull == before[k].e_above_hull for k in before)


def test_rebuild_keeps_the_stable_at_ingest_verdicts(sqlite_repo):
    """Whether an entry was stable when it arrived cannot be recomputed; a rebuild keeps it."""
    engine = HullEngine(sqlite_repo)
    engine.ingest([make_entry("Li", -2.0, "t"), make_entry("O2", -10.0, "t")])
    first = make_entry("Li2O", -20.0, "t")
    engine.ingest([first])
    engine.ingest([make_entry("Li2O", -21.0, "t", source="poly")])
    before = {p.id: p.stable_at_ingest for p in sqlite_repo.phases()}
    assert before[first.id] is True
    engine.rebuild()
    assert {p.id: p.stable_at_ingest for p in sqlite_repo.phases()} == before


def test_entries_stored_without_phases_are_recomputed_by_the_next_ingest(sqlite_repo):
    """Supersets take only the stored vertices of their subsystems, so a subsystem whose entries
    bypassed the engine (no phases) must be recomputed, not silently left out of the pool."""
    engine = HullEngine(sqlite_repo)
    rng = random.Random(7)
    engine.ingest(random_entries(rng, ["Li", "Mn", "O"], 20))
    bypass = [
        make_entry("Li2O", -40.0, "test", source="raw"),
        make_entry("MnO2", -45.0, "test", source="raw"),
    ]
    sqlite_repo.insert_new("entries", bypass)  # no hull update
    report = engine.ingest([make_entry("LiMnO2", -50.0, "test", source="new")])
    assert {"Li-O", "Mn-O", "Li-Mn-O"} <= set(report.recomputed["test"])
    entries = list(sqlite_repo.query(Entry, {"scheme": "test"}))
    expected = pymatgen_reference(entries)
    phases = {p.id: p for p in sqlite_repo.phases()}
    assert set(phases) == set(expected)
    for eid, (e_hull, _, stable, _) in expected.items():
        assert phases[eid].e_above_hull == pytest.approx(e_hull, abs=1e-6)
        assert phases[eid].is_stable == stable


def test_ingest_pauses_the_cyclic_collector_and_restores_it(sqlite_repo, monkeypatch):
    """The collector is off while hulls are recomputed, back on afterwards, also after a failure,
    and left off for a caller that had turned it off."""
    import gc

    import gnomon.pipeline.thermo.hull as hull_module

    seen = []
    real = hull_module.phases_of

    def spy(*args, **kwargs):
        seen.append(gc.isenabled())
        return real(*args, **kwargs)

    monkeypatch.setattr(hull_module, "phases_of", spy)
    engine = HullEngine(sqlite_repo)
    assert gc.isenabled()
    engine.ingest(random_entries(random.Random(0), ["Li", "O"], 6))
    assert seen and not any(seen) and gc.isenabled()

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(hull_module, "phases_of", broken)
    with pytest.raises(RuntimeError):
        engine.ingest(random_entries(random.Random(1), ["Li", "O"], 4))
    assert gc.isenabled()
    gc.disable()
    try:
        monkeypatch.setattr(hull_module, "phases_of", real)
        engine.rebuild()
        assert not gc.isenabled()
    finally:
        gc.enable()


@given(
    st.sets(st.frozensets(st.sampled_from(POOL), min_size=1, max_size=5), max_size=40),
    st.sets(st.frozensets(st.sampled_from(POOL), min_size=1, max_size=3), max_size=6),
)
def test_supersets_are_the_systems_containing_one_of_the_given(systems, of):
    stored = {"-".join(sorted(t)) for t in systems}
    inner = {"-".join(sorted(s)) for s in of}
    expected = {t for t in stored if any(set(s.split("-")) <= set(t.split("-")) for s in inner)}
    assert supersets(stored, inner) == expected


def test_points_outside_every_facet_get_pymatgens_numbers(tmp_path, monkeypatch):
    """Rounding can put a point outside every facet of the array hull (facet -1); such points
    take pymatgen's e_above_hull, both for their phase and for their stable-at-ingest verdict.
    Forcing every point outside gives what the facet path gives."""
    from gnomon.pipeline.thermo.array_hull import ArrayHull

    rng = random.Random(11)
    entries = random_entries(rng, ["Li", "Mn", "O"], 20)
    entries.sort(key=lambda e: len(e.elements) > 1)
    batches = [entries[:12], entries[12:]]

    def run(name: str) -> tuple[dict[str, tuple], list[str]]:
        repo = open_repository(f"sqlite:///{tmp_path / name}")
        engine = HullEngine(repo)
        at_ingest = [eid for batch in batches for eid in engine.ingest(batch).stable_at_ingest]
        phases = {p.id: (p.e_above_hull, p.is_stable, p.stable_at_ingest) for p in repo.phases()}
        repo.close()
        return phases, at_ingest

    facet_path = run("facets.db")
    original = ArrayHull.hull_energies

    def outside_every_facet(self, frac):
        energy, facets, weights = original(self, frac)
        return np.full_like(energy, np.nan), np.full_like(facets, -1), weights

    monkeypatch.setattr(ArrayHull, "hull_energies", outside_every_facet)
    fallback = run("fallback.db")
    assert fallback[1] == facet_path[1]
    assert fallback[0].keys() == facet_path[0].keys()
    expected = pymatgen_reference(entries)
    assert any(not stable for _, stable, _ in fallback[0].values())
    for eid, (e_hull, stable, at_ingest) in fallback[0].items():
        assert e_hull == pytest.approx(expected[eid][0], abs=1e-6)
        assert e_hull == pytest.approx(facet_path[0][eid][0], abs=1e-6)
        assert (stable, at_ingest) == facet_path[0][eid][1:]
