"""One campaign round up to its selection, in-process or fanned out over a Dask cluster, and
what it stored: shared by the LocalCluster and SLURMCluster tests of gnomon.flows.distributed.

The round is multi-system (Li, Na, O, F to arity 2), generates from database templates of
other systems and by random search, is screened by the shipped pretrained model in its own
scheme, and selects; relaxation is not part of it (the engine is not what is distributed)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

from pymatgen.core import Lattice, Structure

from gnomon.campaign.steps import STEP_FUNCTIONS, RoundContext, run_step
from gnomon.config import CampaignConfig, Settings
from gnomon.flows.fanout import fan_out
from gnomon.pipeline.thermo.entries import make_entry
from gnomon.pipeline.thermo.hull import HullEngine
from gnomon.storage import Candidate, Prediction

SCHEME = "mlip-chgnet-0.3.0"  # the pretrained model's scheme: it screens without a transfer
ELEMENTS = ["Li", "Na", "O", "F"]
TEMPLATES = [
    Structure(
        Lattice.cubic(6.6),
        ["K"] * 4 + ["Br"] * 4,
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
        Lattice.cubic(5.5),
        ["Ca"] * 4 + ["F"] * 8,
        [
            [0, 0, 0],
            [0.5, 0.5, 0],
            [0.5, 0, 0.5],
            [0, 0.5, 0.5],
            *[[x, y, z] for x in (0.25, 0.75) for y in (0.25, 0.75) for z in (0.25, 0.75)],
        ],
    ),
    Structure(Lattice.cubic(4.2), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
]


class _Context(RoundContext):
    """A round whose engine is never asked for more than its scheme."""

    scheme_name = SCHEME

    @cached_property
    def engine(self):
        raise AssertionError("the round stops before relaxation")

    @property
    def scheme(self) -> str:
        return self.scheme_name


def config(dask: dict[str, Any] | None = None) -> CampaignConfig:
    return CampaignConfig(
        name="dask-round",
        elements=ELEMENTS,
        max_arity=2,
        known_phases=False,
        seed=11,
        saps={
            "max_candidates": 24,
            "max_template_sites": 12,
            "max_per_template": 8,
            "prototypes": False,
        },
        random_search={"n_per_composition": 2, "max_compositions": 6, "max_atoms": 6},
        compositions={"max_atoms": 4},
        selection={
            "policy": "greedy",
            "budget": 6,
            "exploration": 0.0,
            "max_per_group": None,
            "per_system_max": 2,
        },
        dask=dask,
    )


def run_round(home: Path, dask: dict[str, Any] | None = None) -> dict[str, Any]:
    """Generate, dedup, screen and select one round in ``home``; returns what it stored."""
    settings, cfg = Settings(home=home), config(dask)
    ctx = _Context(settings, cfg, 0, fan_out=fan_out(cfg, settings))  # as the round flow hands it
    try:
        engine = HullEngine(ctx.repo)
        engine.ingest(
            [
                make_entry(s.composition.formula, -3.0 * len(s), SCHEME, structure=s)
                for s in TEMPLATES
            ]
        )
        engine.ingest([make_entry(el, -1.0, SCHEME, candidate_id=f"ref-{el}") for el in ELEMENTS])
        for step in ("generate", "dedup", "screen", "select"):
            run_step(ctx, step, STEP_FUNCTIONS[step])
        return stored(ctx)
    finally:
        ctx.close()


def stored(ctx: RoundContext) -> dict[str, Any]:
    out = ctx.round().outputs
    version = out["screen"]["model_version"]
    return {
        "candidates": sorted(c.id for c in ctx.repo.query(Candidate, {"campaign": ctx.campaign})),
        "unique": out["dedup"]["unique"],
        "generated": {g: out["generate"][g]["count"] for g in ("saps", "random")},
        "compositions": out["generate"]["random"]["compositions"],
        "model_version": version,
        "predictions": sorted(
            (
                p.candidate_id,
                round(p.energy_per_atom, 5),
                None if p.e_above_hull is None else round(p.e_above_hull, 5),
            )
            for p in ctx.repo.query(Prediction, {"model_version": version})
        ),
        "selected": out["select"]["selected"],
    }
