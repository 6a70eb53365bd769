"""The steps of one discovery round, as plain functions over the database.

Each step reads what earlier steps stored, does its work, and returns a small JSON-able
record of its outputs; ``run_step`` stores that record and marks the step done on the Round
document in one write. A rerun after a crash skips every step marked done and repeats the
first unfinished one, which is written to be repeatable: generation is seeded, candidates,
calculations and entries are keyed by content, and relaxations already submitted are
re-attached rather than resubmitted. ``STEP_FUNCTIONS`` (at the end) is the round, in order;
Prefect (``gnomon.flows.round``) only wires these together; nothing here imports it.

Fidelity stages (config ``stages``) are steps of the same table: with ``[screen, mlip, dft]``
the selected candidates are relaxed by the universal potential (``mlip_relax``), ingested into
its own scheme's hull (``mlip_ingest``), and only those within ``mlip_e_above_hull`` of that
hull go on (``mlip_gate``), as new candidates holding the ML-relaxed structure, to the
campaign's engine (``relax``, ``ingest``). With the default ``[screen, dft]`` the mlip steps
do nothing. A crash between stages resumes like a crash between any two steps.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from pymatgen.core import Structure

from gnomon.config import CampaignConfig, SelectionConfig, Settings
from gnomon.campaign.selection import POLICIES, Scored, SelectionPolicy, make_policy
from gnomon.storage import (
    CalcState,
    Calculation,
    Campaign,
    Candidate,
    Entry,
    ModelVersion,
    Phase,
    Prediction,
    Repository,
    Round,
    StepState,
    open_repository,
)
from gnomon.storage.documents import utcnow

log = logging.getLogger(__name__)

# Steps renamed since rounds were first stored: a resumed round reads its old records under
# the new names ("hull" only ever computed the round's metrics against the hull).
LEGACY_STEP_NAMES = {"hull": "metrics"}
# Steps added with the fidelity stages: a round stored before them has none and is finished
# without them (they would have done nothing in its single-stage campaign).
STAGE_STEPS = ("mlip_relax", "mlip_ingest", "mlip_gate")
#: The generator recorded on a candidate that holds an earlier stage's relaxed structure.
STAGE_GENERATOR = "mlip"
#: Å: an ML-relaxed structure is idealised to the space group it has within this tolerance
#: before DFT starts from it (``dft_start``).
DFT_START_SYMPREC = 0.01


class StepError(RuntimeError):
    """A step cannot go on; the message says which step and why."""


@dataclass
class RoundContext:
    """Everything a step needs: where the data is and what the campaign asked for."""

    settings: Settings
    config: CampaignConfig
    index: int
    _repo: Repository | None = field(default=None, repr=False)

    @property
    def campaign(self) -> str:
        return self.config.name

    @property
    def repo(self) -> Repository:
        if self._repo is None:
            self._repo = open_repository(self.settings.db_url)
        return self._repo

    @cached_property
    def engine(self):
        from gnomon.dft.engine import make_engine

        return make_engine(self.config.engine.name, self.settings, **self.config.engine.options)

    @property
    def scheme(self) -> str:
        """The scheme of the campaign's engine (the last stage): its hull, its model."""
        return self.engine.scheme

    @cached_property
    def mlip_engine(self):
        """The universal potential of the mlip stage (config ``mlip_engine``)."""
        from gnomon.config import mlip_engine_name
        from gnomon.dft.engine import make_engine

        return make_engine(mlip_engine_name(self.config.mlip_engine), self.settings, **self.config.mlip_options)

    def stage_engines(self) -> dict[str, Any]:
        """The engine of each relaxing stage, in order: ``{"mlip": ..., "dft": ...}`` or ``{"dft": ...}``."""
        if not self.config.staged:
            return {"dft": self.engine}
        if self.mlip_engine.scheme == self.engine.scheme:
            raise StepError(f"stages: mlip_engine {self.config.mlip_engine!r} and engine "
                            f"{self.config.engine.name!r} share the scheme {self.engine.scheme}; "
                            "each stage needs a hull of its own")
        return {"mlip": self.mlip_engine, "dft": self.engine}

    @property
    def run_dir(self) -> Path:
        return self.settings.runs_dir / self.campaign / f"round-{self.index:03d}"

    @property
    def round_id(self) -> str:
        return Round.key(self.campaign, self.index)

    def seed(self, *keys: object) -> int:
        from gnomon.pipeline.generation.streaming import derive_seed

        return derive_seed(self.config.seed, self.index, *keys) % (2**31)

    def round(self) -> Round:
        """This round's record (created on first use), with legacy step names migrated."""
        record = self.repo.get(Round, self.round_id)
        if record is None:
            record = Round(id=self.round_id, campaign=self.campaign, index=self.index,
                           steps={s: StepState.pending for s in STEPS})
            self.repo.insert_new("rounds", [record])
            record = self.repo.get(Round, self.round_id)
        if any(old in record.steps or old in record.outputs for old in LEGACY_STEP_NAMES):
            record = with_current_step_names(record)
            self.repo.update_fields("rounds", self.round_id, {"steps": _steps(record), "outputs": record.outputs})
        return record

    def outputs(self, step: str) -> dict[str, Any]:
        return self.round().outputs.get(step, {})

    def relaxations(self):
        from gnomon.dft.dispatcher import make_dispatcher
        from gnomon.dft.service import Relaxations

        dispatcher = make_dispatcher(self.config.dispatch.name, self.settings, workers=self.config.dispatch.workers)
        return Relaxations(self.repo, self.settings.runs_dir / self.campaign, {self.config.dispatch.name: dispatcher},
                           max_retries=self.settings.slurm.max_retries, pack=self.config.dispatch.pack)

    def close(self) -> None:
        if self._repo is not None:
            self._repo.close()
            self._repo = None


