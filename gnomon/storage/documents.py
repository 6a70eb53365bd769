"""The records gnomon keeps, as typed documents.

Every record has a natural key (``id``) so that writes are idempotent upserts: a candidate is
keyed by its structure hash, a prediction by candidate and model version, a calculation by
candidate and engine-settings hash, a phase by its entry. Structures are stored as pymatgen
``as_dict()`` payloads so any pymatgen version can read them back.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


def utcnow() -> datetime:
    return datetime.now(UTC)


def stable_hash(payload: Any, length: int = 16) -> str:
    """A short content hash of a JSON-serialisable payload (key order does not matter)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


_AMOUNT_OF_ONE = re.compile(r"(?<=[A-Za-z])1(?![\d.])")


def cell_formula(formula: str) -> str:
    """A cell's formula written as pymatgen writes formulas: no spaces, no amounts of one.

    Producers build it from ``Composition.formula`` ("Li3 Mn1 O3"); stored as "Li3Mn1O3" it
    was what people saw. Normalising in the record type fixes every producer, and records
    stored that way read back as "Li3MnO3". Fractional amounts ("Li0.5O") are kept.
    """
    return _AMOUNT_OF_ONE.sub("", formula.replace(" ", ""))


# The formula of the stored cell (``Li6Mn2O6`` for two formula units); people are shown the
# reduced formula (``reduced_formula``, pymatgen's: ``Li3MnO3``, ``Li``).
CellFormula = Annotated[str, AfterValidator(cell_formula)]


class Record(BaseModel):
    """Base of every stored document."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    id: str

    def to_doc(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_doc(cls, doc: dict[str, Any]):
        doc = {k: v for k, v in doc.items() if k != "_id"}
        return cls.model_validate(doc)


class Candidate(Record):
    """A generated structure and where it came from. ``id`` is its structure hash."""

    structure: dict[str, Any]
    formula: CellFormula
    reduced_formula: str
    chemsys: str
    nsites: int
    generator: str
    generator_version: str = ""
    template_id: str | None = None
    substitution: dict[str, str] | None = None
    replaced_fraction: float | None = None
    seed: int | None = None
    campaign: str | None = None
    round: int | None = None
    fingerprint: str | None = None
    # a structure relaxed by an earlier fidelity stage (the ML-relaxed start of a DFT run):
    # the candidate it was relaxed from and the entry that relaxation produced
    parent_candidate_id: str | None = None
    parent_entry_id: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=utcnow)


class Prediction(Record):
    """An ensemble's verdict on a candidate. ``id`` is ``<candidate>:<model version>``."""

    candidate_id: str
    model_version: str
    scheme: str
    energy_per_atom: float
    sigma: float
    e_above_hull: float | None = None
    campaign: str | None = None
    round: int | None = None
    created_at: datetime = Field(default_factory=utcnow)

    @staticmethod
    def key(candidate_id: str, model_version: str) -> str:
        return f"{candidate_id}:{model_version}"


class CalcState(StrEnum):
    queued = "queued"
    submitted = "submitted"
    running = "running"
    done = "done"
    failed = "failed"
    cancelled = "cancelled"


class Calculation(Record):
    """One relaxation of one candidate with one engine setting.

    ``id`` is ``<candidate>:<settings hash>``, so submitting the same candidate with the same
    engine settings twice finds the existing record instead of running again.
    """

    candidate_id: str
    engine: str
    scheme: str
    settings_hash: str
    inputs_hash: str | None = None
    state: CalcState = CalcState.queued
    dispatcher: str | None = None
    batch_id: str | None = None
    attempts: int = 0
    failure_reason: str | None = None
    failures: list[str] = Field(default_factory=list)
    workdir: str | None = None
    task_doc: dict[str, Any] | None = None
    entry_id: str | None = None
    campaign: str | None = None
    round: int | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    @staticmethod
    def key(candidate_id: str, settings_hash: str) -> str:
        return f"{candidate_id}:{settings_hash}"


class Entry(Record):
    """A computed energy of a final structure in one energy scheme, corrections applied.

    ``energy`` is the corrected total energy (eV); ``uncorrected_energy`` what the code gave.
    """

    scheme: str
    formula: CellFormula
    reduced_formula: str
    chemsys: str
    elements: list[str]
    nsites: int
    composition: dict[str, float]
    energy: float
    uncorrected_energy: float
    correction: float = 0.0
    energy_per_atom: float
    structure: dict[str, Any] | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    source: str | None = None
    candidate_id: str | None = None
    calculation_id: str | None = None
    code_version: str | None = None
    inputs_hash: str | None = None
    campaign: str | None = None
    round: int | None = None
    # the entry of the earlier fidelity stage whose relaxed structure this calculation started
    # from (a DFT entry's mlip entry): with the candidates' parents, the path of a discovery
    parent_entry_id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=utcnow)


