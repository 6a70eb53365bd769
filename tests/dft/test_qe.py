"""Quantum ESPRESSO without pw.x: pseudopotential discovery, input generation, output parsing,
custodian handlers, and the Maker end to end against a stand-in pw.x script."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from dft_helpers import errore, si_diamond

from gnomon.dft.custodian import (
    BFGS_TRUST_RADII,
    MAX_DEGAUSS,
    MIN_CONV_THR,
    QEBfgsHandler,
    QEErroreHandler,
    QEScfHandler,
    QEWalltimeHandler,
    run_pw_custodian,
)
from gnomon.dft.errors import InputError, RelaxationError
from gnomon.dft.qe import QEEngine, build_input, find_pseudos, kpoint_grid
from gnomon.dft.qe_io import (
    INPUT_JSON,
    PW_OUT,
    parse_pw_output,
    read_input,
    render_input,
    write_input,
)
from gnomon.dft.settings import QESettings

DATA = Path(__file__).parent / "data"
FIXTURE = DATA / "si_vcrelax.pw.out"
SCF_FAIL = """
     Program PWSCF v.6.7MaX starts on 23Nov2026 at  4: 1:34
     iteration #  3     ecut=    25.00 Ry     beta= 0.50
     convergence NOT achieved after   3 iterations: stopping
"""


MPI_ABORT = """--------------------------------------------------------------------------
MPI_ABORT was invoked on rank 0 in communicator MPI_COMM_WORLD
with errorcode 1.

