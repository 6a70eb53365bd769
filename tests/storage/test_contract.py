"""One contract, every backend: what a Repository must do, whichever one you hold."""

from __future__ import annotations

import pytest

from gnomon.storage import (
    CalcState,
    Calculation,
    Campaign,
    Candidate,
    Entry,
    ModelVersion,
    Phase,
    Prediction,
    Round,
    StepState,
    StorageError,
)


def _phase(i: int, chemsys: str = "Li-O", stable: bool = False, scheme: str = "s1") -> Phase:
    return Phase(id=f"p{i:05d}", scheme=scheme, chemsys=chemsys, reduced_formula=f"X{i}",
                 energy_per_atom=-float(i), is_stable=stable, e_above_hull=0.01 * i)


def _entry(i: int, chemsys: str = "Li-O", scheme: str = "s1") -> Entry:
    els = chemsys.split("-")
    return Entry(id=f"e{i:05d}", scheme=scheme, formula="".join(els), reduced_formula="".join(els),
                 chemsys=chemsys, elements=els, nsites=len(els),
                 composition={e: 1.0 for e in els}, energy=-1.0 * i, uncorrected_energy=-1.0 * i,
                 energy_per_atom=-1.0 * i / len(els))


def test_every_record_type_round_trips(repo):
    records = [
        Candidate(
            id="c1",
            structure={"a": 1},
            formula="Li2O1",
            reduced_formula="Li2O",
            chemsys="Li-O",
            nsites=3,
            generator="saps",
            substitution={"Na": "Li"},
            replaced_fraction=0.5,
            seed=7,
            round=2,
            template_id="t1",
            extra={"note": "x"},
        ),
        Prediction(
            id=Prediction.key("c1", "m1"),
            candidate_id="c1",
            model_version="m1",
            scheme="s1",
            energy_per_atom=-3.2,
            sigma=0.05,
            e_above_hull=0.01,
        ),
        Calculation(
            id=Calculation.key("c1", "h"),
            candidate_id="c1",
            engine="mlip",
            scheme="s1",
            settings_hash="h",
            state=CalcState.submitted,
            batch_id="123",
        ),
        _entry(1),
        _phase(1, stable=True),
        Round(
            id=Round.key("camp", 0), campaign="camp", index=0, steps={"generate": StepState.done}
        ),
        Campaign(id="camp", name="camp", config={"rounds": 3}),
        ModelVersion(id="m1", kind="gnn", scheme="s1", weights_path="/x", metrics={"mae": 0.01}),
    ]
    for record in records:
        repo.put([record])
        back = repo.get(type(record), record.id)
        assert back == record


def test_upsert_is_idempotent_and_replaces(repo):
    assert repo.upsert("phases", [_phase(1), _phase(2)]) == 2
    assert repo.upsert("phases", [_phase(1), _phase(2)]) == 2
    assert repo.count("phases") == 2
    changed = _phase(1, stable=True)
    repo.put([changed])
    assert repo.get(Phase, "p00001").is_stable is True
    assert repo.count("phases") == 2


def test_insert_new_skips_existing_ids_and_duplicates_in_batch(repo):
    assert repo.insert_new("entries", [_entry(1), _entry(2)]) == ["e00001", "e00002"]
    assert repo.insert_new("entries", [_entry(2), _entry(3), _entry(3)]) == ["e00003"]
    assert repo.count("entries") == 3


def test_filters_equality_lists_booleans_and_none(repo):
    repo.put([_phase(i, chemsys="Li-O" if i % 2 else "Mn-O", stable=i % 3 == 0) for i in range(12)])
    assert repo.count("phases", {"chemsys": "Li-O"}) == 6
    assert repo.count("phases", {"chemsys": ["Li-O", "Mn-O"]}) == 12
    assert repo.count("phases", {"is_stable": True}) == 4
    assert {p.id for p in repo.query(Phase, {"chemsys": "Mn-O", "is_stable": True})} == {
        "p00000",
        "p00006",
    }
    assert repo.count("phases", {"chemsys": []}) == 0
    assert sorted(repo.distinct("phases", "chemsys")) == ["Li-O", "Mn-O"]
    assert len(list(repo.find("phases", limit=5))) == 5


def test_long_id_lists_are_served(repo):
    repo.put([_phase(i) for i in range(1200)])
    ids = [f"p{i:05d}" for i in range(0, 2400, 2)]
    assert repo.count("phases", {"id": ids}) == 600
    assert len(repo.existing_ids("phases", ids)) == 600
    assert len(list(repo.find("phases", {"id": ids, "chemsys": "Li-O"}))) == 600