def run_step(ctx: RoundContext, step: str, fn: Callable[[RoundContext], dict[str, Any]]) -> dict[str, Any]:
    """Run ``fn`` unless ``step`` is already done; store its outputs and mark it done."""
    record = ctx.round()
    if record.steps.get(step) == StepState.done:
        log.info("round %d: %s already done", ctx.index, step)
        return record.outputs.get(step, {})
    ctx.repo.update_fields("rounds", ctx.round_id, {"steps": {**_steps(record), step: StepState.running.value}})
    outputs = fn(ctx)
    record = ctx.round()
    ctx.repo.update_fields(
        "rounds",
        ctx.round_id,
        {
            "steps": {**_steps(record), step: StepState.done.value},
            "outputs": {**record.outputs, step: outputs},
            **({"finished_at": utcnow().isoformat()} if step == STEPS[-1] else {}),
        },
    )
    log.info("round %d: %s done", ctx.index, step)
    return outputs


def _steps(record: Round) -> dict[str, str]:
    return {k: StepState(v).value for k, v in record.steps.items()}


def _renamed(mapping: dict[str, Any]) -> dict[str, Any]:
    return {LEGACY_STEP_NAMES.get(k, k): v for k, v in mapping.items()}


def with_current_step_names(record: Round) -> Round:
    """``record`` with steps and outputs stored under a legacy name moved to the current one."""
    return record.model_copy(update={"steps": _renamed(record.steps), "outputs": _renamed(record.outputs)})


def round_finished(record: Round | None) -> bool:
    """Whether every step of a stored round is done, whichever names it was stored under."""
    if record is None:
        return False
    steps = with_current_step_names(record).steps
    return all(steps.get(s) == StepState.done for s in STEPS if s in steps or s not in STAGE_STEPS)


# -- references ---------------------------------------------------------------------------------
def references(ctx: RoundContext) -> dict[str, Any]:
    """The hull a campaign starts from, relaxed by the campaign's own engine.

    Elemental references are ase's dcdft structures; known compounds are the published phases
    gnomon ships for the campaign's space (``gnomon.pipeline.thermo.known``; config
    ``known_phases``), so a compound found later is "new stable" against what is already
    known, not against a hull of bare elements. Both go through the relaxation service as
    ordinary calculations: stored, resumable, and never run twice for the same engine
    settings. Only what has no finished relaxation yet is submitted, so after the first round
    this is a no-op. A failed element stops the round (no hull without it); a failed known
    compound is reported in the outputs and the campaign goes on without it.

    Every relaxing stage needs its own hull, so with an mlip stage the references are relaxed
    by both engines (side by side); the outputs of the campaign's engine stay at the top level,
    the mlip stage's are under ``"mlip"``.
    """
    from ase.collections import dcdft
    from pymatgen.io.ase import AseAtomsAdaptor

    from gnomon.pipeline.generation.identity import candidate_from_structure

    engines = ctx.stage_engines()
    todo: dict[str, tuple[list[Candidate], list[Candidate]]] = {}
    known_all = known_candidates(ctx)
    for stage, engine in engines.items():
        missing = [el for el in ctx.config.elements
                   if not ctx.repo.count("entries", {"scheme": engine.scheme, "chemsys": el})]
        elements = []
        for el in missing:
            if el not in dcdft.names:
                raise StepError(f"references: ase.collections.dcdft has no structure for {el}")
            structure = AseAtomsAdaptor.get_structure(dcdft[el])
            elements.append(candidate_from_structure(structure, "reference", campaign=ctx.campaign, round=ctx.index,
                                                     extra={"source": "ase.collections.dcdft"}))
        todo[stage] = (elements, [c for c in known_all if not _done(ctx, c.id, engine)])
    if any(elements or known for elements, known in todo.values()):
        relax = ctx.relaxations()
        for stage, (elements, known) in todo.items():
            if elements or known:  # queued only: the wait dispatches both stages' in shared packs
                relax.submit(elements + known, engines[stage], ctx.config.dispatch.name, campaign=ctx.campaign,
                             round=ctx.index, dispatch=False)
        relax.wait(poll_s=ctx.config.dispatch.poll_interval)
    outputs: dict[str, Any] = {}
    for stage, (elements, known) in todo.items():
        engine = engines[stage]
        failed = [c.id for c in elements if not _done(ctx, c.id, engine)]
        if failed:
            raise StepError(f"references: relaxation of elemental references failed for {failed} ({engine.scheme})")
        known_failed = {}
        for c in known:
            if not _done(ctx, c.id, engine):
                calc = _calc(ctx, c.id, engine)
                known_failed[c.reduced_formula] = calc.failure_reason if calc is not None else "not relaxed"
                log.warning("known phase %s (%s) could not be relaxed in %s: %s; the hull goes on without it",
                            c.reduced_formula, c.id, engine.scheme, known_failed[c.reduced_formula])
        outputs[stage] = {"relaxed": [c.id for c in elements],
                          "known": [c.id for c in known if c.reduced_formula not in known_failed],
                          "known_failed": known_failed}
    return {**outputs.pop("dft"), **outputs}


