"""Inputs a newcomer gets wrong, refused the same way on every path (issue 27, items 1 and 2):
a CIF cut at a line boundary, pymatgen's parse warnings, overlapping atoms given to `model
predict`, a misspelt or missing energy scheme."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.entries.computed_entries import ComputedStructureEntry
from pymatgen.io.cif import CifWriter
from typer.testing import CliRunner

from gnomon.cli import app
from gnomon.models import pretrained
from gnomon.pipeline.generation.candidate_io import CandidateFileError, read_structures
from gnomon.pipeline.generation.templates import SkippedTemplate, templates_from_files
from gnomon.storage import Entry, open_repository
from gnomon.storage.documents import Scheme

runner = CliRunner()
SCHEME = "mlip-chgnet-0.3.0"  # registered, no corrections

needs_shipped_model = pytest.mark.skipif(
    not pretrained.available(), reason="gnomon/data/pretrained holds no weights"
)


def li2o() -> Structure:
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(4.61), ["O", "Li"], [[0, 0, 0], [0.25, 0.25, 0.25]]
    ).get_sorted_structure()  # Li rows first in the atom loop


def cut_li2o_cif(folder: Path) -> Path:
    """A real Li2O CIF cut at a line boundary after its fourth Li row: the header still
    declares Li8 O4, the atom loop holds four Li and no O."""
    lines = str(CifWriter(li2o())).splitlines()
    li_rows = [i for i, line in enumerate(lines) if line.split()[:1] == ["Li"]]
    assert len(li_rows) == 8 and "_chemical_formula_sum   'Li8 O4'" in lines
    path = folder / "Li2O.cif"
    path.write_text("\n".join(lines[: li_rows[3] + 1]) + "\n")
    return path


def energy_table(folder: Path, *names: str) -> Path:
    table = folder / "energies.csv"
    table.write_text("file,energy_per_atom\n" + "".join(f"{n},-4.8\n" for n in names))
    return table


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def one_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert "Traceback" not in output
    return lines[0]


# -- 1. a CIF must be the file it says it is -------------------------------------------------------
def test_a_cif_whose_declared_formula_disagrees_with_its_sites_is_refused_everywhere(tmp_path):
    cif = cut_li2o_cif(tmp_path)
    db_file = tmp_path / "g.db"
    result = invoke("db", "import", str(cif), str(energy_table(tmp_path, cif.name)),
                    "--scheme", SCHEME, "--db", f"sqlite:///{db_file}")
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert "Li2O.cif" in text and "Li8 O4" in text and "Li4" in text, text
    assert "nothing was imported" in text
    assert not db_file.exists()  # a refused import leaves no database behind
    # the reader predict, relax and generate share refuses it in the same words
    with pytest.raises(CandidateFileError, match=r"Li2O\.cif.*Li8 O4.*Li4"):
        list(read_structures(cif))
    (skipped,) = templates_from_files([cif])
    assert isinstance(skipped, SkippedTemplate) and "Li8 O4" in skipped.reason


def test_the_whole_cif_still_imports_and_a_formula_per_formula_unit_is_no_mismatch(tmp_path):
    path = tmp_path / "Li2O.cif"
    CifWriter(li2o()).write_file(path)
    text = path.read_text().replace("'Li8 O4'", "'Li2 O1'")  # Z = 4: the same stoichiometry
    path.write_text(text)
    ((label, structure),) = read_structures(path)
    assert label == "Li2O.cif" and structure.composition.reduced_formula == "Li2O"
    result = invoke("db", "import", str(path), str(energy_table(tmp_path, path.name)),
                    "--scheme", SCHEME, "--db", f"sqlite:///{tmp_path / 'g.db'}")
    assert result.exit_code == 0, result.output


OVERFULL_CIF = """data_overfull
_cell_length_a 4.0
_cell_length_b 4.0
_cell_length_c 4.0
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'P 1'
loop_
 _symmetry_equiv_pos_as_xyz
  'x, y, z'
