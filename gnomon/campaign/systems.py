"""The chemical systems of a campaign over many elements, and fair shares between them.

A campaign may name many elements with a maximum arity (``max_arity: 4``): it then explores
every sub-system of 2..max_arity of its elements in one go (8 elements, arity 4: 28 binaries,
56 ternaries, 70 quaternaries). Each system keeps its own hull (a hull is built per chemical
system, as always); what this module adds is the list of systems, which of them SMACT can
charge balance at all, the round-robin order that gives every system its turn at the random
search, and the fair share that stops the first systems of a stream from taking a round's
whole generation budget. Selection quotas per system live in :mod:`gnomon.campaign.selection`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from gnomon.pipeline.generation.compositions import BalanceMode, CompositionGenerator
from gnomon.pipeline.thermo.metrics import HIT_TOL, e_above_previous_hull
from gnomon.storage import Candidate, Phase, Repository

T = TypeVar("T")


def system_compositions(
    systems: Sequence[str],
    max_atoms: int,
    mode: BalanceMode | str = BalanceMode.strict,
    skip: Iterable[str] = (),
) -> dict[str, list[str]]:
    """The charge-balanced reduced formulas of each system that uses all of its elements.

    A system SMACT cannot balance at ``max_atoms`` maps to an empty list: no random search
    goes there (SAPS may still reach it from a template, if ``saps.charge_balance`` is off).
    """
    generator = CompositionGenerator(max_atoms=max_atoms, mode=BalanceMode(mode))
    skipped = set(skip)
    out: dict[str, list[str]] = {}
    for system in systems:
        elements = system.split("-")
        out[system] = (
            [] if len(elements) > max_atoms else list(generator.generate(elements, skip=skipped))
        )
    return out


def feasible_systems(
    systems: Sequence[str], max_atoms: int, mode: BalanceMode | str = BalanceMode.strict
) -> list[str]:
    """The systems that have at least one charge-balanced composition (SMACT, ``mode``)."""
    formulas = system_compositions(systems, max_atoms, mode)
    return [s for s in systems if formulas[s]]


def round_robin(per_system: dict[str, Sequence[T]]) -> Iterator[T]:
    """The first item of every system, then the second of every system, and so on: a round
    that can search only a few compositions spreads them over the systems instead of
    spending them all on the first one."""
    queues = [list(items) for items in per_system.values()]
    for depth in range(max((len(q) for q in queues), default=0)):
        for q in queues:
            if depth < len(q):
                yield q[depth]


def fair_take(
    items: Iterable[T], limit: int, n_systems: int, system: Callable[[T], str]
) -> list[T]:
    """At most ``limit`` items, no system over its fair share ``ceil(limit / n_systems)`` while
    others still have items to give; what the share left unused goes, in stream order, to the
    systems that had more.

    Reads the whole stream (it cannot know otherwise whether a later system comes), holding at
    most ``2 * limit`` items. The result is a pure function of the stream's order, so a round
    takes the same candidates however its generation was split between workers.
    """
    if limit <= 0:
        return []
    share = max(1, math.ceil(limit / max(1, n_systems)))
    taken: list[tuple[int, T]] = []
    overflow: list[tuple[int, T]] = []
    counts: Counter[str] = Counter()
    for position, item in enumerate(items):
        key = system(item)
        if counts[key] < share:
            counts[key] += 1
            taken.append((position, item))
            if len(taken) >= limit:
                break
        elif len(overflow) < limit:
            overflow.append((position, item))
    chosen = taken + overflow[: max(0, limit - len(taken))]
    return [item for _, item in sorted(chosen, key=lambda pair: pair[0])]


def system_breakdown(
    repo: Repository,
    scheme: str,
    candidate_ids: Sequence[str],
    selected_ids: Sequence[str],
    entries: Sequence[Any],
) -> dict[str, dict[str, int]]:
    """One round's counts per chemical system: unique candidates, selected, relaxed, hits
    (on or below the hull as it stood before the round) and new stable phases (on the hull
    now), keyed by system, systems in name order."""
    rows: dict[str, Counter[str]] = {}

    def row(system: str) -> Counter[str]:
        return rows.setdefault(system, Counter())

    chosen = set(selected_ids)
    for start in range(0, len(candidate_ids), 500):
        for c in repo.query(Candidate, {"id": list(candidate_ids[start : start + 500])}):
            row(c.chemsys)["candidates"] += 1
            row(c.chemsys)["selected"] += c.id in chosen
    prev = e_above_previous_hull(repo, scheme, entries) if entries else {}
    stable = (
        {p.id for p in repo.query(Phase, {"id": [e.id for e in entries]}) if p.is_stable}
        if entries
        else set()
    )
    for e in entries:
        r = row(e.chemsys)
        r["relaxed"] += 1
        r["hits"] += prev.get(e.id) is not None and prev[e.id] <= HIT_TOL
        r["new_stable"] += e.id in stable
    keys = ("candidates", "selected", "relaxed", "hits", "new_stable")
    return {s: {k: int(rows[s][k]) for k in keys} for s in sorted(rows)}