def known_candidates(ctx: RoundContext) -> list[Candidate]:
    """Candidates for the shipped known phases of the campaign's space (none when switched off)."""
    from gnomon.pipeline.generation.identity import candidate_from_structure
    from gnomon.pipeline.thermo.known import known_phases_in

    if not ctx.config.known_phases:
        return []
    return [
        candidate_from_structure(phase.structure(), "known", campaign=ctx.campaign, round=ctx.index,
                                 extra={"name": phase.name, "spacegroup": phase.spacegroup, "source": phase.source})
        for phase in known_phases_in(ctx.config.elements)
    ]


def _done(ctx: RoundContext, candidate_id: str, engine=None) -> bool:
    calc = _calc(ctx, candidate_id, engine)
    return calc is not None and calc.state is CalcState.done


def _calc(ctx: RoundContext, candidate_id: str, engine=None) -> Calculation:
    """The calculation of ``candidate_id`` by ``engine`` (default: the campaign's engine)."""
    return ctx.repo.get(Calculation, Calculation.key(candidate_id, (engine or ctx.engine).settings_hash))


# -- generation ---------------------------------------------------------------------------------
def _new_only(ctx: RoundContext, candidates: Iterator[Candidate], limit: int, chunk: int = 200) -> Iterator[Candidate]:
    """Candidates not stored yet, at most ``limit``: deterministic generators give the same
    first structures every round, and a round should bring new ones."""
    from gnomon.pipeline.generation.streaming import chunked

    n = 0
    for batch in chunked(candidates, chunk):
        stored = ctx.repo.existing_ids("candidates", [c.id for c in batch])
        for c in batch:
            if c.id in stored:
                continue
            yield c
            n += 1
            if n >= limit:
                return


def saps_source(ctx: RoundContext) -> tuple[Iterator[Candidate], Any]:
    """The round's SAPS compounds as a lazy stream, and the generator (its ``skipped``
    templates fill as the stream is read). Templates come from every system of the scheme in
    the database; in a campaign over many systems (max_arity) only those an outcome of at most
    max_arity elements can come from."""
    from gnomon.flows.fanout import dask_config, saps_candidates
    from gnomon.pipeline.generation.saps import SAPSGenerator
    from gnomon.pipeline.generation.templates import make_template, prototype_templates
    from gnomon.campaign.systems import arity

    cfg = ctx.config.saps
    max_arity = min(ctx.config.max_arity or len(ctx.config.elements), len(ctx.config.elements))

    def templates():
        if cfg.database_templates:
            for e in ctx.repo.entries(scheme=ctx.scheme):
                if e.structure is not None and 1 < len(e.elements) <= max_arity and e.nsites <= cfg.max_template_sites:
                    yield make_template(f"entry:{e.id}", Structure.from_dict(e.structure), "database")
        if cfg.prototypes:
            yield from prototype_templates(max_sites=cfg.max_template_sites, max_species=max_arity)

    generator = SAPSGenerator(
        elements=tuple(ctx.config.elements), threshold=cfg.threshold, partial=cfg.partial,
        max_per_template=cfg.max_per_template, charge_balance=cfg.charge_balance,
        seed=ctx.seed("saps"), campaign=ctx.campaign, round=ctx.index,
        max_species=max_arity,
    )
    # substituting every site of a template by one element gives an elemental polymorph; the
    # references already cover the elements, so a compound campaign spends no budget there
    outcomes = saps_candidates(dask_config(ctx.config, ctx.settings), generator, templates())
    return (c for c in outcomes if 1 < arity(c.chemsys) <= max_arity), generator


def _writes_nothing(ctx: RoundContext, enabled: bool) -> dict[str, Any] | None:
    """The output of a generator that writes no file this round (switched off, or read by the
    streaming funnel in the dedup step instead), else None."""
    if not enabled:
        return {"file": None, "count": 0}
    if streams(ctx):
        return {"file": None, "count": 0, "streamed": True}
    return None


