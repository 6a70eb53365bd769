"""What `gnomon phases`, `gnomon hull` and `gnomon db stats` print: one yes/no style, a space
group that tells polymorphs apart, headers that say corrected or uncorrected and the unit,
JSON that carries the scheme, the units and the rounding, numbers to what the method resolves,
and a database URL on one line."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from pymatgen.core import Composition, Lattice, Structure
from pymatgen.entries.computed_entries import ComputedEntry
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer
from typer.testing import CliRunner

from gnomon.cli import app
from gnomon.pipeline.thermo.entries import entry_from_computed, make_entry
from gnomon.pipeline.thermo.hull import HullEngine
from gnomon.pipeline.thermo.importing import read_files
from gnomon.pipeline.thermo.schemes import VASP_MP2020
from gnomon.storage import Entry, Phase, open_repository

runner = CliRunner()
SCHEME = "mlip-chgnet-0.3.0"
REFERENCE = {"Li": -1.9, "O": -4.9}  # eV/atom
POTCARS = {"Li": "PAW_PBE Li_sv 10Sep2004", "O": "PAW_PBE O 08Apr2002"}
ENERGY_FIELDS = ("energy_per_atom", "uncorrected_energy_per_atom", "formation_energy_per_atom",
                 "e_above_hull", "decomposition_energy")


def invoke(*args: str):
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def li2o2_polymorphs() -> tuple[Structure, Structure]:
    hexagonal = Structure.from_spacegroup(
        "P6_3/mmc", Lattice.hexagonal(3.14, 7.65), ["Li", "Li", "O"],
        [[0, 0, 0], [1 / 3, 2 / 3, 0.25], [1 / 3, 2 / 3, 0.85]],
    )
    cubic = Structure.from_spacegroup(
        "Pm-3m", Lattice.cubic(3.6), ["Li", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    ) * (2, 1, 1)
    return hexagonal, cubic


def energy(formula: str, formation: float) -> float:
    comp = Composition(formula)
    return sum(REFERENCE[str(el)] * n for el, n in comp.items()) + formation * comp.num_atoms


@pytest.fixture
def db(tmp_path) -> str:
    """Li-O in one scheme: two Li2O2 polymorphs with structures, LiO2 0.23 eV/atom above."""
    url = f"sqlite:///{tmp_path / 'tables.db'}"
    hexagonal, cubic = li2o2_polymorphs()
    entries = [make_entry(f, energy(f, e_f), SCHEME)
               for f, e_f in (("Li", 0.0), ("O2", 0.0), ("Li2O", -2.07), ("LiO2", -0.87))]
    entries += [
        make_entry(hexagonal.composition, energy(hexagonal.formula, -1.65), SCHEME,
                   structure=hexagonal),
        make_entry(cubic.composition, energy(cubic.formula, -1.60), SCHEME, structure=cubic),
    ]
    repo = open_repository(url)
    HullEngine(repo).ingest(entries)
    repo.close()
    return url


def table_lines(output: str, formula: str) -> list[str]:
    return [line for line in output.splitlines() if re.search(rf"[│|] {formula} ", line)]


def test_phases_and_hull_say_yes_or_no(db):
    for args in (("phases",), ("hull", "Li-O")):
        out = invoke(*args, "--db", db).stdout
        assert "True" not in out and "False" not in out, args
        assert "on hull" in out
        (li2o,) = table_lines(out, "Li2O")
        (lio2,) = table_lines(out, "LiO2")
        assert " yes " in li2o and " no " in lio2, args


def test_space_group_tells_polymorphs_apart(db):
    expected = {
        f"{sga.get_space_group_symbol()} ({sga.get_space_group_number()})"
        for sga in (SpacegroupAnalyzer(s, symprec=0.1) for s in li2o2_polymorphs())
    }
    assert expected == {"P6_3/mmc (194)", "Pm-3m (221)"}
    for args in (("phases",), ("hull", "Li-O")):
        out = invoke(*args, "--db", db).stdout
        assert "space group" in out
        rows = table_lines(out, "Li2O2")
        assert len(rows) == 2
        assert {g for g in expected for row in rows if g in row} == expected, args
    phases = json.loads(invoke("phases", "--format", "json", "--db", db).stdout)["phases"]
    assert {p["spacegroup"] for p in phases if p["formula"] == "Li2O2"} == expected
    assert {p["spacegroup"] for p in phases if p["formula"] == "LiO2"} == {None}  # no structure


def test_json_carries_scheme_units_and_numbers_to_a_mev(db, tmp_path):
    text = invoke("phases", "--format", "json", "--db", db).stdout
    doc = json.loads(text)
    assert doc["schemes"] == [SCHEME]
    assert {doc["units"][f] for f in ENERGY_FIELDS} == {"eV/atom"}
    assert "1 meV/atom" in doc["resolution"]
    assert not re.search(r"\d\.\d{4,}", text)  # no -0.9700000000000006
    repo = open_repository(db)
    stored = {p.id: p for p in repo.query(Phase)}
    repo.close()
    assert any(
        abs(p.decomposition_energy - round(p.decomposition_energy, 3)) > 1e-12
        for p in stored.values()
    )  # the stored numbers do carry float noise; what is shown does not
    for row in doc["phases"]:
        for field in ("formation_energy_per_atom", "e_above_hull", "decomposition_energy"):
            assert row[field] == round(getattr(stored[row["id"]], field), 3) + 0.0
            assert str(row[field]) != "-0.0"
    lio2 = next(r for r in doc["phases"] if r["formula"] == "LiO2")
    assert lio2["e_above_hull"] == 0.23 and lio2["is_stable"] is False

    plot = tmp_path / "hull.png"
    hull = json.loads(
        invoke("hull", "O-Li", "--format", "json", "--plot", str(plot), "--db", db).stdout
    )
    assert hull["chemsys"] == "Li-O" and hull["scheme"] == SCHEME and hull["n_stable"] == 4
    assert hull["units"]["e_above_hull"] == "eV/atom" and len(hull["phases"]) == 6
    assert hull["plot"] == str(plot.resolve()) and plot.stat().st_size > 1000
    rows = list(csv.DictReader(io.StringIO(invoke("phases", "--format", "csv", "--db", db).stdout)))
    assert {r["e_above_hull"] for r in rows if r["formula"] == "LiO2"} == {"0.23"}


def test_headers_say_corrected_or_uncorrected_and_the_unit(tmp_path):
    """In vasp-pbe-mp2020 the corrected and the code's energies differ; both columns say so."""
    url = f"sqlite:///{tmp_path / 'mp.db'}"
    params = {"run_type": "GGA", "hubbards": {}, "is_hubbard": False}
    entries = []
    for formula, e_f in (("Li", 0.0), ("O2", 0.0), ("Li2O", -2.07)):
        els = [str(el) for el in Composition(formula).elements]
        p = {**params, "potcar_spec": [{"titel": POTCARS[el], "hash": None} for el in els],
             "potcar_symbols": [POTCARS[el] for el in els]}
        entries.append(
            entry_from_computed(ComputedEntry(formula, energy(formula, e_f), parameters=p),
                                VASP_MP2020)
        )
    repo = open_repository(url)
    HullEngine(repo).ingest(entries)
    repo.close()
    out = invoke("phases", "--db", url).stdout
    for header in ("E corrected", "E uncorrected", "E_f corrected", "E above hull", "(eV/atom)"):
        assert header in out, header
    li2o = next(r for r in json.loads(invoke("phases", "--format", "json", "--db", url).stdout)
                ["phases"] if r["formula"] == "Li2O")
    assert li2o["energy_per_atom"] < li2o["uncorrected_energy_per_atom"] - 0.1  # oxide correction
    (row,) = table_lines(out, "Li2O")
    assert f"{li2o['energy_per_atom']:.3f}" in row
    assert f"{li2o['uncorrected_energy_per_atom']:.3f}" in row
    hull = invoke("hull", "Li-O", "--db", url).stdout
    for header in ("E_f corrected (eV/atom)", "E above hull (eV/atom)"):
        assert header in hull