NOTE: invoking MPI_ABORT causes Open MPI to kill all MPI processes.
You may or may not see output from other processes, depending on
exactly when Open MPI kills them.
--------------------------------------------------------------------------
"""


@pytest.fixture
def pseudo_dir(tmp_path) -> Path:
    d = tmp_path / "pseudo"
    d.mkdir()
    for name in (
        "Si.pbe-nl-rrkjus_psl.1.0.0.UPF",
        "Si.pbe-rrkj.UPF",
        "Si.pz-vbc.UPF",
        "Fe.pbe-spn-rrkjus_psl.0.2.1.UPF",
        "Fe.pbesol-spn-kjpaw_psl.1.0.0.UPF",
        "O.pbe-n-kjpaw_psl.0.1.UPF",
        "O.pbe-n-kjpaw_psl.1.0.0.UPF",
        "Si_r.upf",
    ):
        (d / name).write_text('<UPF version="2.0.1">\n<PP_HEADER pseudo_type="US"/>\n')
    return d


def test_pseudopotentials_of_a_family(pseudo_dir):
    got = find_pseudos(["Si", "Fe", "O"], pseudo_dir, "pslibrary", "pbe", {})
    assert got == {
        "Si": "Si.pbe-nl-rrkjus_psl.1.0.0.UPF",
        "Fe": "Fe.pbe-spn-rrkjus_psl.0.2.1.UPF",  # not the pbesol one
        "O": "O.pbe-n-kjpaw_psl.1.0.0.UPF",  # the newest library version
    }
    assert find_pseudos(["Si"], pseudo_dir, "pslibrary", "pbe", {"Si": "Si.pbe-rrkj.UPF"}) == {
        "Si": "Si.pbe-rrkj.UPF"
    }
    with pytest.raises(InputError, match="no PBE pslibrary pseudopotential for Ga, Na"):
        find_pseudos(["Si", "Na", "Ga"], pseudo_dir, "pslibrary", "pbe", {})
    with pytest.raises(InputError, match="missing.UPF not in"):
        find_pseudos(["Si"], pseudo_dir, "pslibrary", "pbe", {"Si": "missing.UPF"})


def test_input_generation(pseudo_dir, tmp_path):
    settings = QESettings(pseudo_dir=pseudo_dir, ecutwfc=30, kspacing=0.5)
    si = si_diamond(5.43)
    inp = build_input(si, settings, {"Si": "Si.pbe-nl-rrkjus_psl.1.0.0.UPF"}, pseudo_dir)
    assert inp["control"]["calculation"] == "vc-relax"
    assert inp["system"]["ecutrho"] == 240.0  # ultrasoft: 8 x ecutwfc
    assert "nspin" not in inp["system"]
    assert inp["kpoints"] == kpoint_grid(si, 0.5) == [5, 5, 5]
    text = render_input(inp)
    for needle in (
        "calculation = 'vc-relax'",
        "tstress = .true.",
        "CELL_PARAMETERS angstrom",
        "ATOMIC_POSITIONS crystal",
        "K_POINTS automatic",
        "5 5 5 0 0 0",
        "Si 28.0855 Si.pbe-nl-rrkjus_psl.1.0.0.UPF",
    ):
        assert needle in text
    write_input(inp, tmp_path)
    assert read_input(tmp_path)["system"] == inp["system"]

    feo = si_diamond(4.3)
    feo.replace_species({"Si": "Fe"})
    feo.replace(1, "O")
    inp = build_input(
        feo,
        settings,
        {"Fe": "Fe.pbe-spn-rrkjus_psl.0.2.1.UPF", "O": "O.pbe-n-kjpaw_psl.1.0.0.UPF"},
        pseudo_dir,
    )
    assert inp["system"]["nspin"] == 2
    assert inp["system"]["starting_magnetization(1)"] == 0.5  # Fe
    assert inp["system"]["starting_magnetization(2)"] == 0.0  # O


def test_engine_identity_and_checks(pseudo_dir):
    engine = QEEngine(QESettings(pseudo_dir=pseudo_dir, pw_command="sh"))
    assert engine.scheme == "qe-pbe-pslibrary"
    # where binaries live does not change the settings hash; a cutoff does
    moved = QEEngine(QESettings(pseudo_dir=pseudo_dir, pw_command="/opt/qe/bin/pw.x"))
    assert moved.settings_hash == engine.settings_hash
    assert (
        QEEngine(QESettings(pseudo_dir=pseudo_dir, ecutwfc=60)).settings_hash
        != engine.settings_hash
    )
    assert engine.inputs_hash(si_diamond(5.43)) != engine.inputs_hash(si_diamond(5.5))
    engine.check([si_diamond()])
    nacl = si_diamond()
    nacl.replace_species({"Si": "Na"})
    with pytest.raises(InputError, match="pseudopotential for Na"):
        engine.check([nacl])
    with pytest.raises(InputError, match="pw.x not found"):
        QEEngine(QESettings(pseudo_dir=pseudo_dir, pw_command="no-such-pw.x")).check([si_diamond()])


def test_parse_pw_output():
    out = parse_pw_output(FIXTURE)
    assert out.job_done and out.bfgs_converged
    assert not (out.scf_failed or out.bfgs_failed or out.walltime_reached)
    assert out.code_version == "6.7MaX"
    a = out.final_structure.lattice.abc[0] * 2**0.5
    assert a == pytest.approx(5.47, rel=0.02)
    assert out.energy == pytest.approx(-277.88, abs=0.05)
    assert len(out.forces) == 2 and len(out.stress_kbar) == 3
    assert len(out.images) >= 3
    assert parse_pw_output(DATA / "nonexistent.out").images == []


def _run_dir(tmp_path, pw_out_text: str | None = None) -> Path:
    d = tmp_path / "run"
    d.mkdir()
    settings = QESettings(pseudo_dir=tmp_path, ecutwfc=25)
    (tmp_path / "Si.UPF").write_text('<PP_HEADER pseudo_type="NC"/>')
    inp = build_input(si_diamond(5.6), settings, {"Si": "Si.UPF"}, tmp_path)
    write_input(inp, d)
    if pw_out_text is not None:
        (d / PW_OUT).write_text(pw_out_text)
    return d


def test_scf_handler_lowers_mixing_then_changes_diagonalization(tmp_path):
    d = _run_dir(tmp_path, SCF_FAIL)
    h = QEScfHandler()
    assert h.check(str(d))
    betas = []
    for _ in range(3):
        h.correct(str(d))
        betas.append(read_input(d)["electrons"]["mixing_beta"])
    assert betas == [0.25, 0.125, 0.1]
    assert read_input(d)["electrons"]["diagonalization"] == "david"
    h.correct(str(d))
    assert read_input(d)["electrons"]["diagonalization"] == "cg"
    assert "diagonalization = 'cg'" in (d / "pw.in").read_text()
    assert not QEBfgsHandler().check(str(d))


def _truncated_fixture(extra: str) -> str:
    text = FIXTURE.read_text()
    return text[: text.index("     bfgs converged")] + extra


def test_bfgs_and_walltime_handlers_restart_from_last_geometry(tmp_path):
    d = _run_dir(tmp_path, _truncated_fixture("     bfgs failed after   3 scf cycles\n"))
    h = QEBfgsHandler()
    assert h.check(str(d))
    last = parse_pw_output(d / PW_OUT).final_structure
    result = h.correct(str(d))
    assert result["errors"] == ["bfgs_failed"] and result["actions"]
    restarted = read_input(d)["structure"]
    assert restarted["lattice"]["a"] == pytest.approx(last.lattice.a)

    d2 = tmp_path / "wall"
    d2.mkdir()
    (d2 / INPUT_JSON).write_text((d / INPUT_JSON).read_text())
    (d2 / PW_OUT).write_text(_truncated_fixture("     Maximum CPU time exceeded\n"))
    assert QEWalltimeHandler().check(str(d2)) and not QEScfHandler().check(str(d2))
    assert QEWalltimeHandler().correct(str(d2))["errors"] == ["walltime"]


def test_a_finished_or_missing_output_has_no_errore():
    assert parse_pw_output(FIXTURE).error is None
    assert parse_pw_output(DATA / "nonexistent.out").error is None


@pytest.mark.parametrize(
    ("routine", "message", "key", "expected"),
    [
        ("cdiaghg", "S matrix not positive definite", ("electrons", "diagonalization"), "cg"),
        ("c_bands", "too many bands are not converged", ("electrons", "diagonalization"), "cg"),
        (
            "checkallsym",
            "some of the original symmetry operations not satisfied",
            ("system", "nosym"),
            True,
        ),
        ("efermig", "internal error, cannot bracket Ef", ("system", "degauss"), None),
        (
            "scale_h",
            "Not enough space allocated for radial FFT: try restarting with a larger cell_factor.",
            ("cell", "cell_factor"),
            4.0,
        ),
    ],
)
def test_errore_handler_changes_the_input_from_the_last_geometry(
    tmp_path, routine, message, key, expected
):
    d = _run_dir(tmp_path, _truncated_fixture(errore(routine, 1, message)))
    out = parse_pw_output(d / PW_OUT)
    assert str(out.error) == f"Error in routine {routine} (1): {message}"
    degauss = read_input(d)["system"]["degauss"]
    h = QEErroreHandler()
    assert (
        h.check(str(d)) and not QEScfHandler().check(str(d)) and not QEBfgsHandler().check(str(d))
    )
    result = h.correct(str(d))
    assert result["errors"] == [str(out.error)]
    inp = read_input(d)
    value = inp[key[0]][key[1]]
    assert value == (expected if expected is not None else 2 * degauss)
    assert inp["structure"]["lattice"]["a"] == pytest.approx(out.final_structure.lattice.a)
    assert f"{key[1]} = " in (d / "pw.in").read_text()
    if expected is not None:  # the same error again cannot be corrected the same way
        assert not h.check(str(d))
    else:
        for _ in range(10):
            if not h.check(str(d)):
                break
            h.correct(str(d))
        assert read_input(d)["system"]["degauss"] == pytest.approx(MAX_DEGAUSS)


def test_bfgs_line_search_uphill_restarts_with_smaller_first_steps_then_a_tighter_scf(tmp_path):
    """pw.x's 'dE0s is positive': seen in CI on a CHGNet-relaxed MgSi2 cell (vc-relax, 16 Ry),
    once even after both smaller first steps; the last rungs tighten the SCF, so forces agree
    with energies, and then the ladder ends."""
    message = "dE0s is positive which should never happen"
    d = _run_dir(tmp_path, _truncated_fixture(errore("bfgs", 1, message)))
    out = parse_pw_output(d / PW_OUT)
    conv_thr0 = read_input(d)["electrons"]["conv_thr"]
    h = QEErroreHandler()
    assert (
        h.check(str(d)) and not QEBfgsHandler().check(str(d)) and not QEScfHandler().check(str(d))
    )
    radii, thresholds = [], []
    while h.check(str(d)):  # the same error after each correction
        result = h.correct(str(d))
        assert result["errors"] == [f"Error in routine bfgs (1): {message}"]
        inp = read_input(d)
        radii.append(inp["ions"]["trust_radius_ini"])
        thresholds.append(inp["electrons"]["conv_thr"])
        assert inp["ions"]["ion_dynamics"] == "bfgs"
        assert inp["structure"]["lattice"]["a"] == pytest.approx(out.final_structure.lattice.a)
        assert f"trust_radius_ini = {radii[-1]!r}" in (d / "pw.in").read_text()
        assert len(radii) <= 10
    n = len(BFGS_TRUST_RADII)
    assert radii[:n] == list(BFGS_TRUST_RADII) and set(radii[n:]) == {BFGS_TRUST_RADII[-1]}
    assert thresholds[:n] == [conv_thr0] * n  # steps first, the SCF only once they are exhausted
    tighter = thresholds[n:]
    assert tighter and all(b < a for a, b in zip([conv_thr0, *tighter], tighter, strict=False))
    assert tighter[-1] == pytest.approx(MIN_CONV_THR)  # then nothing left: pw.x's message
    assert "  conv_thr = 1d-12\n" in (d / "pw.in").read_text()


def test_an_errore_no_handler_knows_is_not_corrected(tmp_path):
    d = _run_dir(tmp_path, errore("readpp", 1, "file Xx.UPF not found"))
    assert not QEErroreHandler().check(str(d))
    d2 = tmp_path / "scf"
    d2.mkdir()
    (d2 / INPUT_JSON).write_text((d / INPUT_JSON).read_text())
    (d2 / PW_OUT).write_text(SCF_FAIL + errore("cdiaghg", 1, "S matrix not positive definite"))
    assert not QEErroreHandler().check(str(d2))  # the SCF handler owns unconverged SCF


def test_custodian_corrects_a_diagonalization_errore_and_reruns(tmp_path):
    exe = _aborting_pw(
        tmp_path,
        _truncated_fixture(errore("cdiaghg", 159, "S matrix not positive definite")),
        once=True,
    )
    d = _run_dir(tmp_path)
    corrections = run_pw_custodian(d, [str(exe)], max_errors=3)
    assert [c["handler"] for c in corrections] == ["QEErroreHandler"]
    assert corrections[0]["errors"] == [
        "Error in routine cdiaghg (159): S matrix not positive definite"
    ]
    assert read_input(d)["electrons"]["diagonalization"] == "cg"


def test_a_failure_reports_pw_x_s_own_error_not_only_mpi_abort(tmp_path):
    exe = _aborting_pw(tmp_path, errore("readpp", 1, "file Xx.UPF not found"), once=False)
    d = _run_dir(tmp_path)
    with pytest.raises(
        RelaxationError, match=r"pw.x: Error in routine readpp \(1\): file Xx.UPF not found"
    ):
        run_pw_custodian(d, [str(exe)], max_errors=2)


def _fake_pw(tmp_path, script_body: str) -> Path:
    exe = tmp_path / "fake_pw.sh"
    exe.write_text("#!/bin/bash\n" + script_body)
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return exe


def _aborting_pw(tmp_path, pw_out: str, once: bool) -> Path:
    """A stand-in pw.x that prints ``pw_out`` and aborts as MPI does (once, then converges)."""
    crashed = tmp_path / "crash.out"
    crashed.write_text(pw_out)
    mpi = tmp_path / "mpi.err"
    mpi.write_text(MPI_ABORT)
    abort = f"cat {crashed}; cat {mpi} >&2; exit 1"
    return _fake_pw(
        tmp_path,
        f"if [ ! -f calls ]; then touch calls; {abort}; fi\ncat {FIXTURE}\n"
        if once
        else abort + "\n",
    )


def test_custodian_corrects_scf_failure_and_reruns(tmp_path):
    """A stand-in pw.x fails its SCF once, then prints a converged vc-relax."""
    failed = tmp_path / "scf_fail.out"
    failed.write_text(SCF_FAIL)
    exe = _fake_pw(
        tmp_path, f"if [ ! -f calls ]; then touch calls; cat {failed}; exit 1; fi\ncat {FIXTURE}\n"
    )
    d = _run_dir(tmp_path)
    corrections = run_pw_custodian(d, [str(exe)], max_errors=3)
    assert [c["handler"] for c in corrections] == ["QEScfHandler"]
    assert corrections[0]["errors"] == ["scf_not_converged"]
    assert read_input(d)["electrons"]["mixing_beta"] == 0.25
    assert json.loads((d / "custodian.json").read_text())


def test_custodian_gives_up_with_a_reason(tmp_path):
    exe = _fake_pw(tmp_path, "echo 'segmentation fault' >&2\nexit 139\n")
    d = _run_dir(tmp_path)
    with pytest.raises(RelaxationError, match="segmentation fault"):
        run_pw_custodian(d, [str(exe)], max_errors=2)


def test_maker_end_to_end_with_stand_in_pw(tmp_path, pseudo_dir):
    exe = _fake_pw(tmp_path, f"cat {FIXTURE}\n")
    engine = QEEngine(
        QESettings(pseudo_dir=pseudo_dir, pw_command=str(exe), ecutwfc=25, kspacing=0.5)
    )
    si = si_diamond(5.6)
    doc = engine.relax(si, tmp_path / "calc")
    assert doc.scheme == "qe-pbe-pslibrary" and doc.code == "pw.x" and doc.code_version == "6.7MaX"
    assert doc.converged and doc.electronic_converged
    assert doc.inputs_hash == engine.inputs_hash(si) and doc.settings_hash == engine.settings_hash
    assert doc.parameters["pseudos"] == {"Si": "Si.pbe-nl-rrkjus_psl.1.0.0.UPF"}
    assert doc.final_structure.lattice.abc[0] * 2**0.5 == pytest.approx(5.47, rel=0.02)

    from gnomon.dft.parsing import entry_from_task

    entry = entry_from_task(doc, candidate_id="c1", calculation_id="c1:s")
    assert entry.scheme == "qe-pbe-pslibrary" and entry.correction == 0.0
    assert entry.inputs_hash == doc.inputs_hash and entry.code_version == "pw.x 6.7MaX"


def test_maker_reports_an_unconverged_relaxation(tmp_path, pseudo_dir):
    truncated = tmp_path / "trunc.out"
    truncated.write_text(_truncated_fixture("\n   JOB DONE.\n"))
    exe = _fake_pw(tmp_path, f"cat {truncated}\n")
    engine = QEEngine(QESettings(pseudo_dir=pseudo_dir, pw_command=str(exe)))
    with pytest.raises(RelaxationError, match="did not converge"):
        engine.relax(si_diamond(), tmp_path / "calc")


def test_resubmitted_job_restarts_from_the_last_geometry(tmp_path, pseudo_dir):
    """A batch killed at walltime left a pw.out without JOB DONE: the next attempt goes on
    from its last geometry instead of the starting structure."""
    calc = tmp_path / "calc"
    calc.mkdir()
    (calc / PW_OUT).write_text(_truncated_fixture(""))
    last = parse_pw_output(calc / PW_OUT).final_structure
    exe = _fake_pw(tmp_path, f"cat {FIXTURE}\n")
    engine = QEEngine(QESettings(pseudo_dir=pseudo_dir, pw_command=str(exe)))
    start = si_diamond(5.8)
    doc = engine.relax(start, calc)
    assert doc.converged
    restarted = read_input(calc)["structure"]["lattice"]["a"]
    assert restarted == pytest.approx(last.lattice.a) and restarted != pytest.approx(
        start.lattice.a
    )
    assert doc.inputs_hash == engine.inputs_hash(start)  # identity is the submitted input
