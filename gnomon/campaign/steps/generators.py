"""The ``generate`` step: SAPS and the random search, each a lazy stream of candidates.

The streams are also what the streaming funnel (``gnomon.campaign.steps.funnel``) reads; a
round that streams writes no generator file here. Both run through the round's fan-out.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from pymatgen.core import Structure

from gnomon.campaign.steps.context import RoundContext, Step
from gnomon.campaign.steps.screening import streams
from gnomon.campaign.systems import fair_take, round_robin, system_compositions
from gnomon.pipeline.generation.candidate_io import write_candidates
from gnomon.pipeline.generation.compositions import (
    BalanceMode,
    CompositionGenerator,
    known_formulas,
)
from gnomon.pipeline.generation.physical import PhysicalCheck
from gnomon.pipeline.generation.random_search import RandomSearch
from gnomon.pipeline.generation.saps import SAPSGenerator
from gnomon.pipeline.generation.streaming import chunked
from gnomon.pipeline.generation.templates import Template, make_template, prototype_templates
from gnomon.storage import Candidate, Round
from gnomon.storage.chemsys import arity


def physical(stream: Iterator[Candidate], check: PhysicalCheck | None) -> Iterator[Candidate]:
    """``stream`` through the round's physical check (config ``physical``), if it is on."""
    return stream if check is None else check.candidates(stream)


def physical_check(ctx: RoundContext) -> PhysicalCheck | None:
    """A fresh check for one step's streams (its counts go into that step's record)."""
    cfg = ctx.config.physical
    if not cfg.enabled:
        return None
    return PhysicalCheck(rescale=cfg.rescale, min_pair_fraction=cfg.min_pair_fraction)


def _new_only(ctx: RoundContext, candidates: Iterator[Candidate], limit: int,
              chunk: int = 200) -> Iterator[Candidate]:
    """Candidates not stored yet, at most ``limit``: deterministic generators give the same
    first structures every round, and a round should bring new ones."""
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


def _max_arity(ctx: RoundContext) -> int:
    elements = len(ctx.config.elements)
    return min(ctx.config.max_arity or elements, elements)


def saps_templates(ctx: RoundContext, max_arity: int) -> Iterator[Template]:
    """SAPS templates: the scheme's stored entries of 2..``max_arity`` elements, then the
    prototypes (as the config switches them on), small enough for the config."""
    cfg = ctx.config.saps
    if cfg.database_templates:
        for e in ctx.repo.entries(scheme=ctx.scheme):
            if (e.structure is not None and 1 < len(e.elements) <= max_arity
                    and e.nsites <= cfg.max_template_sites):
                yield make_template(f"entry:{e.id}", Structure.from_dict(e.structure), "database")
    if cfg.prototypes:
        yield from prototype_templates(max_sites=cfg.max_template_sites, max_species=max_arity)


def saps_source(ctx: RoundContext, check: PhysicalCheck | None = None
                ) -> tuple[Iterator[Candidate], SAPSGenerator]:
    """The round's SAPS compounds as a lazy stream, and the generator (its ``skipped``
    templates fill as the stream is read). Templates come from every system of the scheme in
    the database; in a campaign over many systems (max_arity) only those an outcome of at most
    max_arity elements can come from."""
    cfg = ctx.config.saps
    max_arity = _max_arity(ctx)
    generator = SAPSGenerator(
        elements=tuple(ctx.config.elements), threshold=cfg.threshold, partial=cfg.partial,
        max_per_template=cfg.max_per_template, charge_balance=cfg.charge_balance,
        seed=ctx.seed("saps"), campaign=ctx.campaign, round=ctx.index,
        max_species=max_arity,
    )
    # substituting every site of a template by one element gives an elemental polymorph; the
    # references already cover the elements, so a compound campaign spends no budget there
    outcomes = ctx.fan_out.saps(generator, saps_templates(ctx, max_arity))
    compounds = (c for c in outcomes if 1 < arity(c.chemsys) <= max_arity)
    return physical(compounds, check), generator