class Phase(Record):
    """An entry's place on the hull of its scheme and chemical system. ``id`` is the entry id."""

    scheme: str
    chemsys: str
    reduced_formula: str
    energy_per_atom: float
    formation_energy_per_atom: float | None = None
    e_above_hull: float | None = None
    decomposition_energy: float | None = None
    is_stable: bool | None = None
    stable_at_ingest: bool | None = None
    decomposes_to: list[str] = Field(default_factory=list)
    note: str | None = None
    updated_at: datetime = Field(default_factory=utcnow)


class StepState(StrEnum):
    pending = "pending"
    running = "running"
    done = "done"
    failed = "failed"


class Round(Record):
    """One round of a campaign. ``id`` is ``<campaign>:<index>``."""

    campaign: str
    index: int
    steps: dict[str, StepState] = Field(default_factory=dict)
    outputs: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None

    @staticmethod
    def key(campaign: str, index: int) -> str:
        return f"{campaign}:{index}"


class Campaign(Record):
    """A discovery campaign: its validated configuration and status."""

    name: str
    config: dict[str, Any]
    status: str = "created"
    rounds_done: int = 0
    schedule: str | None = None  # its Prefect deployment's schedule: a cron, or "every <N>s"
    rounds_per_run: int = 1  # rounds each scheduled run adds
    stop_reason: str | None = None  # the stopping rule that ended it
    # the run advancing it now ("host:pid:run id"; gnomon.campaign.runs): never two at once
    lease: str | None = None
    lease_renewed_at: datetime | None = None
    runs: list[dict[str, Any]] = Field(default_factory=list)  # its latest runs and their outcome
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class ModelVersion(Record):
    """A trained model ensemble and everything needed to reproduce and trust it."""

    kind: str
    scheme: str
    weights_path: str
    config: dict[str, Any] = Field(default_factory=dict)
    training_data_hash: str | None = None
    n_train: int | None = None
    normalization: dict[str, Any] = Field(default_factory=dict)
    calibration: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    parent: str | None = None
    campaign: str | None = None
    round: int | None = None
    created_at: datetime = Field(default_factory=utcnow)


class Scheme(Record):
    """An energy scheme a person registered by name (``gnomon db import --new-scheme``), with
    what it means: which code, settings and corrections its energies come from. The id is the
    scheme's name; the schemes gnomon's own engines produce need no record
    (:data:`gnomon.pipeline.thermo.schemes.BUILTIN_SCHEMES`)."""

    description: str
    created_at: datetime = Field(default_factory=utcnow)


RECORD_TYPES: dict[str, type[Record]] = {
    "candidates": Candidate,
    "predictions": Prediction,
    "calculations": Calculation,
    "entries": Entry,
    "phases": Phase,
    "rounds": Round,
    "campaigns": Campaign,
    "models": ModelVersion,
    "schemes": Scheme,
}

# Fields each collection is indexed (and queryable) by, besides ``id``.
INDEXED_FIELDS: dict[str, tuple[str, ...]] = {
    "candidates": ("reduced_formula", "chemsys", "campaign", "round", "fingerprint"),
    "predictions": ("candidate_id", "model_version", "scheme", "campaign", "round"),
    "calculations": ("candidate_id", "state", "scheme", "campaign", "round", "batch_id"),
    "entries": ("scheme", "chemsys", "reduced_formula", "candidate_id", "campaign", "round"),
    "phases": ("scheme", "chemsys", "reduced_formula", "is_stable"),
    "rounds": ("campaign",),
    "campaigns": ("name",),
    "models": ("scheme", "kind", "campaign"),
    "schemes": (),
}

# Compound indexes: the hull engine reads entries and phases by scheme and chemical system
# together (and counts them to check the stored phases are complete), which a compound index
# answers without touching the rows.
COMPOUND_INDEXES: dict[str, tuple[tuple[str, ...], ...]] = {
    "entries": (("scheme", "chemsys"),),
    "phases": (("scheme", "chemsys"),),
}


def single_field_indexes(collection: str) -> tuple[str, ...]:
    """Indexed fields that need an index of their own (not the first field of a compound)."""
    leading = {c[0] for c in COMPOUND_INDEXES.get(collection, ())}
    return tuple(f for f in INDEXED_FIELDS[collection] if f not in leading)


# Indexed fields fixed once a record with that id exists: a phase's scheme, chemical system
# and formula are its entry's. Updates leave their index entries alone, which nearly halves
# the pages an ingest rewrites.
FIXED_BY_ID: dict[str, tuple[str, ...]] = {
    "phases": ("scheme", "chemsys", "reduced_formula"),
}
