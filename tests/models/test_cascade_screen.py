"""The cascade screen (``funnel.first_member_margin``): the first member alone fails the
candidates far above the threshold, the whole ensemble judges the rest exactly as without the
cascade, and a candidate the cascade fails but the ensemble would pass is one whose first
member exceeds the ensemble's mean minus σ by more than the margin."""

from __future__ import annotations

import numpy as np
import pytest

from gnomon.campaign.screens import HullScreen
from gnomon.models.graphs import collate, crystal_graph
from gnomon.models.screening import Screener
from gnomon.pipeline.generation.identity import candidate_from_structure
from gnomon.pipeline.thermo.entries import make_entry
from gnomon.pipeline.thermo.hull import HullEngine
from gnomon.storage import ModelVersion
from tests.models.conftest import REFS, toy_structures

SCHEME = "toy"


@pytest.fixture
def setting(sqlite_repo, tiny_ensemble):
    HullEngine(sqlite_repo).ingest(
        [make_entry(el, e, SCHEME, candidate_id=f"ref-{el}") for el, e in REFS.items()])
    record = ModelVersion(id="tiny", kind="gnn", scheme=SCHEME, weights_path="-")
    candidates = [candidate_from_structure(s, "toy") for s in toy_structures(40, seed=3)]
    return sqlite_repo, tiny_ensemble, record, candidates


def _threshold_in_the_middle(screen: HullScreen, candidates) -> float:
    """A threshold that splits the candidates' optimistic bounds about in half."""
    results = Screener(screen.ensemble).predict([c.structure for c in candidates])
    bounds = [screen._ehull(c.formula, r.energy_per_atom) - r.sigma
              for c, r in zip(candidates, results, strict=True)]
    return float(np.median(bounds))


def test_one_member_predicts_what_it_predicts_inside_the_ensemble(tiny_ensemble):
    batch = collate([crystal_graph(s, tiny_ensemble.cutoff) for s in toy_structures(6)])
    whole = tiny_ensemble.predict(batch)
    first = tiny_ensemble.predict(batch, members=(0,))
    assert first.members.shape == (1, 6)
    np.testing.assert_allclose(first.mean, whole.members[0], rtol=1e-5, atol=1e-6)
    assert np.all(first.sigma == 0.0)


def test_a_wide_margin_changes_no_verdict_and_a_narrow_one_fails_only_what_it_may(setting):
    repo, ensemble, record, candidates = setting
    plain = HullScreen(repo, ensemble, record, SCHEME, 0.0)
    threshold = _threshold_in_the_middle(plain, candidates)
    plain.threshold = threshold
    expected = plain(candidates)
    assert 0 < sum(v is True for v in expected) < len(candidates)

    wide = HullScreen(repo, ensemble, record, SCHEME, threshold, first_member_margin=50.0)
    assert wide(candidates) == expected and wide.first_member_only == 0
    assert set(wide._pending) == set(plain._pending)

    narrow = HullScreen(repo, ensemble, record, SCHEME, threshold, first_member_margin=0.0)
    got = narrow(candidates)
    assert narrow.first_member_only > 0
    first = Screener(ensemble, members=(0,)).predict([c.structure for c in candidates])
    whole = Screener(ensemble).predict([c.structure for c in candidates])
    for c, v, v0, r0, r in zip(candidates, got, expected, first, whole, strict=True):
        e_hull0 = narrow._ehull(c.formula, r0.energy_per_atom)
        if v is True:  # what passes the cascade passes the ensemble, with its prediction
            assert v0 is True and narrow._pending[c.id].sigma == pytest.approx(r.sigma)
        elif v0 is True:  # failed by the first member although the ensemble passes it
            assert e_hull0 > threshold
            assert r0.energy_per_atom - (r.energy_per_atom - r.sigma) > 0.0
        else:
            assert v is False
    failed_first = sum(narrow._ehull(c.formula, r0.energy_per_atom) > threshold
                       for c, r0 in zip(candidates, first, strict=True))
    assert narrow.first_member_only == failed_first


def test_a_cascade_of_a_one_member_ensemble_is_the_plain_screen(setting):
    repo, ensemble, record, candidates = setting
    screen = HullScreen(repo, ensemble, record, SCHEME, 0.0, first_member_margin=0.0)
    assert screen._first is not None  # two members: a cascade
    single = type(ensemble)(ensemble.kind, ensemble.hparams, [ensemble.members[0]],
                            ensemble.normalization)
    assert HullScreen(repo, single, record, SCHEME, 0.0, first_member_margin=0.0)._first is None