loop_
 _atom_site_type_symbol
 _atom_site_label
 _atom_site_fract_x
 _atom_site_fract_y
 _atom_site_fract_z
 _atom_site_occupancy
  Na Na1 0.0 0.0 0.0 0.7
  K  K1  0.0 0.0 0.0 0.6
  Cl Cl1 0.5 0.5 0.5 1.0
"""


def test_pymatgens_occupancy_warning_is_an_error_on_import_and_predict(tmp_path):
    path = tmp_path / "overfull.cif"
    path.write_text(OVERFULL_CIF)
    result = invoke("db", "import", str(path), str(energy_table(tmp_path, path.name)),
                    "--scheme", SCHEME, "--db", f"sqlite:///{tmp_path / 'g.db'}")
    assert result.exit_code == 1 and "overfull.cif" in result.output
    assert "occupancies" in result.output.lower(), result.output
    with pytest.raises(CandidateFileError, match="overfull.cif.*occupancies"):
        list(read_structures(path))


# -- the one structure check, on every path ------------------------------------------------------
def overlapping_li() -> Structure:
    return Structure(Lattice.cubic(5.0), ["Li", "Li"], [[0, 0, 0], [0.008, 0, 0]])  # 0.04 Å


def test_overlapping_atoms_are_refused_by_import_and_by_the_shared_reader(tmp_path):
    s = overlapping_li()
    path = tmp_path / "pair.json"
    path.write_text(json.dumps([ComputedStructureEntry(s, -3.3 * len(s)).as_dict()]))
    result = invoke("db", "import", str(path), "--scheme", SCHEME,
                    "--db", f"sqlite:///{tmp_path / 'g.db'}")
    assert result.exit_code == 1 and "overlapping atoms" in result.output
    poscar = tmp_path / "POSCAR"
    s.to(filename=str(poscar), fmt="poscar")
    with pytest.raises(CandidateFileError, match=r"POSCAR: overlapping atoms.*0\.040 Å"):
        list(read_structures(poscar))


@needs_shipped_model
def test_model_predict_refuses_overlapping_atoms(tmp_path):
    path = tmp_path / "pair.cif"
    CifWriter(overlapping_li()).write_file(path)
    result = runner.invoke(app, ["model", "predict", str(path), "--model", "pretrained",
                                 "--db", f"sqlite:///{tmp_path / 'new.db'}"])
    assert result.exit_code == 1
    line = one_line(result.output)
    assert "pair.cif" in line and "overlapping atoms" in line and "nothing was predicted" in line
    assert not (tmp_path / "new.db").exists()


@needs_shipped_model
def test_predict_json_carries_scheme_units_full_path_and_why_there_is_no_hull(tmp_path):
    db = f"sqlite:///{tmp_path / 'g.db'}"
    li = Structure(Lattice.cubic(3.44), ["Li", "Li"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    entries = tmp_path / "li.json"
    entries.write_text(json.dumps([ComputedStructureEntry(li, -1.9 * 2).as_dict()]))
    assert invoke("db", "import", str(entries), "--scheme", SCHEME, "--db", db).exit_code == 0
    cif = tmp_path / "inputs" / "Li2O.cif"
    cif.parent.mkdir()
    CifWriter(li2o()).write_file(cif)
    result = invoke("model", "predict", str(cif), "--model", "pretrained", "--json", "--db", db)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["scheme"] == SCHEME and out["units"]["sigma"] == "eV/atom"
    (row,) = out["predictions"]
    assert row["file"] == str(cif.resolve()) and row["structure"] == "Li2O.cif"
    assert row["e_above_hull"] is None and row["sigma"] >= 0
    assert "no mlip-chgnet-0.3.0 entry of O" in row["e_above_hull_missing"]
    table = " ".join(invoke("model", "predict", str(cif), "--model", "pretrained",
                            "--db", db).output.split())
    assert "σ (eV/atom)" in table and "no mlip-chgnet-0.3.0 entry of O" in table


# -- 2. energy schemes ----------------------------------------------------------------------------
def _entries_file(tmp_path: Path, scheme_in_record: str | None = None) -> Path:
    li = Structure(Lattice.cubic(3.44), ["Li", "Li"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    doc = ComputedStructureEntry(li, -3.8).as_dict()
    if scheme_in_record:
        doc["data"] = {"scheme": scheme_in_record}
    path = tmp_path / "li.json"
    path.write_text(json.dumps([doc]))
    return path


def test_a_misspelt_scheme_gets_did_you_mean_and_stores_nothing(tmp_path):
    db_file = tmp_path / "g.db"
    result = runner.invoke(app, ["db", "import", str(_entries_file(tmp_path)), "--scheme",
                                 "vasp_pbe", "--db", f"sqlite:///{db_file}"])
    assert result.exit_code == 1
    line = one_line(result.output)
    assert "'vasp_pbe'" in line and "did you mean vasp-pbe-mp2020" in line
    assert "--new-scheme" in line and not db_file.exists()


def test_import_without_a_scheme_is_an_error_listing_the_schemes(tmp_path):
    db = f"sqlite:///{tmp_path / 'g.db'}"
    result = runner.invoke(app, ["db", "import", str(_entries_file(tmp_path)), "--db", db])
    assert result.exit_code == 1
    line = one_line(result.output)
    for name in ("vasp-pbe-mp2020", "qe-pbe-pslibrary", "mlip-chgnet-0.3.0", "--new-scheme"):
        assert name in line
    assert "imported" not in line.split("?")[0]  # no silent 'imported' scheme any more


def test_a_new_scheme_needs_a_description_and_is_recorded_with_it(tmp_path):
    db = f"sqlite:///{tmp_path / 'g.db'}"
    path = _entries_file(tmp_path)
    bare = runner.invoke(app, ["db", "import", str(path), "--new-scheme", "qe-pbe-sssp",
                               "--db", db])
    assert bare.exit_code == 1 and "--description" in one_line(bare.output)
    described = invoke("db", "import", str(path), "--new-scheme", "qe-pbe-sssp", "--description",
                       "QE 7.2, PBE, SSSP efficiency 1.3, 60 Ry", "--db", db)
    assert described.exit_code == 0, described.output
    with open_repository(db) as repo:
        (scheme,) = repo.query(Scheme)
        assert scheme.id == "qe-pbe-sssp" and "SSSP efficiency" in scheme.description
        assert {e.scheme for e in repo.query(Entry)} == {"qe-pbe-sssp"}
    again = runner.invoke(app, ["db", "import", str(path), "--new-scheme", "qe-pbe-sssp",
                                "--description", "x", "--db", db])
    assert again.exit_code == 1 and "use --scheme qe-pbe-sssp" in one_line(again.output)
    assert invoke("db", "import", str(path), "--scheme", "qe-pbe-sssp", "--db", db).exit_code == 0
    typo = runner.invoke(app, ["db", "import", str(path), "--scheme", "qe-pbe-ssp", "--db", db])
    assert typo.exit_code == 1 and "did you mean qe-pbe-sssp" in one_line(typo.output)


def test_a_record_naming_an_unregistered_scheme_is_refused(tmp_path):
    db_file = tmp_path / "g.db"
    path = _entries_file(tmp_path, scheme_in_record="vasp_pbe")
    result = runner.invoke(app, ["db", "import", str(path), "--scheme", SCHEME,
                                 "--db", f"sqlite:///{db_file}"])
    assert result.exit_code == 1
    line = one_line(result.output)
    assert "li.json" in line and "data.scheme" in line and "did you mean vasp-pbe-mp2020" in line
    assert not db_file.exists()


def test_the_builtin_schemes_are_the_ones_gnomons_engines_produce():
    from gnomon.dft.potentials import POTENTIALS
    from gnomon.dft.settings import QESettings
    from gnomon.pipeline.thermo.schemes import BUILTIN_SCHEMES, VASP_MP2020, VASP_R2SCAN, qe_scheme

    for potential in POTENTIALS.values():
        assert potential.scheme(potential.default_model) in BUILTIN_SCHEMES, potential.name
    defaults = QESettings()
    assert qe_scheme(defaults.functional, defaults.pseudo_family) in BUILTIN_SCHEMES
    assert {VASP_MP2020, VASP_R2SCAN} <= set(BUILTIN_SCHEMES)
