"""One settings object for a gnomon workspace.

Settings come from, in rising priority: defaults, a YAML file (``GNOMON_CONFIG`` or
``$GNOMON_HOME/gnomon.yaml``), ``GNOMON_*`` environment variables (nested with ``__``, e.g.
``GNOMON_QE__PSEUDO_DIR``), and finally explicit overrides such as the CLI's ``--db``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from pymatgen.core import Element

from gnomon.credentials import mask_secrets
from gnomon.dft.registry import DISPATCHERS, ENGINES
from gnomon.dft.settings import QESettings, SlurmSettings, VaspSettings
from gnomon.models.spec import ModelSpec, TrainConfig
from gnomon.storage import StorageError, check_url
from gnomon.storage.chemsys import chemical_systems

DEFAULT_HOME = Path(".gnomon")


class ConfigError(ValueError):
    """Raised for a settings file or value that cannot be used."""


class _YamlSource(PydanticBaseSettingsSource):
    """Reads the workspace YAML file, if there is one."""

    def get_field_value(self, field, field_name):  # pragma: no cover - unused by pydantic here
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = _yaml_path()
        if path is None or not path.exists():
            return {}
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
        return data


def _yaml_path() -> Path | None:
    if os.environ.get("GNOMON_CONFIG"):
        return Path(os.environ["GNOMON_CONFIG"])
    home = Path(os.environ.get("GNOMON_HOME", DEFAULT_HOME))
    return home / "gnomon.yaml"


class DaskConfig(BaseModel):
    """Where a round's generation and screening chunks run (``gnomon.flows.distributed``):
    a ``distributed.LocalCluster`` on this machine, or Dask workers started as SLURM batch
    jobs (``dask_jobqueue.SLURMCluster``), or a running scheduler at ``address``."""

    model_config = {"extra": "forbid"}

    cluster: Literal["local", "slurm"] = "local"
    address: str | None = Field(
        None, description="Connect to this scheduler instead of starting a cluster."
    )
    workers: int = Field(
        2, ge=1, description="Dask workers (SLURM: batch jobs of one worker each)."
    )
    cores: int = Field(1, ge=1, description="Cores (threads) per worker.")
    processes: int = Field(1, ge=1, description="Worker processes per SLURM job.")
    memory: str = Field("2GB", description="Memory per worker (SLURM: per job).")
    walltime: str = "01:00:00"
    queue: str | None = None
    account: str | None = None
    job_extra: list[str] = Field(
        default_factory=list, description="Extra #SBATCH directives, e.g. --qos=debug."
    )
    job_script_prologue: list[str] = Field(
        default_factory=list, description="Shell lines before the worker starts."
    )
    python: str | None = Field(None, description="The workers' Python (default: this interpreter).")
    interface: str | None = None
    log_directory: str | None = None
    chunk_size: int = Field(8, ge=1, description="Templates or compositions per generation chunk.")
    screen_chunk_size: int = Field(256, ge=1, description="Candidates per screening chunk.")
    max_retries: int = Field(3, ge=0, description="Resubmissions of a chunk whose worker died.")
    start_timeout: float = Field(300.0, gt=0, description="Seconds to wait for the first worker.")


class Settings(BaseSettings):
    """Workspace and site settings."""

    model_config = SettingsConfigDict(
        env_prefix="GNOMON_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    home: Path = Field(DEFAULT_HOME, description="Workspace directory: database, models, runs.")
    db: str | None = Field(None, description="Database URL: sqlite:///path or mongodb://host/db.")
    log_level: str = "INFO"
    qe: QESettings = Field(default_factory=QESettings)
    vasp: VaspSettings = Field(default_factory=VaspSettings)
    slurm: SlurmSettings = Field(default_factory=SlurmSettings)
    dask: DaskConfig | None = Field(
        None, description="Site default of a campaign's `dask:` section."
    )

    @field_validator("db")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            return check_url(value)
        except StorageError as exc:  # pydantic turns a ValueError into a settings error
            raise ValueError(str(exc)) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls,
        init_settings,
        env_settings,
        dotenv_settings,
        file_secret_settings,
    ):
        return (init_settings, env_settings, _YamlSource(settings_cls))

    @property
    def db_url(self) -> str:
        """The database URL in force: explicit, else a SQLite file in the workspace."""
        return self.db or f"sqlite:///{(self.home / 'gnomon.db').as_posix()}"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"


def load_settings(**overrides: Any) -> Settings:
    """Settings with ``overrides`` (those that are not None) on top of file and environment."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**clean)
    except ConfigError:
        raise
    except ValueError as exc:  # pydantic echoes the input: a database URL's password with it
        raise ConfigError(mask_secrets(_bad_url(exc) or str(exc))) from None


