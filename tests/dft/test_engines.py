"""VASP up to the boundary (inputs, parsing into MP2020 entries), CHGNet, engine specs."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest
from dft_helpers import rocksalt, si_diamond
from jobflow import Maker, job
from pydantic import ValidationError
from pymatgen.core import Lattice, Structure

from gnomon.config import Settings
from gnomon.dft.engine import engine_from_spec, make_engine
from gnomon.dft.errors import InputError, RelaxationError
from gnomon.dft.forcefield import CHGNetEngine
from gnomon.dft.frames import Frame
from gnomon.dft.parsing import entry_from_task, task_from_vasp
from gnomon.dft.qe import QEEngine
from gnomon.dft.registry import DISPATCHERS, ENGINES
from gnomon.dft.settings import VaspSettings
from gnomon.dft.task import TaskDocument
from gnomon.dft.vasp import VaspEngine


def feo() -> Structure:
    return rocksalt(4.33, "Fe", "O")


def test_vasp_inputs_without_vasp_or_potcars(tmp_path):
    engine = VaspEngine()
    assert engine.scheme == "vasp-pbe-mp2020"
    files = engine.write_inputs(feo(), tmp_path)
    assert sorted(p.name for p in files) == ["INCAR", "KPOINTS", "POSCAR", "POTCAR.spec"]
    incar = (tmp_path / "INCAR").read_text()
    assert "LDAU = True" in incar and "LDAUU = 5.3 0" in incar  # MP GGA+U on Fe in an oxide
    assert "ISIF = 3" in incar and "IBRION = 2" in incar
    assert (tmp_path / "POTCAR.spec").read_text().split() == ["Fe_pv", "O"]
    assert "Fe O" in (tmp_path / "POSCAR").read_text()
    assert engine.inputs_hash(feo()) == engine.inputs_hash(feo())
    assert engine.inputs_hash(feo()) != engine.inputs_hash(rocksalt(4.4, "Fe", "O"))

    scan = VaspEngine(VaspSettings(use_r2scan=True))
    assert scan.scheme == "vasp-r2scan" and scan.settings_hash != engine.settings_hash
    scan.write_inputs(si_diamond(), tmp_path / "scan")
    assert "METAGGA = R2scan" in (tmp_path / "scan" / "INCAR").read_text()


def test_vasp_not_found_is_a_clear_input_error():
    with pytest.raises(InputError, match="VASP not found"):
        VaspEngine(VaspSettings(vasp_command="no-such-vasp_std")).check([si_diamond()])


def test_vasp_task_into_mp2020_entry():
    """The parsing path from atomate2's TaskDoc (duck-typed here: no VASP run exists)."""
    s = feo()
    entry_params = {
        "run_type": "GGA+U", "is_hubbard": True, "hubbards": {"Fe": 5.3, "O": 0.0},
        "potcar_spec": [{"titel": "PAW_PBE Fe_pv 06Sep2000", "hash": None},
                        {"titel": "PAW_PBE O 08Apr2002", "hash": None}],
    }
    native = SimpleNamespace(
        output=SimpleNamespace(
            energy=-16.5,
            structure=s,
            forces=[[0, 0, 0]] * 2,
            stress=[[0.1, 0, 0], [0, 0.1, 0], [0, 0, 0.1]],
        ),
        input=SimpleNamespace(structure=s),
        entry=SimpleNamespace(parameters=entry_params),
        run_type="GGA+U",
        state="successful",
        vasp_version="6.4.2",
        custodian=[],
        dir_name="/x",
    )
    doc = task_from_vasp(native, scheme="vasp-pbe-mp2020", settings_hash="s", inputs_hash="i")
    assert doc.converged and doc.code_version == "6.4.2"
    entry = entry_from_task(doc)
    assert entry.scheme == "vasp-pbe-mp2020"
    assert entry.uncorrected_energy == -16.5 and entry.correction < -1.0  # Fe U + oxide corrections
    # the same energy in a QE scheme is never corrected
    qe_doc = doc.model_copy(update={"scheme": "qe-pbe-pslibrary", "parameters": {}})
    assert entry_from_task(qe_doc).correction == 0.0


def test_chgnet_rejects_unsupported_elements():
    engine = CHGNetEngine()
    assert engine.scheme == "mlip-chgnet-0.3.0"
    cm = Structure(Lattice.cubic(3.5), ["Cm"], [[0, 0, 0]])
    with pytest.raises(InputError, match="does not support Cm"):
        engine.check([si_diamond(), cm])
    engine.check([si_diamond(), feo()])


