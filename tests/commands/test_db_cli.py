"""`gnomon db import`, `gnomon phases`, `gnomon hull`, `gnomon db stats` as a person uses them."""

from __future__ import annotations

import json
import random

import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write
from pymatgen.analysis.phase_diagram import PhaseDiagram
from pymatgen.core import Composition, Lattice, Structure
from pymatgen.entries.computed_entries import ComputedEntry, ComputedStructureEntry
from typer.testing import CliRunner

from gnomon.cli import app

runner = CliRunner()
BUILTIN = "mlip-chgnet-0.3.0"  # a registered scheme without corrections: energies kept as given


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def random_computed_entries(
    seed: int, elements=("Li", "Fe", "P", "O"), n=40
) -> list[ComputedEntry]:
    rng = random.Random(seed)
    out = [ComputedEntry(el, rng.uniform(-6, -2), entry_id=f"ref-{el}") for el in elements]
    for i in range(n):
        chosen = rng.sample(list(elements), rng.randint(2, len(elements)))
        comp = Composition({el: rng.randint(1, 4) for el in chosen})
        out.append(ComputedEntry(comp, comp.num_atoms * rng.uniform(-7, -3), entry_id=f"x-{i}"))
    return out


@pytest.fixture
def db(tmp_path):
    return f"sqlite:///{tmp_path / 'cli.db'}"


def test_import_json_then_phases_json_equals_pymatgen(tmp_path, db):
    entries = random_computed_entries(11)
    path = tmp_path / "entries.json"
    path.write_text(json.dumps([e.as_dict() for e in entries]))
    result = invoke("db", "import", str(path), "--new-scheme", "test-scheme", "--description",
                    "random energies of a test", "--db", db)
    assert result.exit_code == 0, result.output
    assert "imported" in result.output
    out = invoke("phases", "--format", "json", "--db", db)
    rows = json.loads(out.stdout)["phases"]
    assert len(rows) == len(entries)
    by_source = {}
    for r in rows:
        for key in (
            "id",
            "formula",
            "reduced_formula",
            "cell_formula",
            "chemsys",
            "scheme",
            "energy_per_atom",
            "formation_energy_per_atom",
            "e_above_hull",
            "decomposition_energy",
            "is_stable",
        ):
            assert key in r
        by_source[r["id"]] = r
    pd = PhaseDiagram(entries)
    # match rows to pymatgen entries by composition and energy
    for e in entries:
        matches = [
            r
            for r in rows
            if Composition(r["cell_formula"]).almost_equals(e.composition)
            and abs(r["energy_per_atom"] - e.energy_per_atom) < 5e-4  # shown to 1 meV/atom
        ]
        assert len(matches) == 1, e
        assert matches[0]["e_above_hull"] == pytest.approx(pd.get_e_above_hull(e), abs=5e-4)
        assert matches[0]["is_stable"] == (e in pd.stable_entries)
    stable = json.loads(invoke("phases", "--stable", "--format", "json", "--db", db).stdout)[
        "phases"
    ]
    assert len(stable) == len(pd.stable_entries)
    capped = json.loads(
        invoke("phases", "--max-e-above-hull", "0.1", "--format", "json", "--db", db).stdout
    )["phases"]
    assert all(r["e_above_hull"] <= 0.1 + 1e-12 for r in capped)
    assert len(capped) == sum(1 for e in entries if pd.get_e_above_hull(e) <= 0.1 + 1e-12)
    sub = json.loads(
        invoke("phases", "--chemsys", "Li-O", "--format", "json", "--db", db).stdout
    )["phases"]
    assert {r["chemsys"] for r in sub} <= {"Li", "O", "Li-O"}
    with_fe = json.loads(
        invoke("phases", "--elements", "Fe,P", "--format", "json", "--db", db).stdout
    )["phases"]
    assert with_fe and all({"Fe", "P"} <= set(r["chemsys"].split("-")) for r in with_fe)
    limited = json.loads(
        invoke("phases", "--limit", "3", "--format", "json", "--db", db).stdout
    )["phases"]
    assert len(limited) == 3


