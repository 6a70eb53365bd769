"""What a person sees of a campaign run: its progress, not Prefect's log (that behind ``-v``),
no step that does not apply, counts that agree between the summary, the table and the report,
and numbers in the right number ("1 round done").

The end-to-end cases run ``gnomon campaign run`` / ``resume`` as a user does, in a process of
their own with output to a pipe (so the progress is the plain one-line-per-event kind), on the
smallest campaign the flow tests use (two elements, the instant test-double engine of
tests/dft). Real components: Prefect's engine and its ephemeral API, the local dispatcher,
SQLite.
"""

from __future__ import annotations

import re

import pytest

from gnomon.campaign.progress import Standing, events
from gnomon.campaign.reports import campaign_counts, metric_rows
from gnomon.campaign.reports.counts import CampaignCounts
from gnomon.campaign.round_steps import STEPS, steps_that_apply
from gnomon.config import CampaignConfig
from gnomon.plural import counted
from tests.flows.test_scheduled_campaigns import Workspace, _config

#: a line of Prefect's log, as its console handler prints it ("01:10:18.107 | INFO    | Flow
#: run 'x' - ...") or a plain handler the command set before importing Prefect ("INFO
#: prefect.flow_runs: ...")
PREFECT_LINE = re.compile(
    r"^(\d\d:\d\d:\d\d\.\d{3} \| [A-Z]+ *\| (prefect\b|Flow run |Task run )"
    r"|[A-Z]+ prefect[.:])",
    re.MULTILINE,
)
#: the test process knows no engine "fake" (only the CLI's processes do, through
#: fake_engine_site): the configs checked here name a real one
PLAIN = {**_config("plain"), "engine": {"name": "mlip"}}
APPLIES = steps_that_apply(CampaignConfig.model_validate(PLAIN))


def test_a_campaign_without_an_mlip_stage_has_no_stage_steps_to_show():
    assert APPLIES == tuple(s for s in STEPS if not s.startswith("mlip_"))
    staged = CampaignConfig.model_validate(
        {**PLAIN, "stages": ["screen", "mlip", "dft"], "mlip_engine": {"name": "chgnet"}}
    )
    assert steps_that_apply(staged) == STEPS


def _standing(round_: int | None, done: tuple[str, ...] = (), step: str | None = None,
              relaxations: tuple[int, int] = (0, 0), rounds_done: int = 0) -> Standing:
    return Standing(rounds_done, 2, round_, done, step, len(APPLIES), *relaxations)


def test_events_say_each_step_done_in_order_with_its_count():
    before = _standing(0, APPLIES[:1])
    after = _standing(0, APPLIES[:3], step=APPLIES[3])
    assert events(before, after, APPLIES) == [
        f"round 0: {APPLIES[1]} done (2 of {len(APPLIES)} steps)",
        f"round 0: {APPLIES[2]} done (3 of {len(APPLIES)} steps)",
    ]
    assert events(None, after, APPLIES) == []  # the first reading is the starting point


def test_events_finish_a_round_with_the_steps_the_last_reading_missed():
    before = _standing(0, APPLIES[:-2], relaxations=(3, 3))
    after = _standing(1, rounds_done=1)
    lines = events(before, after, APPLIES)
    assert lines == [
        f"round 0: {APPLIES[-2]} done ({len(APPLIES) - 1} of {len(APPLIES)} steps)",
        f"round 0: {APPLIES[-1]} done ({len(APPLIES)} of {len(APPLIES)} steps)",
        "round 0 done (1 of 2 rounds)",
    ]
    started = events(after, _standing(1, step=APPLIES[0], rounds_done=1), APPLIES)
    assert started == ["round 1 started"]


def test_events_count_relaxations_and_the_last_round():
    before = _standing(1, APPLIES[:1], step="relax", relaxations=(0, 1), rounds_done=1)
    moved = _standing(1, APPLIES[:1], step="relax", relaxations=(1, 1), rounds_done=1)
    assert events(before, moved, APPLIES) == ["round 1: 1 of 1 relaxation finished"]
    assert events(moved, moved, APPLIES) == []
    end = events(moved, Standing(2, 2, None), APPLIES)
    assert end[-1] == "round 1 done (2 of 2 rounds)"


def test_counts_name_every_stored_relaxation_once():
    counts = CampaignCounts(rounds_done=1, relaxed=1, failed=0, starting_hull=2, mlip=0,
                            stored=4)
    assert counts.other == 1
    assert counts.relaxations_sentence() == (
        '4 relaxations stored: 1 candidate relaxed and 0 failed (the table\'s "relaxed" and '
        '"failed"), 2 for the starting hull (elements and known phases), 1 cancelled or not '
        "finished"
    )


def test_counted_says_one_thing_in_the_singular():
    assert [counted(n, "round") for n in (0, 1, 2)] == ["0 rounds", "1 round", "2 rounds"]
    assert counted(1, "entry", "entries") == "1 entry"
    assert counted(3, "entry", "entries") == "3 entries"


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_a_run_shows_progress_counts_that_agree_and_prefect_only_with_verbose(tmp_path):
    ws = Workspace(tmp_path, _config("output"))
    quiet = ws.gnomon("campaign", "run", str(ws.config))
    out = quiet.stdout + quiet.stderr
    assert quiet.returncode == 0, out

    # progress, one line per event (the output is a pipe), and no line of Prefect's
    assert not PREFECT_LINE.search(out), out
    for noise in ("Beginning flow run", "Finished in state", "Starting temporary server"):
        assert noise not in out, out
    assert "campaign output: 1 round to run (of 1), from round 0" in out
    relax_done = rf"^\[0:\d\d:\d\d\] round 0: relax done \(\d+ of {len(APPLIES)} steps\)$"
    assert re.search(relax_done, out, re.MULTILINE), out
    assert "round 0 done (1 of 1 round)" in out
    assert "mlip_" not in out  # the stage steps do not apply: neither run nor shown

    # the summary's counts are the table's (metric_rows) and the report's, and add up to
    # what the database holds
    with ws.repo() as repo:
        counts = campaign_counts(repo, ws.name)
        rows = metric_rows(repo, ws.name)
    assert counts.relaxed == sum(r["relaxed"] for r in rows) >= 1
    assert counts.failed == sum(r["failed"] for r in rows)
    assert counts.starting_hull == 2  # Li and O, the elemental references
    assert counts.stored == counts.relaxed + counts.failed + counts.starting_hull
    sentence = counts.relaxations_sentence()
    assert f"campaign output: finished, 1 round done; {sentence}" in out
    report = (ws.home / "reports" / ws.name / "report.md").read_text()
    assert f"1 round done; {sentence}." in report
    for wrong in ("1 rounds", "1 compounds", "1 relaxations", "1 phases", "1 systems"):
        assert wrong not in out + report

    # -v: Prefect's log, interleaved with the progress; still no task for a step that does
    # not apply
    verbose = ws.gnomon("campaign", "resume", ws.name, "--rounds", "2", "-v")
    loud = verbose.stdout + verbose.stderr
    assert verbose.returncode == 0, loud
    assert PREFECT_LINE.search(loud), loud
    assert "Beginning subflow run 'output-round-1'" in loud
    assert "Task run 'r1-relax' - Finished in state Completed()" in loud
    assert "r1-mlip_" not in loud
    assert "round 1 done (2 of 2 rounds)" in loud
    assert "campaign output: finished, 2 rounds done; " in loud