def _bad_url(exc: ValueError) -> str | None:
    """The one-line reason of a settings error that is only a bad database URL, else None."""
    if not isinstance(exc, ValidationError):
        return None
    errors = exc.errors()
    if not errors or any(e.get("loc") != ("db",) for e in errors):
        return None
    return str(errors[0].get("ctx", {}).get("error") or errors[0]["msg"])


# -- discovery campaigns ---------------------------------------------------------------------
class _Section(BaseModel):
    model_config = {"extra": "forbid"}


class SapsConfig(_Section):
    enabled: bool = True
    max_candidates: int = Field(200, ge=0, description="SAPS candidates per round.")
    threshold: float = Field(0.01, gt=0, description="Ionic substitution probability cut-off.")
    partial: bool = True
    max_template_sites: int = Field(8, ge=1)
    max_per_template: int | None = 20
    prototypes: bool = True
    database_templates: bool = True
    charge_balance: str | None = None


class RandomSearchConfig(_Section):
    enabled: bool = True
    backend: str = Field("pyxtal", pattern="^(pyxtal|airss)$")
    n_per_composition: int = Field(4, ge=1)
    max_compositions: int = Field(6, ge=0, description="Compositions searched per round.")
    max_atoms: int = Field(10, ge=1)


class CompositionsConfig(_Section):
    max_atoms: int = Field(8, ge=2)
    relaxed: bool = False


class ModelConfig(_Section):
    """The ensemble a campaign retrains; unset fields take gnomon.models.spec's defaults."""

    ensemble_size: int = Field(TrainConfig.ensemble_size, ge=1)
    hidden: int = Field(ModelSpec.hidden, ge=4)
    layers: int = Field(ModelSpec.num_layers, ge=1)
    cutoff: float = Field(ModelSpec.cutoff, gt=0)
    max_epochs: int = Field(TrainConfig.max_epochs, ge=1)
    patience: int = Field(TrainConfig.patience, ge=1)
    start_from: str = Field(
        "pretrained",
        pattern="^(pretrained|scratch)$",
        description="pretrained: round 0 is screened by the model shipped with gnomon (carried "
        "over to the campaign's scheme by refitting its element references) and the first "
        "retrain fine-tunes it; scratch: no model until the campaign has trained one. "
        "hidden/layers/cutoff apply only to a model trained from scratch.",
    )
    retrain: str = Field("fine-tune", pattern="^(fine-tune|scratch)$")
    tta: bool = False
    min_entries: int = Field(8, ge=2, description="Train once this many entries exist.")


class SelectionConfig(_Section):
    policy: str = Field("threshold", pattern="^(threshold|greedy|uncertainty|random)$")
    budget: int = Field(10, ge=1, description="Relaxations per round.")
    threshold: float = Field(
        0.05, description="eV/atom, predicted e_above_hull (threshold policy)."
    )
    k: float = Field(1.0, ge=0, description="mean - k*sigma (uncertainty policy).")
    exploration: float = Field(0.1, ge=0, le=1)
    max_per_group: int | None = Field(3, ge=1)
    per_system_max: int | None = Field(
        None,
        ge=1,
        description="Relaxations one chemical system may take per round (multi-system campaigns).",
    )
    per_system_min: int = Field(
        0,
        ge=0,
        description=(
            "Relaxations every chemical system with candidates gets first, as the budget allows."
        ),
    )


