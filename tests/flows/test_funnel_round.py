"""A round with the streaming funnel (``funnel.enabled``): generate -> exact dedup -> screen ->
store in chunks. What it stores is exactly what an independent pass (the deduplicator over the
same stream, then the screener against the same hull) says passes; the rest are only counted;
no chunk holds more than ``chunk_size``; selection works on what was stored; and a run cut by a
crash and rerun stores the same candidates without screening any twice. Steps run in-process,
screened by the pretrained model shipped with gnomon."""

from __future__ import annotations

import itertools
import json
from functools import cached_property
from pathlib import Path

import pytest
from pymatgen.core import Structure

from gnomon.campaign.screens import HullScreen
from gnomon.campaign.steps import STEP_FUNCTIONS, RoundContext, run_step, screening_model
from gnomon.campaign.steps import funnel as funnel_step
from gnomon.campaign.steps.generators import physical_check
from gnomon.config import CampaignConfig, Settings
from gnomon.models.registry import ModelRegistry
from gnomon.models.screening import Screener, hull_function
from gnomon.pipeline.generation.dedup import Deduplicator
from gnomon.pipeline.generation.physical import close_pair
from gnomon.pipeline.generation.random_search import estimate_volume_per_atom
from gnomon.pipeline.thermo.entries import make_entry
from gnomon.pipeline.thermo.hull import HullEngine
from gnomon.storage import Candidate, Prediction, StepState

pytestmark = pytest.mark.slow

SCHEME = "mlip-chgnet-0.3.0"  # the pretrained model's scheme: it screens without a transfer
# elemental references of that scheme (CHGNet 0.3.0, eV/atom: bcc Li, fcc Na, O2)
REFERENCES = {"Li": -1.91, "Na": -1.31, "O": -4.93}
CHUNK, MAX_GENERATED = 8, 60  # the Li-Na-O stream holds ~80 compounds: the cap binds
THROUGH_SELECT = ("references", "generate", "dedup", "screen", "select")


def _config(**funnel) -> CampaignConfig:
    return CampaignConfig(
        name="funnel-test",
        elements=sorted(REFERENCES),
        known_phases=False,
        seed=2,
        saps={"max_candidates": 10_000, "max_template_sites": 6, "max_per_template": 4},
        random_search={"n_per_composition": 1, "max_compositions": 2, "max_atoms": 6},
        compositions={"max_atoms": 6},
        selection={"policy": "greedy", "budget": 5, "exploration": 0.0, "max_per_group": None},
        funnel={"enabled": True, "chunk_size": CHUNK, "max_generated": MAX_GENERATED, **funnel},
    )


class FakeEngineContext(RoundContext):
    fake = None

    @cached_property
    def engine(self):
        return self.fake if self.fake is not None else RoundContext.engine.func(self)


def _context(tmp_path, name: str, cfg: CampaignConfig, fake=None) -> RoundContext:
    ctx = FakeEngineContext(Settings(home=tmp_path / name), cfg, 0)
    ctx.fake = fake
    HullEngine(ctx.repo).ingest(
        [make_entry(el, e, SCHEME, candidate_id=f"ref-{el}") for el, e in REFERENCES.items()]
    )
    return ctx


def _through(ctx: RoundContext, steps=THROUGH_SELECT) -> None:
    for step in steps:
        run_step(ctx, step, STEP_FUNCTIONS[step])


def _independent_bounds(ctx: RoundContext) -> tuple[dict[str, float], int]:
    """The optimistic bound (predicted e_above_hull - sigma) of each unique candidate of the
    round's stream (through the round's physical check), by the deduplicator and the screener
    called directly; and how many unique."""
    stream, _ = funnel_step.funnel_sources(ctx, physical_check(ctx))
    unique = list(Deduplicator().stream(itertools.islice(stream, ctx.config.funnel.max_generated)))
    ensemble = ModelRegistry(ctx.repo, ctx.settings.models_dir).load(screening_model(ctx))
    ehull = hull_function(ctx.repo, SCHEME)
    results = Screener(ensemble).predict([c.structure for c in unique])
    bounds = {
        c.id: ehull(c.formula, r.energy_per_atom) - (r.sigma or 0.0)
        for c, r in zip(unique, results, strict=True)
        if r.rejected is None
    }
    return bounds, len(unique)


