"""Template symmetry on disk: a new process reads what an earlier one computed, and SAPS gives
the same candidates whether the symmetry came from spglib or from the cache."""

from __future__ import annotations

import os

import numpy as np
from pymatgen.core import Lattice, Structure

from gnomon.pipeline.generation import saps_fast, template_cache
from gnomon.pipeline.generation.saps import SAPSGenerator
from gnomon.pipeline.generation.templates import make_template


def forget() -> None:
    """What a new process starts with: no template in memory."""
    saps_fast._cache.clear()
    saps_fast._fits.clear()
    saps_fast._by_object.clear()


def templates():
    rocksalt = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
    perovskite = Structure(
        Lattice.cubic(3.9),
        ["Sr", "Ti", "O", "O", "O"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    )
    return [make_template("rs", rocksalt, "test"), make_template("pv", perovskite, "test")]


def generate():
    gen = SAPSGenerator(elements=("Na", "K", "Cl", "Br", "Sr", "Ba", "Ti", "O"), max_species=2)
    return list(gen.generate(templates()))


def fingerprint(candidates):
    return [(c.id, c.template_id, c.formula, c.structure) for c in candidates]


def test_a_new_process_reads_the_symmetry_an_earlier_one_wrote(tmp_path, monkeypatch):
    monkeypatch.setenv("GNOMON_CACHE_DIR", str(tmp_path / "cache"))
    forget()
    computed = generate()
    files = sorted((tmp_path / "cache" / "template-symmetry").glob("*.json"))
    assert len(files) == 2  # one record per template
    assert not list(files[0].parent.glob(".tmp-*"))  # written atomically, nothing left over

    forget()
    spglib_runs = []
    monkeypatch.setattr(saps_fast, "_symmetry", lambda *a: spglib_runs.append(a))
    disk_before = saps_fast.cache_stats["disk"]
    again = generate()
    assert spglib_runs == []  # nothing analysed again
    assert saps_fast.cache_stats["disk"] - disk_before == 2
    assert fingerprint(again) == fingerprint(computed)


def test_the_cache_can_be_turned_off_and_survives_a_damaged_record(tmp_path, monkeypatch):
    monkeypatch.setenv("GNOMON_CACHE_DIR", "off")
    assert template_cache.cache_dir() is None
    forget()
    reference = generate()

    monkeypatch.setenv("GNOMON_CACHE_DIR", str(tmp_path / "cache"))
    forget()
    generate()
    for path in (tmp_path / "cache" / "template-symmetry").glob("*.json"):
        path.write_bytes(b"{not json")  # a damaged record is recomputed, not trusted
    forget()
    assert fingerprint(generate()) == fingerprint(reference)


def test_records_are_keyed_by_content_and_tolerance(tmp_path, monkeypatch):
    monkeypatch.setenv("GNOMON_CACHE_DIR", str(tmp_path))
    t = templates()[0]
    key = saps_fast._content_key(t.structure, None, 0.1)
    moved = t.structure.copy()
    moved.translate_sites([0], [0.01, 0, 0])
    assert template_cache.record_path(key) != template_cache.record_path(
        saps_fast._content_key(moved, None, 0.1)
    )
    assert template_cache.record_path(key) != template_cache.record_path(
        saps_fast._content_key(t.structure, None, 0.01)
    )
    template_cache.store(key, {"perms": np.arange(2)[None, :].tolist()})
    assert template_cache.load(key)["perms"] == [[0, 1]]
    assert os.path.dirname(template_cache.record_path(key)).endswith("template-symmetry")


def test_default_folder_follows_gnomon_home(tmp_path, monkeypatch):
    monkeypatch.delenv("GNOMON_CACHE_DIR", raising=False)
    monkeypatch.setenv("GNOMON_HOME", str(tmp_path / "home"))
    assert template_cache.cache_dir() == tmp_path / "home" / "cache"
