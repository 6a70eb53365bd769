"""The novelty of phases, as the explorer's tables and pages show it, remembered.

Novelty is not stored: :mod:`gnomon.pipeline.thermo.novelty` computes it from the stored
structures (StructureMatcher and AMD against the known phases of the space), which takes a
campaign's discovery a good fraction of a second. Each phase's verdict is kept until the
database holds a different number of entries (a newly known phase can change it). Only a
campaign's discoveries are compared at all; every other phase is what its origin says
(``known``: a published phase gnomon ships, ``imported``, ``reference``: an element).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gnomon.pipeline.thermo.known import phase_origins
from gnomon.pipeline.thermo.novelty import Novelty, novelty_of_rows, novelty_text
from gnomon.storage import Repository

_NUMBER = re.compile(r"\((\d+)\)\s*$")


def spacegroup_number(text: str | None) -> int | None:
    """225 of ``Fm-3m (225)`` (what a table sorts space groups by)."""
    match = _NUMBER.search(text or "")
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class NoveltyFact:
    """``flag``: new, known, ordering-of-disordered for a campaign's discovery (unchecked where
    it has no structure to compare); known, imported or reference for a phase that is none.
    ``text`` is the table's cell."""

    flag: str
    text: str
    amd: float | None = None
    nearest_id: str | None = None
    nearest_formula: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"novelty": self.flag, "novelty_text": self.text}

    def details(self, nearest_url: str | None) -> dict[str, Any]:
        """What a phase page shows of it (``nearest_url``: the nearest phase's page, if any)."""
        return {**self.as_json(), "verdict": novelty_line(self),
                "amd": None if self.amd is None else f"{self.amd:.3f}",
                "nearest": f"{self.nearest_formula} {self.nearest_id}" if self.nearest_id
                else None, "nearest_url": nearest_url}


#: what a phase that is no discovery is, by its origin
ORIGINS = {"known": "a published phase gnomon ships, relaxed before the campaign's first round",
           "imported": "an energy imported from elsewhere, not found by a campaign",
           "reference": "an element: a reference of the hull",
           "unchecked": "found by a campaign, but with no structure to compare"}


def novelty_line(fact: NoveltyFact) -> str:
    """The verdict as a phase page words it: ``new (AMD 0.412 Å to LiMn2O4)``, ``imported: an
    energy imported from elsewhere, ...``."""
    if fact.text != fact.flag:
        return fact.text
    return f"{fact.flag}: {ORIGINS[fact.flag]}" if fact.flag in ORIGINS else fact.flag


def novelty_fact(result: Novelty | None, origin: str) -> NoveltyFact:
    if result is None:
        flag = "unchecked" if origin == "campaign" else origin
        return NoveltyFact(flag, novelty_text(None, origin).strip("()"))
    return NoveltyFact(result.flag.value, novelty_text(result, origin), result.amd,
                       result.nearest_id, result.nearest_formula)


class NoveltyCache:
    """Novelty verdicts by phase id, dropped whenever the number of entries changes."""

    def __init__(self) -> None:
        self._facts: dict[str, NoveltyFact] = {}
        self._entries = -1
        self._lock = threading.Lock()
        self._computing = threading.Lock()

    def peek(self, repo: Repository, ids: Sequence[str]) -> dict[str, NoveltyFact]:
        """The verdicts already known of ``ids``; nothing is computed."""
        n = repo.count("entries")
        with self._lock:
            if n != self._entries:
                self._facts.clear()
                self._entries = n
            return {i: self._facts[i] for i in ids if i in self._facts}

    def get(self, repo: Repository, rows: Sequence[dict[str, Any]]) -> dict[str, NoveltyFact]:
        """The verdict on each phase row (``PhaseQuery`` rows, with ``_structure``), by id.

        One check runs at a time: pymatgen's matcher shares state between threads (two at once
        fail with "cannot re-enter the tee iterator"), and a second request for the same
        phases then finds them done."""
        with self._computing:
            known = self.peek(repo, [r["id"] for r in rows])
            todo = [r for r in rows if r["id"] not in known]
            if not todo:
                return known
            origins = dict(zip((r["id"] for r in todo), phase_origins(repo, todo), strict=True))
            found = [r for r in todo if origins[r["id"]] == "campaign"]
            results = novelty_of_rows(repo, found) if found else {}
            fresh = {r["id"]: novelty_fact(results.get(r["id"]), origins[r["id"]]) for r in todo}
            with self._lock:
                self._facts.update(fresh)
        return {**known, **fresh}
