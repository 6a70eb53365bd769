"""Batched screening, test-time augmentation, and Prediction records in the database."""

from __future__ import annotations

import threading
from collections.abc import Collection

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from gnomon.models.ensemble import TTA
from gnomon.models.screening import FEATURIZE_THREAD, Screener, prefetch, screen_candidates
from gnomon.models.training import Featurizer
from gnomon.pipeline.generation.identity import candidate_from_structure
from gnomon.pipeline.thermo.entries import entry_from_structure
from gnomon.pipeline.thermo.hull import HullEngine
from gnomon.storage import Prediction
from tests.models.conftest import cscl, toy_energy, toy_structures

SCHEME = "mlip-toy-1"


def test_screener_matches_one_at_a_time_prediction(tiny_ensemble):
    structures = toy_structures(10, seed=11)
    batched = Screener(tiny_ensemble, batch_size=4).predict(structures)
    single = [Screener(tiny_ensemble, batch_size=1).predict([s])[0] for s in structures]
    assert [r.key for r in batched] == list(range(10))
    assert np.allclose(
        [r.energy_per_atom for r in batched], [r.energy_per_atom for r in single], atol=1e-5
    )
    assert all(r.sigma >= 0 and r.rejected is None for r in batched)


def test_dicts_and_structures_screen_alike(tiny_ensemble):
    structures = toy_structures(4, seed=12)
    a = Screener(tiny_ensemble).predict(structures)
    b = Screener(tiny_ensemble).predict([s.as_dict() for s in structures])
    assert [r.energy_per_atom for r in a] == [r.energy_per_atom for r in b]


def test_rejected_inputs_come_back_with_reasons(tiny_ensemble):
    good = toy_structures(2, seed=13)
    lonely = Structure(Lattice.cubic(15), ["Na"], [[0, 0, 0]])
    unseen = cscl("Fe", "S", 3.0)
    heavy = Structure(Lattice.cubic(3.0), ["Cm"], [[0, 0, 0]])
    results = Screener(tiny_ensemble).predict([good[0], lonely, unseen, heavy, good[1]])
    reasons = [r.rejected for r in results]
    assert reasons[0] is None and reasons[4] is None
    assert "no neighbour within" in reasons[1]
    assert reasons[2] == "unsupported element Fe, S: not in the model's training data"
    assert reasons[3].startswith("unsupported element Cm")


def test_tta_with_the_identity_scaling_changes_nothing(tiny_ensemble):
    structures = toy_structures(6, seed=14)
    plain = Screener(tiny_ensemble).predict(structures)
    ident = Screener(tiny_ensemble, tta=TTA(volume_scales=(1.0,))).predict(structures)
    assert np.allclose(
        [r.energy_per_atom for r in plain], [r.energy_per_atom for r in ident], atol=1e-5
    )


def test_tta_min_is_below_mean_and_matches_rebuilt_graphs(tiny_ensemble):
    s = toy_structures(1, seed=15)[0]
    scales = (0.92, 1.0, 1.08)
    low = Screener(tiny_ensemble, tta=TTA(scales, "min")).predict([s])[0]
    avg = Screener(tiny_ensemble, tta=TTA(scales, "mean")).predict([s])[0]
    assert low.energy_per_atom <= avg.energy_per_atom + 1e-6
    # one neighbour list reaching cutoff / min length factor == a fresh graph per scaled cell
    feat = Featurizer("gnn", tiny_ensemble.cutoff)
    from gnomon.models.training import predict_graphs

    fresh = []
    for v in scales:
        big = s.copy()
        big.scale_lattice(s.volume * v)
        fresh.append(predict_graphs(tiny_ensemble, [feat(big)], feat).members[:, 0])
    expected = np.mean(np.min(np.stack(fresh), axis=0))
    assert low.energy_per_atom == pytest.approx(expected, abs=1e-5)


def test_tta_refuses_bad_settings():
    with pytest.raises(ValueError, match="aggregate"):
        TTA(aggregate="max")
    with pytest.raises(ValueError, match="positive"):
        TTA(volume_scales=(0.0, 1.0))