def test_engine_specs_round_trip(tmp_path):
    s = Settings(qe={"pseudo_dir": str(tmp_path), "ecutwfc": 33})
    for name in ("mlip", "sevennet", "qe", "vasp", "emt"):
        engine = make_engine(name, s)
        again = engine_from_spec(engine.spec())
        assert type(again) is type(engine) and again.settings_hash == engine.settings_hash
    with pytest.raises(
        ValueError, match="unknown engine 'abacus': choose one of mlip, sevennet, qe, vasp, emt"
    ):
        make_engine("abacus", s)
    with pytest.raises(TypeError):
        make_engine("mlip")  # settings are never read behind the caller's back


def test_one_registry_names_engines_and_config_takes_its_names():
    from typing import get_args

    from gnomon.config import DispatchConfig, EngineConfig

    assert ENGINES.builtin_names == ("mlip", "sevennet", "qe", "vasp", "emt")
    assert ENGINES.resolve("qe") is QEEngine and ENGINES.resolve("vasp") is VaspEngine
    assert get_args(EngineConfig.model_fields["name"].annotation) == ENGINES.builtin_names
    assert get_args(DispatchConfig.model_fields["name"].annotation) == DISPATCHERS.builtin_names
    with pytest.raises(ValidationError):
        EngineConfig(name="abacus")


def test_a_class_cannot_take_a_builtin_engine_name():
    with pytest.raises(TypeError, match="'qe' belongs to gnomon.dft.qe"):

        class Impostor(CHGNetEngine):
            name = "qe"

    assert ENGINES.resolve("qe") is QEEngine


@dataclass
class NothingMaker(Maker):
    """A Maker whose job returns no output, as a crashed job wrapper might."""

    name: str = "nothing"

    @job
    def make(self, structure: Structure) -> None:
        return None


def test_qe_relax_has_the_base_checks_for_a_job_without_output(tmp_path, monkeypatch):
    """QEEngine runs through RelaxEngine.relax (no copy of its own), so a job that returned
    nothing is a RelaxationError with the reason, not a TypeError in the parsing."""
    monkeypatch.setattr(QEEngine, "maker", lambda self, structure: NothingMaker())
    with pytest.raises(RelaxationError, match="qe job returned nothing"):
        QEEngine().relax(si_diamond(), tmp_path)


def test_task_document_is_plain_json():
    import numpy as np

    doc = TaskDocument(engine="x", scheme="mlip-x-1", code="x", settings_hash="s", inputs_hash="i",
                       structure=si_diamond().as_dict(), energy=np.float32(-1.5), converged=True,
                       forces=np.zeros((2, 3)))
    assert isinstance(doc.energy, float)
    assert TaskDocument.model_validate_json(doc.model_dump_json()) == doc


@pytest.mark.slow
def test_chgnet_relaxation_makes_an_entry(tmp_path):
    engine = CHGNetEngine(steps=200)
    si = si_diamond(5.6)
    doc = engine.relax(si, tmp_path)
    assert doc.scheme == "mlip-chgnet-0.3.0" and doc.converged
    a = doc.final_structure.lattice.abc[0] * 2**0.5
    assert a == pytest.approx(5.45, rel=0.02)  # CHGNet (trained on PBE) Si lattice constant
    entry = entry_from_task(doc, candidate_id="c")
    assert entry.scheme == "mlip-chgnet-0.3.0" and entry.inputs_hash == engine.inputs_hash(si)
    assert "chgnet" in entry.code_version and "0.3.0" in entry.code_version
    assert entry.energy_per_atom == pytest.approx(-5.3, abs=0.2)


@pytest.mark.slow
def test_a_campaign_relaxation_keeps_its_trajectory_frames(tmp_path):
    """The engine's task document and its entry carry a few frames: the input at step 0, the
    relaxed cell at the last step, each with its energy."""
    engine = CHGNetEngine(steps=60)
    si = si_diamond(5.8)
    doc = engine.relax(si, tmp_path)
    frames = [Frame.from_doc(f) for f in doc.frames]
    assert 2 <= len(frames) <= 4 and frames[0].step == 0
    assert np.allclose(frames[0].as_structure().lattice.matrix, si.lattice.matrix, atol=1e-4)
    last = frames[-1].as_structure()
    assert np.allclose(last.lattice.matrix, doc.final_structure.lattice.matrix, atol=1e-4)
    assert frames[-1].energy_per_atom == pytest.approx(doc.energy / len(si), abs=1e-5)
    assert frames[0].energy_per_atom > frames[-1].energy_per_atom  # it went down hill
    assert entry_from_task(doc, candidate_id="c").data["frames"] == doc.frames
