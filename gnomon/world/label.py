"""Labels: the oracle's verdict on each result, and the world's rows through gnomon's hull.

Formation energy and e_above_hull come from gnomon's hull engine (SQLite, one scheme), per
system, over the whole world. A relaxation that ends collapsed (a pair under 0.6 of its
covalent bond length, :mod:`gnomon.dft.collapse`) is a failure; results stored before that
rule are judged again whenever the world is written (nothing is relaxed twice).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pymatgen.core import Structure

from gnomon.dft.collapse import collapsed_pair
from gnomon.pipeline.thermo.entries import entry_from_structure
from gnomon.pipeline.thermo.hull import HullEngine
from gnomon.storage import open_repository
from gnomon.world.oracle import INPUT_RULE, SCHEME


def judged(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The results with the oracle's verdict of today: a relaxation that ended collapsed
    (:func:`gnomon.dft.collapse.collapsed_pair`) is a failure, also one relaxed before that
    rule, whose stored structure is judged again here (nothing is relaxed twice)."""
    out: dict[str, dict[str, Any]] = {}
    for key, r in results.items():
        if "error" not in r:
            why = collapsed_pair(Structure.from_dict(r["structure"]))
            if why:
                r = {"id": key, "error": f"relaxation ended {why}", "input_rule": INPUT_RULE}
        out[key] = r
    return out


def _row(p: dict[str, Any], r: dict[str, Any], relaxed: Structure) -> dict[str, Any]:
    """A world row of a planned input ``p`` and its oracle result ``r``, before its labels."""
    return {
        "id": p["id"], "chemsys": relaxed.composition.chemical_system,
        "planned_chemsys": p["chemsys"], "generator": p["generator"],
        "template": p["template"], "wave": p.get("wave"),
        "formula": relaxed.composition.reduced_formula,
        # inputs rescaled under rule 2 are kept with the result: that is what was relaxed
        "nsites": len(relaxed), "unrelaxed": r.get("input", p["structure"]),
        "relaxed": r["structure"],
        "energy": r["energy"], "energy_per_atom": r["energy"] / len(relaxed),
        "unrelaxed_energy_per_atom": r.get("initial_energy", 0.0) / len(relaxed),
        "steps": r["steps"], "converged": r["converged"],
        # a few trajectory frames (gnomon.dft.frames), for results relaxed since they are kept
        **({"frames": r["frames"]} if r.get("frames") else {}),
    }


def label(plan: list[dict[str, Any]], results: dict[str, dict[str, Any]],
          db: Path) -> list[dict[str, Any]]:
    """Entries for every relaxed structure, through gnomon's hull engine; the world's rows."""
    if db.exists():
        db.unlink()
    rows_by_entry: dict[str, dict[str, Any]] = {}
    entries = []
    for p in plan:
        r = results.get(p["id"])
        if r is None or "error" in r:
            continue
        relaxed = Structure.from_dict(r["structure"])
        entry = entry_from_structure(relaxed, r["energy"], SCHEME, source=p["generator"])
        entries.append(entry)
        rows_by_entry.setdefault(entry.id, _row(p, r, relaxed))
    repo = open_repository(f"sqlite:///{db}")
    try:
        HullEngine(repo).ingest(entries)
        rows = []
        for phase in repo.phases():
            row = rows_by_entry.get(phase.id)
            if row is None:
                continue
            row.update({"formation_energy_per_atom": phase.formation_energy_per_atom,
                        "e_above_hull": phase.e_above_hull,
                        "is_stable": phase.is_stable})
            rows.append(row)
    finally:
        repo.close()
    return sorted(rows, key=lambda r: r["id"])


def rows_as_plan(
    rows: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """The world's rows as the (plan, results) they were labelled from, so that a grown world
    is labelled over all of its structures at once."""
    plan, results = [], {}
    for r in rows:
        plan.append({"id": r["id"], "chemsys": r["planned_chemsys"], "generator": r["generator"],
                     "template": r["template"], "structure": r["unrelaxed"],
                     "wave": r["wave"] if r.get("wave") is not None else first_build_wave(r)})
        results[r["id"]] = {"id": r["id"], "structure": r["relaxed"], "energy": r["energy"],
                            "initial_energy": r["unrelaxed_energy_per_atom"] * r["nsites"],
                            "steps": r["steps"], "converged": r["converged"],
                            "input": r["unrelaxed"], "frames": r.get("frames", [])}
    return plan, results


def first_build_wave(row: dict[str, Any]) -> int:
    """The wave of a row written before rows said so: ``build`` made only waves 1 and 2, and
    wave 2 is its SAPS on known compounds."""
    return 2 if row["generator"] == "saps-known" else 1