def generate_saps(ctx: RoundContext) -> dict[str, Any]:
    from gnomon.pipeline.generation.candidate_io import write_candidates
    from gnomon.campaign.systems import fair_take

    cfg = ctx.config.saps
    path = ctx.run_dir / "saps.json"
    if (idle := _writes_nothing(ctx, cfg.enabled and cfg.max_candidates > 0)) is not None:
        return idle
    compounds, generator = saps_source(ctx)
    if ctx.config.max_arity is None:
        kept = _new_only(ctx, compounds, cfg.max_candidates)
    else:  # many systems: each its fair share of the round's candidates
        kept = fair_take(_new_only(ctx, compounds, 1 << 62), cfg.max_candidates, len(ctx.config.systems),
                         system=lambda c: c.chemsys)
    n = write_candidates(path, kept)
    return {"file": str(path), "count": n, "skipped_templates": len(generator.skipped)}


def random_source(ctx: RoundContext) -> tuple[Iterator[Candidate], Any, list[str]]:
    """The round's random-search candidates as a lazy stream, the search (its ``failures``
    fill as the stream is read) and the compositions searched: those no stored phase and no
    earlier round of the campaign has covered."""
    from gnomon.flows.fanout import dask_config, random_candidates
    from gnomon.pipeline.generation.compositions import (
        BalanceMode,
        CompositionGenerator,
        known_formulas,
    )
    from gnomon.pipeline.generation.random_search import RandomSearch

    cfg = ctx.config.random_search
    comps = CompositionGenerator(
        max_atoms=ctx.config.compositions.max_atoms,
        mode=BalanceMode.relaxed if ctx.config.compositions.relaxed else BalanceMode.strict,
    )
    known = known_formulas(ctx.repo, ctx.config.elements)
    searched: set[str] = set()
    for r in range(ctx.index):
        earlier = ctx.repo.get(Round, Round.key(ctx.campaign, r))
        if earlier is not None:
            out = earlier.outputs
            searched |= set(out.get("generate", {}).get("random", {}).get("compositions", []))
            searched |= set(out.get("dedup", {}).get("funnel", {}).get("compositions", []))
    if ctx.config.max_arity is None:
        formulas = [f for f in comps.generate(ctx.config.elements, skip=known) if f not in searched]
    else:  # many systems: the charge-balanced compositions of each, the systems taking turns
        from gnomon.campaign.systems import round_robin, system_compositions

        per_system = system_compositions(ctx.config.systems, comps.max_atoms, comps.mode, skip=known | searched)
        formulas = list(itertools.islice(round_robin(per_system), cfg.max_compositions))
    formulas = formulas[: cfg.max_compositions]
    search = RandomSearch(n_per_composition=cfg.n_per_composition, backend=cfg.backend, max_atoms=cfg.max_atoms,
                          seed=ctx.seed("random"), campaign=ctx.campaign, round=ctx.index)
    return random_candidates(dask_config(ctx.config, ctx.settings), search, formulas), search, formulas


def generate_random(ctx: RoundContext) -> dict[str, Any]:
    from gnomon.pipeline.generation.candidate_io import write_candidates

    cfg = ctx.config.random_search
    path = ctx.run_dir / "random.json"
    if (idle := _writes_nothing(ctx, cfg.enabled and cfg.max_compositions > 0)) is not None:
        return idle
    candidates, search, formulas = random_source(ctx)
    n = write_candidates(path, candidates)
    return {"file": str(path), "count": n, "compositions": formulas, "failures": len(search.failures)}


# -- dedup --------------------------------------------------------------------------------------
def streaming_model(ctx: RoundContext) -> ModelVersion | None:
    """The model a streaming round screens its funnel with; None when the round does not
    stream (``funnel.enabled`` off, or no model yet: such a round stores its unique candidates
    the usual way)."""
    if not (ctx.config.funnel.enabled and "screen" in ctx.config.stages):
        return None
    return screening_model(ctx)


def streams(ctx: RoundContext) -> bool:
    """Whether this round runs the streaming funnel (see :func:`streaming_model`)."""
    return streaming_model(ctx) is not None


def round_candidate_ids(ctx: RoundContext) -> set[str]:
    """Ids of the generated candidates stored for this round (not references or known phases):
    what an interrupted run of the dedup step already stored."""
    return {c.id for c in ctx.repo.query(Candidate, {"campaign": ctx.campaign, "round": ctx.index})
            if c.generator not in ("reference", "known")}


