"""What a user sees: the flow's own code paths raise no warning (turned into errors here).

`make run` used to print pymatgen's "Not all sites have property final_magmom" for every
candidate substituted from a relaxed entry (CHGNet leaves magnetic moments on its sites), and
matplotlib logged "Ignoring fixed y limits" for the hull plot of every ternary report.
"""

from __future__ import annotations

import logging
import warnings

import pytest

from gnomon.campaign import steps
from gnomon.campaign.reports import write_report
from gnomon.config import CampaignConfig, Settings
from gnomon.pipeline.thermo.entries import make_entry
from gnomon.pipeline.thermo.hull import HullEngine
from gnomon.pipeline.thermo.known import known_phases_in


@pytest.fixture
def ctx(tmp_path):
    config = CampaignConfig(
        name="quiet",
        elements=["Li", "Mn", "O"],
        engine={"name": "mlip"},
        saps={
            "prototypes": False,
            "max_candidates": 40,
            "max_template_sites": 14,
            "max_per_template": 12,
        },
        random_search={"enabled": False},
    )
    c = steps.RoundContext(Settings(home=tmp_path / "home"), config, 1)
    yield c
    c.close()


def _relaxed_hull(ctx: steps.RoundContext) -> None:
    """Elements and the known Li-Mn-O compounds as a relaxation stores them: every site of a
    relaxed structure carries the magnetic moment the potential found."""
    entries = [make_entry(el, -2.0, ctx.scheme) for el in ("Li", "Mn", "O2")]
    for n, phase in enumerate(known_phases_in(ctx.config.elements)):
        s = phase.structure()
        s.add_site_property("final_magmom", [0.1 * (i % 3) for i in range(len(s))])
        entries.append(
            make_entry(s.composition, -2.5 * len(s), ctx.scheme, structure=s, candidate_id=f"k{n}")
        )
    HullEngine(ctx.repo).ingest(entries)


def test_candidates_substituted_from_relaxed_entries_warn_nothing(ctx):
    _relaxed_hull(ctx)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # pymatgen's note on species without a tabulated ionic radius is filtered by the
        # generate task itself (gnomon.flows.round), on purpose and by message only
        warnings.filterwarnings("ignore", message=".*ionic radius.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # not shown to users
        out = steps.generate_saps(ctx)
        assert out["count"] > 0
        steps.run_step(ctx, "generate", lambda _ctx: {"saps": out})
        kept = steps.dedup(ctx)
    assert kept["unique"]


def test_a_ternary_report_with_its_hull_plot_warns_nothing(ctx, caplog):
    _relaxed_hull(ctx)
    # matplotlib reports a limit it cannot keep through its logger, not the warnings module
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING):
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        path = write_report(ctx.repo, ctx.settings, ctx.config)
    assert (path.parent / "hull.png").stat().st_size > 1000
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
