"""gnomon serve on a real loopback port, as the field's clients use it: optimade's validator,
pymatgen's OptimadeRester, and `gnomon db import` from one gnomon server into another database."""

from __future__ import annotations

import json

import pytest
from pymatgen.core import Structure
from serve_helpers import SCHEME, live_server
from typer.testing import CliRunner

from gnomon.cli import app
from gnomon.storage import Candidate, open_repository


@pytest.mark.slow
def test_optimade_validator_reports_no_failures(campaign_urls):
    from optimade.validator import ImplementationValidator

    with live_server(campaign_urls["sqlite"]) as base:
        validator = ImplementationValidator(base_url=f"{base}/v1", verbosity=-1, fail_fast=False)
        validator.validate_implementation()
    results = validator.results
    assert results.failure_count == 0, results.failure_messages
    assert results.internal_failure_count == 0, results.internal_failure_messages
    # it did test the structures and their queries, not just /info
    assert results.success_count >= 40


def test_pymatgen_optimade_rester_retrieves_structures(campaign_urls, monkeypatch):
    from pymatgen.ext.optimade import OptimadeRester

    repo = open_repository(campaign_urls["sqlite"])
    try:
        with_structure = [e for e in repo.entries() if e.structure is not None]
    finally:
        repo.close()
    li_o = {e.id for e in with_structure if {"Li", "O"} <= set(e.elements)}
    ternary = {e.id: e for e in with_structure if len(e.elements) == 3}
    assert li_o and ternary
    with live_server(campaign_urls["sqlite"]) as base:
        monkeypatch.setattr(OptimadeRester, "aliases", {"gnomon": f"{base}/"})
        rester = OptimadeRester("gnomon", timeout=30)
        by_elements = rester.get_structures(elements=["Li", "O"])["gnomon"]
        by_nelements = rester.get_structures(nelements=3)["gnomon"]
    assert set(by_elements) == li_o
    assert set(by_nelements) == set(ternary)
    for sid, structure in by_nelements.items():
        stored = Structure.from_dict(ternary[sid].structure)
        assert structure.composition == stored.composition
        assert structure.lattice.volume == pytest.approx(stored.lattice.volume)


def test_import_round_trip_from_a_gnomon_server(campaign_urls, tmp_path):
    """`gnomon db import <url> --filter --scheme` files the provider's structures with their
    energies; their hull in the new database is the one the provider computed."""
    source = open_repository(campaign_urls["sqlite"])
    try:
        wanted = {e.id: e for e in source.entries()
                  if e.structure is not None and set(e.elements) <= {"Li", "O"}}
        phases = {p.id: p for p in source.phases()}
    finally:
        source.close()
    target = f"sqlite:///{tmp_path / 'imported.db'}"
    templates = tmp_path / "templates.json"
    runner = CliRunner()
    with live_server(campaign_urls["sqlite"]) as base:
        result = runner.invoke(
            app,
            [
                "db",
                "import",
                f"{base}/v1",
                "--filter",
                'elements HAS ONLY "Li","O"',
                "--new-scheme",
                SCHEME,
                "--description",
                "the served campaign's toy energies",
                "--db",
                target,
            ],
            catch_exceptions=False,
        )
        assert result.exit_code == 0, result.output
        assert "imported as entries" in result.output
        # without energies (a field the provider does not have) they become candidates
        bare = runner.invoke(
            app,
            [
                "db",
                "import",
                base,
                "--filter",
                "nelements=3",
                "--scheme",
                SCHEME,
                "--energy-field",
                "_other_energy",
                "--templates-out",
                str(templates),
                "--db",
                target,
            ],
            catch_exceptions=False,
        )
        assert bare.exit_code == 0, bare.output
        assert "stored as candidates" in bare.output
        broken = runner.invoke(app, ["db", "import", base, "--filter", 'elements HAS ALL "Li" AND',
                                     "--scheme", SCHEME, "--db", target], catch_exceptions=False)
        assert broken.exit_code == 1
        assert "400" in broken.output and "nothing was imported" in broken.output
    repo = open_repository(target)
    try:
        imported = repo.entries()
        new_phases = {p.id: p for p in repo.phases()}
        candidates = list(repo.query(Candidate))
    finally:
        repo.close()
    assert len(imported) == len(wanted)
    by_structure = {(e.reduced_formula, round(e.energy_per_atom, 5)): e for e in wanted.values()}
    for entry in imported:
        original = by_structure[(entry.reduced_formula, round(entry.energy_per_atom, 5))]
        assert entry.scheme == SCHEME
        assert entry.source.endswith(f"/structures/{original.id}")
        assert new_phases[entry.id].e_above_hull == pytest.approx(
            phases[original.id].e_above_hull, abs=1e-6
        )
    assert candidates and all(
        c.generator == "optimade" and len(c.chemsys.split("-")) == 3 for c in candidates
    )
    written = json.loads(templates.read_text())
    # identical structures (one per structure hash) are one candidate
    assert {c["id"] for c in written} == {c.id for c in candidates}
    from gnomon.pipeline.generation.templates import templates_from_files

    usable = list(templates_from_files([templates]))
    assert len(usable) == len(written)
