"""Random structure search: separations, composition, volume, seeds; the AIRSS seed/res path."""

from __future__ import annotations

import stat
import sys
import textwrap

import pytest
from pymatgen.core import Composition, Lattice, Structure

from gnomon.pipeline.generation.airss import (
    BuildcellError,
    parse_cell,
    read_res,
    read_res_dir,
    run_buildcell,
    seed_text,
    write_res,
)
from gnomon.pipeline.generation.compositions import CompositionError
from gnomon.pipeline.generation.random_search import (
    RandomSearch,
    RandomSearchError,
    min_separations,
    separation_violations,
    shortest_distance,
)


@pytest.fixture(scope="module")
def li2mno3_batch():
    search = RandomSearch(
        n_per_composition=4,
        seed=3,
        max_atoms=12,
        volume_per_atom=11.0,
        min_separation={
            "Li-O": 1.7,
            "Mn-O": 1.6,
            "O-O": 2.2,
            "Li-Li": 2.0,
            "Li-Mn": 2.2,
            "Mn-Mn": 2.4,
        },
    )
    return search, list(search.generate(["Li2MnO3"]))


def test_random_structures_keep_minimum_separation_composition_and_volume(li2mno3_batch):
    search, out = li2mno3_batch
    assert len(out) == 4 and not search.failures
    minsep = min_separations(["Li", "Mn", "O"], search.min_separation)
    for c in out:
        s = Structure.from_dict(c.structure)
        assert s.composition.reduced_formula == "Li2MnO3"
        assert len(s) <= 12
        assert s.volume / len(s) == pytest.approx(11.0, rel=1e-6)
        assert separation_violations(s, minsep) == []
        # an independent check of every pair, periodic images included
        for i, site in enumerate(s):
            for nb in s.get_neighbors(site, 2.5):
                pair = tuple(sorted((site.specie.symbol, nb.specie.symbol)))
                assert nb.nn_distance >= minsep[pair] - 1e-8, (i, pair, nb.nn_distance)
        assert c.generator == "random-pyxtal" and c.seed == 3
        assert c.extra["backend"] == "pyxtal" and 2 <= c.extra["space_group"] <= 230


def test_same_seed_same_structures_other_seed_others(li2mno3_batch):
    search, out = li2mno3_batch
    # structure i depends only on (seed, composition, i): a shard of the run (items 1 and 3
    # of 4, as batch job 1 of 2 would draw them) repeats those structures exactly
    again = RandomSearch(
        **{
            k: getattr(search, k)
            for k in ("n_per_composition", "seed", "max_atoms", "volume_per_atom", "min_separation")
        }
    )
    assert [c.id for c in again.generate(["Li2MnO3"], shard_of=(1, 2))] == [out[1].id, out[3].id]
    other = RandomSearch(
        n_per_composition=1,
        seed=4,
        max_atoms=12,
        volume_per_atom=11.0,
        min_separation=search.min_separation,
    )
    assert {c.id for c in other.generate(["Li2MnO3"])}.isdisjoint({c.id for c in out})


def test_default_volume_and_separation_estimates_are_used_and_recorded():
    search = RandomSearch(n_per_composition=1, seed=0, max_atoms=8)
    (c,) = list(search.generate(["NaCl"]))
    s = Structure.from_dict(c.structure)
    assert s.volume / len(s) == pytest.approx(c.extra["volume_per_atom"])
    assert 10 < c.extra["volume_per_atom"] < 40
    minsep = {tuple(k.split("-")): v for k, v in c.extra["min_separation"].items()}
    assert separation_violations(s, minsep) == []
    assert shortest_distance(s) >= min(minsep.values()) - 1e-8


def test_impossible_requests_fail_clearly():
    with pytest.raises(CompositionError, match="more than max_atoms"):
        list(RandomSearch(max_atoms=4).generate(["Li2MnO3"]))
    with pytest.raises(CompositionError, match="cannot read composition"):
        list(RandomSearch().generate(["Xx2O"]))
    with pytest.raises(CompositionError, match="fractional"):
        list(RandomSearch().generate(["Li0.5O"]))
    with pytest.raises(ValueError, match="unknown backend"):
        RandomSearch(backend="castep")
    with pytest.raises(ValueError, match="not a pair"):
        min_separations(["Li", "O"], {"LiO": 1.5})
    # separations no structure at this volume can hold: refused before any draw
    tight = RandomSearch(n_per_composition=1, volume_per_atom=3.0, min_separation=3.0)
    with pytest.raises(RandomSearchError, match="cannot hold atoms 3.00 Å apart"):
        list(tight.generate(["NaCl"]))


# -- AIRSS ----------------------------------------------------------------------------------
def test_seed_file_names_composition_volume_and_separations():
    minsep = min_separations(["Li", "Mn", "O"], {"Li-O": 1.8})
    text = seed_text(Composition("Li4Mn2O6"), 10.0, minsep)
    assert "%BLOCK POSITIONS_FRAC" in text and "%ENDBLOCK POSITIONS_FRAC" in text
    assert "Li 0.0 0.0 0.0 # Li1 % NUM=4" in text
    assert "Mn 0.0 0.0 0.0 # Mn1 % NUM=2" in text
    assert "O 0.0 0.0 0.0 # O1 % NUM=6" in text
    assert "#VARVOL=30.0000" in text  # 10 Å^3 per atom x 3 rows
    assert "Li-O=1.800" in text and "#MINSEP=" in text and "#SYMMOPS=2-4" in text


