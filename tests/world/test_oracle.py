"""The world's oracle for real: CHGNet relaxes two tiny cells in a worker process, and the
results are labelled through the hull as a build labels its waves."""

from __future__ import annotations

import json

import pytest
from pymatgen.core import Lattice, Structure

from gnomon.dft.frames import Frame
from gnomon.world.label import judged, label
from gnomon.world.oracle import INPUT_RULE, relax_all, results_done
from gnomon.world.plan import planned

pytest.importorskip("chgnet")


@pytest.mark.slow
def test_the_oracle_relaxes_a_tiny_plan_and_a_second_run_redoes_nothing(tmp_path):
    nacl = Structure(Lattice.cubic(3.3), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    na = Structure(Lattice.cubic(4.23), ["Na", "Na"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    cl = Structure(Lattice.cubic(5.0), ["Cl", "Cl"], [[0, 0, 0], [0.4, 0.4, 0.4]])
    plan = [{**planned("Cl-Na", "saps-prototype", "test", nacl).as_dict(), "wave": 1},
            {**planned("Na", "element", "test", na).as_dict(), "wave": 1},
            {**planned("Cl", "element", "test", cl).as_dict(), "wave": 1}]
    relax_all(plan, tmp_path, workers=1, batch_size=4)
    done = results_done(tmp_path)
    assert set(done) == {p["id"] for p in plan}
    assert all(r["input_rule"] == INPUT_RULE for r in done.values())
    relaxed = done[plan[0]["id"]]
    assert "error" not in relaxed and relaxed["energy"] < 0 and relaxed["steps"] >= 0
    relax_all(plan, tmp_path, workers=1)  # everything is on disk: nothing is relaxed again
    assert len(list(tmp_path.glob("relaxed-*.jsonl"))) == 1
    rows = label(plan, judged(done), tmp_path / "world.db")
    salt = next(r for r in rows if r["chemsys"] == "Cl-Na")
    assert salt["formation_energy_per_atom"] < 0 and salt["e_above_hull"] is not None


@pytest.mark.slow
def test_stored_frames_survive_a_kill_and_a_restart(tmp_path):
    """A worker killed mid-line leaves its finished results, frames included; the restart
    relaxes only what was cut, and every result then carries its frames, first and last."""
    nacl = Structure(Lattice.cubic(3.3), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    kbr = Structure(Lattice.cubic(3.6), ["K", "Br"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    plan = [{**planned("Cl-Na", "saps-prototype", "test", nacl).as_dict(), "wave": 1},
            {**planned("Br-K", "saps-prototype", "test", kbr).as_dict(), "wave": 1}]
    relax_all(plan, tmp_path, workers=1, batch_size=4)
    (path,) = tmp_path.glob("relaxed-*.jsonl")
    lines = path.read_text().splitlines(keepends=True)
    first = json.loads(lines[0])
    path.write_text(lines[0] + lines[1][: len(lines[1]) // 2])  # killed while writing
    assert set(results_done(tmp_path)) == {first["id"]}

    relax_all(plan, tmp_path, workers=1, batch_size=4)
    done = results_done(tmp_path)
    assert set(done) == {p["id"] for p in plan}
    assert done[first["id"]]["frames"] == first["frames"]  # kept, not relaxed again
    for rec in done.values():
        frames = [Frame.from_doc(f) for f in rec["frames"]]
        assert frames[0].step == 0 and frames[-1].step == rec["steps"]
        n = len(Structure.from_dict(rec["structure"]))
        assert frames[0].energy_per_atom == pytest.approx(rec["initial_energy"] / n, abs=1e-5)
        assert frames[-1].energy_per_atom == pytest.approx(rec["energy"] / n, abs=1e-5)
