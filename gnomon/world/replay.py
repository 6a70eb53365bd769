"""A world's held-out systems as the pool of a replayed campaign.

A campaign simulated on a world (:func:`gnomon.campaign.simulate.simulate`) may pick only the
compounds of the held-out systems, the ones no shipped model trained on; what it knows from
the start is either the elements alone or, as a campaign starts from the phases Materials
Project already holds, also the held-out systems' phases of the world's first build.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pymatgen.core import Structure

from gnomon.campaign.simulate import HIT_TOLERANCE, Labelled
from gnomon.storage.chemsys import canonical_chemsys
from gnomon.world.files import WorldFiles, load_world

KNOWN_AT_START = ("elements", "first-build")


def _labelled(r: dict[str, Any]) -> Labelled:
    relaxed = Structure.from_dict(r["relaxed"])
    comp = relaxed.composition
    return Labelled(r["id"], relaxed, float(r["energy_per_atom"]), comp.reduced_formula,
                    comp.chemical_system, Structure.from_dict(r["unrelaxed"]))


def row_wave(row: dict[str, Any]) -> int:
    """The wave that made a world row; a world written before rows said so cannot be split
    into a first build and later waves by guessing."""
    if row.get("wave") is None:
        raise ValueError(f"world row {row['id']} has no wave: rewrite the world with "
                         "gnomon world grow before --known first-build")
    return int(row["wave"])


def campaign_data(world_dir: Path, max_systems: int | None = None,
                  known: str = "elements") -> dict[str, Any]:
    """The pool (held-out systems' compounds and the elements they need), the reference
    entries known from the start, and the keys on the world's hull.

    ``known="first-build"`` also counts the held-out systems' own phases of the world's first
    build (waves 1 and 2) as known, as a campaign starts from the phases Materials Project
    already holds; the pool is then what the later waves made, substituted into compounds."""
    rows, held_out = load_world(WorldFiles(world_dir))
    present = {canonical_chemsys(r["chemsys"]) for r in rows}
    held = [s for s in sorted(canonical_chemsys(s) for s in held_out) if s in present][:max_systems]
    held_set = set(held)
    spaces = [set(s.split("-")) for s in held]
    elements, pool, reference, stable = [], [], [], set()
    for r in rows:
        chemsys = canonical_chemsys(r["chemsys"])
        if not any(set(chemsys.split("-")) <= space for space in spaces):
            continue
        if "-" not in chemsys:
            elements.append(_labelled(r))
        elif chemsys in held_set and known == "first-build" and row_wave(r) <= 2:
            reference.append(_labelled(r))
        elif chemsys in held_set:
            pool.append(_labelled(r))
            if r.get("e_above_hull") is not None and r["e_above_hull"] <= HIT_TOLERANCE:
                stable.add(r["id"])
        else:
            reference.append(_labelled(r))
    return {"held": held, "labels": elements + pool, "reference": reference, "stable": stable,
            "n_pool": len(pool), "n_world": len(rows)}
