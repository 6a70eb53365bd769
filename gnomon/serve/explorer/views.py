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
from gnomon.pipeline.thermo.phase_query import PhaseQuery, normalise_chemsys, phase_row
from gnomon.storage import Campaign, Entry, Phase, Repository
from gnomon.storage.chemsys import chemsys_of

NEAR_STABLE = 0.2  # eV/atom listed by default on a system page; the hull plot shows as much
MAX_ROWS = 5000  # a system page lists at most this many phases
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
    rows: list[dict[str, Any]]
    n_phases: int  # phases of this scheme in the whole space, listed or not
    n_stable: int
    truncated: bool = False
    plottable: bool = field(init=False)

    def __post_init__(self) -> None:
        self.plottable = 2 <= len(self.chemsys.split("-")) <= 4

    @property
    def n_elements(self) -> int:
        return len(self.chemsys.split("-"))


def schemes_in(repo: Repository, chemsys: str) -> list[str]:
    return sorted(repo.distinct("entries", "scheme", {"chemsys": subsystems(chemsys)}))


def system_view(
    repo: Repository, chemsys: str, scheme: str | None, within: float = NEAR_STABLE
) -> SystemView:
    """The phases of one energy scheme in a chemical space; hulls never mix schemes, so a
    page shows one scheme at a time (the first by name unless one is asked for)."""
    chemsys = normalise_chemsys(chemsys)
    schemes = schemes_in(repo, chemsys)
    if not schemes:
        raise NotFound(f"no entries in {chemsys}")
    if scheme is None:
        scheme = schemes[0]
    elif scheme not in schemes:
        raise NotFound(f"no entries of scheme {scheme!r} in {chemsys} "
                       f"(schemes here: {', '.join(schemes)})")
    if math.isnan(within) or within < 0:
        raise ValueError(f"within must be a non-negative number of eV/atom, not {within}")
    limit = None if math.isinf(within) else within
    query = PhaseQuery(chemsys=chemsys, scheme=scheme, max_e_above_hull=limit,
                       limit=MAX_ROWS + 1)
    rows = query.run(repo)
    systems = subsystems(chemsys)
    return SystemView(
        chemsys=chemsys, schemes=schemes, scheme=scheme, within=within, rows=rows[:MAX_ROWS],
        truncated=len(rows) > MAX_ROWS,
        n_phases=repo.count("phases", {"scheme": scheme, "chemsys": systems}),
        n_stable=repo.count("phases", {"scheme": scheme, "chemsys": systems, "is_stable": True}),
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
