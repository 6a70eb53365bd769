"""The ``references`` step: the hull a campaign starts from, relaxed by its own engines."""

from __future__ import annotations

import logging
from typing import Any

from ase.collections import dcdft
from pymatgen.io.ase import AseAtomsAdaptor

from gnomon.campaign.steps.context import RoundContext, StepError, calculation, relaxed
from gnomon.dft.engine import RelaxEngine
from gnomon.pipeline.generation.identity import candidate_from_structure
from gnomon.pipeline.thermo.known import known_phases_in
from gnomon.storage import Candidate

log = logging.getLogger(__name__)

#: per relaxing stage: the elemental references and the known compounds still to relax
Todo = dict[str, tuple[list[Candidate], list[Candidate]]]


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
    engines = ctx.stage_engines()
    known_all = known_candidates(ctx)
    todo: Todo = {stage: (missing_elements(ctx, engine),
                          [c for c in known_all if not relaxed(ctx, c.id, engine)])
                  for stage, engine in engines.items()}
    if any(elements or known for elements, known in todo.values()):
        _relax_side_by_side(ctx, todo, engines)
    outputs = {stage: _stage_outputs(ctx, *todo[stage], engine)
               for stage, engine in engines.items()}
    return {**outputs.pop("dft"), **outputs}


def missing_elements(ctx: RoundContext, engine: RelaxEngine) -> list[Candidate]:
    """Candidates for the campaign's elements that have no entry in ``engine``'s scheme."""
    missing = [el for el in ctx.config.elements
               if not ctx.repo.count("entries", {"scheme": engine.scheme, "chemsys": el})]
    elements = []
    for el in missing:
        if el not in dcdft.names:
            raise StepError(f"references: ase.collections.dcdft has no structure for {el}")
        structure = AseAtomsAdaptor.get_structure(dcdft[el])
        elements.append(candidate_from_structure(structure, "reference", campaign=ctx.campaign,
                                                 round=ctx.index,
                                                 extra={"source": "ase.collections.dcdft"}))
    return elements


def _relax_side_by_side(ctx: RoundContext, todo: Todo, engines: dict[str, RelaxEngine]) -> None:
    relax = ctx.relaxations()
    for stage, (elements, known) in todo.items():
        if elements or known:  # queued only: the wait dispatches both stages' in shared packs
            relax.submit(elements + known, engines[stage], ctx.config.dispatch.name,
                         campaign=ctx.campaign, round=ctx.index, dispatch=False)
    relax.wait(poll_s=ctx.config.dispatch.poll_interval)


def _stage_outputs(ctx: RoundContext, elements: list[Candidate], known: list[Candidate],
                   engine: RelaxEngine) -> dict[str, Any]:
    failed = [c.id for c in elements if not relaxed(ctx, c.id, engine)]
    if failed:
        raise StepError(f"references: relaxation of elemental references failed for {failed} "
                        f"({engine.scheme})")
    known_failed = {}
    for c in known:
        if not relaxed(ctx, c.id, engine):
            calc = calculation(ctx, c.id, engine)
            reason = calc.failure_reason if calc is not None else "not relaxed"
            known_failed[c.reduced_formula] = reason
            log.warning("known phase %s (%s) could not be relaxed in %s: %s; the hull goes on "
                        "without it", c.reduced_formula, c.id, engine.scheme, reason)
    return {"relaxed": [c.id for c in elements],
            "known": [c.id for c in known if c.reduced_formula not in known_failed],
            "known_failed": known_failed}


def known_candidates(ctx: RoundContext) -> list[Candidate]:
    """Candidates for the shipped known phases of the campaign's space (none when switched
    off)."""
    if not ctx.config.known_phases:
        return []
    return [
        candidate_from_structure(phase.structure(), "known", campaign=ctx.campaign,
                                 round=ctx.index,
                                 extra={"name": phase.name, "spacegroup": phase.spacegroup,
                                        "source": phase.source})
        for phase in known_phases_in(ctx.config.elements)
    ]
