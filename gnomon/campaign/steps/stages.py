"""The fidelity stages of a round (config ``stages``): ``mlip_relax``, ``mlip_ingest`` and
``mlip_gate``.

With ``[screen, mlip, dft]`` the selected candidates are relaxed by the universal potential,
ingested into its own scheme's hull, and only those within ``mlip_e_above_hull`` of that hull
(with ``mlip_calibrate``: of the campaign's own hull, the mlip energies calibrated into the
campaign's scheme, :mod:`gnomon.pipeline.thermo.calibration`) go on, as new candidates
holding the ML-relaxed structure, to the campaign's engine (the ``relax`` and ``ingest``
steps). With the default ``[screen, dft]`` these steps do nothing. A
crash between stages resumes like a crash between any two steps.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pymatgen.core import Composition, Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from gnomon.campaign.steps.context import RoundContext
from gnomon.campaign.steps.relaxation import ingest_calculations, relax_with
from gnomon.pipeline.generation.identity import candidate_from_structure
from gnomon.pipeline.thermo.calibration import (
    Calibration,
    CalibrationError,
    Pair,
    fit_calibration,
)
from gnomon.pipeline.thermo.hull import HullEngine
from gnomon.storage import Candidate, Entry, Phase

log = logging.getLogger(__name__)

#: The generator recorded on a candidate that holds an earlier stage's relaxed structure.
STAGE_GENERATOR = "mlip"
#: Å: an ML-relaxed structure is idealised to the space group it has within this tolerance
#: before DFT starts from it (``dft_start``).
DFT_START_SYMPREC = 0.01
SKIPPED = {"skipped": "no mlip stage"}


def mlip_relax(ctx: RoundContext) -> dict[str, Any]:
    """The mlip stage: the selected candidates relaxed by the universal potential.

    With ``mlip_unscreened``, the candidates the screen could not judge that ``select`` drew
    are relaxed with the selection. With ``mlip_fill``, while fewer of its entries pass the
    gate than the dft stage takes, the next ``selection.budget`` of the selection's reserve
    are relaxed too (at most ``mlip_fill`` times). Repeatable: a rerun re-attaches the stored
    relaxations, judges them the same way and so relaxes the same chunks."""
    if not ctx.config.staged:
        return dict(SKIPPED)
    engine = ctx.stage_engines()["mlip"]
    chosen = ctx.outputs("select")
    chunks = [chosen.get("selected", []) + chosen.get("unscreened", [])]
    budget = ctx.config.selection.budget
    more = chosen.get("reserve", []) if ctx.config.mlip_fill else []
    chunks += [more[i:i + budget] for i in range(0, len(more), budget)]
    need = ctx.config.mlip_dft_budget or budget
    calcs: list[str] = []
    relaxed: list[str] = []
    done = failed = 0
    for k, chunk in enumerate(chunks):
        out = relax_with(ctx, chunk, engine)
        calcs += out["calculations"]
        relaxed += chunk
        done, failed = done + out.get("done", 0), failed + out.get("failed", 0)
        if k == len(chunks) - 1:
            break
        passing = len(gate_passing(ctx, ingest_calculations(ctx, calcs)["entries"]))
        if passing >= need:
            break
        log.info("round %d: %d of %d mlip entries pass the gate, %d wanted: relaxing %d more",
                 ctx.index, passing, len(relaxed), need, len(chunks[k + 1]))
    out = {"scheme": engine.scheme, "calculations": calcs, "done": done, "failed": failed}
    if len(chunks) > 1:
        out["filled"] = {"relaxed": relaxed, "chunks": k + 1, "wanted": need}
    return out


def mlip_ingest(ctx: RoundContext) -> dict[str, Any]:
    """The mlip stage's entries on the mlip scheme's own hull."""
    if not ctx.config.staged:
        return dict(SKIPPED)
    return ingest_calculations(ctx, ctx.outputs("mlip_relax").get("calculations", []))


def mlip_gate(ctx: RoundContext) -> dict[str, Any]:
    """Who goes on to the dft stage: mlip entries within ``mlip_e_above_hull`` of the mlip
    hull (as it stands with the whole round ingested), each as a new candidate holding its
    ML-relaxed structure (idealised to its space group, ``dft_start``), its parents recorded
    (``parent_candidate_id``, ``parent_entry_id``).

    Repeatable: the new candidates are keyed by their structure, so a rerun finds them."""
    if not ctx.config.staged:
        return dict(SKIPPED)
    limit = ctx.config.mlip_e_above_hull
    entries, gated, calibration = gated_entries(ctx, ctx.outputs("mlip_ingest").get("entries", []))
    parent_ids = [e.candidate_id for e in entries if e.candidate_id]
    parents = {c.id: c for c in ctx.repo.query(Candidate, {"id": parent_ids})}
    going = [e.id for e in within_gate(entries, gated, limit)]
    over = going[ctx.config.mlip_dft_budget:] if ctx.config.mlip_dft_budget else []
    going_now = set(going) - set(over)
    passed, paths, held_back = [], [], {}
    for e in sorted(entries, key=lambda e: e.id):
        e_hull = gated.get(e.id)
        if e.id not in going_now:
            held_back[e.id] = e_hull
            continue
        child = dft_candidate(ctx, e, parents.get(e.candidate_id), e_hull)
        ctx.repo.add_candidates([child])
        passed.append(child.id)
        paths.append({"candidate": e.candidate_id, "mlip_entry": e.id, "dft_candidate": child.id})
    passed = list(dict.fromkeys(passed))
    log.info("round %d: %d of %d mlip entries within %.3f eV/atom of the %s hull go on to dft",
             ctx.index, len(passed), len(entries), limit,
             ctx.scheme if calibration.get("fit") else ctx.mlip_engine.scheme)
    return {"threshold": limit, "passed": passed, "held_back": held_back, "paths": paths,
            **({"over_dft_budget": over} if over else {}),
            **({"calibration": calibration} if calibration else {})}


def within_gate(entries: list[Entry], gated: dict[str, float | None],
                limit: float) -> list[Entry]:
    """The entries within ``limit`` of the hull they are gated on, the nearest first (ties by
    id): the order the dft stage's budget takes them in."""
    return sorted((e for e in entries if e.structure is not None
                   and gated.get(e.id) is not None and gated[e.id] <= limit),
                  key=lambda e: (gated[e.id], e.id))