def test_reimport_adds_nothing(tmp_path, db):
    path = tmp_path / "e.json"
    path.write_text(json.dumps([e.as_dict() for e in random_computed_entries(2, n=5)]))
    invoke("db", "import", str(path), "--scheme", BUILTIN, "--db", db)
    result = invoke("db", "import", str(path), "--scheme", BUILTIN, "--db", db)
    assert "imported 0 new entries" in result.output


def _structure_entries():
    nacl = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
    na = Structure.from_spacegroup("Im-3m", Lattice.cubic(4.2), ["Na"], [[0, 0, 0]])
    cl = Structure(Lattice.cubic(6.0), ["Cl", "Cl"], [[0, 0, 0], [0.33, 0, 0]])
    return [(na, -1.3 * len(na)), (cl, -1.8 * len(cl)), (nacl, -3.4 * len(nacl))]


def test_import_extxyz_and_csv_export(tmp_path, db):
    from pymatgen.io.ase import AseAtomsAdaptor

    frames = []
    for s, energy in _structure_entries():
        atoms = AseAtomsAdaptor.get_atoms(s)
        atoms.calc = SinglePointCalculator(atoms, energy=energy)
        frames.append(atoms)
    path = tmp_path / "frames.extxyz"
    write(path, frames, format="extxyz")
    assert invoke("db", "import", str(path), "--new-scheme", "qe-pbe-test", "--description",
                  "toy energies", "--db", db).exit_code == 0
    csv_out = invoke("phases", "--format", "csv", "--db", db).stdout.splitlines()
    assert csv_out[0].startswith("id,formula,reduced_formula,cell_formula,chemsys,scheme")
    assert len(csv_out) == 4
    cif_out = invoke("phases", "--format", "cif", "--stable", "--db", db).stdout
    assert cif_out.count("data_") == 3


def test_import_cif_with_energy_table_and_hull_plot(tmp_path, db):
    from pymatgen.io.cif import CifWriter

    rows = ["file,energy"]
    files = []
    for i, (s, energy) in enumerate(_structure_entries()):
        f = tmp_path / f"s{i}.cif"
        CifWriter(s).write_file(f)
        files.append(str(f))
        rows.append(f"s{i}.cif,{energy}")
    table = tmp_path / "energies.csv"
    table.write_text("\n".join(rows) + "\n")
    result = invoke("db", "import", *files, str(table), "--new-scheme", "t", "--description",
                    "toy energies", "--db", db)
    assert result.exit_code == 0, result.output
    png = tmp_path / "hull.png"
    result = invoke("hull", "Na-Cl", "--plot", str(png), "--db", db)
    assert result.exit_code == 0, result.output
    assert "NaCl" in result.output and png.stat().st_size > 1000
    stats = invoke("db", "stats", "--db", db)
    assert "entries" in stats.output and " 3 " in stats.output


def test_hull_refuses_to_mix_schemes(tmp_path, db):
    for scheme in ("a", "b"):
        p = tmp_path / f"{scheme}.json"
        p.write_text(json.dumps([e.as_dict() for e in random_computed_entries(1, ("Li", "O"), 3)]))
        invoke("db", "import", str(p), "--new-scheme", scheme, "--description", "toy", "--db", db)
    result = runner.invoke(app, ["hull", "Li-O", "--db", db])
    assert result.exit_code != 0 and "--scheme" in result.output
    assert runner.invoke(app, ["hull", "Li-O", "--scheme", "b", "--db", db]).exit_code == 0


BAD_RECORDS = {
    "nan energy": lambda d: d.update(energy=float("nan")),
    "missing energy": lambda d: d.pop("energy"),
    "unknown element": lambda d: d.update(composition={"Xq": 1.0}),
}


