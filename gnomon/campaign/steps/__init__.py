"""The steps of one discovery round, as plain functions over the database.

Each step reads what earlier steps stored, does its work, and returns a small JSON-able
record of its outputs; ``run_step`` stores that record and marks the step done on the Round
document in one write. A rerun after a crash skips every step marked done and repeats the
first unfinished one, which is written to be repeatable: generation is seeded, candidates,
calculations and entries are keyed by content, and relaxations already submitted are
re-attached rather than resubmitted. :data:`STEP_FUNCTIONS` is the round, in order; Prefect
(``gnomon.flows.round``) only wires these together, and nothing here imports it.

One module per step or family of steps:

- :mod:`.context`: the round's context, the order of the steps, ``run_step``;
- :mod:`.starting_hull`: ``references``;
- :mod:`.generators`: ``generate`` (SAPS, random search);
- :mod:`.deduplication` and :mod:`.funnel`: ``dedup``, plain or streaming;
- :mod:`.screening`: ``screen`` and the choice of the screening model;
- :mod:`.selecting`: ``select``;
- :mod:`.stages`: ``mlip_relax``, ``mlip_ingest``, ``mlip_gate`` (fidelity stages);
- :mod:`.relaxation`: ``relax``, ``ingest``;
- :mod:`.measures`: ``metrics``;
- :mod:`.training`: ``retrain``;
- :mod:`.reporting`: ``report``.
"""

from gnomon.campaign.round_steps import (
    LEGACY_STEP_NAMES,
    STAGE_STEPS,
    STEPS,
    round_finished,
    with_current_step_names,
)
from gnomon.campaign.selection import policy_options, selection_policy
from gnomon.campaign.steps.context import (
    RoundContext,
    Step,
    StepError,
    round_candidate_ids,
    run_step,
)
from gnomon.campaign.steps.deduplication import dedup
from gnomon.campaign.steps.generators import (
    GENERATORS,
    generate,
    generate_random,
    generate_saps,
    random_source,
    saps_source,
)
from gnomon.campaign.steps.measures import metrics, stage_metrics
from gnomon.campaign.steps.relaxation import ingest, relax
from gnomon.campaign.steps.reporting import report
from gnomon.campaign.steps.screening import screen, screening_model, streaming_model, streams
from gnomon.campaign.steps.selecting import select
from gnomon.campaign.steps.stages import (
    DFT_START_SYMPREC,
    STAGE_GENERATOR,
    dft_start,
    mlip_gate,
    mlip_ingest,
    mlip_relax,
)
from gnomon.campaign.steps.starting_hull import known_candidates, references
from gnomon.campaign.steps.training import retrain

STEP_FUNCTIONS: dict[str, Step] = {
    "references": references,
    "generate": generate,
    "dedup": dedup,
    "screen": screen,
    "select": select,
    "mlip_relax": mlip_relax,
    "mlip_ingest": mlip_ingest,
    "mlip_gate": mlip_gate,
    "relax": relax,
    "ingest": ingest,
    "metrics": metrics,
    "retrain": retrain,
    "report": report,
}
"""The steps of a round, in the order they run: the one table every caller reads."""

if tuple(STEP_FUNCTIONS) != STEPS:  # the order lives in round_steps, where records need it
    raise ImportError(f"STEP_FUNCTIONS {tuple(STEP_FUNCTIONS)} out of step with STEPS {STEPS}")

__all__ = [
    "DFT_START_SYMPREC",
    "GENERATORS",
    "LEGACY_STEP_NAMES",
    "STAGE_GENERATOR",
    "STAGE_STEPS",
    "STEPS",
    "STEP_FUNCTIONS",
    "RoundContext",
    "Step",
    "StepError",
    "dedup",
    "dft_start",
    "generate",
    "generate_random",
    "generate_saps",
    "ingest",
    "known_candidates",
    "metrics",
    "mlip_gate",
    "mlip_ingest",
    "mlip_relax",
    "policy_options",
    "random_source",
    "references",
    "relax",
    "report",
    "retrain",
    "round_candidate_ids",
    "round_finished",
    "run_step",
    "saps_source",
    "screen",
    "screening_model",
    "select",
    "selection_policy",
    "stage_metrics",
    "streaming_model",
    "streams",
    "with_current_step_names",
]
