"""pw.x under custodian: the Job that runs it and the handlers for its common failures.

| failure (in pw.out)                              | correction                                  |
| ------------------------------------------------ | ------------------------------------------- |
| ``convergence NOT achieved`` (SCF)               | halve mixing_beta (to 0.1), then switch     |
|                                                  | diagonalization david -> cg, then more steps |
| ``bfgs failed`` / history reset / nstep reached  | restart from the last geometry              |
| ``Maximum CPU time exceeded`` (max_seconds)      | restart from the last geometry              |
| errore in the subspace diagonalization            | switch diagonalization david -> cg, from   |
| (``cdiaghg``/``rdiaghg``: S matrix not positive   | the last geometry (custodian's VASP        |
| definite, cholesky; ``c_bands``: too many bands)  | handlers do the same for ZHEGV/EDDDAV)     |
| errore on symmetry (``checkallsym``, ``sgam_at``, | nosym = .true., from the last geometry     |
| ``symm_base``): a step broke the cell's symmetry  |                                            |
| errore in ``efermig`` (cannot bracket Ef)         | double degauss, up to 0.05 Ry              |
| errore in ``scale_h`` (vc-relax: not enough space | cell_factor 4, from the last geometry      |
| for radial FFT: the cell grew or shrank too far)  |                                            |
| errore in ``bfgs`` (``dE0s is positive``: the     | from the last geometry with a fresh history |
| line search went uphill, energies and forces      | and trust_radius_ini 0.1 bohr, then 0.02   |
| disagree after a large step)                      | (pw.x's default is 0.5); then conv_thr     |
|                                                   | /100 (down to 1e-12 Ry), so the forces     |
|                                                   | are consistent with the energies           |

Any other errore is not corrected: the run fails with pw.x's own message (not only MPI's
MPI_ABORT notice from pw.err), so the failure says what went wrong.

Every handler edits ``qe_input.json`` and re-renders ``pw.in``; custodian records what it
did in ``custodian.json`` and the task document keeps the list.
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path
from typing import Any

from custodian.custodian import Custodian, CustodianError, ErrorHandler, Job, Validator

from gnomon.dft.errors import RelaxationError
from gnomon.dft.qe_io import (
    PW_ERR,
    PW_IN,
    PW_OUT,
    PWError,
    parse_pw_output,
    read_input,
    render_input,
    write_input,
)

log = logging.getLogger(__name__)

MIN_MIXING_BETA = 0.1


class PWJob(Job):
    """Runs ``pw_command -in pw.in > pw.out`` in a directory holding ``qe_input.json``."""

    def __init__(self, pw_command: list[str], timeout_s: float | None = None):
        self.pw_command = list(pw_command)
        self.timeout_s = timeout_s

    def setup(self, directory: str = "./") -> None:
        inp = read_input(directory)
        (Path(directory) / PW_IN).write_text(render_input(inp))

    def run(self, directory: str = "./"):
        directory = Path(directory)
        cmd = [*self.pw_command, "-in", PW_IN]
        log.info("running %s in %s", " ".join(cmd), directory)
        with open(directory / PW_OUT, "w") as out, open(directory / PW_ERR, "w") as err:
            return subprocess.Popen(cmd, cwd=directory, stdout=out, stderr=err)

    def postprocess(self, directory: str = "./") -> None:
        return None


def _restart_from_last_geometry(directory: str, reason: str) -> dict[str, Any]:
    out = parse_pw_output(Path(directory) / PW_OUT)
    if not out.images:
        return {"errors": [reason], "actions": None}
    inp = read_input(directory)
    inp["structure"] = out.final_structure.as_dict()
    write_input(inp, directory)
    return {
        "errors": [reason],
        "actions": [{"dict": "qe_input.json", "action": {"_set": {"structure": "last geometry"}}}],
    }


class QEScfHandler(ErrorHandler):
    """SCF not converged: lower mixing_beta, then change diagonalization, then more steps."""

    is_monitor = False

    def check(self, directory: str = "./") -> bool:
        return parse_pw_output(Path(directory) / PW_OUT).scf_failed

    def correct(self, directory: str = "./") -> dict[str, Any]:
        inp = read_input(directory)
        el = inp["electrons"]
        actions: list[dict[str, Any]] = []
        beta = float(el.get("mixing_beta", 0.7))
        if beta > MIN_MIXING_BETA + 1e-9:
            el["mixing_beta"] = max(MIN_MIXING_BETA, round(beta / 2, 4))
            actions.append(
                {"dict": "electrons", "action": {"_set": {"mixing_beta": el["mixing_beta"]}}}
            )
        elif el.get("diagonalization", "david") != "cg":
            el["diagonalization"] = "cg"
            actions.append({"dict": "electrons", "action": {"_set": {"diagonalization": "cg"}}})
        elif int(el.get("electron_maxstep", 100)) < 400:
            el["electron_maxstep"] = int(el.get("electron_maxstep", 100)) * 2
            actions.append(
                {
                    "dict": "electrons",
                    "action": {"_set": {"electron_maxstep": el["electron_maxstep"]}},
                }
            )
        else:
            return {"errors": ["scf_not_converged"], "actions": None}
        # keep the geometry the run reached, so ionic progress is not thrown away
        out = parse_pw_output(Path(directory) / PW_OUT)
        if len(out.images) > 1:
            inp["structure"] = out.final_structure.as_dict()
        write_input(inp, directory)
        return {"errors": ["scf_not_converged"], "actions": actions}


class QEBfgsHandler(ErrorHandler):
    """BFGS failed (or history reset, or nstep reached): restart from the last geometry."""

    is_monitor = False

    def check(self, directory: str = "./") -> bool:
        out = parse_pw_output(Path(directory) / PW_OUT)
        return out.bfgs_failed and not out.bfgs_converged and not out.scf_failed

    def correct(self, directory: str = "./") -> dict[str, Any]:
        return _restart_from_last_geometry(directory, "bfgs_failed")


class QEWalltimeHandler(ErrorHandler):
    """pw.x stopped at max_seconds: restart from the last geometry."""

    is_monitor = False

    def check(self, directory: str = "./") -> bool:
        out = parse_pw_output(Path(directory) / PW_OUT)
        return out.walltime_reached and not out.bfgs_converged

    def correct(self, directory: str = "./") -> dict[str, Any]:
        return _restart_from_last_geometry(directory, "walltime")


DIAGONALIZATION_ROUTINES = (
    "cdiaghg",
    "rdiaghg",
    "cdiagh",
    "rdiagh",
    "c_bands",
    "cegterg",
    "regterg",
)
SYMMETRY_ROUTINES = (
    "checkallsym",
    "sgam_at",
    "sgam_at_mag",
    "symm_base",
    "find_sym",
    "sym_rho_init",
)
MAX_DEGAUSS = 0.05  # Ry
CELL_FACTOR = 4.0  # pw.x's default is 2 for vc-relax


# bohr; pw.x's default is 0.5. Damped dynamics (ions damp, cell damp-w) has no line search to go
# uphill, but on a 3-atom MgSi2 cell it had not converged after 100 steps where BFGS took 10,
# and its convergence lines differ from those the parser reads; so the ladder stays in BFGS.
BFGS_TRUST_RADII = (0.1, 0.02)
# Ry. When small steps still go uphill the SCF noise is larger than the step's energy change:
# forces from a loosely converged density disagree with its energy. A tighter density removes
# the disagreement at a few more SCF iterations, where a different optimiser would not.
BFGS_CONV_THR_FACTOR = 0.01
MIN_CONV_THR = 1e-12


def _errore_fix(error: PWError, inp: dict[str, Any]) -> dict[tuple[str, str], Any] | None:
    """{(namelist, key): new value} that corrects ``error`` in ``inp``, or None when the table
    has no correction for it or the input already has the one it would make."""
    if error.routine in DIAGONALIZATION_ROUTINES:
        fix = {("electrons", "diagonalization"): "cg"}
    elif error.routine in SYMMETRY_ROUTINES:
        fix = {("system", "nosym"): True}
    elif error.routine == "efermig":
        degauss = float(inp["system"].get("degauss", MAX_DEGAUSS))
        fix = {("system", "degauss"): max(degauss, min(MAX_DEGAUSS, 2 * degauss))}  # never lowered
    elif error.routine == "scale_h":
        fix = {
            ("cell", "cell_factor"): max(CELL_FACTOR, float(inp["cell"].get("cell_factor", 2.0)))
        }
    elif error.routine == "bfgs":
        smaller = [
            r for r in BFGS_TRUST_RADII if r < float(inp["ions"].get("trust_radius_ini", 0.5))
        ]
        conv_thr = float(inp["electrons"].get("conv_thr", 1e-6))
        if smaller:
            fix = {("ions", "trust_radius_ini"): smaller[0]}
        elif conv_thr > MIN_CONV_THR:
            fix = {("electrons", "conv_thr"): max(MIN_CONV_THR, conv_thr * BFGS_CONV_THR_FACTOR)}
        else:
            return None
    else:
        return None
    unchanged = all(inp[namelist].get(key) == value for (namelist, key), value in fix.items())
    return None if unchanged else fix


class QEErroreHandler(ErrorHandler):
    """pw.x stopped in errore for a reason a changed input can fix (see the module's table)."""

    is_monitor = False

    def check(self, directory: str = "./") -> bool:
        out = parse_pw_output(Path(directory) / PW_OUT)
        if out.error is None or out.job_done or out.scf_failed:
            return False
        return _errore_fix(out.error, read_input(directory)) is not None

    def correct(self, directory: str = "./") -> dict[str, Any]:
        out = parse_pw_output(Path(directory) / PW_OUT)
        inp = read_input(directory)
        fix = _errore_fix(out.error, inp)
        for (namelist, key), value in fix.items():
            inp[namelist][key] = value
        if out.images:  # keep the ionic progress the run made
            inp["structure"] = out.final_structure.as_dict()
        write_input(inp, directory)
        return {
            "errors": [str(out.error)],
            "actions": [
                {"dict": namelist, "action": {"_set": {key: value}}}
                for (namelist, key), value in fix.items()
            ],
        }


class PWDoneValidator(Validator):
    """pw.x must have printed JOB DONE; otherwise it crashed (see pw.err)."""

    def check(self, directory: str = "./") -> bool:
        return not parse_pw_output(Path(directory) / PW_OUT).job_done


def default_handlers() -> list[ErrorHandler]:
    return [QEScfHandler(), QEBfgsHandler(), QEWalltimeHandler(), QEErroreHandler()]


def run_pw_custodian(
    directory: str | Path, pw_command: list[str], max_errors: int = 5
) -> list[dict[str, Any]]:
    """Run pw.x in ``directory`` under custodian; returns the corrections made.

    Raises RelaxationError with custodian's reason, pw.x's own error message (from pw.out) and
    the tail of pw.err on failure.
    """
    directory = Path(directory)
    c = Custodian(
        default_handlers(),
        [PWJob(pw_command)],
        validators=[PWDoneValidator()],
        max_errors=max_errors,
        polling_time_step=1,
        monitor_freq=30,
        terminate_on_nonzero_returncode=False,
        directory=str(directory),
    )
    try:
        run_log = c.run()
    except CustodianError as exc:
        error = parse_pw_output(directory / PW_OUT).error
        err = (
            (directory / PW_ERR).read_text(errors="replace")[-500:]
            if (directory / PW_ERR).exists()
            else ""
        )
        raise RelaxationError(
            f"pw.x failed under custodian in {directory}: {exc}"
            + (f" | pw.x: {error}" if error is not None else "")
            + (f" | {err.strip()}" if err.strip() else "")
        ) from exc
    return [_plain(corr) for job_log in run_log or [] for corr in job_log.get("corrections", [])]


def _plain(correction: dict[str, Any]) -> dict[str, Any]:
    handler = correction.get("handler")
    return {
        "handler": type(handler).__name__ if handler is not None else None,
        "errors": list(correction.get("errors") or []),
        "actions": correction.get("actions"),
    }