@pytest.mark.parametrize("problem", list(BAD_RECORDS))
def test_bad_json_record_stores_nothing(tmp_path, db, problem):
    good = [e.as_dict() for e in random_computed_entries(5, ("Na", "Cl"), 3)]
    path = tmp_path / "first.json"
    path.write_text(json.dumps(good[:2]))
    assert invoke("db", "import", str(path), "--scheme", BUILTIN, "--db", db).exit_code == 0
    batch = [dict(d) for d in good[2:]]
    BAD_RECORDS[problem](batch[1])
    bad_path = tmp_path / "bad.json"
    bad_path.write_text(json.dumps(batch))
    result = runner.invoke(app, ["db", "import", str(bad_path), "--scheme", BUILTIN, "--db", db])
    assert result.exit_code != 0
    assert "bad.json[1]" in result.output
    assert "nothing was imported" in result.output
    rows = json.loads(invoke("phases", "--format", "json", "--db", db).stdout)["phases"]
    assert len(rows) == 2  # what was stored before survives, nothing of the bad batch landed
    result = runner.invoke(
        app, ["db", "import", str(bad_path), "--skip-invalid", "--scheme", BUILTIN, "--db", db]
    )
    assert result.exit_code == 0
    assert "rejected" in result.output and "bad.json[1]" in result.output
    assert (
        len(json.loads(invoke("phases", "--format", "json", "--db", db).stdout)["phases"])
        == 2 + len(batch) - 1
    )


def test_structural_problems_are_named(tmp_path, db):
    s, energy = _structure_entries()[2]
    overlapping = s.copy()
    overlapping.append("Na", overlapping[0].coords + 0.05, coords_are_cartesian=True)
    disordered = s.copy()
    disordered.replace(0, {"Na": 0.5, "K": 0.5})
    docs = [
        ComputedStructureEntry(s, energy).as_dict(),
        ComputedStructureEntry(overlapping, energy).as_dict(),
        ComputedStructureEntry(disordered, energy).as_dict(),
    ]
    path = tmp_path / "s.json"
    path.write_text(json.dumps(docs))
    result = runner.invoke(app, ["db", "import", str(path), "--scheme", BUILTIN, "--db", db])
    assert result.exit_code != 0
    assert "s.json[1]" in result.output and "overlapping" in result.output
    assert "s.json[2]" in result.output and "partial occupancies" in result.output


@pytest.mark.parametrize(
    "name,text",
    [
        ("broken.json", '[{"energy": 1.0,'),
        (
            "broken.extxyz",
            '2\nLattice="1 0 0 0 1 0 0 0 1" Properties=species:S:1:pos:R:3 energy=1\nNa 0 0 0\n',
        ),
        ("broken.cif", "data_x\n_cell_length_a 4\nloop_\n_atom_site_label\n"),
        ("thing.txt", "hello"),
    ],
)
def test_malformed_files_fail_cleanly(tmp_path, db, name, text):
    path = tmp_path / name
    path.write_text(text)
    result = runner.invoke(app, ["db", "import", str(path), "--scheme", BUILTIN, "--db", db])
    assert result.exit_code != 0
    assert name in result.output
    assert "Traceback" not in result.output


def test_extxyz_without_energy_is_named(tmp_path, db):
    atoms = Atoms("NaCl", positions=[[0, 0, 0], [2.8, 0, 0]], cell=[5.6, 5.6, 5.6], pbc=True)
    path = tmp_path / "noe.extxyz"
    write(path, [atoms], format="extxyz")
    result = runner.invoke(app, ["db", "import", str(path), "--scheme", BUILTIN, "--db", db])
    assert (
        result.exit_code != 0
        and "noe.extxyz[frame 0]" in result.output
        and "no energy" in result.output
    )


def test_cif_without_energy_is_named(tmp_path, db):
    from pymatgen.io.cif import CifWriter

    s, _ = _structure_entries()[2]
    path = tmp_path / "lonely.cif"
    CifWriter(s).write_file(path)
    result = runner.invoke(app, ["db", "import", str(path), "--scheme", BUILTIN, "--db", db])
    assert (
        result.exit_code != 0 and "lonely.cif" in result.output and "energy table" in result.output
    )


def test_bad_db_url_is_a_clean_error():
    result = runner.invoke(app, ["phases", "--db", "postgres://x"])
    assert result.exit_code != 0 and "sqlite://" in result.output