def test_unindexed_filter_is_refused(repo):
    with pytest.raises(StorageError, match="indexed fields"):
        list(repo.find("phases", {"e_above_hull": 0.0}))


def test_transaction_is_all_or_nothing(repo):
    repo.put([_phase(1)])
    with pytest.raises(RuntimeError):
        with repo.transaction():
            repo.put([_phase(2), _phase(3)])
            repo.put([_phase(1, stable=True)])
            repo.insert_new("entries", [_entry(9)])
            raise RuntimeError("crash mid-ingest")
    assert repo.count("phases") == 1
    assert repo.get(Phase, "p00001").is_stable is False
    assert repo.count("entries") == 0
    with repo.transaction():
        repo.put([_phase(2)])
    assert repo.count("phases") == 2


def test_update_fields_compare_and_set(repo):
    calc = Calculation(id="c:h", candidate_id="c", engine="mlip", scheme="s", settings_hash="h")
    repo.put([calc])
    assert repo.set_calculation_state(
        "c:h", CalcState.submitted, expect_state=CalcState.queued, batch_id="42"
    )
    # a second claimant loses: the state is no longer queued
    assert not repo.set_calculation_state(
        "c:h", CalcState.submitted, expect_state=CalcState.queued, batch_id="43"
    )
    back = repo.get(Calculation, "c:h")
    assert back.state is CalcState.submitted and back.batch_id == "42"
    assert repo.calculations(state="submitted")[0].id == "c:h"
    assert not repo.update_fields("calculations", "missing", {"state": "done"})


def test_invalid_update_is_rejected_and_leaves_record(repo):
    repo.put(
        [Calculation(id="c:h", candidate_id="c", engine="mlip", scheme="s", settings_hash="h")]
    )
    with pytest.raises(ValueError):
        repo.set_calculation_state("c:h", "not-a-state")
    assert repo.get(Calculation, "c:h").state is CalcState.queued


def test_delete_and_stats(repo):
    repo.put([_phase(i) for i in range(5)])
    assert repo.delete("phases", ["p00001", "p00002", "nope"]) == 2
    assert repo.stats()["phases"] == 3


def test_latest_model_and_predictions_for(repo):
    import datetime as dt

    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    repo.put([ModelVersion(id="m1", kind="gnn", scheme="s", weights_path="a", created_at=t0)])
    repo.put(
        [
            ModelVersion(
                id="m2", kind="gnn", scheme="s", weights_path="b", created_at=t0 + dt.timedelta(1)
            )
        ]
    )
    assert repo.latest_model(scheme="s").id == "m2"
    assert repo.latest_model(scheme="other") is None
    repo.put([Prediction(id=Prediction.key(c, "m2"), candidate_id=c, model_version="m2", scheme="s",
                         energy_per_atom=-1.0, sigma=0.1) for c in ("a", "b")])
    assert set(repo.predictions_for(["a", "b", "z"], "m2")) == {"a", "b"}


UNKNOWN_COLLECTION_CALLS = {
    "upsert": lambda repo: repo.upsert("phase", [_phase(1)]),
    "upsert nothing": lambda repo: repo.upsert("phase", []),
    "insert_new": lambda repo: repo.insert_new("phase", [_phase(1)]),
    "insert_new nothing": lambda repo: repo.insert_new("phase", []),
    "update_fields": lambda repo: repo.update_fields("phase", "p00001", {"is_stable": True}),
    "delete": lambda repo: repo.delete("phase", ["p00001"]),
    "find": lambda repo: list(repo.find("phase")),
    "find filtered": lambda repo: list(repo.find("phase", {"chemsys": "Li-O"})),
    "count": lambda repo: repo.count("phase"),
    "distinct": lambda repo: repo.distinct("phase", "chemsys"),
    "existing_ids": lambda repo: repo.existing_ids("phase", ["p00001"]),
    "stored table name": lambda repo: repo.count("sqlite_master"),
}


@pytest.mark.parametrize("call", list(UNKNOWN_COLLECTION_CALLS), ids=list(UNKNOWN_COLLECTION_CALLS))
def test_unknown_collection_is_a_storage_error_and_writes_nothing(repo, call):
    repo.put([_phase(1)])
    with pytest.raises(StorageError, match="unknown collection"):
        UNKNOWN_COLLECTION_CALLS[call](repo)
    assert repo.stats() == {**dict.fromkeys(repo.stats(), 0), "phases": 1}
    if hasattr(repo, "db"):  # MongoDB creates a collection on first write: none may appear
        assert "phase" not in repo.db.list_collection_names()


def test_distinct_needs_an_indexed_field(repo):
    repo.put([_phase(1)])
    with pytest.raises(StorageError, match="indexed field"):
        repo.distinct("phases", "e_above_hull")
