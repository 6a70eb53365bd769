"""A campaign's retraining learns the relaxed energy from the unrelaxed candidate too."""

from __future__ import annotations

import pytest
from pymatgen.core import Structure

from gnomon.models.retrain import scheme_samples
from gnomon.pipeline.generation.identity import candidate_from_structure
from gnomon.pipeline.thermo.entries import entry_from_structure
from gnomon.storage import open_repository
from tests.models.conftest import toy_energy, toy_structures

SCHEME = "toy"


def test_each_entry_is_paired_with_the_candidate_the_screen_saw(tmp_path):
    repo = open_repository(f"sqlite:///{tmp_path / 'g.db'}")
    relaxed = toy_structures(3, seed=4)
    inputs = []
    for s in relaxed:
        u = s.copy()
        u.scale_lattice(s.volume * 1.3)
        inputs.append(u)
    first = candidate_from_structure(inputs[0], "saps")
    second = candidate_from_structure(inputs[1], "saps")
    # a DFT start relaxed by an ML stage from ``second``: the screen saw ``second``
    staged = candidate_from_structure(relaxed[1], "mlip", parent_candidate_id=second.id)
    repo.put([first, second, staged])
    entries = [
        entry_from_structure(relaxed[0], toy_energy(relaxed[0]) * len(relaxed[0]), SCHEME,
                             candidate_id=first.id),
        entry_from_structure(relaxed[1], toy_energy(relaxed[1]) * len(relaxed[1]), SCHEME,
                             candidate_id=staged.id),
        entry_from_structure(relaxed[2], toy_energy(relaxed[2]) * len(relaxed[2]), SCHEME),
    ]
    repo.put(entries)
    samples = scheme_samples(repo, entries)
    by_kind = {k: [s for s in samples if s.kind == k] for k in ("relaxed", "unrelaxed")}
    assert len(by_kind["relaxed"]) == 3 and len(by_kind["unrelaxed"]) == 2
    for s, entry, u in zip(by_kind["unrelaxed"], entries, inputs, strict=False):
        assert s.key == f"{entry.id}:unrelaxed"
        assert s.energy_per_atom == pytest.approx(entry.energy_per_atom)
        assert Structure.from_dict(s.structure).volume == pytest.approx(u.volume)
    repo.close()
