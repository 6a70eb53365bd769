"""One force-field engine for every universal potential: each potential is a registry entry,
an engine under its own name, with the settings hashes, specs and messages the two engines it
replaced had (calculations already stored keep their ids)."""

from __future__ import annotations

import pytest
from dft_helpers import rocksalt, si_diamond
from pymatgen.core import Lattice, Structure

from gnomon.config import Settings
from gnomon.dft.engine import engine_from_spec, make_engine
from gnomon.dft.errors import InputError
from gnomon.dft.forcefield import (
    CHGNetEngine,
    EMTEngine,
    ForceFieldEngine,
    SevenNetEngine,
    engine_for,
)
from gnomon.dft.mlip_batch import BatchRelaxer
from gnomon.dft.parsing import entry_from_task
from gnomon.dft.potentials import POTENTIALS, potential_named
from gnomon.dft.registry import ENGINES


def fcc_cu(a: float = 3.7) -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Cu"], [[0, 0, 0]])


def test_every_potential_is_an_engine_of_the_one_class():
    for name, potential in POTENTIALS.items():
        cls = engine_for(name)
        assert issubclass(cls, ForceFieldEngine) and cls.potential is potential
        assert ENGINES.resolve(potential.engine) is cls
    assert (CHGNetEngine.name, SevenNetEngine.name, EMTEngine.name) == ("mlip", "sevennet", "emt")
    with pytest.raises(ValueError, match="unknown potential 'mace': choose one of chgnet"):
        potential_named("mace")
    with pytest.raises(TypeError, match="relaxes with a potential"):
        ForceFieldEngine()


def test_stored_settings_hashes_and_specs_are_those_of_the_engines_before():
    """The hashes below are what gnomon.dft.mlip and gnomon.dft.sevennet computed: a
    calculation's id is candidate:settings_hash, so they must never move."""
    chgnet = make_engine("mlip", Settings())
    assert chgnet.scheme == "mlip-chgnet-0.3.0" and chgnet.settings_hash == "c014b838480282a4"
    assert chgnet.spec() == {"engine": "mlip", "settings": {
        "model_version": "0.3.0", "fmax": 0.05, "steps": 500, "relax_cell": True,
        "optimizer": "FIRE", "calculator_kwargs": {}}}
    assert make_engine("mlip", Settings(), fmax=0.1, steps=150).settings_hash == "52bf9f9986ffd98d"
    sevennet = make_engine("sevennet", Settings())
    assert sevennet.scheme == "mlip-sevennet-0" and sevennet.settings_hash == "b966493601dcd9c5"
    assert sevennet.spec()["settings"] == {"model": "7net-0", "fmax": 0.05, "steps": 500,
                                           "relax_cell": True, "optimizer": "FIRE",
                                           "device": "cpu"}
    assert make_engine("mlip", Settings(), model_version="0.2.0").scheme == "mlip-chgnet-0.2.0"


def test_a_potential_takes_only_its_own_settings():
    with pytest.raises(TypeError, match="CHGNet engine has no setting device"):
        make_engine("mlip", Settings(), device="cuda")
    with pytest.raises(TypeError, match="SevenNet engine takes no calculator_kwargs"):
        SevenNetEngine(calculator_kwargs={"modal": "x"})
    with pytest.raises(TypeError, match="EMT engine takes no model"):
        EMTEngine(model="x")
    assert CHGNetEngine().device is None  # CHGNet picks its device itself, as it always did


def test_emt_is_a_cheap_real_potential_with_its_own_scheme():
    engine = make_engine("emt", Settings(), fmax=0.1)
    assert type(engine) is EMTEngine and engine.scheme == "mlip-emt"
    assert engine_from_spec(engine.spec()) == engine
    engine.check([fcc_cu()])
    with pytest.raises(InputError, match="NaCl: EMT does not support Cl, Na"):
        engine.check([rocksalt()])


def test_the_batch_relaxer_batches_chgnet_only():
    with pytest.raises(ValueError, match="batches CHGNet's model calls; EMT"):
        list(BatchRelaxer(EMTEngine()).relax([("cu", fcc_cu())]))


@pytest.mark.slow
def test_an_emt_relaxation_makes_an_entry_of_its_scheme(tmp_path):
    engine = EMTEngine(fmax=0.02, steps=200)
    start = fcc_cu(3.75)
    doc = engine.relax(start, tmp_path)
    assert doc.engine == "emt" and doc.scheme == "mlip-emt" and doc.converged
    assert doc.code == "ase" and doc.code_version.endswith(" EMT")
    assert doc.final_structure.lattice.a == pytest.approx(3.59, abs=0.02)  # EMT's Cu
    entry = entry_from_task(doc, candidate_id="c")
    assert entry.scheme == "mlip-emt" and entry.inputs_hash == engine.inputs_hash(start)
    with pytest.raises(InputError):
        engine.check([si_diamond()])
