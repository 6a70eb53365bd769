"""Site settings for the relaxation engines and batch queues.

They live with the engines that read them; ``gnomon.config.Settings`` nests them so one YAML
file or ``GNOMON_QE__*`` / ``GNOMON_SLURM__*`` variables configure a site. The engine and
dispatcher factories take any object shaped like :class:`SiteSettings` (``gnomon.config.Settings``
is one), so gnomon.dft never imports the configuration layer above it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, Field

MAGNETIC_ELEMENTS = (
    "V",
    "Cr",
    "Mn",
    "Fe",
    "Co",
    "Ni",
    "Cu",
    "Mo",
    "W",
    "Ru",
    "Rh",
    "Nd",
    "Gd",
    "Eu",
)


class QESettings(BaseModel):
    """Quantum ESPRESSO: where pw.x and the pseudopotentials are, and the numerical settings."""

    pw_command: str = "pw.x"
    mpi_command: str | None = None
    pseudo_dir: Path | None = None
    pseudo_family: str = "pslibrary"
    pseudo_map: dict[str, str] = Field(
        default_factory=dict, description="Element -> UPF file name, overriding discovery."
    )
    ecutwfc: float = 40.0
    ecutrho: float | None = None
    kspacing: float = Field(0.3, description="k-point spacing in 1/Angstrom (2*pi included).")
    smearing: str = "mv"
    degauss: float = 0.02
    timeout_s: float | None = Field(
        None, description="pw.x max_seconds: it stops cleanly and the job restarts from there."
    )
    functional: str = Field("pbe", description="Functional the pseudopotentials were made with.")
    spin: Literal["auto", "on", "off"] = Field(
        "auto",
        description="auto: spin-polarised (ferromagnetic start) when a magnetic element is "
        "present.",
    )
    starting_magnetization: float = 0.5
    magnetic_elements: list[str] = Field(default_factory=lambda: list(MAGNETIC_ELEMENTS))
    mixing_beta: float = 0.5
    conv_thr_per_atom: float = 1e-9
    electron_maxstep: int = 100
    nstep: int = 100
    etot_conv_thr: float = 1e-5
    forc_conv_thr: float = 1e-3
    press_conv_thr: float = 0.5
    max_errors: int = Field(5, description="Corrections custodian may make before giving up.")


class VaspSettings(BaseModel):
    """VASP: the command custodian runs and whether r2SCAN is used."""

    vasp_command: str = "vasp_std"
    gamma_command: str = "vasp_gam"
    use_r2scan: bool = False
    max_errors: int = 5
    user_incar_settings: dict[str, object] = Field(default_factory=dict)


class SlurmSettings(BaseModel):
    """A SLURM site: what goes into every batch script."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    walltime: str = "01:00:00"
    nodes: int = 1
    ntasks: int = 1
    cpus_per_task: int = 1
    modules: list[str] = Field(default_factory=list)
    environment: dict[str, str] = Field(default_factory=dict)
    pre_run: list[str] = Field(default_factory=list)
    max_retries: int = Field(2, description="Resubmissions of a job that died without a result.")
    pack: int = Field(1, description="Relaxations packed into one batch job.")
    python: str | None = Field(
        None, description="Python on the compute nodes (default: the orchestrator's interpreter)."
    )


class SiteSettings(Protocol):
    """What the engine and dispatcher factories read from a site's settings."""

    @property
    def qe(self) -> QESettings: ...

    @property
    def vasp(self) -> VaspSettings: ...

    @property
    def slurm(self) -> SlurmSettings: ...

    @property
    def db_url(self) -> str: ...

    @property
    def runs_dir(self) -> Path: ...
