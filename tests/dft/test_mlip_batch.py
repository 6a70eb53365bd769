"""Lock-step batched CHGNet relaxations follow the engine's own dynamics, structure by structure."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from gnomon.dft.forcefield import CHGNetEngine
from gnomon.dft.mlip_batch import BatchRelaxer, BatchResult


def _rattled(seed: int) -> list[Structure]:
    rng = np.random.default_rng(seed)
    out = []
    for a, b, lat in [("Na", "Cl", 5.5), ("Mg", "O", 4.3), ("Li", "F", 3.8), ("K", "Br", 6.3)]:
        s = Structure.from_spacegroup(
            "Fm-3m", Lattice.cubic(lat), [a, b], [[0, 0, 0], [0.5, 0.5, 0.5]]
        )
        s = s.get_primitive_structure()
        s.make_supercell([1, 1, 2])
        s.perturb(0.15, seed=int(rng.integers(1000)))
        out.append(s)
    return out


@pytest.mark.slow
def test_batched_relaxation_equals_the_engine_one_by_one():
    engine = CHGNetEngine(fmax=0.1, steps=60)
    structures = _rattled(3)
    relaxer = BatchRelaxer(engine, batch_size=3)  # smaller than the input: refills the batch
    batched = dict(relaxer.relax(enumerate(structures)))
    assert sorted(batched) == list(range(len(structures)))

    maker = engine.maker(structures[0])
    maker.relax_kwargs = {**maker.relax_kwargs, "final_atoms_object_file": None}
    for i, structure in enumerate(structures):
        single = maker._run_ase_safe(structure)  # what the engine's job runs
        result = batched[i]
        assert isinstance(result, BatchResult)
        # atomate2's observer records the start, each step, and the end once more
        steps = len(single.trajectory) - 2
        assert result.steps == steps
        assert result.converged == bool(single.is_force_converged)
        final = single.trajectory.frame_properties[-1]["energy"]
        assert result.energy == pytest.approx(final, abs=1e-4 * len(structure))
        assert result.structure.lattice.volume == pytest.approx(
            single.final_mol_or_struct.lattice.volume, rel=1e-4)
        assert result.initial_energy == pytest.approx(
            single.trajectory.frame_properties[0]["energy"], abs=1e-4 * len(structure))


@pytest.mark.slow
def test_an_impossible_structure_is_reported_not_raised():
    lonely = Structure(Lattice.cubic(30.0), ["Na"], [[0, 0, 0]])  # no neighbour within the cutoff
    good = _rattled(1)[0]
    out = dict(BatchRelaxer(CHGNetEngine(fmax=0.1, steps=5), batch_size=4).relax(
        [("lonely", lonely), ("good", good)]))
    assert isinstance(out["good"], BatchResult)
    assert isinstance(out["lonely"], (str, BatchResult))
    if isinstance(out["lonely"], str):
        assert "CHGNet" in out["lonely"]


def test_only_fire_with_a_relaxed_cell_is_reproduced():
    relaxer = BatchRelaxer(CHGNetEngine(optimizer="BFGS"))
    with pytest.raises(ValueError, match="FIRE"):
        list(relaxer.relax([("x", _rattled(0)[0])]))


def test_a_collapsing_cell_is_given_up_with_its_reason():
    relaxer = BatchRelaxer(CHGNetEngine(), min_volume_ratio=0.5)
    structure = _rattled(2)[0]
    from ase.optimize import FIRE
    from pymatgen.io.ase import AseAtomsAdaptor

    from gnomon.dft.mlip_batch import _Precomputed, _Run

    atoms = AseAtomsAdaptor.get_atoms(structure)
    run = _Run("x", atoms, FIRE(atoms, logfile=None), _Precomputed(), atoms.get_volume(), steps=7)
    assert relaxer.diverged(run) is None
    atoms.set_cell(atoms.cell * 0.7, scale_atoms=True)  # 0.34 of the volume
    assert "diverged after 7 steps: volume x0.34" in relaxer.diverged(run)
    atoms.set_cell(atoms.cell / 0.7 * 1.3, scale_atoms=True)  # 2.2 times the volume
    assert "volume x2.20" in relaxer.diverged(run)


@pytest.mark.slow
def test_each_relaxation_keeps_its_first_some_intermediate_and_last_frames():
    """Frames are geometries the relaxation passed through, with their energies: the first is
    the input at the initial energy, the last the result at the final energy."""
    structures = _rattled(5)[:2]
    results = dict(BatchRelaxer(CHGNetEngine(fmax=0.05, steps=40), max_frames=4)
                   .relax(enumerate(structures)))
    for i, structure in enumerate(structures):
        result = results[i]
        assert isinstance(result, BatchResult)
        frames = result.frames
        assert 2 <= len(frames) <= 4
        assert [f.step for f in frames] == sorted({f.step for f in frames})
        first, last = frames[0], frames[-1]
        n = len(structure)
        assert first.step == 0 and first.energy_per_atom == pytest.approx(result.initial_energy / n,
                                                                          abs=1e-6)
        assert np.allclose(first.as_structure().frac_coords % 1, structure.frac_coords % 1,
                           atol=1e-4)
        assert last.step == result.steps
        assert last.energy_per_atom == pytest.approx(result.energy / n, abs=1e-6)
        assert np.allclose(last.as_structure().lattice.matrix, result.structure.lattice.matrix,
                           atol=1e-4)
        assert [s.specie.symbol for s in last.as_structure()] == [
            s.specie.symbol for s in structure]
    none = dict(BatchRelaxer(CHGNetEngine(fmax=0.05, steps=5), max_frames=0)
                .relax(enumerate(structures[:1])))
    assert none[0].frames == []