def gate_passing(ctx: RoundContext, entry_ids: list[str]) -> list[Entry]:
    """The mlip entries ``entry_ids`` that the gate would pass now, nearest the hull first."""
    entries, gated, _ = gated_entries(ctx, entry_ids)
    return within_gate(entries, gated, ctx.config.mlip_e_above_hull)


def gated_entries(ctx: RoundContext, entry_ids: list[str]
                  ) -> tuple[list[Entry], dict[str, float | None], dict[str, Any]]:
    """The stored mlip entries ``entry_ids``, the e_above_hull each is gated on, and the
    calibration's record (:func:`gate_values`)."""
    entries = list(ctx.repo.query(Entry, {"id": entry_ids}))
    phases = {p.id: p for p in ctx.repo.query(Phase, {"id": [e.id for e in entries]})}
    gated, calibration = gate_values(ctx, entries, phases)
    return entries, gated, calibration


def gate_values(ctx: RoundContext, entries: list[Entry],
                phases: dict[str, Phase]) -> tuple[dict[str, float | None], dict[str, Any]]:
    """The e_above_hull each mlip entry is gated on, and the record of the calibration used.

    Without ``mlip_calibrate``: its place on the mlip scheme's own hull. With it: its energy
    calibrated into the campaign's scheme, on the campaign's hull (None where the calibration
    lacks an element or that hull an elemental reference). Where no calibration can be had
    (too few pairs yet), the mlip hull's figure, and the record says why."""
    own = {e.id: (phases[e.id].e_above_hull if e.id in phases else None) for e in entries}
    if not ctx.config.mlip_calibrate:
        return own, {}
    try:
        calibration = stage_calibration(ctx)
    except CalibrationError as exc:
        log.warning("round %d: mlip gate uncalibrated: %s", ctx.index, exc)
        return own, {"fit": None, "why": str(exc)}
    hull = HullEngine(ctx.repo)
    values = {
        e.id: (hull.e_above_hull(ctx.scheme, e.reduced_formula,
                                 calibration.energy_per_atom(e.reduced_formula,
                                                             e.energy_per_atom))
               if calibration.covers(e.reduced_formula) else None)
        for e in entries
    }
    return values, {"fit": calibration.as_dict(), "mlip_e_above_hull": own}


def stage_calibration(ctx: RoundContext) -> Calibration:
    """The calibration of the mlip scheme into the campaign's: the stored one the config
    names, else a fit on the campaign's own pairs (each dft entry and the mlip entry it
    started from), the config's excluded systems left out. CalibrationError when too few."""
    path = ctx.config.mlip_calibration
    if path is not None:
        return Calibration.from_dict(json.loads(path.read_text()))
    dft = [e for e in ctx.repo.query(Entry, {"scheme": ctx.scheme, "campaign": ctx.campaign})
           if e.parent_entry_id]
    parents = {e.id: e for e in ctx.repo.query(Entry, {"id": [d.parent_entry_id for d in dft]})}
    pairs = [Pair(d.id, Composition(d.reduced_formula),
                  parents[d.parent_entry_id].energy_per_atom, d.energy_per_atom)
             for d in dft if d.parent_entry_id in parents]
    return fit_calibration(pairs, source_scheme=ctx.mlip_engine.scheme, target_scheme=ctx.scheme,
                           exclude=ctx.config.mlip_calibration_exclude)


def dft_candidate(ctx: RoundContext, e: Entry, parent: Candidate | None,
                  e_hull: float) -> Candidate:
    """The candidate the dft stage relaxes for the mlip entry ``e``: its structure idealised,
    its parents (the candidate screened, the mlip entry) recorded."""
    return candidate_from_structure(
        dft_start(Structure.from_dict(e.structure)), STAGE_GENERATOR, campaign=ctx.campaign,
        round=ctx.index, template_id=parent.template_id if parent else None,
        substitution=parent.substitution if parent else None,
        parent_candidate_id=e.candidate_id, parent_entry_id=e.id,
        extra={"stage": "mlip", "scheme": e.scheme, "e_above_hull": e_hull},
    )


def dft_start(relaxed: Structure, symprec: float = DFT_START_SYMPREC) -> Structure:
    """The structure DFT starts from: the ML-relaxed one, idealised to its space group.

    A universal potential stops at forces of a few 0.01 eV/Å, leaving a cell a hair off its
    symmetry; pw.x then finds symmetry operations that are not quite orthogonal and stops
    (``checkallsym: not orthogonal operation``). The idealised primitive standard cell has the
    same crystal, at most as many sites, and exact symmetry. Left as relaxed when spglib finds
    no cell.
    """
    try:
        ideal = SpacegroupAnalyzer(relaxed, symprec=symprec).get_primitive_standard_structure()
    except (ValueError, TypeError) as exc:  # spglib: no symmetry dataset for this cell
        log.warning("%s: left as relaxed (%s)", relaxed.composition.reduced_formula, exc)
        return relaxed
    same = (ideal is not None and ideal.composition.reduced_composition
            == relaxed.composition.reduced_composition)
    return ideal if same else relaxed