def test_db_stats_keeps_the_url_on_one_line(tmp_path):
    deep = tmp_path / "a-rather-long-folder-name" / "and-another-one-below-it" / "campaigns"
    deep.mkdir(parents=True)
    url = f"sqlite:///{deep / 'gnomon-database-of-the-li-mn-o-campaign.db'}"
    assert len(url) > 120
    repo = open_repository(url)
    HullEngine(repo).ingest([make_entry("Li", -1.9, SCHEME)])
    repo.close()
    out = invoke("db", "stats", "--db", url).stdout
    assert any(url in line for line in out.splitlines()), out


README = Path(__file__).resolve().parents[2] / "README.md"


def readme_block(after: str, language: str) -> str:
    """The first ``language`` code block of the README after the words ``after``."""
    text = README.read_text()
    start = text.index(after)
    match = re.compile(rf"```{language}\n(.*?)```", re.S).search(text, start)
    assert match, f"no {language} block after {after!r}"
    return match.group(1)


def test_readme_energy_table_reads_as_documented(tmp_path):
    """The README's CIF + energy table example: `energy` is per cell as the CIF holds it (the
    8-atom conventional NaCl cell), `energy_per_atom` per atom; MP2020 refuses a bare CIF."""
    from pymatgen.io.cif import CifWriter

    table = tmp_path / "energies.csv"
    table.write_text(readme_block("Importing CIFs with an energy table", "csv"))
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"],
                                     [[0, 0, 0], [0.5, 0.5, 0.5]])
    kcl = Structure(Lattice([[0, 3.14, 3.14], [3.14, 0, 3.14], [3.14, 3.14, 0]]), ["K", "Cl"],
                    [[0, 0, 0], [0.5, 0.5, 0.5]])
    CifWriter(nacl).write_file(tmp_path / "NaCl.cif")
    CifWriter(kcl).write_file(tmp_path / "KCl.cif")
    files = [tmp_path / "NaCl.cif", tmp_path / "KCl.cif", table]
    read = read_files(files, SCHEME)
    assert not read.rejected
    by_formula = {e.reduced_formula: e for e in read.entries}
    assert by_formula["NaCl"].nsites == 8
    assert by_formula["NaCl"].energy == pytest.approx(-27.20)
    assert by_formula["NaCl"].energy_per_atom == pytest.approx(-3.40)
    assert by_formula["KCl"].nsites == 2
    assert by_formula["KCl"].energy_per_atom == pytest.approx(-3.35)
    refused = read_files(files, VASP_MP2020)
    assert not refused.entries and len(refused.rejected) == 2
    assert all("not compatible with scheme vasp-pbe-mp2020" in r.reason for r in refused.rejected)


