"""The backend registry: one check of a database URL, and every backend's phase reader."""

from __future__ import annotations

import pytest

from gnomon.storage import Entry, Phase, StorageError, check_url, open_repository
from gnomon.storage.backends import BACKENDS, backend_for


def _entry(i: int, structure: bool = True) -> Entry:
    return Entry(id=f"e{i:05d}", scheme="s1", formula="LiO", reduced_formula="LiO",
                 chemsys="Li-O", elements=["Li", "O"], nsites=2,
                 composition={"Li": 1.0, "O": 1.0}, energy=-1.0 * i,
                 uncorrected_energy=-1.0 * i, energy_per_atom=-0.5 * i,
                 structure={"sites": [i]} if structure else None)


def _phase(i: int) -> Phase:
    return Phase(id=f"e{i:05d}", scheme="s1", chemsys="Li-O", reduced_formula="LiO",
                 energy_per_atom=-0.5 * i, is_stable=False, e_above_hull=0.01 * i)


@pytest.mark.parametrize("url", [
    "sqlite:///gnomon.db", "sqlite:////abs/gnomon.db", "mongodb://host:27017/gnomon",
    "mongodb+srv://alice:pw@cluster/db", "mongomock://test",
])
def test_a_url_a_backend_answers_passes(url):
    assert check_url(url) == url


@pytest.mark.parametrize("url", [
    "sqlite://gnomon.db", "sqlite:///", "sqlite:", "postgres://alice:s3cret@host/db",
    "mongodb://", "gnomon.db", "",
])
def test_a_url_no_backend_answers_is_one_clear_line(url):
    for check in (check_url, open_repository):
        with pytest.raises(StorageError) as caught:
            check(url)
        message = str(caught.value)
        assert "\n" not in message and "sqlite:///path" in message
        assert "s3cret" not in message


def test_backends_are_chosen_by_scheme():
    assert backend_for("sqlite:///x.db").name == "sqlite"
    assert backend_for("mongomock://x").name == "mongodb"
    assert backend_for("mongodb+srv://h/db").name == "mongodb"
    assert len({b.name for b in BACKENDS}) == len(BACKENDS)


def test_the_contract_suite_covers_every_registered_backend(covered_backends):
    assert covered_backends == {b.name for b in BACKENDS}


def test_the_phase_reader_yields_structures_with_their_phases(repo):
    repo.put([_entry(i) for i in (3, 1, 2)] + [_entry(4, structure=False)])
    repo.put([_phase(1), _phase(3)])
    reader = backend_for(repo.url).open_reader(repo.url)
    try:
        rows = list(reader.entries_with_phases())
    finally:
        reader.close()
    assert [entry["id"] for entry, _ in rows] == ["e00001", "e00002", "e00003"]
    assert all(entry["structure"] for entry, _ in rows)
    phases = {entry["id"]: phase for entry, phase in rows}
    assert phases["e00002"] is None
    assert phases["e00001"]["e_above_hull"] == pytest.approx(0.01)
    assert phases["e00003"]["id"] == "e00003" and "_id" not in phases["e00003"]


def test_the_change_token_moves_when_entries_or_phases_do(repo):
    repo.put([_entry(1)])
    reader = backend_for(repo.url).open_reader(repo.url)
    try:
        before = reader.change_token()
        assert reader.change_token() == before
        repo.put([_phase(1)])
        after_phase = reader.change_token()
        assert after_phase != before
        repo.put([_entry(2)])
        assert reader.change_token() != after_phase
    finally:
        reader.close()


def test_a_missing_sqlite_file_is_not_created_by_its_reader(tmp_path):
    url = f"sqlite:///{tmp_path / 'absent.db'}"
    with pytest.raises(StorageError, match="no gnomon database"):
        backend_for(url).open_reader(url)
    assert not (tmp_path / "absent.db").exists()