def test_the_funnel_stores_exactly_what_passes_and_counts_the_rest(
    tmp_path, fake_engine, monkeypatch
):
    import gnomon.dft.engine

    fake_engine.scheme_name = SCHEME
    monkeypatch.setattr(
        gnomon.dft.engine, "make_engine", lambda *a, **k: fake_engine
    )  # the report's engine
    probe = _context(tmp_path, "probe", _config())
    try:
        _through(probe, ("references",))
        bounds, n_unique = _independent_bounds(probe)
    finally:
        probe.close()
    # split the stream in two with a threshold between two neighbouring bounds, never on one:
    # the funnel screens in chunks and the direct call all at once, and batched predictions
    # agree only to float precision, so a bound equal to the threshold could fall either side
    ordered = sorted(bounds.values())
    mid = len(ordered) // 2
    gap = max(
        range(max(0, mid - 3), min(len(ordered) - 1, mid + 3)),
        key=lambda k: ordered[k + 1] - ordered[k],
    )
    assert ordered[gap + 1] - ordered[gap] > 1e-4, "no clear gap near the middle of the bounds"
    threshold = (ordered[gap] + ordered[gap + 1]) / 2
    expected = {cid for cid, b in bounds.items() if b <= threshold}

    ctx = _context(tmp_path, "home", _config(e_above_hull=threshold), fake_engine)
    try:
        _through(ctx, STEP_FUNCTIONS)  # the whole round, relaxed by the instant test double
        out = ctx.round().outputs
        assert out["generate"]["saps"]["streamed"] and out["generate"]["saps"]["file"] is None
        assert not (ctx.run_dir / "saps.json").exists()  # nothing written before the screen
        counts = out["dedup"]["funnel"]
        assert counts["generated"] == MAX_GENERATED == out["dedup"]["generated"]
        assert (
            counts["generated"]
            == counts["duplicates"] + counts["screened"] + counts["unscreenable"]
        )
        assert counts["screened"] == counts["passed"] + counts["failed"] == len(bounds)
        assert n_unique == counts["screened"] + counts["unscreenable"]
        assert 0 < counts["passed"] < counts["screened"]
        assert counts["max_buffered"] <= CHUNK and counts["chunks"] == -(-MAX_GENERATED // CHUNK)

        stored = {c.id for c in ctx.repo.query(Candidate, {"campaign": "funnel-test", "round": 0})}
        assert set(out["dedup"]["unique"]) == stored
        assert len(stored) == counts["passed"] == counts["stored"]
        assert stored == expected  # exactly what the deduplicator and screener called directly pass
        # each stored candidate carries the prediction it passed on
        preds = {
            p.candidate_id: p for p in ctx.repo.query(Prediction, {"candidate_id": sorted(stored)})
        }
        assert set(preds) == stored
        assert all(p.e_above_hull - (p.sigma or 0.0) <= threshold + 1e-9 for p in preds.values())
        # the screen step found them predicted; selection chose among them
        assert out["screen"]["screened"] == len(stored)
        assert out["select"]["selected"] and set(out["select"]["selected"]) <= stored
        # the round's metrics and report count the stream, not only what was stored
        metrics = ctx.round().metrics
        assert (
            metrics["generated"],
            metrics["unique"],
            metrics["screened"],
            metrics["passed_screen"],
        ) == (MAX_GENERATED, n_unique, len(bounds), len(stored))
        report = (ctx.settings.home / "reports" / "funnel-test" / "report.md").read_text()
        assert "passed screen" in report
    finally:
        ctx.close()


def test_max_passed_stops_the_stream_at_the_chunk_that_reaches_it(tmp_path):
    ctx = _context(tmp_path, "home", _config(e_above_hull=10.0, max_passed=10))
    try:
        _through(ctx, THROUGH_SELECT[:3])
        counts = ctx.round().outputs["dedup"]["funnel"]
        assert 10 <= counts["passed"] < 10 + CHUNK and counts["generated"] < MAX_GENERATED
    finally:
        ctx.close()


COUNTED = ("generated", "duplicates", "screened", "unscreenable", "passed", "failed", "stored")


@pytest.mark.parametrize("crash", ["before the store", "after the store"])
def test_a_crash_mid_funnel_resumes_at_its_checkpoint_without_screening_anything_twice(
    tmp_path, monkeypatch, crash
):
    """Killed in its fourth chunk, before that chunk's candidates are stored or after they are
    but before its checkpoint: the rerun stores the same candidates with the same counts as a
    run never killed, and screens again only the candidates of the chunk the crash cut short
    (and not those of it already stored)."""
    straight = _context(tmp_path, "straight", _config(e_above_hull=0.5))
    try:
        _through(straight, THROUGH_SELECT[:3])
        expected = straight.round().outputs["dedup"]
    finally:
        straight.close()
    assert expected["unique"] and expected["funnel"]["chunks"] > 4

    ctx = _context(tmp_path, "crashed", _config(e_above_hull=0.5))
    screened: list[list[str]] = []
    real_call, real_store = HullScreen.__call__, HullScreen.store
    real_checkpoint = funnel_step._write_checkpoint

    def counting(self, chunk):
        screened.append([c.id for c in chunk])
        return real_call(self, chunk)

    armed = [True]  # one crash: the rerun goes through

    def crash_if(when: str) -> None:
        if armed[0] and crash == when and len(screened) == 4:
            armed[0] = False
            raise RuntimeError("killed mid-round")

    def store(self, passing):
        crash_if("before the store")
        real_store(self, passing)

    def checkpoint(path, mark):
        crash_if("after the store")
        real_checkpoint(path, mark)

    monkeypatch.setattr(HullScreen, "__call__", counting)
    monkeypatch.setattr(HullScreen, "store", store)
    monkeypatch.setattr(funnel_step, "_write_checkpoint", checkpoint)
    try:
        _through(ctx, THROUGH_SELECT[:2])
        with pytest.raises(RuntimeError, match="killed mid-round"):
            run_step(ctx, "dedup", STEP_FUNCTIONS["dedup"])
        assert ctx.round().steps["dedup"] is not StepState.done
        first = {c.id for c in ctx.repo.query(Candidate, {"campaign": "funnel-test", "round": 0})}
        checkpointed = {cid for chunk in screened[:3] for cid in chunk}
        cut_short = set(screened[3])
        assert 0 < len(first) < len(expected["unique"])
        after_checkpoint = set() if crash == "before the store" else first & cut_short
        assert first - checkpointed == after_checkpoint

        screened.clear()
        run_step(ctx, "dedup", STEP_FUNCTIONS["dedup"])
        out = ctx.round().outputs["dedup"]
        again = {cid for chunk in screened for cid in chunk}
        assert out["unique"] == expected["unique"]
        assert out["generated"] == expected["generated"]
        assert not again & checkpointed  # nothing of the checkpointed chunks screened again
        assert cut_short - first <= again  # the cut chunk's unstored candidates were
        assert not again & first  # and nothing stored before the crash
        assert out["funnel"]["resumed"] == len(first - checkpointed)
        got = {k: out["funnel"][k] for k in COUNTED}
        want = {k: expected["funnel"][k] for k in COUNTED}
        if crash == "after the store":  # the resumed candidates were screened and stored before
            for k in ("generated", "screened", "passed", "stored"):
                want[k] -= out["funnel"]["resumed"]
        assert got == want
        assert set(out["funnel"]["wall"]) == {"generate", "dedup", "screen", "store"}
    finally:
        ctx.close()


def test_a_round_resumed_after_another_model_ships_goes_on_with_the_one_it_started_with(
    tmp_path, monkeypatch
):
    """Killed mid-funnel, then gnomon is upgraded (here: another pretrained record is the start
    model): the rerun screens the rest of the stream, and the round's screen step predicts,
    with the model the first chunks passed, so one round is judged by one model."""
    from gnomon.campaign.steps import screening as screening_step

    ctx = _context(tmp_path, "upgraded", _config(e_above_hull=0.5))
    real_store = HullScreen.store
    calls = [0]

    def store(self, passing):
        calls[0] += 1
        if calls[0] == 3:
            raise RuntimeError("killed mid-round")
        real_store(self, passing)

    monkeypatch.setattr(HullScreen, "store", store)
    try:
        _through(ctx, THROUGH_SELECT[:2])
        first = screening_model(ctx)
        with pytest.raises(RuntimeError, match="killed mid-round"):
            run_step(ctx, "dedup", STEP_FUNCTIONS["dedup"])
        newer = first.model_copy(update={"id": first.id + "-upgraded"})
        ctx.repo.put([newer])
        monkeypatch.setattr(screening_step, "start_model", lambda *a, **k: newer)
        assert screening_model(ctx).id == newer.id  # what a fresh round would take now

        for step in ("dedup", "screen"):
            run_step(ctx, step, STEP_FUNCTIONS[step])
        out = ctx.round().outputs
        assert out["dedup"]["funnel"]["model_version"] == first.id
        assert out["screen"]["model_version"] == first.id
        ids = out["dedup"]["unique"]
        assert ids and set(ctx.repo.predictions_for(ids, first.id)) == set(ids)
        assert not ctx.repo.predictions_for(ids, newer.id)
    finally:
        ctx.close()


def test_a_round_without_a_model_yet_stores_its_candidates_the_usual_way(tmp_path):
    cfg = _config()
    cfg.model.start_from = "scratch"
    ctx = _context(tmp_path, "home", cfg)
    try:
        _through(ctx, THROUGH_SELECT[:3])
        out = ctx.round().outputs
        assert "funnel" not in out["dedup"] and out["generate"]["saps"]["file"]
    finally:
        ctx.close()


def test_every_stored_candidate_passed_the_physical_check_and_the_round_counts_it(tmp_path):
    """Generated cells reach the database at their predicted volume, none with a pair inside
    another; the round's record says how many were rescaled and refused, by reason."""
    cfg = _config()
    cfg.model.start_from = "scratch"
    ctx = _context(tmp_path, "home", cfg)
    try:
        _through(ctx, THROUGH_SELECT[:2])
        saps = ctx.round().outputs["generate"]["saps"]
        assert set(saps["physical"]) == {"refused", "rescaled"}
        assert saps["physical"]["rescaled"] > 0
        stored = json.loads(Path(saps["file"]).read_text())
        assert len(stored) == saps["count"] > 0
        for doc in stored:
            s = Structure.from_dict(doc["structure"])
            predicted = estimate_volume_per_atom(s.composition) * len(s)
            assert abs(s.volume / predicted - 1) < 0.011
            assert close_pair(s) is None
    finally:
        ctx.close()