def _writes_nothing(ctx: RoundContext, enabled: bool) -> dict[str, Any] | None:
    """The output of a generator that writes no file this round (switched off, or read by the
    streaming funnel in the dedup step instead), else None."""
    if not enabled:
        return {"file": None, "count": 0}
    if streams(ctx):
        return {"file": None, "count": 0, "streamed": True}
    return None


def generate_saps(ctx: RoundContext) -> dict[str, Any]:
    cfg = ctx.config.saps
    path = ctx.run_dir / "saps.json"
    if (idle := _writes_nothing(ctx, cfg.enabled and cfg.max_candidates > 0)) is not None:
        return idle
    check = physical_check(ctx)
    compounds, generator = saps_source(ctx, check)
    if ctx.config.max_arity is None:
        kept = _new_only(ctx, compounds, cfg.max_candidates)
    else:  # many systems: each its fair share of the round's candidates
        kept = fair_take(_new_only(ctx, compounds, 1 << 62), cfg.max_candidates,
                         len(ctx.config.systems), system=lambda c: c.chemsys)
    n = write_candidates(path, kept)
    return {"file": str(path), "count": n, "skipped_templates": len(generator.skipped),
            **_physical_counts(check)}


def _physical_counts(check: PhysicalCheck | None) -> dict[str, Any]:
    return {} if check is None else {"physical": check.counts()}


def searched_compositions(ctx: RoundContext) -> set[str]:
    """The compositions earlier rounds of the campaign searched (by file or by funnel)."""
    searched: set[str] = set()
    for r in range(ctx.index):
        earlier = ctx.repo.get(Round, Round.key(ctx.campaign, r))
        if earlier is not None:
            out = earlier.outputs
            searched |= set(out.get("generate", {}).get("random", {}).get("compositions", []))
            searched |= set(out.get("dedup", {}).get("funnel", {}).get("compositions", []))
    return searched


def random_source(ctx: RoundContext, check: PhysicalCheck | None = None
                  ) -> tuple[Iterator[Candidate], RandomSearch, list[str]]:
    """The round's random-search candidates as a lazy stream, the search (its ``failures``
    fill as the stream is read) and the compositions searched: those no stored phase and no
    earlier round of the campaign has covered."""
    cfg = ctx.config.random_search
    comps = CompositionGenerator(
        max_atoms=ctx.config.compositions.max_atoms,
        mode=BalanceMode.relaxed if ctx.config.compositions.relaxed else BalanceMode.strict,
    )
    known = known_formulas(ctx.repo, ctx.config.elements)
    searched = searched_compositions(ctx)
    if ctx.config.max_arity is None:
        formulas = [f for f in comps.generate(ctx.config.elements, skip=known)
                    if f not in searched]
    else:  # many systems: the charge-balanced compositions of each, the systems taking turns
        per_system = system_compositions(ctx.config.systems, comps.max_atoms, comps.mode,
                                         skip=known | searched)
        formulas = list(itertools.islice(round_robin(per_system), cfg.max_compositions))
    formulas = formulas[: cfg.max_compositions]
    search = RandomSearch(n_per_composition=cfg.n_per_composition, backend=cfg.backend,
                          max_atoms=cfg.max_atoms, seed=ctx.seed("random"),
                          campaign=ctx.campaign, round=ctx.index)
    return physical(ctx.fan_out.random(search, formulas), check), search, formulas


def generate_random(ctx: RoundContext) -> dict[str, Any]:
    cfg = ctx.config.random_search
    path = ctx.run_dir / "random.json"
    if (idle := _writes_nothing(ctx, cfg.enabled and cfg.max_compositions > 0)) is not None:
        return idle
    check = physical_check(ctx)
    candidates, search, formulas = random_source(ctx, check)
    n = write_candidates(path, candidates)
    return {"file": str(path), "count": n, "compositions": formulas,
            "failures": len(search.failures), **_physical_counts(check)}


GENERATORS: dict[str, Step] = {"saps": generate_saps, "random": generate_random}


def generate(ctx: RoundContext) -> dict[str, Any]:
    """Every generator in turn, outputs keyed by generator (the Prefect flow runs them side by
    side)."""
    return {name: fn(ctx) for name, fn in GENERATORS.items()}

