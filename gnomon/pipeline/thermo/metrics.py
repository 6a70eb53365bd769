"""Per-round metrics of a campaign, in GNoME's terms.

Hit rate is measured against the hull *before* the round: the share of this round's
relaxations that landed on or below the hull as it stood when the round began. Model error is
measured on the round's new results with predictions made before the relaxations.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from pymatgen.core import Composition
from pymatgen.entries.computed_entries import ComputedEntry

from gnomon.pipeline.thermo.hull import phase_diagram
from gnomon.pipeline.thermo.hull_geometry import HullGeometry
from gnomon.storage.chemsys import subsystems
from gnomon.storage.documents import Entry, Phase, Prediction
from gnomon.storage.repository import Repository

HIT_TOL = 1e-8


def e_above_previous_hull(
    repo: Repository, scheme: str, entries: Sequence[Entry]
) -> dict[str, float | None]:
    """e_above_hull of each entry against the hull built without every entry in ``entries``."""
    excluded = {e.id for e in entries}
    by_sys: dict[str, list[Entry]] = defaultdict(list)
    for e in entries:
        by_sys[e.chemsys].append(e)
    out: dict[str, float | None] = {}
    for chemsys, group in by_sys.items():
        pool = [
            ComputedEntry(Composition(d["composition"]), d["energy"], entry_id=d["id"])
            for d in repo.find("entries", {"scheme": scheme, "chemsys": subsystems(chemsys)})
            if d["id"] not in excluded
        ]
        pd = phase_diagram(pool, chemsys)
        if pd is None:
            out.update({e.id: None for e in group})
            continue
        geometry = HullGeometry(pd)
        hull_e, facets, _ = geometry.hull_energies(
            geometry.coords([Composition(e.composition) for e in group])
        )
        for e, h, f in zip(group, hull_e, facets, strict=True):
            out[e.id] = float(e.energy_per_atom - h) if f >= 0 else None
    return out


def round_metrics(
    repo: Repository,
    scheme: str,
    entries: Sequence[Entry],
    predictions: dict[str, Prediction],
    counts: dict[str, int],
    failed: int,
) -> dict[str, Any]:
    """The numbers a campaign reports for one round.

    ``entries`` are the round's relaxed results (their ``candidate_id`` links them to
    ``predictions``); ``counts`` carries generated/unique/screened/selected.
    """
    prev = e_above_previous_hull(repo, scheme, entries)
    judged = [v for v in prev.values() if v is not None]
    phases = {p.id: p for p in repo.query(Phase, {"id": [e.id for e in entries]})}
    errors, sigmas = [], []
    for e in entries:
        p = predictions.get(e.candidate_id or "")
        if p is not None:
            errors.append(p.energy_per_atom - e.energy_per_atom)
            sigmas.append(p.sigma)
    err = np.abs(np.array(errors)) if errors else np.array([])
    sig = np.array(sigmas) if sigmas else np.array([])
    metrics: dict[str, Any] = {
        **counts,
        "relaxed": len(entries),
        "failed": failed,
        "hit_rate": (sum(v <= HIT_TOL for v in judged) / len(judged)) if judged else None,
        "hit_rate_25meV": (sum(v <= 0.025 for v in judged) / len(judged)) if judged else None,
        "new_stable": sum(1 for e in entries if phases.get(e.id) and phases[e.id].is_stable),
        "stable_vs_previous": sum(1 for v in judged if v <= HIT_TOL),
        "mae": float(err.mean()) if len(err) else None,
        "sigma_coverage_1": float((err <= sig).mean()) if len(err) else None,
        "sigma_coverage_2": float((err <= 2 * sig).mean()) if len(err) else None,
        "n_predicted": len(err),
    }
    return metrics


def stable_phases(repo: Repository, scheme: str, chemsys: str) -> list[Phase]:
    return [
        p
        for p in repo.phases(scheme=scheme, is_stable=True)
        if set(p.chemsys.split("-")) <= set(chemsys.split("-"))
    ]


def entries_of(repo: Repository, ids: Iterable[str]) -> list[Entry]:
    return list(repo.query(Entry, {"id": list(ids)}))