def dedup(ctx: RoundContext) -> dict[str, Any]:
    """Unique candidates of the round, stored; duplicates of the batch or the database dropped.
    With the streaming funnel: generated, deduplicated and screened here, chunk by chunk, and
    only the candidates that pass stored (``gnomon.campaign.funnel_step``)."""
    record = streaming_model(ctx)
    if record is not None:
        from gnomon.campaign.funnel_step import run_funnel

        return run_funnel(ctx, record)
    from gnomon.pipeline.generation.dedup import Deduplicator
    from gnomon.pipeline.generation.candidate_io import read_candidates
    from gnomon.pipeline.generation.streaming import chunked

    files = [v["file"] for v in ctx.outputs("generate").values() if isinstance(v, dict) and v.get("file")]
    already = round_candidate_ids(ctx)
    deduper = Deduplicator(repository=ctx.repo)
    unique: list[str] = []
    seen = 0

    def stream():
        for f in files:
            yield from read_candidates(f)

    for chunk in chunked(stream(), 500):
        seen += len(chunk)
        kept_before = [c.id for c in chunk if c.id in already]  # stored by an interrupted run
        fresh = deduper.unique([c for c in chunk if c.id not in already])
        ctx.repo.add_candidates(fresh)
        unique.extend(kept_before + [c.id for c in fresh])
    unique = list(dict.fromkeys(unique))
    return {"generated": seen, "unique": unique}


# -- screen and select --------------------------------------------------------------------------
def screening_model(ctx: RoundContext) -> ModelVersion | None:
    """The model that screens this round.

    The campaign's newest: retrained in an earlier round, else the one an earlier round
    screened with. Before the campaign has one, its start (``model.start_from``): the
    pretrained model shipped with gnomon, carried over to the campaign's scheme when that is
    another (``gnomon.models.pretrained.start_model``); with ``scratch``, or when none ships,
    the newest model of the scheme trained before the campaign (never the shipped one), if any.
    """
    from gnomon.models.pretrained import is_pretrained, start_model

    for r in reversed(range(ctx.index)):
        earlier = ctx.repo.get(Round, Round.key(ctx.campaign, r))
        out = with_current_step_names(earlier).outputs if earlier is not None else {}
        version = out.get("retrain", {}).get("model_version") or out.get("screen", {}).get("model_version")
        record = ctx.repo.get(ModelVersion, version) if version else None
        if record is not None:
            return record
    if ctx.config.model.start_from == "pretrained":
        record = start_model(ctx.repo, ctx.settings.models_dir, ctx.scheme, campaign=ctx.campaign, round=ctx.index)
        if record is not None:
            return record
    own = [m for m in ctx.repo.query(ModelVersion, {"scheme": ctx.scheme, "kind": "gnn"})
           if not is_pretrained(m) and m.config.get("retrain") != "transfer"]
    return max(own, key=lambda m: m.created_at) if own else None


def screen(ctx: RoundContext) -> dict[str, Any]:
    from gnomon.models.ensemble import TTA
    from gnomon.models.registry import ModelRegistry
    from gnomon.models.screening import screen_candidates

    record = screening_model(ctx)
    ids = ctx.outputs("dedup").get("unique", [])
    if record is None:
        log.info("round %d: no model for %s yet; selection falls back to exploration", ctx.index, ctx.scheme)
        return {"model_version": None, "screened": 0}
    from gnomon.flows.fanout import dask_config, screen_on_cluster

    done = set(ctx.repo.predictions_for(ids, record.id))
    todo = [c for c in ctx.repo.query(Candidate, {"id": ids}) if c.id not in done]
    dask = dask_config(ctx.config, ctx.settings)
    if dask is not None:  # chunks of candidates screened by the cluster's workers
        stats = screen_on_cluster(dask, ctx.repo, todo, record, ctx.settings.models_dir, ctx.scheme,
                                  tta=ctx.config.model.tta, campaign=ctx.campaign, round=ctx.index)
    else:
        ensemble = ModelRegistry(ctx.repo, ctx.settings.models_dir).load(record)
        stats = screen_candidates(ctx.repo, todo, ensemble, record.id, ctx.scheme,
                                  tta=TTA() if ctx.config.model.tta else None,
                                  campaign=ctx.campaign, round=ctx.index)
    return {"model_version": record.id, "screened": len(done) + stats.written, "rejected": stats.reasons}


def policy_options(selection: SelectionConfig, name: str) -> dict[str, Any]:
    """The arguments of policy ``name`` that a campaign's selection settings give: every field
    of the policy's dataclass that the settings also have (budget, exploration, threshold, k...)."""
    from dataclasses import fields

    if name not in POLICIES:
        raise ValueError(f"unknown selection policy {name!r}; choose one of {sorted(POLICIES)}")
    settings = selection.model_dump()
    return {f.name: settings[f.name] for f in fields(POLICIES[name]) if f.init and f.name in settings}


def selection_policy(config: CampaignConfig, name: str | None = None) -> SelectionPolicy:
    """The policy ``name`` (default: the campaign's) as the campaign's settings configure it."""
    name = name or config.selection.policy
    return make_policy(name, **policy_options(config.selection, name), seed=config.seed)


