"""Random search in worker processes: the same structures as in one process; backend 'auto'."""

from __future__ import annotations

import os
import stat

from gnomon.pipeline.generation.random_search import RandomSearch


def test_two_worker_processes_draw_exactly_what_one_process_draws():
    one = list(RandomSearch(n_per_composition=2, seed=3, max_atoms=8).generate(["NaCl"]))
    two = list(
        RandomSearch(n_per_composition=2, seed=3, max_atoms=8).generate(["NaCl"], processes=2)
    )
    assert [c.id for c in one] == [c.id for c in two] and len(one) == 2


def test_auto_backend_takes_buildcell_when_it_is_on_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert RandomSearch(backend="auto").backend == "pyxtal"
    exe = tmp_path / "buildcell"
    exe.write_text("#!/bin/sh\nexit 1\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    assert os.access(exe, os.X_OK)
    assert RandomSearch(backend="auto").backend == "airss"
