"""What a campaign's relaxations were for: the one count that a run's summary, the per-round
table and the report share.

A campaign stores more relaxations than its rounds' table lists: the table's ``relaxed`` and
``failed`` count the candidates each round selected, but the starting hull (the elemental
references and the known phases, relaxed by the campaign's own engine in its first round)
and an mlip stage's relaxations are calculations of the campaign too. Saying "4 relaxations"
beside a table that sums to 2 reads as a bug; these counts say which is which, and they add
up to what the database holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gnomon.campaign.reports.tables import campaign_rounds
from gnomon.campaign.round_steps import round_finished, with_current_step_names
from gnomon.plural import counted
from gnomon.storage import Repository


@dataclass(frozen=True)
class CampaignCounts:
    """Rounds finished, and the campaign's stored relaxations by what they were for."""

    rounds_done: int
    relaxed: int  # the table's "relaxed", summed over rounds
    failed: int  # the table's "failed", summed over rounds
    starting_hull: int  # elemental references and known phases
    mlip: int  # the mlip stage's relaxations of selected candidates
    stored: int  # every calculation of the campaign in the database

    @property
    def other(self) -> int:
        """Stored relaxations none of the above accounts for (cancelled, or still going)."""
        return max(0, self.stored - self.relaxed - self.failed - self.starting_hull - self.mlip)

    def relaxations_sentence(self) -> str:
        """``3 relaxations stored: 1 candidate relaxed and 0 failed (the table's "relaxed"
        and "failed"), 2 for the starting hull (elements and known phases)``."""
        parts = [f"{counted(self.relaxed, 'candidate')} relaxed and {self.failed} failed "
                 "(the table's \"relaxed\" and \"failed\")",
                 f"{self.starting_hull} for the starting hull (elements and known phases)"]
        if self.mlip:
            parts.append(f"{self.mlip} in the mlip stage")
        if self.other:
            parts.append(f"{self.other} cancelled or not finished")
        return f"{counted(self.stored, 'relaxation')} stored: " + ", ".join(parts)


def campaign_counts(repo: Repository, campaign: str) -> CampaignCounts:
    """The counts of ``campaign`` as stored now."""
    rounds = [with_current_step_names(r) for r in campaign_rounds(repo, campaign)]
    return CampaignCounts(
        rounds_done=sum(1 for r in rounds if round_finished(r)),
        relaxed=sum(int(r.metrics.get("relaxed") or 0) for r in rounds),
        failed=sum(int(r.metrics.get("failed") or 0) for r in rounds),
        starting_hull=sum(_starting_hull(r.outputs.get("references") or {}) for r in rounds),
        mlip=sum(len((r.outputs.get("mlip_relax") or {}).get("calculations", []))
                 for r in rounds),
        stored=repo.count("calculations", {"campaign": campaign}),
    )


def _starting_hull(references: dict[str, Any]) -> int:
    """Relaxations the references step of one round ran: its own, and its mlip stage's."""
    own = sum(len(references.get(k) or ()) for k in ("relaxed", "known", "known_failed"))
    stage = references.get("mlip")
    return own + (_starting_hull(stage) if isinstance(stage, dict) else 0)


__all__ = ["CampaignCounts", "campaign_counts"]