def test_decomposition_energy_of_a_polymorph_is_what_the_readme_says(db):
    """A non-ground-state polymorph gets pymatgen's phase-separation energy: its ground state's
    decomposition energy plus its own e_above_hull (negative here, though above the hull)."""
    doc = json.loads(invoke("hull", "Li-O", "--format", "json", "--db", db).stdout)
    li2o2 = sorted((r for r in doc["phases"] if r["formula"] == "Li2O2"),
                   key=lambda r: r["e_above_hull"])
    ground, polymorph = li2o2
    assert ground["is_stable"] and not polymorph["is_stable"]
    assert polymorph["e_above_hull"] == 0.05 and polymorph["decomposition_energy"] < 0
    assert polymorph["decomposition_energy"] == pytest.approx(
        ground["decomposition_energy"] + polymorph["e_above_hull"], abs=1.5e-3)
    repo = open_repository(db)
    pd = HullEngine(repo).phase_diagram(SCHEME, "Li-O")
    repo.close()
    by_id = {e.entry_id: e for e in pd.all_entries}
    for row in doc["phases"]:
        assert row["decomposition_energy"] == pytest.approx(
            pd.get_phase_separation_energy(by_id[row["id"]]), abs=1e-3)  # shown to 1 meV
    text = README.read_text()
    section = text[text.index("**Decomposition energy**"):text.index("**The hull figure**")]
    assert "non-ground-state polymorph" in section and "e_above_hull" in section


def test_space_group_is_stored_at_ingest_and_computed_for_older_entries(tmp_path):
    """An entry the hull engine stores keeps its space group (a table of 10^5 phases reads it);
    one stored before gnomon kept it is still shown its group, computed from its structure."""
    hexagonal, cubic = li2o2_polymorphs()
    fresh = make_entry(hexagonal.composition, -20.0, SCHEME, structure=hexagonal)
    older = make_entry(cubic.composition, -19.0, SCHEME, structure=cubic)
    url = f"sqlite:///{tmp_path / 'old.db'}"
    repo = open_repository(url)
    HullEngine(repo).ingest([make_entry("Li", -1.9, SCHEME), make_entry("O2", -9.8, SCHEME),
                             fresh, older])
    assert repo.get(Entry, fresh.id).data["spacegroup"] == "P6_3/mmc (194)"
    repo.update_fields("entries", older.id, {"data": {}})  # as an older gnomon stored it
    repo.close()
    rows = json.loads(invoke("phases", "--format", "json", "--db", url).stdout)["phases"]
    assert {r["id"]: r["spacegroup"] for r in rows if r["formula"] == "Li2O2"} == {
        fresh.id: "P6_3/mmc (194)", older.id: "Pm-3m (221)"}
