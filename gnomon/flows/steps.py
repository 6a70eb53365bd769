"""The steps of one discovery round, as plain functions over the database.

Each step reads what earlier steps stored, does its work, and returns a small JSON-able
record of its outputs; ``run_step`` stores that record and marks the step done on the Round
document in one write. A rerun after a crash skips every step marked done and repeats the
first unfinished one, which is written to be repeatable: generation is seeded, candidates,
calculations and entries are keyed by content, and relaxations already submitted are
re-attached rather than resubmitted. Prefect (``gnomon.flows.round``) only wires these
together; nothing here imports it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from pymatgen.core import Structure

from gnomon.config import CampaignConfig, Settings
from gnomon.storage import (
    CalcState,
    Calculation,
    Campaign,
    Candidate,
    Entry,
    Prediction,
    Repository,
    Round,
    StepState,
    open_repository,
)
from gnomon.storage.documents import utcnow

log = logging.getLogger(__name__)

STEPS = ("references", "generate", "dedup", "screen", "select", "relax", "ingest", "hull", "retrain", "report")


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
        return self.engine.scheme

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
        record = self.repo.get(Round, self.round_id)
        if record is None:
            record = Round(id=self.round_id, campaign=self.campaign, index=self.index,
                           steps={s: StepState.pending for s in STEPS})
            self.repo.insert_new("rounds", [record])
            record = self.repo.get(Round, self.round_id)
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


# -- references ---------------------------------------------------------------------------------
def references(ctx: RoundContext) -> dict[str, Any]:
    """Elemental reference energies: ase's dcdft structures relaxed by the campaign's engine.

    Only elements with no elemental entry in the scheme are relaxed, so this is a no-op
    after the first round (and for a database that already has references).
    """
    from ase.collections import dcdft
    from pymatgen.io.ase import AseAtomsAdaptor

    from gnomon.pipeline.identity import candidate_from_structure

    missing = [el for el in ctx.config.elements if not ctx.repo.count("entries", {"scheme": ctx.scheme, "chemsys": el})]
    if not missing:
        return {"relaxed": []}
    candidates = []
    for el in missing:
        if el not in dcdft.names:
            raise StepError(f"references: ase.collections.dcdft has no structure for {el}")
        structure = AseAtomsAdaptor.get_structure(dcdft[el])
        candidates.append(candidate_from_structure(structure, "reference", campaign=ctx.campaign, round=ctx.index,
                                                   extra={"source": "ase.collections.dcdft"}))
    relax = ctx.relaxations()
    relax.submit(candidates, ctx.engine, ctx.config.dispatch.name, campaign=ctx.campaign, round=ctx.index)
    relax.wait(poll_s=ctx.config.dispatch.poll_interval)
    failed = [c.id for c in candidates if _calc(ctx, c.id).state is not CalcState.done]
    if failed:
        raise StepError(f"references: relaxation of elemental references failed for {failed}")
    return {"relaxed": [c.id for c in candidates]}


def _calc(ctx: RoundContext, candidate_id: str) -> Calculation:
    return ctx.repo.get(Calculation, Calculation.key(candidate_id, ctx.engine.settings_hash))


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


def generate_saps(ctx: RoundContext) -> dict[str, Any]:
    from gnomon.pipeline.generation.candidate_io import write_candidates
    from gnomon.pipeline.generation.saps import SAPSGenerator
    from gnomon.pipeline.generation.templates import make_template, prototype_templates

    cfg = ctx.config.saps
    path = ctx.run_dir / "saps.json"
    if not cfg.enabled or cfg.max_candidates == 0:
        return {"file": None, "count": 0}

    def templates():
        if cfg.database_templates:
            for e in ctx.repo.entries(scheme=ctx.scheme):
                if e.structure is not None and len(e.elements) > 1 and e.nsites <= cfg.max_template_sites:
                    yield make_template(f"entry:{e.id}", Structure.from_dict(e.structure), "database")
        if cfg.prototypes:
            yield from prototype_templates(max_sites=cfg.max_template_sites, max_species=len(ctx.config.elements))

    generator = SAPSGenerator(
        elements=tuple(ctx.config.elements), threshold=cfg.threshold, partial=cfg.partial,
        max_per_template=cfg.max_per_template, charge_balance=cfg.charge_balance,
        seed=ctx.seed("saps"), campaign=ctx.campaign, round=ctx.index,
        max_species=len(ctx.config.elements),
    )
    # substituting every site of a template by one element gives an elemental polymorph; the
    # references already cover the elements, so a compound campaign spends no budget there
    compounds = (c for c in generator.generate(templates()) if "-" in c.chemsys)
    n = write_candidates(path, _new_only(ctx, compounds, cfg.max_candidates))
    return {"file": str(path), "count": n, "skipped_templates": len(generator.skipped)}


def generate_random(ctx: RoundContext) -> dict[str, Any]:
    from gnomon.pipeline.generation.candidate_io import write_candidates
    from gnomon.pipeline.generation.compositions import (
        BalanceMode,
        CompositionGenerator,
        known_formulas,
    )
    from gnomon.pipeline.generation.random_search import RandomSearch

    cfg = ctx.config.random_search
    path = ctx.run_dir / "random.json"
    if not cfg.enabled or cfg.max_compositions == 0:
        return {"file": None, "count": 0}
    comps = CompositionGenerator(
        max_atoms=ctx.config.compositions.max_atoms,
        mode=BalanceMode.relaxed if ctx.config.compositions.relaxed else BalanceMode.strict,
    )
    known = known_formulas(ctx.repo, ctx.config.elements)
    searched: set[str] = set()
    for r in range(ctx.index):
        earlier = ctx.repo.get(Round, Round.key(ctx.campaign, r))
        if earlier is not None:
            searched |= set(earlier.outputs.get("generate", {}).get("random", {}).get("compositions", []))
    formulas = [f for f in comps.generate(ctx.config.elements, skip=known) if f not in searched]
    formulas = formulas[: cfg.max_compositions]
    search = RandomSearch(n_per_composition=cfg.n_per_composition, backend=cfg.backend, max_atoms=cfg.max_atoms,
                          seed=ctx.seed("random"), campaign=ctx.campaign, round=ctx.index)
    n = write_candidates(path, search.generate(formulas))
    return {"file": str(path), "count": n, "compositions": formulas, "failures": len(search.failures)}


# -- dedup --------------------------------------------------------------------------------------
def dedup(ctx: RoundContext) -> dict[str, Any]:
    """Unique candidates of the round, stored; duplicates of the batch or the database dropped."""
    from gnomon.pipeline.dedup import Deduplicator
    from gnomon.pipeline.generation.candidate_io import read_candidates
    from gnomon.pipeline.generation.streaming import chunked

    files = [v["file"] for v in ctx.outputs("generate").values() if isinstance(v, dict) and v.get("file")]
    already = {c.id for c in ctx.repo.query(Candidate, {"campaign": ctx.campaign, "round": ctx.index})
               if c.generator != "reference"}
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
def screen(ctx: RoundContext) -> dict[str, Any]:
    from gnomon.models.ensemble import TTA
    from gnomon.models.registry import ModelRegistry
    from gnomon.models.screening import screen_candidates

    record = ctx.repo.latest_model(scheme=ctx.scheme, kind="gnn")
    ids = ctx.outputs("dedup").get("unique", [])
    if record is None:
        log.info("round %d: no model for %s yet; selection falls back to exploration", ctx.index, ctx.scheme)
        return {"model_version": None, "screened": 0}
    ensemble = ModelRegistry(ctx.repo, ctx.settings.models_dir).load(record)
    done = set(ctx.repo.predictions_for(ids, record.id))
    todo = [c for c in ctx.repo.query(Candidate, {"id": ids}) if c.id not in done]
    stats = screen_candidates(ctx.repo, todo, ensemble, record.id, ctx.scheme,
                              tta=TTA() if ctx.config.model.tta else None,
                              campaign=ctx.campaign, round=ctx.index)
    return {"model_version": record.id, "screened": len(done) + stats.written, "rejected": stats.reasons}


def select(ctx: RoundContext) -> dict[str, Any]:
    from gnomon.pipeline.selection import Scored, make_policy

    cfg = ctx.config.selection
    ids = ctx.outputs("dedup").get("unique", [])
    version = ctx.outputs("screen").get("model_version")
    candidates = {c.id: c for c in ctx.repo.query(Candidate, {"id": ids})}
    preds = ctx.repo.predictions_for(ids, version) if version else {}
    scored = [
        Scored(cid, preds[cid].e_above_hull if cid in preds else None, preds[cid].sigma if cid in preds else 0.0,
               group=candidates[cid].template_id or candidates[cid].reduced_formula)
        for cid in ids if cid in candidates
    ]
    common = dict(budget=cfg.budget, max_per_group=cfg.max_per_group, seed=ctx.config.seed)
    if version is None:
        policy = make_policy("random", **common)
    elif cfg.policy == "threshold":
        policy = make_policy("threshold", threshold=cfg.threshold, exploration=cfg.exploration, **common)
    elif cfg.policy == "uncertainty":
        policy = make_policy("uncertainty", k=cfg.k, exploration=cfg.exploration, **common)
    else:
        policy = make_policy(cfg.policy, exploration=cfg.exploration, **common) if cfg.policy != "random" else make_policy("random", **common)
    chosen = policy.select(scored, round_index=ctx.index)
    return {"policy": policy.name, "selected": [c.candidate_id for c in chosen]}


# -- relax, ingest, hull ------------------------------------------------------------------------
def relax(ctx: RoundContext) -> dict[str, Any]:
    selected = ctx.outputs("select").get("selected", [])
    if not selected:
        return {"calculations": []}
    candidates = list(ctx.repo.query(Candidate, {"id": selected}))
    service = ctx.relaxations()
    service.submit(candidates, ctx.engine, ctx.config.dispatch.name, campaign=ctx.campaign, round=ctx.index)
    service.wait(poll_s=ctx.config.dispatch.poll_interval)
    calcs = [_calc(ctx, cid) for cid in selected]
    return {
        "calculations": [c.id for c in calcs if c is not None],
        "done": sum(1 for c in calcs if c is not None and c.state is CalcState.done),
        "failed": sum(1 for c in calcs if c is not None and c.state is CalcState.failed),
    }


def ingest(ctx: RoundContext) -> dict[str, Any]:
    """Make sure every finished relaxation of the round has its entry on the hull."""
    calc_ids = ctx.outputs("relax").get("calculations", [])
    calcs = list(ctx.repo.query(Calculation, {"id": calc_ids}))
    missing = [c for c in calcs if c.state is CalcState.done and c.entry_id is None]
    if missing:
        ctx.relaxations().collect(missing)
        calcs = list(ctx.repo.query(Calculation, {"id": calc_ids}))
    entries = [c.entry_id for c in calcs if c.entry_id]
    failed = {c.id: c.failure_reason for c in calcs if c.state is CalcState.failed}
    return {"entries": entries, "failed": failed}


def hull(ctx: RoundContext) -> dict[str, Any]:
    """Per-round metrics against the hull as it stood before the round."""
    from gnomon.pipeline.metrics import round_metrics

    out = ctx.round().outputs
    entries = list(ctx.repo.query(Entry, {"id": out.get("ingest", {}).get("entries", [])}))
    version = out.get("screen", {}).get("model_version")
    preds: dict[str, Prediction] = {}
    if version:
        preds = ctx.repo.predictions_for([e.candidate_id for e in entries if e.candidate_id], version)
    counts = {
        "generated": out.get("dedup", {}).get("generated", 0),
        "unique": len(out.get("dedup", {}).get("unique", [])),
        "screened": out.get("screen", {}).get("screened", 0),
        "selected": len(out.get("select", {}).get("selected", [])),
    }
    metrics = round_metrics(ctx.repo, ctx.scheme, entries, preds, counts, len(out.get("ingest", {}).get("failed", {})))
    metrics["policy"] = out.get("select", {}).get("policy")
    metrics["model_version"] = version
    ctx.repo.update_fields("rounds", ctx.round_id, {"metrics": metrics})
    return metrics


# -- retrain and report -------------------------------------------------------------------------
def retrain(ctx: RoundContext) -> dict[str, Any]:
    from gnomon.models.ensemble import ModelSpec
    from gnomon.models.training import TrainConfig, train_scheme

    cfg = ctx.config.model
    n = ctx.repo.count("entries", {"scheme": ctx.scheme})
    if n < cfg.min_entries:
        return {"model_version": None, "reason": f"{n} entries < min_entries={cfg.min_entries}"}
    record, _ = train_scheme(
        ctx.repo, ctx.settings.models_dir, ctx.scheme,
        ModelSpec(hidden=cfg.hidden, num_layers=cfg.layers, cutoff=cfg.cutoff),
        TrainConfig(ensemble_size=cfg.ensemble_size, seed=ctx.seed("train"), max_epochs=cfg.max_epochs,
                    patience=cfg.patience, threads=1),
        retrain=cfg.retrain, campaign=ctx.campaign, round=ctx.index,
    )
    return {"model_version": record.id, "metrics": {k: v for k, v in record.metrics.items() if isinstance(v, (int, float, str)) or v is None}}


def report(ctx: RoundContext) -> dict[str, Any]:
    from gnomon.flows.report import write_report

    path = write_report(ctx.repo, ctx.settings, ctx.config)
    campaign = ctx.repo.get(Campaign, ctx.campaign)
    if campaign is not None:
        ctx.repo.update_fields("campaigns", ctx.campaign, {"rounds_done": max(campaign.rounds_done, ctx.index + 1),
                                                             "updated_at": utcnow().isoformat()})
    return {"report": str(path)}
