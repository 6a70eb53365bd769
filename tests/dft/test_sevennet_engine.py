"""SevenNet-0 as a relaxation engine beside CHGNet: registered by name, its own energy scheme,
offline (weights from the sevenn wheel), through the relaxation service and the local
dispatcher like every engine, with the energy SevenNet itself gives the relaxed crystal."""

from __future__ import annotations

import pytest
from dft_helpers import rocksalt, si_diamond
from pymatgen.core import Lattice, Structure

from gnomon.config import EngineConfig, Settings
from gnomon.dft.engine import engine_from_spec, make_engine
from gnomon.dft.errors import InputError
from gnomon.dft.forcefield import CHGNetEngine, SevenNetEngine
from gnomon.dft.potentials import sevennet_elements
from gnomon.dft.registry import ENGINES

pytest.importorskip("sevenn", reason="sevenn is not installed: the SevenNet engine is skipped")


def test_sevennet_is_an_engine_with_its_own_scheme():
    assert ENGINES.resolve("sevennet") is SevenNetEngine
    assert EngineConfig(name="sevennet", options={"steps": 5}).name == "sevennet"
    engine = make_engine("sevennet", Settings(), fmax=0.1)
    assert engine.scheme == "mlip-sevennet-0" != CHGNetEngine().scheme
    assert SevenNetEngine(model="7net-l3i5").scheme == "mlip-sevennet-l3i5"
    again = engine_from_spec(engine.spec())
    assert type(again) is SevenNetEngine and again == engine
    assert again.settings_hash == engine.settings_hash
    # where the model runs is not what was computed; the settings are
    assert SevenNetEngine(fmax=0.1, device="cuda").settings_hash == engine.settings_hash
    assert SevenNetEngine(fmax=0.05).settings_hash != engine.settings_hash
    assert engine.inputs_hash(si_diamond()) != engine.inputs_hash(si_diamond(5.5))


def test_sevennet_rejects_what_it_cannot_relax():
    known = sevennet_elements()
    assert {"Li", "Mn", "O", "Si", "Pu"} <= known and "Cm" not in known
    engine = SevenNetEngine()
    engine.check([si_diamond(), rocksalt(4.2, "Li", "F")])
    cm = Structure(Lattice.cubic(3.5), ["Cm"], [[0, 0, 0]])
    with pytest.raises(InputError, match="Cm: SevenNet 7net-0 does not support Cm"):
        engine.check([si_diamond(), cm])
    alloy = Structure(Lattice.cubic(3.8), [{"Cu": 0.5, "Au": 0.5}], [[0, 0, 0]])
    with pytest.raises(InputError, match="partial occupancies"):
        engine.check([alloy])


@pytest.mark.slow
def test_sevennet_relaxation_through_the_local_dispatcher(sqlite_repo, tmp_path):
    """One strained Si cell: relaxed in a worker process, stored as an entry of SevenNet's
    scheme (an elemental reference there, so it is on its hull), with the energy a direct
    SevenNetCalculator call gives the relaxed structure."""
    import torch
    from pymatgen.io.ase import AseAtomsAdaptor
    from sevenn.calculator import SevenNetCalculator

    from gnomon.dft.local import LocalDispatcher
    from gnomon.dft.service import Relaxations
    from gnomon.storage.documents import CalcState, Entry

    # one thread: on a shared machine torch's threads spinning against each other cost more
    # than they give a 2-atom cell
    local = LocalDispatcher(max_workers=1, env={"OMP_NUM_THREADS": "1"})
    svc = Relaxations(sqlite_repo, tmp_path / "runs", {"local": local})
    engine = SevenNetEngine(fmax=0.1, steps=40)
    start = si_diamond(5.75)  # 5 % strained
    report = svc.submit([start], engine, "local")
    svc.wait(poll_s=0.5, timeout_s=300)

    (calc,) = sqlite_repo.calculations()
    assert calc.id == report.new[0] and calc.engine == "sevennet"
    assert calc.state == CalcState.done, calc.failure_reason
    entry = sqlite_repo.get(Entry, calc.entry_id)
    assert entry.scheme == "mlip-sevennet-0" and sqlite_repo.schemes() == ["mlip-sevennet-0"]
    assert entry.code_version.startswith("sevenn ") and "model 7net-0" in entry.code_version
    assert entry.inputs_hash == engine.inputs_hash(start) == calc.inputs_hash
    (phase,) = sqlite_repo.phases(scheme="mlip-sevennet-0")
    assert phase.id == entry.id and phase.is_stable

    relaxed = Structure.from_dict(entry.structure)
    assert relaxed.volume < 0.97 * start.volume  # it relaxed towards Si's ~5.45 A cell
    atoms = AseAtomsAdaptor.get_atoms(relaxed)
    atoms.calc = SevenNetCalculator("7net-0", device="cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        direct = atoms.get_potential_energy() / len(atoms)
    finally:
        torch.set_num_threads(threads)
    assert entry.energy_per_atom == pytest.approx(direct, abs=1e-4)
    assert -6.0 < direct < -4.5  # SevenNet-0 (PBE-trained) Si is about -5.4 eV/atom
