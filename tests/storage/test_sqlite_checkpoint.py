"""WAL checkpoints run in the repository's own thread, not inside the writer's COMMIT."""

from __future__ import annotations

from gnomon.pipeline.thermo.entries import make_entry
from gnomon.storage import open_repository
from gnomon.storage.sqlite.checkpoint import ROWS_PER_CHECKPOINT


def test_a_large_write_is_checkpointed_in_the_background(tmp_path):
    repo = open_repository(f"sqlite:///{tmp_path / 'g.db'}")
    opened = (tmp_path / "g.db").stat().st_size
    entries = [
        make_entry("Li2O", -14.0 - i * 1e-3, "t", source=f"s{i}")
        for i in range(ROWS_PER_CHECKPOINT + 10)
    ]
    repo.insert_new("entries", entries)
    repo.checkpointer.stop()  # runs the requested checkpoint, then ends the thread
    assert repo.checkpointer.checkpoints == 1
    assert (tmp_path / "g.db").stat().st_size > opened  # pages reached the database file
    assert repo.count("entries") == len(entries)
    repo.close()


def test_small_writes_pile_up_until_a_checkpoint_is_worth_it(tmp_path):
    repo = open_repository(f"sqlite:///{tmp_path / 'g.db'}")
    opened = (tmp_path / "g.db").stat().st_size
    for i in range(5):
        repo.insert_new("entries", [make_entry("Li2O", -14.0 - i, "t", source=f"s{i}")])
    repo.checkpointer.stop()
    assert repo.checkpointer.checkpoints == 0
    # nor did the writer by itself: every page is still only in the WAL
    assert (tmp_path / "g.db").stat().st_size == opened
    assert (tmp_path / "g.db-wal").stat().st_size > 0
    repo.close()
    reopened = open_repository(f"sqlite:///{tmp_path / 'g.db'}")
    assert reopened.count("entries") == 5
    reopened.close()
