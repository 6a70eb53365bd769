"""A campaign's own page (what each round found) and the comparison of two campaigns.

Each round lists the phases its relaxations produced (the round's ``ingest`` output) that were
below the hull when they arrived or are on it now, linked to their pages. Two campaigns on the
same chemical space compare by what their oracle calls bought: the hit rate over all rounds
(relaxations that landed on or below the hull as it stood before their round) and the stable
phases found per oracle call (a relaxation, failed ones included, as the budget counts them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gnomon.campaign.reports import metric_rows
from gnomon.pipeline.thermo.known import phase_origins
from gnomon.pipeline.thermo.phase_query import PhaseQuery, phase_row
from gnomon.serve.explorer.views import NotFound, campaign_chemsys
from gnomon.storage import Campaign, Entry, Phase, Repository, Round


@dataclass
class RoundFinds:
    index: int
    metrics: dict[str, Any]
    relaxed: int
    found: list[dict[str, Any]]  # phase rows: below the hull on arrival or on it now


@dataclass
class CampaignPage:
    campaign: Campaign
    chemsys: str | None
    rounds: list[RoundFinds]
    others: list[str] = field(default_factory=list)  # campaigns it can be compared with


def _rows(repo: Repository, ids: list[str]) -> list[dict[str, Any]]:
    phases = {p.id: p for p in repo.query(Phase, {"id": ids})} if ids else {}
    entries = {e.id: e for e in repo.query(Entry, {"id": ids})} if ids else {}
    return [phase_row(phases[i], entries.get(i)) for i in ids if i in phases]


def campaign_page(repo: Repository, name: str) -> CampaignPage:
    campaign = repo.get(Campaign, name)
    if campaign is None:
        raise NotFound(f"no campaign {name!r}")
    metrics = {r["round"]: r for r in metric_rows(repo, name)}
    rounds = sorted(repo.query(Round, {"campaign": name}), key=lambda r: r.index)
    out = []
    for rnd in rounds:
        rows = _rows(repo, list(rnd.outputs.get("ingest", {}).get("entries", [])))
        origins = phase_origins(repo, rows) if rows else []
        found = [r for r, o in zip(rows, origins, strict=True)
                 if o == "campaign" and (r["stable_at_ingest"] or r["is_stable"])]
        found.sort(key=lambda r: (not r["is_stable"], r["e_above_hull"] or 0.0, r["formula"]))
        out.append(RoundFinds(rnd.index, metrics.get(rnd.index, {}), len(rows), found))
    others = sorted(c.name for c in repo.query(Campaign) if c.name != name)
    return CampaignPage(campaign, campaign_chemsys(campaign), out, others)


@dataclass
class CampaignTotals:
    name: str
    chemsys: str | None
    schemes: list[str]
    rounds: int
    oracle_calls: int
    relaxed: int
    hits: int
    stable_found: int  # the campaign's own phases on the hull now
    new_stable: int  # summed over rounds: phases below the hull when they arrived

    @property
    def hit_rate(self) -> float | None:
        return self.hits / self.relaxed if self.relaxed else None

    @property
    def stable_per_call(self) -> float | None:
        return self.stable_found / self.oracle_calls if self.oracle_calls else None


def campaign_totals(repo: Repository, name: str) -> CampaignTotals:
    campaign = repo.get(Campaign, name)
    if campaign is None:
        raise NotFound(f"no campaign {name!r}")
    rows = metric_rows(repo, name)
    relaxed = sum(int(r.get("relaxed") or 0) for r in rows)
    failed = sum(int(r.get("failed") or 0) for r in rows)
    hits = sum(int(r.get("stable_vs_previous") or 0) for r in rows)
    schemes = sorted(repo.distinct("entries", "scheme", {"campaign": name}))
    chemsys = campaign_chemsys(campaign)
    stable = [r["id"] for s in schemes
              for r in PhaseQuery(chemsys=chemsys, scheme=s, stable=True).run(repo)]
    mine = _rows(repo, [e.id for e in repo.query(Entry, {"id": stable, "campaign": name})])
    found = [r for r, o in zip(mine, phase_origins(repo, mine), strict=True) if o == "campaign"]
    return CampaignTotals(
        name=name, chemsys=chemsys, schemes=schemes,
        rounds=len(rows), oracle_calls=relaxed + failed, relaxed=relaxed, hits=hits,
        stable_found=len(found), new_stable=sum(int(r.get("new_stable") or 0) for r in rows),
    )
