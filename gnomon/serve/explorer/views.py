"""What each explorer page shows, read from the repository as plain data.

Framework-free, so the numbers a page shows can be tested without a web server, and every
query goes through the repository interface (the same one `gnomon phases` and `gnomon hull`
use) on either backend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pymatgen.core import Structure

from gnomon.campaign.reports import METRIC_COLUMNS, metric_rows
from gnomon.pipeline.spacegroup import stored_spacegroup
from gnomon.pipeline.thermo.hull import subsystems
from gnomon.pipeline.thermo.phase_query import normalise_chemsys, phase_row
from gnomon.storage import Campaign, Entry, Phase, Repository
from gnomon.storage.chemsys import chemsys_of

NEAR_STABLE = 0.2  # eV/atom listed by default on a system page; the hull plot shows as much
PAGE_ROWS = 200  # a system page lists this many phases, nearest the hull first, unless asked
MAX_ROWS = 5000  # ... and at most this many when asked for all
MAX_SITES = 500  # a phase page tabulates at most this many sites
MAX_SYSTEMS = 400  # the campaigns page links at most this many chemical systems


class NotFound(LookupError):
    """What a page asked for is not in the database; the message says what is missing."""


@dataclass
class CampaignView:
    name: str
    status: str
    chemsys: str | None
    rounds_done: int
    stop_reason: str | None
    schemes: list[str]
    rows: list[dict[str, Any]]
    columns: tuple[tuple[str, str], ...] = METRIC_COLUMNS


@dataclass
class HomeView:
    campaigns: list[CampaignView]
    systems: list[str]
    systems_total: int
    schemes: list[str]


def campaign_chemsys(campaign: Campaign) -> str | None:
    elements = campaign.config.get("elements") or []
    return chemsys_of(elements) or None


def home_view(repo: Repository) -> HomeView:
    campaigns = []
    for c in sorted(repo.query(Campaign), key=lambda c: c.created_at, reverse=True):
        campaigns.append(CampaignView(
            name=c.name, status=c.status, chemsys=campaign_chemsys(c), rounds_done=c.rounds_done,
            stop_reason=c.stop_reason,
            schemes=sorted(repo.distinct("entries", "scheme", {"campaign": c.name})),
            rows=metric_rows(repo, c.name),
        ))
    systems = sorted(repo.distinct("phases", "chemsys"), key=lambda s: (s.count("-"), s))
    return HomeView(campaigns=campaigns, systems=systems[:MAX_SYSTEMS], systems_total=len(systems),
                    schemes=repo.schemes())


def campaign_rows(repo: Repository, name: str) -> list[dict[str, Any]]:
    if repo.get(Campaign, name) is None:
        raise NotFound(f"no campaign {name!r}")
    return metric_rows(repo, name)


@dataclass
class SystemView:
    chemsys: str
    schemes: list[str]
    scheme: str
    within: float  # phases up to this e_above_hull (eV/atom) are listed; inf for all
    rows: list[dict[str, Any]]  # the listed phases, nearest the hull first
    window: list[str]  # the ids of every phase within the window (rows lists the first ones)
    n_phases: int  # phases of this scheme in the whole space, listed or not
    n_stable: int
    plottable: bool = field(init=False)

    def __post_init__(self) -> None:
        self.plottable = 2 <= len(self.chemsys.split("-")) <= 4

    @property
    def n_elements(self) -> int:
        return len(self.chemsys.split("-"))

    @property
    def truncated(self) -> bool:
        return len(self.rows) < len(self.window)


def schemes_in(repo: Repository, chemsys: str) -> list[str]:
    return sorted(repo.distinct("entries", "scheme", {"chemsys": subsystems(chemsys)}))


def pick_scheme(repo: Repository, chemsys: str, scheme: str | None) -> tuple[list[str], str]:
    """(the schemes of the space, the one a page shows): the asked-for one, else the first by
    name; NotFound where the space has none, or not that one."""
    schemes = schemes_in(repo, chemsys)
    if not schemes:
        raise NotFound(f"no entries in {chemsys}")
    if scheme is None:
        return schemes, schemes[0]
    if scheme not in schemes:
        raise NotFound(f"no entries of scheme {scheme!r} in {chemsys} "
                       f"(schemes here: {', '.join(schemes)})")
    return schemes, scheme


def system_view(
    repo: Repository, chemsys: str, scheme: str | None, within: float = NEAR_STABLE,
    max_rows: int = PAGE_ROWS,
) -> SystemView:
    """The phases of one energy scheme in a chemical space, within ``within`` eV/atom of the
    hull, nearest first; hulls never mix schemes, so a page shows one scheme at a time (the
    first by name unless one is asked for). Only the first ``max_rows`` are read whole (their
    entries, with structures): a space of 10^5 phases' database holds thousands."""
    chemsys = normalise_chemsys(chemsys)
    schemes, scheme = pick_scheme(repo, chemsys, scheme)
    if math.isnan(within) or within < 0:
        raise ValueError(f"within must be a non-negative number of eV/atom, not {within}")
    # raw documents: only the listed phases become records (thousands would cost seconds)
    phases = list(repo.find("phases", {"scheme": scheme, "chemsys": subsystems(chemsys)}))
    limit = math.inf if math.isinf(within) else within + 1e-12
    window = sorted((p for p in phases if math.isinf(limit)
                     or (p.get("e_above_hull") is not None and p["e_above_hull"] <= limit)),
                    key=lambda p: (p.get("e_above_hull") is None, p.get("e_above_hull") or 0.0,
                                   p["chemsys"].count("-"), p["reduced_formula"]))
    shown = [Phase.from_doc(p) for p in window[:min(max_rows, MAX_ROWS)]]
    entries = {e.id: e for e in repo.query(Entry, {"id": [p.id for p in shown]})} \
        if shown else {}
    return SystemView(
        chemsys=chemsys, schemes=schemes, scheme=scheme, within=within,
        rows=[phase_row(p, entries.get(p.id)) for p in shown],
        window=[p["id"] for p in window], n_phases=len(phases),
        n_stable=sum(1 for p in phases if p.get("is_stable")),
    )


