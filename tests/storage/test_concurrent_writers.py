"""Two processes importing into one SQLite database at once lose and duplicate nothing."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest
from pymatgen.analysis.phase_diagram import PhaseDiagram
from pymatgen.core import Composition
from pymatgen.entries.computed_entries import ComputedEntry

from gnomon.storage import open_repository


def _entries(seed: int, n: int) -> list[ComputedEntry]:
    rng = random.Random(seed)
    elements = ["Li", "Mn", "O", "F"]
    out = [ComputedEntry(el, rng.uniform(-6, -2)) for el in elements]
    for _ in range(n):
        chosen = rng.sample(elements, rng.randint(2, 4))
        comp = Composition({el: rng.randint(1, 3) for el in chosen})
        out.append(ComputedEntry(comp, comp.num_atoms * rng.uniform(-7, -3)))
    return out


@pytest.mark.slow
def test_two_processes_import_at_once(tmp_path):
    db = f"sqlite:///{tmp_path / 'shared.db'}"
    shared = _entries(0, 30)          # both files carry these: they must be stored once
    a = shared + _entries(1, 120)[4:]
    b = shared + _entries(2, 120)[4:]
    files = []
    for name, entries in (("a", a), ("b", b)):
        # many small files so the two importers interleave their transactions
        for k in range(0, len(entries), 15):
            f = tmp_path / f"{name}{k:04d}.json"
            f.write_text(json.dumps([e.as_dict() for e in entries[k : k + 15]]))
            files.append((name, f))
    script = (
        "import sys; from typer.testing import CliRunner; from gnomon.cli import app\n"
        "r = CliRunner()\n"
        "for f in sys.argv[2:]:\n"
        "    res = r.invoke(app, ['db', 'import', f, '--scheme', 'mlip-emt',\n"
        "                         '--db', sys.argv[1]])\n"
        "    assert res.exit_code == 0, res.output\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, db, *[str(f) for n, f in files if n == who]]
        )
        for who in ("a", "b")
    ]
    assert [p.wait(timeout=600) for p in procs] == [0, 0]

    repo = open_repository(db)
    everything = {
        (e.composition.reduced_formula, e.composition.num_atoms, round(e.energy, 6)) for e in a + b
    }
    assert repo.count("entries") == len(everything)
    assert repo.count("phases") == len(everything)
    # the stored hull is the hull of everything both processes wrote
    pool = [
        ComputedEntry(Composition(e.composition), e.energy, entry_id=e.id) for e in repo.entries()
    ]
    pd = PhaseDiagram(pool)
    stored = {p.id: p for p in repo.phases()}
    for e in pool:
        assert abs(stored[e.entry_id].e_above_hull - pd.get_e_above_hull(e)) < 1e-6
    repo.close()