def select(ctx: RoundContext) -> dict[str, Any]:
    """Pick the round's relaxations; a random draw while no model has screened anything."""
    ids = ctx.outputs("dedup").get("unique", [])
    version = ctx.outputs("screen").get("model_version")
    candidates = {c.id: c for c in ctx.repo.query(Candidate, {"id": ids})}
    preds = ctx.repo.predictions_for(ids, version) if version else {}
    scored = [
        Scored(cid, preds[cid].e_above_hull if cid in preds else None, preds[cid].sigma if cid in preds else 0.0,
               group=candidates[cid].template_id or candidates[cid].reduced_formula, system=candidates[cid].chemsys)
        for cid in ids if cid in candidates
    ]
    policy = selection_policy(ctx.config, None if version else "random")
    chosen = policy.select(scored, round_index=ctx.index)
    return {"policy": policy.name, "selected": [c.candidate_id for c in chosen]}


# -- relax, ingest, metrics --------------------------------------------------------------------
def _relax_with(ctx: RoundContext, candidate_ids: list[str], engine) -> dict[str, Any]:
    """Relax ``candidate_ids`` with ``engine`` through the campaign's dispatcher and wait.

    Calculations already stored (a resumed round) are re-attached, never run again."""
    if not candidate_ids:
        return {"calculations": []}
    candidates = list(ctx.repo.query(Candidate, {"id": candidate_ids}))
    service = ctx.relaxations()
    service.submit(candidates, engine, ctx.config.dispatch.name, campaign=ctx.campaign, round=ctx.index)
    service.wait(poll_s=ctx.config.dispatch.poll_interval)
    calcs = [_calc(ctx, cid, engine) for cid in candidate_ids]
    return {
        "calculations": [c.id for c in calcs if c is not None],
        "done": sum(1 for c in calcs if c is not None and c.state is CalcState.done),
        "failed": sum(1 for c in calcs if c is not None and c.state is CalcState.failed),
    }


def _ingest_calcs(ctx: RoundContext, calc_ids: list[str]) -> dict[str, Any]:
    """Make sure every finished calculation of ``calc_ids`` has its entry on its hull."""
    calcs = list(ctx.repo.query(Calculation, {"id": calc_ids}))
    missing = [c for c in calcs if c.state is CalcState.done and c.entry_id is None]
    if missing:
        ctx.relaxations().collect(missing)
        calcs = list(ctx.repo.query(Calculation, {"id": calc_ids}))
    entries = [c.entry_id for c in calcs if c.entry_id]
    failed = {c.id: c.failure_reason for c in calcs if c.state is CalcState.failed}
    return {"entries": entries, "failed": failed}


def mlip_relax(ctx: RoundContext) -> dict[str, Any]:
    """The mlip stage: the selected candidates relaxed by the universal potential."""
    if not ctx.config.staged:
        return {"skipped": "no mlip stage"}
    engine = ctx.stage_engines()["mlip"]
    return {"scheme": engine.scheme, **_relax_with(ctx, ctx.outputs("select").get("selected", []), engine)}


def mlip_ingest(ctx: RoundContext) -> dict[str, Any]:
    """The mlip stage's entries on the mlip scheme's own hull."""
    if not ctx.config.staged:
        return {"skipped": "no mlip stage"}
    return _ingest_calcs(ctx, ctx.outputs("mlip_relax").get("calculations", []))


def mlip_gate(ctx: RoundContext) -> dict[str, Any]:
    """Who goes on to the dft stage: mlip entries within ``mlip_e_above_hull`` of the mlip
    hull (as it stands with the whole round ingested), each as a new candidate holding its
    ML-relaxed structure (idealised to its space group, ``dft_start``), its parents recorded
    (``parent_candidate_id``, ``parent_entry_id``).

    Repeatable: the new candidates are keyed by their structure, so a rerun finds them."""
    from gnomon.pipeline.generation.identity import candidate_from_structure

    if not ctx.config.staged:
        return {"skipped": "no mlip stage"}
    limit = ctx.config.mlip_e_above_hull
    entries = list(ctx.repo.query(Entry, {"id": ctx.outputs("mlip_ingest").get("entries", [])}))
    phases = {p.id: p for p in ctx.repo.query(Phase, {"id": [e.id for e in entries]})}
    parents = {c.id: c for c in ctx.repo.query(Candidate, {"id": [e.candidate_id for e in entries if e.candidate_id]})}
    passed, paths, held_back = [], [], {}
    for e in sorted(entries, key=lambda e: e.id):
        phase = phases.get(e.id)
        e_hull = phase.e_above_hull if phase is not None else None
        if e_hull is None or e_hull > limit or e.structure is None:
            held_back[e.id] = e_hull
            continue
        parent = parents.get(e.candidate_id)
        child = candidate_from_structure(
            dft_start(Structure.from_dict(e.structure)), STAGE_GENERATOR, campaign=ctx.campaign, round=ctx.index,
            template_id=parent.template_id if parent else None, substitution=parent.substitution if parent else None,
            parent_candidate_id=e.candidate_id, parent_entry_id=e.id,
            extra={"stage": "mlip", "scheme": e.scheme, "e_above_hull": e_hull},
        )
        ctx.repo.add_candidates([child])
        passed.append(child.id)
        paths.append({"candidate": e.candidate_id, "mlip_entry": e.id, "dft_candidate": child.id})
    passed = list(dict.fromkeys(passed))
    log.info("round %d: %d of %d mlip entries within %.3f eV/atom of the %s hull go on to dft",
             ctx.index, len(passed), len(entries), limit, ctx.mlip_engine.scheme)
    return {"threshold": limit, "passed": passed, "held_back": held_back, "paths": paths}