#: The names gnomon.dft.registry lists: one place names engines and dispatchers.
EngineName = Literal[ENGINES.builtin_names]  # type: ignore[valid-type]
DispatcherName = Literal[DISPATCHERS.builtin_names]  # type: ignore[valid-type]


class EngineConfig(_Section):
    name: EngineName = "mlip"
    options: dict[str, Any] = Field(default_factory=dict)


class DispatchConfig(_Section):
    name: DispatcherName = "local"
    workers: int = Field(2, ge=1)
    pack: int = Field(1, ge=1, description="Relaxations per batch job (amortises start-up).")
    poll_interval: float = Field(2.0, gt=0)


#: Stage names a campaign may list, in the order they run.
STAGE_CHAINS: tuple[tuple[str, ...], ...] = (("screen", "dft"), ("screen", "mlip", "dft"))
#: Readable names for registered engines in ``mlip_engine`` (CHGNet's engine is called "mlip").
MLIP_ENGINE_ALIASES = {"chgnet": "mlip"}


def mlip_engine_name(name: str) -> str:
    """The registry name of an ``mlip_engine`` setting (``chgnet`` -> ``mlip``)."""
    return MLIP_ENGINE_ALIASES.get(name, name)


class StoppingConfig(_Section):
    max_relaxations: int | None = Field(None, ge=1)
    patience: int | None = Field(
        None, ge=1, description="Stop after this many rounds without a new stable phase."
    )


class PhysicalConfig(_Section):
    """Only physical candidates reach the screen (``gnomon.pipeline.generation.physical``):
    every generated structure is brought to its predicted volume, and one with a pair nearer
    than ``min_pair_fraction`` of its covalent bond length is refused and counted by reason in
    the round's record."""

    enabled: bool = True
    rescale: bool = Field(True, description="Rescale every candidate to its predicted volume.")
    min_pair_fraction: float = Field(
        0.7, gt=0, lt=1, description="Refuse a pair nearer than this of its covalent bond length."
    )


class FunnelConfig(_Section):
    """The streaming funnel of a round (``gnomon.campaign.steps.funnel``): generate -> exact
    dedup -> screen in chunks through bounded memory, storing only the candidates that pass the
    screen (with their predictions) and counting the rest. Off by default: a round then stores every
    unique candidate of ``saps.max_candidates`` and ``random_search`` and screens them after."""

    enabled: bool = False
    chunk_size: int = Field(
        1000, ge=1, description="Candidates generated, deduplicated and screened at a time."
    )
    max_generated: int = Field(
        100_000, ge=1, description="Candidates pulled from the generators per round."
    )
    e_above_hull: float = Field(
        0.1,
        description="eV/atom: a candidate passes when its predicted e_above_hull minus one sigma "
        "(GNoME's optimistic bound) is at most this; the rest are only counted.",
    )
    max_passed: int | None = Field(
        None,
        ge=1,
        description="Stop pulling candidates once this many passed (unset: run to max_generated).",
    )


