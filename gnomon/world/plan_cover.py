"""Planning a cover: a few small, cheap structures for each system it adds (cation–anion and
cation–cation binaries, A–B–X ternaries).

Per system: SAPS on pymatgen's prototype library and on the world's binary compounds
near their hull, random search where substitution finds too few (the grow's planner,
:func:`gnomon.world.plan_grow.plan_grow_wave`, on cells of at most ``COVER_MAX_SITES``
sites). Of what it draws, charge-balanced compositions come first and small cells before big
ones, with a quarter of the places kept for off-stoichiometric compositions (a hull needs
them too); inputs the oracle would refuse (:func:`gnomon.world.oracle.oracle_input`) are
never drawn.
"""

from __future__ import annotations

import warnings
from typing import Any

from pymatgen.core import Composition, Structure

from gnomon.world.plan import Planned
from gnomon.world.plan_grow import GROW_NEAR_HULL, balanced_formulas, plan_grow_wave

COVER_MAX_SITES = 8  # sites per cell at most: cheap for the oracle
COVER_WAVE = 0  # the wave of a cover's rows: the known chemistry a campaign starts from
DRAW_FACTOR = 3  # structures drawn per one kept, to choose balanced and small ones from


def _balanced_first(drawn: list[Planned], balanced: set[str], need: int) -> list[Planned]:
    """``need`` of ``drawn``: charge-balanced compositions first, smaller cells first, at
    least a quarter of the places (where there are such) for the other compositions."""
    def formula(p: Planned) -> str:
        return Structure.from_dict(p.structure).composition.reduced_formula

    def size(p: Planned) -> int:
        return len(p.structure["sites"])

    good = sorted((p for p in drawn if formula(p) in balanced), key=size)
    other = sorted((p for p in drawn if formula(p) not in balanced), key=size)
    n_other = min(len(other), max(need // 4, need - len(good)))
    return (good[: need - n_other] + other[:n_other])[:need]


def plan_cover_system(system: str, need: int, existing: list[dict[str, Any]],
                      known: list[tuple[str, Structure]]) -> list[Planned]:
    """Up to ``need`` new structures for ``system``, none matching ``existing``
    (structure dicts already in the world or the cover's plan)."""
    if need <= 0:
        return []
    drawn = plan_grow_wave(system, DRAW_FACTOR * need, existing, known, wave=COVER_WAVE,
                           max_sites=COVER_MAX_SITES)
    balanced = {Composition(f).reduced_formula for f in balanced_formulas(system.split("-"))}
    return _balanced_first(drawn, balanced, need)


CoverJob = tuple[str, int, list[dict[str, Any]], list[tuple[str, dict[str, Any]]]]


def plan_cover_one(args: CoverJob) -> tuple[str, list[Planned]]:
    """One system's plan, in a worker process (structures as dicts, to pickle)."""
    system, need, existing, known = args
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyxtal/spglib chatter on odd draws; not our output
        return system, plan_cover_system(system, need, existing,
                                         [(k, Structure.from_dict(d)) for k, d in known])


def cover_templates(rows: list[dict[str, Any]],
                    held_out: set[str]) -> list[tuple[str, dict[str, Any]]]:
    """The world's small binary and ternary compounds near their hull, as templates (a
    ternary takes those of at most three elements): none of a held-out system (their
    structures stay unseen by whatever trains on the cover)."""
    return [(r["id"], r["relaxed"]) for r in rows
            if 1 <= r["chemsys"].count("-") <= 2 and r["chemsys"] not in held_out
            and r["e_above_hull"] is not None and r["e_above_hull"] <= GROW_NEAR_HULL
            and r["nsites"] <= COVER_MAX_SITES]
