"""Small crystals with a toy energy, and one tiny ensemble trained once per session."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from gnomon.models.ensemble import ModelSpec
from gnomon.models.training import Sample, TrainConfig, Trainer

REFS = {"Li": -1.9, "Na": -1.3, "K": -1.1, "Mg": -1.6, "Cl": -1.8, "Br": -1.6, "O": -4.9}
CATIONS = ["Li", "Na", "K", "Mg"]
ANIONS = ["Cl", "Br", "O"]


def cscl(a: str, b: str, lattice: float) -> Structure:
    return Structure(Lattice.cubic(lattice), [a, b], [[0, 0, 0], [0.5, 0.5, 0.5]])


def toy_energy(s: Structure) -> float:
    """Energy per atom: element references plus a volume well (a smooth, learnable target)."""
    comp = s.composition
    ref = sum(REFS[el.symbol] * comp.get_atomic_fraction(el) for el in comp.elements)
    v = s.volume / len(s)
    return ref + 1.5 * ((v - 14.0) / 14.0) ** 2


def toy_structures(n: int, seed: int = 0) -> list[Structure]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a, b = rng.choice(CATIONS), rng.choice(ANIONS)
        s = cscl(a, b, rng.uniform(2.7, 3.5))
        if rng.random() < 0.4:
            s.make_supercell([1, 1, 2])
            s.replace(0, rng.choice(CATIONS))
        out.append(s)
    return out


def toy_samples(n: int, seed: int = 0) -> list[Sample]:
    return [Sample.from_structure(f"toy-{seed}-{i}", s, toy_energy(s))
            for i, s in enumerate(toy_structures(n, seed))]


TINY_SPEC = ModelSpec(hidden=8, num_layers=2, num_radial=8, cutoff=4.0)


def tiny_config(**kw) -> TrainConfig:
    base = dict(ensemble_size=2, max_epochs=3, patience=3, batch_size=16, val_fraction=0.25,
                test_fraction=0.0, threads=1)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="session")
def tiny_result():
    torch.manual_seed(0)
    return Trainer(TINY_SPEC, tiny_config()).fit(toy_samples(48))


@pytest.fixture(scope="session")
def tiny_ensemble(tiny_result):
    return tiny_result.ensemble
