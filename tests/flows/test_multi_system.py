"""A campaign over many chemical systems (elements + max_arity): one round generates in
several sub-systems, takes SAPS templates from a system outside the campaign's elements, keeps
each system within its selection quota, and the report breaks the round down per system.
Steps run in-process with the instant fake engine, screened by the shipped pretrained model."""

from __future__ import annotations

from collections import Counter
from functools import cached_property

import pytest
from pymatgen.core import Lattice, Structure

from gnomon.campaign.steps import STEP_FUNCTIONS, RoundContext, run_step
from gnomon.config import CampaignConfig, Settings
from gnomon.pipeline.thermo.entries import make_entry
from gnomon.pipeline.thermo.hull import HullEngine
from gnomon.storage import Candidate
from gnomon.storage.chemsys import arity

pytestmark = pytest.mark.slow

SCHEME = "mlip-chgnet-0.3.0"  # the scheme of the engine the config names (the report's)


TEMPLATES = [
    Structure(
        Lattice.cubic(6.6),
        ["K"] * 4 + ["Br"] * 4,  # rock salt
        [
            [0, 0, 0],
            [0.5, 0.5, 0],
            [0.5, 0, 0.5],
            [0, 0.5, 0.5],
            [0.5, 0, 0],
            [0, 0.5, 0],
            [0, 0, 0.5],
            [0.5, 0.5, 0.5],
        ],
    ),
    Structure(
        Lattice.cubic(4.0),
        ["K", "Mg", "F", "F", "F"],  # perovskite
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    ),
    Structure(
        Lattice.cubic(5.5),
        ["Ca"] * 4 + ["F"] * 8,  # fluorite
        [
            [0, 0, 0],
            [0.5, 0.5, 0],
            [0.5, 0, 0.5],
            [0, 0.5, 0.5],
            *[[x, y, z] for x in (0.25, 0.75) for y in (0.25, 0.75) for z in (0.25, 0.75)],
        ],
    ),
]


class FakeEngineContext(RoundContext):
    fake = None

    @cached_property
    def engine(self):
        return self.fake


def config(**extra) -> CampaignConfig:
    return CampaignConfig(
        name="many-systems",
        elements=["Li", "Na", "O", "F", "Cl"],
        max_arity=3,
        known_phases=False,
        seed=5,
        saps={
            "max_candidates": 30,
            "max_template_sites": 8,
            "max_per_template": 6,
            "prototypes": False,
        },
        random_search={"n_per_composition": 1, "max_compositions": 6, "max_atoms": 6},
        compositions={"max_atoms": 4},
        model={"ensemble_size": 2, "max_epochs": 2, "patience": 1, "min_entries": 1000},
        selection={
            "policy": "greedy",
            "budget": 14,
            "exploration": 0.0,
            "max_per_group": None,
            "per_system_max": 2,
            "per_system_min": 1,
        },
        dispatch={"name": "local", "workers": 1, "pack": 16, "poll_interval": 0.2},
        **extra,
    )


def run_round(tmp_path, fake_engine, cfg: CampaignConfig, monkeypatch) -> FakeEngineContext:
    import gnomon.dft.engine

    fake_engine.scheme_name = SCHEME
    monkeypatch.setattr(
        gnomon.dft.engine, "make_engine", lambda *a, **k: fake_engine
    )  # the report's engine
    ctx = FakeEngineContext(Settings(home=tmp_path / "home"), cfg, 0)
    ctx.fake = fake_engine
    # phases of systems outside the campaign's elements: SAPS templates all the same
    HullEngine(ctx.repo).ingest(
        [make_entry(s.composition.formula, -3.0 * len(s), SCHEME, structure=s) for s in TEMPLATES]
    )
    # the elements' references, as an earlier campaign left them: no relaxation needed for them
    HullEngine(ctx.repo).ingest(
        [make_entry(el, -1.0, SCHEME, candidate_id=f"ref-{el}") for el in cfg.elements]
    )
    for step, fn in STEP_FUNCTIONS.items():
        run_step(ctx, step, fn)
    return ctx


def test_one_round_over_many_systems_respects_quotas_and_reports_each(
    tmp_path, fake_engine, monkeypatch
):
    cfg = config()
    assert len(cfg.systems) == 10 + 10  # C(5,2) binaries + C(5,3) ternaries
    ctx = run_round(tmp_path, fake_engine, cfg, monkeypatch)
    try:
        out = ctx.round().outputs
        generated = [c for c in ctx.repo.query(Candidate, {"id": out["dedup"]["unique"]})]
        systems = Counter(c.chemsys for c in generated)
        assert len(systems) >= 4 and all(2 <= arity(s) <= 3 for s in systems), systems
        assert set(systems) <= set(cfg.systems)
        # random search took its compositions from several systems in turn, not all from one
        formulas = out["generate"]["random"]["compositions"]
        assert len({c.chemsys for c in generated if c.generator.startswith("random")}) >= 3, (
            formulas
        )
        # SAPS substituted the templates of other systems into the campaign's elements
        outside = {
            f"entry:{e.id}"
            for e in ctx.repo.entries(scheme=SCHEME)
            if {"K", "Ca"} & set(e.elements)
        }
        assert len({c.template_id for c in generated if c.generator == "saps"} & outside) >= 2
        # quotas: no system over per_system_max, every system with candidates gets one first
        assert out["screen"]["model_version"] and out["select"]["policy"] == "greedy"
        chosen = [c for c in generated if c.id in set(out["select"]["selected"])]
        per_system = Counter(c.chemsys for c in chosen)
        assert len(chosen) == 14 and max(per_system.values()) <= 2, per_system
        assert set(per_system) == set(systems)  # every system with candidates got its minimum
        # per-system metrics on the round and in the report
        by_system = ctx.round().metrics["by_system"]
        assert {s: row["candidates"] for s, row in by_system.items()} == dict(systems)
        assert {s: row["selected"] for s, row in by_system.items() if row["selected"]} == dict(
            per_system
        )
        assert sum(row["relaxed"] for row in by_system.values()) == out["relax"]["done"] > 0
        report = (ctx.settings.home / "reports" / "many-systems" / "report.md").read_text()
        assert "## Chemical systems" in report
        for system, row in by_system.items():
            line = next(line for line in report.splitlines() if line.startswith(f"| {system} |"))
            assert (
                f"| {row['candidates']} | {row['selected']} | {row['relaxed']} | {row['hits']} |"
                in line
            )
    finally:
        ctx.close()
