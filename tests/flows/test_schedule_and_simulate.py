"""Schedules become Prefect deployments; simulation mode replays the loop on labels."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from pymatgen.core import Lattice, Structure
from pymatgen.entries.computed_entries import ComputedStructureEntry

from gnomon.campaign.simulate import Labelled, simulate, true_stable


def test_schedule_is_recorded_for_serve_and_rejects_bad_schedules(tmp_path, prefect_home):
    """Without a Prefect API in force `schedule` records the schedule in gnomon's database,
    where `serve` reads it (tests/flows/test_scheduled_campaigns.py runs it; test_prefect_cli.py
    checks the deployment on a server)."""
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"name": "nightly", "elements": ["Li", "O"], "rounds": 1}))
    env = {
        **os.environ,
        "GNOMON_HOME": str(tmp_path / "home"),
        "PREFECT_HOME": str(prefect_home),
        "COLUMNS": "250",
    }
    env.pop("PREFECT_API_URL", None)

    def gnomon(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "gnomon.cli", "campaign", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    out = gnomon("schedule", str(config), "--cron", "0 2 * * *", "--rounds-per-run", "2")
    assert out.returncode == 0, out.stdout + out.stderr
    status = gnomon("status", "nightly")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "schedule: 0 2 * * *, 2 rounds per run; next run: " in status.stdout
    assert "T02:00:00+00:00" in status.stdout
    bad = gnomon("schedule", str(config), "--cron", "every day")
    assert bad.returncode != 0 and "cron" in (bad.stdout + bad.stderr)
    bad = gnomon("schedule", str(config), "--every", "soon")
    assert bad.returncode != 0 and "interval" in (bad.stdout + bad.stderr)
    both = gnomon("schedule", str(config), "--every", "10s", "--cron", "0 2 * * *")
    assert both.returncode != 0 and "one of the two" in (both.stdout + both.stderr)


def _labels(n_per: int = 12) -> list[Labelled]:
    """Rock-salt and CsCl-type A-B structures with an energy that favours a few of them."""
    import random

    rng = random.Random(0)
    out = []
    refs = {"Li": -1.9, "Na": -1.3, "Cl": -1.8, "Br": -1.6}
    for el, e in refs.items():
        s = Structure(Lattice.cubic(3.5), [el], [[0, 0, 0]])
        out.append(Labelled(f"ref-{el}", s, e, el, el))
    k = 0
    for a in ("Li", "Na"):
        for b in ("Cl", "Br"):
            for i in range(n_per):
                if i % 2:
                    s = Structure.from_spacegroup(
                        "Fm-3m", Lattice.cubic(4.5 + 0.05 * i), [a, b], [[0, 0, 0], [0.5, 0.5, 0.5]]
                    )
                else:
                    s = Structure(
                        Lattice.cubic(3.0 + 0.05 * i), [a, b], [[0, 0, 0], [0.5, 0.5, 0.5]]
                    )
                e = (refs[a] + refs[b]) / 2 - 1.0 - 0.3 * (i % 2) + rng.uniform(0, 0.4)
                out.append(
                    Labelled(
                        f"x{k}", s, e, s.composition.reduced_formula, s.composition.chemical_system
                    )
                )
                k += 1
    return out


def test_simulation_counts_and_reproducibility():
    labels = _labels()
    compounds = [it for it in labels if not it.key.startswith("ref-")]
    stable = true_stable(labels)
    # every compound is AB, so each of the four A-B systems has exactly one stable phase: its
    # lowest-energy structure
    lowest = {
        chemsys: min(
            (it for it in compounds if it.chemsys == chemsys), key=lambda it: it.energy_per_atom
        ).key
        for chemsys in {it.chemsys for it in compounds}
    }
    assert stable == set(lowest.values()) and len(stable) == 4
    # a run that evaluates every compound must have found every stable one, round by round
    # no fewer than before and never more than it evaluated
    full = simulate(labels, "random", rounds=3, budget=len(compounds) // 2, initial=0, seed=1)
    assert full.evaluations == [
        len(compounds) // 2,
        len(compounds),
    ]  # the pool ran dry after two rounds
    assert full.stable_found[-1] == len(stable) == full.n_stable_total
    assert full.stable_found[0] <= full.stable_found[1]
    assert all(found <= n for found, n in zip(full.stable_found, full.evaluations, strict=True))
    # the first round's picks are judged against a hull of bare elements, on which every
    # compound here (formation energy below -0.6 eV/atom) is stable
    assert full.hits[0] == 1.0
    kw = dict(
        rounds=2,
        budget=4,
        initial=6,
        model_options={
            "ensemble_size": 2,
            "hidden": 8,
            "layers": 1,
            "max_epochs": 10,
            "patience": 3,
        },
    )
    rand = simulate(labels, "random", seed=1, **kw)
    assert rand.evaluations == [4, 8]
    assert rand.as_dict() == simulate(labels, "random", seed=1, **kw).as_dict()
    greedy = simulate(labels, "greedy", seed=1, **kw)
    assert greedy.evaluations == [4, 8]
    assert greedy.as_dict() == simulate(labels, "greedy", seed=1, **kw).as_dict()


def test_simulate_cli_reads_labels_and_rejects_bad_ones(tmp_path):
    from typer.testing import CliRunner

    from gnomon.cli import app

    labels = _labels(6)
    path = tmp_path / "labels.json"
    path.write_text(
        json.dumps(
            [
                ComputedStructureEntry(
                    it.structure, it.energy_per_atom * len(it.structure)
                ).as_dict()
                for it in labels
            ]
        )
    )
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "sim",
                "elements": ["Li", "Na", "Cl", "Br"],
                "rounds": 1,
                "selection": {"budget": 3},
                "model": {
                    "ensemble_size": 2,
                    "hidden": 8,
                    "layers": 1,
                    "max_epochs": 5,
                    "patience": 2,
                },
            }
        )
    )
    out = tmp_path / "sim.json"
    result = CliRunner().invoke(
        app,
        [
            "campaign",
            "simulate",
            str(config),
            "--labels",
            str(path),
            "--initial",
            "4",
            "--policies",
            "random,greedy",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    assert [r["policy"] for r in rows] == ["random", "greedy"]
    assert all(r["evaluations"] == [3] for r in rows)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps([{"energy": float("nan"), "composition": {"Li": 1}}]))
    result = CliRunner().invoke(app, ["campaign", "simulate", str(config), "--labels", str(broken)])
    assert result.exit_code != 0 and "broken.json" in result.output


@pytest.mark.parametrize("policy", ["greedy", "uncertainty"])
def test_policies_accept_their_options(policy):
    labels = _labels(4)
    r = simulate(
        labels,
        policy,
        rounds=1,
        budget=2,
        initial=4,
        policy_options={"k": 0.5} if policy == "uncertainty" else {},
        model_options={
            "ensemble_size": 2,
            "hidden": 8,
            "layers": 1,
            "max_epochs": 5,
            "patience": 2,
        },
    )
    assert r.evaluations == [2]