def dft_start(relaxed: Structure, symprec: float = DFT_START_SYMPREC) -> Structure:
    """The structure DFT starts from: the ML-relaxed one, idealised to its space group.

    A universal potential stops at forces of a few 0.01 eV/Å, leaving a cell a hair off its
    symmetry; pw.x then finds symmetry operations that are not quite orthogonal and stops
    (``checkallsym: not orthogonal operation``). The idealised primitive standard cell has the
    same crystal, at most as many sites, and exact symmetry. Left as relaxed when spglib finds
    no cell.
    """
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        ideal = SpacegroupAnalyzer(relaxed, symprec=symprec).get_primitive_standard_structure()
    except (ValueError, TypeError) as exc:  # spglib: no symmetry dataset for this cell
        log.warning("%s: left as relaxed (%s)", relaxed.composition.reduced_formula, exc)
        return relaxed
    if ideal is None or ideal.composition.reduced_composition != relaxed.composition.reduced_composition:
        return relaxed
    return ideal


def relax(ctx: RoundContext) -> dict[str, Any]:
    """The campaign's engine relaxes the selection, or with an mlip stage what passed its gate."""
    if ctx.config.staged:
        return _relax_with(ctx, ctx.outputs("mlip_gate").get("passed", []), ctx.engine)
    return _relax_with(ctx, ctx.outputs("select").get("selected", []), ctx.engine)


def ingest(ctx: RoundContext) -> dict[str, Any]:
    """Make sure every finished relaxation of the round has its entry on the hull; with an
    mlip stage each DFT entry records the mlip entry it started from, and the round the path
    candidate -> mlip entry -> dft entry of each."""
    out = _ingest_calcs(ctx, ctx.outputs("relax").get("calculations", []))
    if not ctx.config.staged:
        return out
    entries = list(ctx.repo.query(Entry, {"id": out["entries"]}))
    starts = {c.id: c for c in ctx.repo.query(Candidate, {"id": [e.candidate_id for e in entries if e.candidate_id]})}
    paths = []
    for e in entries:
        start = starts.get(e.candidate_id)
        if start is None or start.parent_entry_id is None:
            continue
        if e.parent_entry_id != start.parent_entry_id:
            ctx.repo.update_fields("entries", e.id, {"parent_entry_id": start.parent_entry_id})
        paths.append({"candidate": start.parent_candidate_id, "mlip_entry": start.parent_entry_id, "dft_entry": e.id})
    return {**out, "paths": paths}


def metrics(ctx: RoundContext) -> dict[str, Any]:
    """Per-round metrics against the hull as it stood before the round (stored on the Round).

    The hull itself is kept current by ``ingest``; this step only measures the round."""
    from gnomon.pipeline.thermo.metrics import round_metrics

    out = ctx.round().outputs
    entries = list(ctx.repo.query(Entry, {"id": out.get("ingest", {}).get("entries", [])}))
    version = out.get("screen", {}).get("model_version")
    # a DFT entry of a staged round started from an ML-relaxed structure: the screen judged
    # the candidate that structure came from
    screened_as = {e.candidate_id: e.candidate_id for e in entries if e.candidate_id}
    if ctx.config.staged:
        for c in ctx.repo.query(Candidate, {"id": list(screened_as)}):
            if c.parent_candidate_id:
                screened_as[c.id] = c.parent_candidate_id
    preds: dict[str, Prediction] = {}
    if version:
        by_parent = ctx.repo.predictions_for(list(set(screened_as.values())), version)
        preds = {cid: by_parent[p] for cid, p in screened_as.items() if p in by_parent}
    counts = {
        "generated": out.get("dedup", {}).get("generated", 0),
        "unique": len(out.get("dedup", {}).get("unique", [])),
        "screened": out.get("screen", {}).get("screened", 0),
        "selected": len(out.get("select", {}).get("selected", [])),
    }
    funnel = out.get("dedup", {}).get("funnel")
    if funnel:  # a streaming round stored only what passed: unique and screened come from its counts
        counts["unique"] = funnel["generated"] - funnel["duplicates"] + funnel.get("resumed", 0)
        counts["screened"] = funnel["screened"] + funnel.get("resumed", 0)
    result = round_metrics(ctx.repo, ctx.scheme, entries, preds, counts, len(out.get("ingest", {}).get("failed", {})))
    result["policy"] = out.get("select", {}).get("policy")
    result["model_version"] = version
    if funnel:
        result["passed_screen"] = len(out["dedup"]["unique"])
    from gnomon.campaign.systems import system_breakdown

    result["by_system"] = system_breakdown(ctx.repo, ctx.scheme, out.get("dedup", {}).get("unique", []),
                                           out.get("select", {}).get("selected", []), entries)
    if ctx.config.staged:
        result["stages"] = stage_metrics(ctx, out, result)
    ctx.repo.update_fields("rounds", ctx.round_id, {"metrics": result})
    return result