def test_res_files_round_trip_through_pymatgen(tmp_path):
    s = Structure(Lattice.hexagonal(3.0, 5.0), ["Li", "O"], [[0, 0, 0], [1 / 3, 2 / 3, 0.4]])
    write_res(tmp_path / "a.res", s)
    write_res(tmp_path / "b.res", s * (1, 1, 2))
    back = read_res(tmp_path / "a.res")
    assert back.composition == s.composition
    assert back.lattice.abc == pytest.approx(s.lattice.abc, abs=1e-4)
    assert [name for name, _ in read_res_dir(tmp_path)] == ["a", "b"]
    (tmp_path / "c.res").write_text("not a res file\n")
    with pytest.raises(BuildcellError, match="c.res"):
        read_res(tmp_path / "c.res")


def test_cell_parser_reads_buildcell_output():
    text = textwrap.dedent("""\
        #              Generated by Buildcell
        %BLOCK LATTICE_ABC
              3.24631      3.29003      6.29400
             92.47862    102.61547    110.29770
        %ENDBLOCK LATTICE_ABC
        %BLOCK POSITIONS_FRAC
          Al        0.9801918        0.2287102        0.0656909
          Al        0.4531337        0.7917730        0.6072080
        %ENDBLOCK POSITIONS_FRAC
        """)
    s = parse_cell(text)
    assert s.composition.formula == "Al2"
    assert s.lattice.abc == pytest.approx((3.24631, 3.29003, 6.294))
    with pytest.raises(ValueError, match="LATTICE"):
        parse_cell("%BLOCK POSITIONS_FRAC\nAl 0 0 0\n%ENDBLOCK POSITIONS_FRAC\n")


def _fake_buildcell(tmp_path, body: str):
    """A stand-in for AIRSS buildcell (absent here): a script reading the seed on stdin."""
    exe = tmp_path / "bin" / "buildcell"
    exe.parent.mkdir(exist_ok=True)
    exe.write_text(f"#!{sys.executable}\n{body}")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return exe


FAKE_BUILDCELL = textwrap.dedent("""\
    import random, re, sys
    seed = sys.stdin.read()
    found = re.finditer(r"^(\\w+) .*NUM=(\\d+)", seed, re.M)
    atoms = [(m.group(1), int(m.group(2))) for m in found]
    n = sum(k for _, k in atoms)
    random.seed(len(seed))
    edge = 2.6 * n ** (1 / 3)
    print("%BLOCK LATTICE_CART")
    for i in range(3):
        print(" ".join(str(edge if i == j else 0.0) for j in range(3)))
    print("%ENDBLOCK LATTICE_CART")
    print("%BLOCK POSITIONS_FRAC")
    side = round(n ** (1 / 3) + 0.5)
    k = 0
    for el, count in atoms:
        for _ in range(count):
            x, y, z = k % side, (k // side) % side, k // side // side
            print(el, x / side, y / side, z / side)
            k += 1
    print("%ENDBLOCK POSITIONS_FRAC")
    """)


def test_airss_backend_runs_buildcell_and_checks_its_output(tmp_path, monkeypatch):
    exe = _fake_buildcell(tmp_path, FAKE_BUILDCELL)
    monkeypatch.setenv("PATH", f"{exe.parent}:/usr/bin:/bin")
    search = RandomSearch(
        backend="airss",
        n_per_composition=2,
        seed=1,
        max_atoms=8,
        formula_units=(4,),
        volume_per_atom=20.0,
        min_separation=1.5,
    )
    out = list(search.generate(["NaCl"]))
    assert len(out) == 2 and not search.failures
    for c in out:
        s = Structure.from_dict(c.structure)
        assert s.composition.reduced_formula == "NaCl" and len(s) == 8
        assert s.volume / len(s) == pytest.approx(20.0)
        assert c.generator == "random-airss"


def test_buildcell_missing_failing_and_hanging_are_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(BuildcellError, match="not on PATH"):
        run_buildcell("x", label="NaCl")
    with pytest.raises(RandomSearchError, match="not on PATH"):
        list(RandomSearch(backend="airss").generate(["NaCl"]))
    exe = _fake_buildcell(
        tmp_path, "import sys\nprint('bad species', file=sys.stderr)\nsys.exit(3)\n"
    )
    monkeypatch.setenv("PATH", str(exe.parent))
    with pytest.raises(BuildcellError, match=r"failed on the NaCl seed \(exit 3\): bad species"):
        run_buildcell("x", label="NaCl")
    _fake_buildcell(tmp_path, "import time\ntime.sleep(30)\n")
    with pytest.raises(BuildcellError, match="timed out after 0.5 s on the NaCl seed"):
        run_buildcell("x", timeout=0.5, label="NaCl")
    _fake_buildcell(tmp_path, "print('garbage')\n")
    with pytest.raises(BuildcellError, match="unreadable cell"):
        run_buildcell("x", label="NaCl")
    # in a search, a failing buildcell becomes a recorded failure, not a crash
    _fake_buildcell(tmp_path, "import sys\nsys.exit(1)\n")
    search = RandomSearch(backend="airss", n_per_composition=1, max_attempts=1, max_atoms=4)
    assert list(search.generate(["NaCl"])) == []
    assert "buildcell failed" in search.failures[0]
