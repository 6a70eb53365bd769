"""Before round 0 a campaign relaxes the known phases of its space with its own engine, so a
compound is "new stable" only against what is already known. Runs the references step with
the instant fake engine through the real relaxation service and local worker processes."""

from __future__ import annotations

from functools import cached_property

import pytest

from gnomon.campaign.steps import RoundContext, references, run_step
from gnomon.config import CampaignConfig, Settings
from gnomon.pipeline.thermo.entries import make_entry
from gnomon.pipeline.thermo.known import phase_origins
from gnomon.pipeline.thermo.metrics import e_above_previous_hull
from gnomon.pipeline.thermo.phase_query import PhaseQuery
from gnomon.storage import CalcState, Calculation, Candidate, Entry, Phase


class FakeEngineContext(RoundContext):
    """A round whose engine is the test double (the config names a real one)."""

    fake = None

    @cached_property
    def engine(self):
        return self.fake


def _context(tmp_path, engine, index: int = 0, **config) -> RoundContext:
    cfg = CampaignConfig(
        name="known-test",
        elements=["Li", "O"],
        dispatch={"name": "local", "workers": 1, "pack": 8, "poll_interval": 0.2},
        **config,
    )
    ctx = FakeEngineContext(Settings(home=tmp_path / "home"), cfg, index)
    ctx.fake = engine
    return ctx


@pytest.fixture
def contexts(tmp_path, fake_engine):
    opened: list[RoundContext] = []

    def make(index: int = 0, **config) -> RoundContext:
        ctx = _context(tmp_path, fake_engine, index, **config)
        opened.append(ctx)
        return ctx

    yield make
    for ctx in opened:
        ctx.close()


def test_known_phases_are_relaxed_ingested_and_never_repeated(contexts, fake_engine):
    ctx = contexts(0)
    out = run_step(ctx, "references", references)
    known = {c.reduced_formula: c for c in ctx.repo.query(Candidate) if c.generator == "known"}
    assert set(known) == {"Li2O", "Li2O2"}  # the shipped phases within Li-O, none with Mn
    assert (
        sorted(out["known"]) == sorted(c.id for c in known.values()) and out["known_failed"] == {}
    )
    assert all(c.extra["source"] and c.extra["spacegroup"] for c in known.values())
    for c in known.values():
        calc = ctx.repo.get(Calculation, Calculation.key(c.id, fake_engine.settings_hash))
        assert calc.state is CalcState.done and calc.campaign == "known-test"
        entry = ctx.repo.get(Entry, calc.entry_id)
        assert entry.scheme == fake_engine.scheme
        assert ctx.repo.get(Phase, entry.id).e_above_hull == pytest.approx(0.0, abs=1e-8)

    rows = PhaseQuery(chemsys="Li-O", scheme=fake_engine.scheme).run(ctx.repo)
    origins = dict(
        zip((r["reduced_formula"] for r in rows), phase_origins(ctx.repo, rows), strict=True)
    )
    assert origins == {"Li": "reference", "O2": "reference", "Li2O": "known", "Li2O2": "known"}

    # "new stable" is judged against the known phases: the fake engine gives every binary
    # -1.2 eV/atom and every element -1.0, so with Li2O known the hull at Li3O (x_O = 1/4)
    # lies at -1.15 and a Li3O found later at -1.1 is above it (stable on bare elements: below)
    li3o = make_entry("Li3O", -1.1 * 4, fake_engine.scheme, candidate_id="found-later")
    assert e_above_previous_hull(ctx.repo, fake_engine.scheme, [li3o])[li3o.id] == pytest.approx(
        0.05
    )

    # the next round finds everything relaxed: nothing is submitted again
    n_calcs = ctx.repo.count("calculations", {})
    later = contexts(1)
    assert run_step(later, "references", references) == {
        "relaxed": [],
        "known": [],
        "known_failed": {},
    }
    assert later.repo.count("calculations", {}) == n_calcs
    assert all(c.attempts == 1 for c in later.repo.query(Calculation))


def test_known_phases_can_be_switched_off(tmp_path, fake_engine):
    ctx = _context(tmp_path, fake_engine, known_phases=False)
    try:
        out = run_step(ctx, "references", references)
        assert out["known"] == [] and len(out["relaxed"]) == 2
        assert not [c for c in ctx.repo.query(Candidate) if c.generator == "known"]
        assert {e.reduced_formula for e in ctx.repo.query(Entry)} == {"Li", "O2"}
        # on a hull of bare elements the Li3O of the test above passes for stable
        li3o = make_entry("Li3O", -1.1 * 4, fake_engine.scheme, candidate_id="found-later")
        assert e_above_previous_hull(ctx.repo, fake_engine.scheme, [li3o])[
            li3o.id
        ] == pytest.approx(-0.1)
    finally:
        ctx.close()