def stage_metrics(ctx: RoundContext, out: dict[str, Any], final: dict[str, Any]) -> dict[str, Any]:
    """Counts and hit rates per fidelity stage of a staged round.

    mlip: relaxed, failed, hit rate against its own hull before the round, and how many went
    on to dft (``passed``; ``pass_rate`` of those relaxed); dft: calls, relaxed, failed, hit
    rate and new stable phases (the round's headline figures), and ``stable_share``: the share
    of DFT calls that ended on the DFT hull, the figure an mlip stage exists to raise.
    """
    from gnomon.pipeline.thermo.metrics import round_metrics

    mlip_entries = list(ctx.repo.query(Entry, {"id": out.get("mlip_ingest", {}).get("entries", [])}))
    mlip = round_metrics(ctx.repo, ctx.mlip_engine.scheme, mlip_entries, {}, {},
                         len(out.get("mlip_ingest", {}).get("failed", {})))
    passed = len(out.get("mlip_gate", {}).get("passed", []))
    dft_calls = len(out.get("relax", {}).get("calculations", []))
    return {
        "screen": {"screened": final.get("screened", 0), "selected": final.get("selected", 0)},
        "mlip": {"scheme": ctx.mlip_engine.scheme, "relaxed": mlip["relaxed"], "failed": mlip["failed"],
                 "hit_rate": mlip["hit_rate"], "new_stable": mlip["new_stable"], "passed": passed,
                 "threshold": ctx.config.mlip_e_above_hull,
                 "pass_rate": passed / mlip["relaxed"] if mlip["relaxed"] else None},
        "dft": {"scheme": ctx.scheme, "calls": dft_calls, "relaxed": final["relaxed"], "failed": final["failed"],
                "hit_rate": final["hit_rate"], "new_stable": final["new_stable"],
                "stable_share": final["new_stable"] / dft_calls if dft_calls else None},
    }


# -- retrain and report -------------------------------------------------------------------------
def retrain(ctx: RoundContext) -> dict[str, Any]:
    from gnomon.models.ensemble import ModelSpec
    from gnomon.models.training import TrainConfig, train_scheme

    cfg = ctx.config.model
    n = ctx.repo.count("entries", {"scheme": ctx.scheme})
    if n < cfg.min_entries:
        return {"model_version": None, "reason": f"{n} entries < min_entries={cfg.min_entries}"}
    # fine-tune the model that screened this round (the pretrained one, or its transfer, in
    # round 0); without one, train from scratch
    parent = ctx.outputs("screen").get("model_version")
    record, _ = train_scheme(
        ctx.repo, ctx.settings.models_dir, ctx.scheme,
        ModelSpec(hidden=cfg.hidden, num_layers=cfg.layers, cutoff=cfg.cutoff),
        TrainConfig(ensemble_size=cfg.ensemble_size, seed=ctx.seed("train"), max_epochs=cfg.max_epochs,
                    patience=cfg.patience, threads=1),
        retrain=cfg.retrain if parent else "scratch", campaign=ctx.campaign, round=ctx.index, parent=parent,
    )
    return {"model_version": record.id, "parent": record.parent, "metrics": {k: v for k, v in record.metrics.items() if isinstance(v, (int, float, str)) or v is None}}


def report(ctx: RoundContext) -> dict[str, Any]:
    from gnomon.campaign.reports.campaign import write_report

    path = write_report(ctx.repo, ctx.settings, ctx.config)
    campaign = ctx.repo.get(Campaign, ctx.campaign)
    if campaign is not None:
        ctx.repo.update_fields("campaigns", ctx.campaign, {"rounds_done": max(campaign.rounds_done, ctx.index + 1),
                                                             "updated_at": utcnow().isoformat()})
    return {"report": str(path)}


# -- the round, as one table ---------------------------------------------------------------------
GENERATORS: dict[str, Callable[[RoundContext], dict[str, Any]]] = {"saps": generate_saps, "random": generate_random}


def generate(ctx: RoundContext) -> dict[str, Any]:
    """Every generator in turn, outputs keyed by generator (the Prefect flow runs them side by side)."""
    return {name: fn(ctx) for name, fn in GENERATORS.items()}


STEP_FUNCTIONS: dict[str, Callable[[RoundContext], dict[str, Any]]] = {
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
"""The steps of a round, in the order they run: the one list every caller reads."""

STEPS: tuple[str, ...] = tuple(STEP_FUNCTIONS)