def test_threads_worker_processes_and_inline_give_the_same_batches(tiny_ensemble):
    feat = Featurizer.for_ensemble(tiny_ensemble)
    items = list(enumerate(toy_structures(9, seed=16)))
    threaded = list(prefetch(feat, items, 4))
    pooled = list(prefetch(feat, items, 4, workers=1))
    inline = list(prefetch(feat, items, 4, depth=0))
    assert [b.keys for b in prefetch(feat, items, 4, depth=0, workers=1)] == [
        b.keys for b in threaded
    ]
    assert (
        [b.keys for b in threaded]
        == [b.keys for b in pooled]
        == [b.keys for b in inline]
        == [[0, 1, 2, 3], [4, 5, 6, 7], [8]]
    )
    for other in (pooled, inline):
        assert all(
            np.array_equal(a.batch.dist.numpy(), b.batch.dist.numpy())
            for a, b in zip(threaded, other, strict=True)
        )


def _featurizing_threads(before: Collection[threading.Thread] = ()) -> list[threading.Thread]:
    """Featurizing threads alive now that were not in ``before`` (others' threads ignored)."""
    return [t for t in threading.enumerate() if t.name == FEATURIZE_THREAD and t not in before]


def test_cpu_screening_featurizes_inline_unless_given_workers(tiny_ensemble):
    """On a CPU a featurizing thread only contends with the network for the GIL."""
    assert Screener(tiny_ensemble).depth == 0
    assert Screener(tiny_ensemble, workers=2).depth == 4
    assert Screener(tiny_ensemble, depth=2).depth == 2
    structures = toy_structures(12, seed=3)  # more batches than a thread's queue holds
    before = set(_featurizing_threads())
    threaded = Screener(tiny_ensemble, batch_size=1, depth=4).stream(enumerate(structures))
    next(threaded)
    started = _featurizing_threads(before)
    assert len(started) == 1 and started[0].is_alive()  # its producer waits on the full queue
    threaded.close()
    assert not started[0].is_alive()  # closing the stream ends its thread
    stream = Screener(tiny_ensemble, batch_size=1).stream(enumerate(structures))
    first = next(stream)
    assert _featurizing_threads(before) == []  # no featurizing thread was started
    assert len(first) == 1 and len([r for chunk in stream for r in chunk]) == 11


def test_prefetch_hands_errors_to_the_consumer(tiny_ensemble):
    def broken():
        yield 0, toy_structures(1)[0]
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError, match="source failed"):
        list(prefetch(Featurizer.for_ensemble(tiny_ensemble), broken(), 1))


def test_screen_candidates_writes_predictions_with_hull_distance(tiny_ensemble, repo):
    # a hull for Li-Cl and Na-Cl in the toy scheme: elemental references and one compound each
    engine = HullEngine(repo)
    refs = [Structure(Lattice.cubic(3.0), [el], [[0, 0, 0]]) for el in ("Li", "Na", "Cl")]
    compounds = [cscl("Li", "Cl", 3.1), cscl("Na", "Cl", 3.2)]
    engine.ingest(
        [entry_from_structure(s, toy_energy(s) * len(s), SCHEME) for s in refs + compounds]
    )
    structures = toy_structures(4, seed=17) + [cscl("Li", "Cl", 3.0), cscl("Na", "Cl", 3.3)]
    structures += [Structure(Lattice.cubic(15), ["Na"], [[0, 0, 0]])]
    candidates = [candidate_from_structure(s, "test", round=1) for s in structures]
    stats = screen_candidates(
        repo, candidates, tiny_ensemble, "gnn-toy-v1", SCHEME, batch_size=3, round=1
    )
    assert stats.screened == 6 and stats.rejected == 1 and stats.written == 6
    assert any("no neighbour" in reason for reason in stats.reasons)
    preds = repo.predictions_for([c.id for c in candidates], "gnn-toy-v1")
    assert len(preds) == 6
    for c in candidates[:6]:
        p = preds[c.id]
        assert p.id == Prediction.key(c.id, "gnn-toy-v1") and p.round == 1 and p.sigma >= 0
        expected = HullEngine(repo).e_above_hull(SCHEME, c.formula, p.energy_per_atom)
        if expected is None:
            assert p.e_above_hull is None
        else:
            assert p.e_above_hull == pytest.approx(expected)
    assert any(p.e_above_hull is not None for p in preds.values())
    # screening again is idempotent
    again = screen_candidates(repo, candidates, tiny_ensemble, "gnn-toy-v1", SCHEME, batch_size=3)
    assert again.written == 6 and repo.count("predictions") == 6