@dataclass
class PhaseView:
    phase: Phase
    entry: Entry | None
    structure: Any | None  # pymatgen Structure, when the entry stored one
    lattice: dict[str, Any] | None
    sites: list[dict[str, Any]]
    n_sites: int
    spacegroup: str | None

    @property
    def row(self) -> dict[str, Any]:
        """The phase as a PhaseQuery row (what the facts and novelty checks read)."""
        return phase_row(self.phase, self.entry)


def phase_view(repo: Repository, phase_id: str) -> PhaseView:
    phase = repo.get(Phase, phase_id)
    if phase is None:
        raise NotFound(f"no phase {phase_id!r}")
    entry = repo.get(Entry, phase_id)
    structure = structure_of(entry)
    lattice = sites = spacegroup = None
    if structure is not None:
        lat = structure.lattice
        lattice = {"abc": lat.abc, "angles": lat.angles, "volume": lat.volume,
                   "matrix": lat.matrix.tolist(), "density": float(structure.density)}
        sites = [{"index": i, "species": site.species_string, "frac": site.frac_coords.tolist(),
                  "cart": site.coords.tolist()} for i, site in enumerate(structure[:MAX_SITES])]
        spacegroup = stored_spacegroup(entry.data, entry.structure)
    return PhaseView(phase=phase, entry=entry, structure=structure, lattice=lattice,
                     sites=sites or [],
                     n_sites=len(structure) if structure is not None else 0,
                     spacegroup=spacegroup)


def structure_of(entry: Entry | None):
    if entry is None or entry.structure is None:
        return None
    return Structure.from_dict(entry.structure)


def phase_structure(repo: Repository, phase_id: str):
    """The relaxed structure of a phase, for downloads; NotFound names what is missing."""
    entry = repo.get(Entry, phase_id)
    if entry is None:
        raise NotFound(f"no phase {phase_id!r}")
    structure = structure_of(entry)
    if structure is None:
        raise NotFound(f"phase {phase_id!r} has no stored structure (its entry is an energy only)")
    return entry, structure


def rows_by_id(repo: Repository, ids: list[str]) -> list[dict[str, Any]]:
    """PhaseQuery rows of the phases ``ids``, in that order (ids without a phase left out)."""
    if not ids:
        return []
    phases = {p.id: p for p in repo.query(Phase, {"id": ids})}
    entries = {e.id: e for e in repo.query(Entry, {"id": ids})}
    return [phase_row(phases[i], entries.get(i)) for i in ids if i in phases]