class CampaignConfig(_Section):
    """A discovery campaign, as written in its YAML file."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    elements: list[str] = Field(min_length=1)
    rounds: int = Field(3, ge=1)
    seed: int = 0
    saps: SapsConfig = Field(default_factory=SapsConfig)
    random_search: RandomSearchConfig = Field(default_factory=RandomSearchConfig)
    compositions: CompositionsConfig = Field(default_factory=CompositionsConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    dispatch: DispatchConfig = Field(default_factory=DispatchConfig)
    stopping: StoppingConfig = Field(default_factory=StoppingConfig)
    funnel: FunnelConfig = Field(default_factory=FunnelConfig)
    physical: PhysicalConfig = Field(default_factory=PhysicalConfig)
    max_arity: int | None = Field(
        None,
        ge=2,
        description="Explore every sub-system of 2..max_arity of the elements (a campaign "
        "over many elements); unset: the whole space, random search on all the elements together.",
    )
    dask: DaskConfig | None = Field(
        None,
        description=(
            "Fan generation and screening chunks out over a Dask cluster (else in-process)."
        ),
    )
    stages: list[Literal["screen", "mlip", "dft"]] = Field(
        default_factory=lambda: ["screen", "dft"],
        description="The fidelity stages in order: [screen, dft] sends what the screen selects "
        "straight to `engine` (the ML potential stands in for DFT by default); [screen, mlip, dft] "
        "first relaxes it with `mlip_engine` and sends on, from the ML-relaxed structure, only "
        "what ends within `mlip_e_above_hull` of the mlip scheme's own hull.",
    )
    mlip_engine: str = Field(
        "chgnet",
        description="The universal potential of the mlip stage: any registered engine "
        "name (chgnet is the engine `mlip`; sevennet once registered).",
    )
    mlip_options: dict[str, Any] = Field(
        default_factory=dict, description="Options of `mlip_engine`."
    )
    mlip_e_above_hull: float = Field(
        0.1, ge=0, description="eV/atom on the mlip scheme's hull: who goes on to the dft stage."
    )
    mlip_calibrate: bool = Field(
        False,
        description="Gate the mlip stage on calibrated energies: per-element references (and a "
        "slope where it helps) fitted on entries both schemes know tie the potential's "
        "energies to the campaign's scheme, and `mlip_e_above_hull` is then read on the "
        "campaign's own hull (gnomon.pipeline.thermo.calibration).",
    )
    mlip_calibration: Path | None = Field(
        None,
        description="A stored calibration (JSON of Calibration.as_dict) to use; unset: fitted "
        "each round on the campaign's own pairs (mlip entry -> the dft entry started from it).",
    )
    mlip_calibration_exclude: list[str] = Field(
        default_factory=list,
        description="Chemical systems whose pairs never enter the fit (held-out systems).",
    )
    known_phases: bool = Field(
        True,
        description="Relax the published phases gnomon ships for this space (gnomon/data/known) "
        "before round 0, so new stable phases are new against them.",
    )
    task_runner: str = Field("thread", pattern="^(thread|dask)$")
    dask_cluster_class: str | None = Field(
        None, description="e.g. dask_jobqueue.SLURMCluster; default a LocalCluster."
    )
    dask_cluster_kwargs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("elements")
    @classmethod
    def _real_elements(cls, value: list[str]) -> list[str]:

        bad = [e for e in value if not Element.is_valid_symbol(e)]
        if bad:
            raise ValueError(f"unknown elements {bad}")
        return sorted(set(value))

    @field_validator("stages")
    @classmethod
    def _known_chain(cls, value: list[str]) -> list[str]:
        if tuple(value) not in STAGE_CHAINS:
            raise ValueError(f"stages {value}: choose one of {[list(c) for c in STAGE_CHAINS]}")
        return value

    @field_validator("mlip_engine")
    @classmethod
    def _registered_engine(cls, value: str) -> str:
        if mlip_engine_name(value) not in ENGINES:
            raise ValueError(
                f"mlip_engine {value!r} is not a registered engine: choose one of "
                f"{', '.join(sorted({*ENGINES.names, *MLIP_ENGINE_ALIASES}))}"
            )
        return value

    @property
    def chemsys(self) -> str:
        return "-".join(self.elements)

    @property
    def systems(self) -> list[str]:
        """The chemical systems the campaign explores: every sub-system of 2..max_arity elements
        (the whole space and its sub-systems when ``max_arity`` is unset)."""
        return chemical_systems(self.elements, self.max_arity)

    @property
    def staged(self) -> bool:
        """Whether an mlip stage stands between the screen and the campaign's engine."""
        return "mlip" in self.stages


def load_campaign(path: str | Path) -> CampaignConfig:
    """A campaign config from YAML, with every problem named (file, field, reason)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such campaign file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a campaign file is a mapping of settings")
    try:
        return CampaignConfig.model_validate(data)
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
