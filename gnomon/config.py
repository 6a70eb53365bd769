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
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from pymatgen.core import Element

from gnomon.config_errors import did_you_mean, problems
from gnomon.credentials import mask_secrets
from gnomon.dft.limits import RelaxLimits
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
        data = _read_yaml(path) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
        return data


def _read_yaml(path: Path) -> Any:
    """What a YAML file holds, or one line naming the file, the line and column, and the
    problem (PyYAML's own message spans several lines)."""
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{where}: not valid YAML: {problem}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _yaml_path() -> Path | None:
    if os.environ.get("GNOMON_CONFIG"):
        return Path(os.environ["GNOMON_CONFIG"])
    home = Path(os.environ.get("GNOMON_HOME", DEFAULT_HOME))
    return home / "gnomon.yaml"


class DaskConfig(BaseModel):
    """Where a round's generation, exact-dedup and screening chunks run
    (``gnomon.flows.distributed``): a ``distributed.LocalCluster`` on this machine, or Dask
    workers started as SLURM batch jobs (``dask_jobqueue.SLURMCluster``), or a running
    scheduler at ``address``."""

    model_config = {"extra": "forbid"}

    cluster: Literal["local", "slurm"] = Field(
        "local", description="local: a LocalCluster here; slurm: workers as SLURM batch jobs."
    )
    address: str | None = Field(
        None, description="Connect to this scheduler instead of starting a cluster."
    )
    workers: int = Field(
        2, ge=1, description="Dask workers (SLURM: batch jobs of one worker each)."
    )
    cores: int = Field(1, ge=1, description="Cores (threads) per worker.")
    processes: int = Field(1, ge=1, description="Worker processes per SLURM job.")
    memory: str = Field("2GB", description="Memory per worker (SLURM: per job).")
    walltime: str = Field("01:00:00", description="Walltime of each SLURM worker job.")
    queue: str | None = Field(None, description="SLURM partition of the worker jobs.")
    account: str | None = Field(None, description="SLURM account the worker jobs are charged to.")
    job_extra: list[str] = Field(
        default_factory=list, description="Extra #SBATCH directives, e.g. --qos=debug."
    )
    job_script_prologue: list[str] = Field(
        default_factory=list, description="Shell lines before the worker starts."
    )
    python: str | None = Field(None, description="The workers' Python (default: this interpreter).")
    interface: str | None = Field(
        None, description="Network interface the workers talk on, e.g. ib0."
    )
    log_directory: str | None = Field(None, description="Where SLURM worker jobs write logs.")
    chunk_size: int = Field(8, ge=1, description="Templates or compositions per generation chunk.")
    screen_chunk_size: int = Field(256, ge=1, description="Candidates per screening chunk.")
    dedup_chunk_size: int = Field(
        256, ge=1, description="Candidates per exact-dedup chunk (whole buckets, never split)."
    )
    max_retries: int = Field(3, ge=0, description="Resubmissions of a chunk whose worker died.")
    start_timeout: float = Field(300.0, gt=0, description="Seconds to wait for the first worker.")


class Settings(BaseSettings):
    """Workspace and site settings."""

    model_config = SettingsConfigDict(
        env_prefix="GNOMON_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    home: Path = Field(DEFAULT_HOME, description="Workspace directory: database, models, runs.")
    db: str | None = Field(None, description="Database URL: sqlite:///path or mongodb://host/db.")
    log_level: str = Field("INFO", description="Python logging level of gnomon's log lines.")
    qe: QESettings = Field(
        default_factory=QESettings, description="Quantum ESPRESSO: pw.x, pseudopotentials."
    )
    vasp: VaspSettings = Field(default_factory=VaspSettings, description="VASP: its command.")
    slurm: SlurmSettings = Field(
        default_factory=SlurmSettings, description="SLURM batch jobs of the slurm dispatcher."
    )
    relax_limits: RelaxLimits = Field(
        default_factory=RelaxLimits, description="Memory and wall time one relaxation may use."
    )
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
    except ValidationError as exc:  # pydantic echoes the input: a URL's password with it
        message = _bad_url(exc) or "\n".join(problems(exc, Settings))
        raise ConfigError(mask_secrets(message)) from None
    except ValueError as exc:
        raise ConfigError(mask_secrets(str(exc))) from None


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
    """SAPS: symmetry-aware partial substitutions of template structures (one generator of a
    round's candidates)."""

    enabled: bool = Field(True, description="Generate SAPS candidates each round.")
    max_candidates: int = Field(200, ge=0, description="SAPS candidates per round.")
    threshold: float = Field(
        0.01, gt=0, description="Ionic substitution probability cut-off (pymatgen's table)."
    )
    partial: bool = Field(
        True, description="Also substitute symmetry-distinct subsets of a template's sites."
    )
    max_template_sites: int = Field(
        8, ge=1, description="Templates (stored phases, prototypes) of at most this many sites."
    )
    max_per_template: int | None = Field(
        20, ge=1, description="Candidates one template may give per round (unset: no limit)."
    )
    prototypes: bool = Field(
        True, description="Use pymatgen's AFLOW prototype library as templates."
    )
    database_templates: bool = Field(
        True, description="Use the scheme's stored phases as templates."
    )
    charge_balance: Literal["strict", "relaxed", "none"] | None = Field(
        None,
        description="Keep only outcomes SMACT can charge balance: strict, or GNoME's relaxed "
        "oxidation-state rule; unset or none: keep all.",
    )


class RandomSearchConfig(_Section):
    """Random structures per charge-balanced composition (the other generator)."""

    enabled: bool = Field(True, description="Generate random-search candidates each round.")
    backend: Literal["pyxtal", "airss"] = Field(
        "pyxtal", description="pyxtal (random symmetric crystals) or airss (buildcell on PATH)."
    )
    n_per_composition: int = Field(4, ge=1, description="Structures per composition.")
    max_compositions: int = Field(6, ge=0, description="Compositions searched per round.")
    max_atoms: int = Field(10, ge=1, description="Most atoms in a random cell.")


class CompositionsConfig(_Section):
    """Which compositions random search tries: the charge-balanced reduced formulas of the
    campaign's elements not stored yet."""

    max_atoms: int = Field(8, ge=2, description="Most atoms in a reduced formula.")
    relaxed: bool = Field(
        False, description="GNoME's relaxed oxidation-state balance instead of SMACT's strict one."
    )


class ModelConfig(_Section):
    """The ensemble a campaign retrains; unset fields take gnomon.models.spec's defaults."""

    ensemble_size: int = Field(
        TrainConfig.ensemble_size, ge=1, description="Members K of the GNN ensemble (gives σ)."
    )
    hidden: int = Field(ModelSpec.hidden, ge=4, description="Feature width of each member.")
    layers: int = Field(ModelSpec.num_layers, ge=1, description="Message-passing layers.")
    cutoff: float = Field(ModelSpec.cutoff, gt=0, description="Neighbour cutoff, Å.")
    max_epochs: int = Field(TrainConfig.max_epochs, ge=1, description="Most epochs per member.")
    patience: int = Field(
        TrainConfig.patience, ge=1, description="Early stopping: epochs without improvement."
    )
    start_from: Literal["pretrained", "scratch"] = Field(
        "pretrained",
        description="pretrained: round 0 is screened by the model shipped with gnomon (carried "
        "over to the campaign's scheme by refitting its element references) and the first "
        "retrain fine-tunes it; scratch: no model until the campaign has trained one. "
        "hidden/layers/cutoff apply only to a model trained from scratch.",
    )
    retrain: Literal["fine-tune", "scratch"] = Field(
        "fine-tune",
        description="Each round's retrain: fine-tune the previous model, or train anew.",
    )
    tta: bool = Field(False, description="Screen with test-time augmentation over volume scalings.")
    min_entries: int = Field(8, ge=2, description="Train once this many entries exist.")
    distill: int = Field(
        0, ge=0,
        description="Before round 0 is screened, the mlip_engine (a teacher that is not the "
        "oracle) relaxes this many of its unique candidates; their energies, calibrated into "
        "the campaign's scheme by mlip_calibration, label the unrelaxed inputs and the start "
        "model is fine-tuned on them (gnomon.campaign.distill). 0: off.",
    )


class SelectionConfig(_Section):
    """Which screened candidates are relaxed each round."""

    policy: Literal["threshold", "greedy", "uncertainty", "random"] = Field(
        "threshold",
        description="threshold: predicted e_above_hull under `threshold`; greedy: lowest "
        "predicted e_above_hull; uncertainty: lowest mean - k*sigma; random.",
    )
    budget: int = Field(10, ge=1, description="Relaxations per round.")
    threshold: float = Field(
        0.05, description="eV/atom, predicted e_above_hull (threshold policy)."
    )
    k: float = Field(1.0, ge=0, description="mean - k*sigma (uncertainty policy).")
    exploration: float = Field(
        0.1, ge=0, le=1, description="Share of the budget drawn at random from the rest."
    )
    max_per_group: int | None = Field(
        3,
        ge=1,
        description="Relaxations per round of one group (template or reduced formula); unset: "
        "no cap.",
    )
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
#: Readable names for registered engines (CHGNet's engine is called "mlip"), taken by both
#: engine keys.
ENGINE_ALIASES = {"chgnet": "mlip"}


def engine_name(name: str) -> str:
    """The registry name of an engine setting (``chgnet`` -> ``mlip``)."""
    return ENGINE_ALIASES.get(name, name)


mlip_engine_name = engine_name  # the name it had when only mlip_engine took aliases


def _engine_form(value: Any) -> Any:
    """Both engine keys take one form: ``{name, options}``, or a bare name for no options."""
    if isinstance(value, str):
        value = {"name": value}
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        value = {**value, "name": engine_name(value["name"])}
    return value


class EngineConfig(_Section):
    """The engine of the dft stage: the one every selected candidate is relaxed by (QE, VASP,
    or a universal potential standing in for DFT). ``engine: qe`` is short for
    ``engine: {name: qe}``."""

    name: EngineName = Field(
        "mlip",
        description="A registered engine: mlip (CHGNet; also spelt chgnet), sevennet, qe, vasp, "
        "emt.",
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="The engine's settings over the site's (e.g. qe: ecutwfc; mlip: fmax, steps).",
    )

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        return _engine_form(value)


class MlipEngineConfig(_Section):
    """The universal potential of the mlip stage, in the same form as ``engine``:
    ``mlip_engine: sevennet`` is short for ``mlip_engine: {name: sevennet}``."""

    name: str = Field(
        "mlip",
        description="Any registered engine: mlip (CHGNet; also spelt chgnet), sevennet, or a "
        "plugin's.",
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="The potential's settings (e.g. fmax, steps; for sevennet, model: a "
        "checkpoint name or the file gnomon mlip finetune wrote).",
    )

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        return _engine_form(value)

    @field_validator("name")
    @classmethod
    def _registered(cls, value: str) -> str:
        if value not in ENGINES:
            choices = sorted({*ENGINES.names, *ENGINE_ALIASES})
            raise ValueError(
                f"{value!r} is not a registered engine{did_you_mean(value, choices)}: choose one "
                f"of {', '.join(choices)}"
            )
        return value


class DispatchConfig(_Section):
    """Where relaxations run."""

    name: DispatcherName = Field(
        "local", description="local (worker processes here), slurm, or jobflow-remote."
    )
    workers: int = Field(2, ge=1, description="Concurrent local relaxations.")
    pack: int = Field(1, ge=1, description="Relaxations per batch job (amortises start-up).")
    poll_interval: float = Field(
        2.0, gt=0, description="Seconds between asking the dispatcher how its jobs are."
    )


#: Stage names a campaign may list, in the order they run.
STAGE_CHAINS: tuple[tuple[str, ...], ...] = (("screen", "dft"), ("screen", "mlip", "dft"))

#: Keys a campaign file may still use, each with the key that replaced it.
OLD_SPELLINGS = {"mlip_options": "mlip_engine.options"}


class StoppingConfig(_Section):
    """When a campaign stops before its rounds are done."""

    max_relaxations: int | None = Field(
        None,
        ge=1,
        description="Stop once the campaign has this many relaxations (with an mlip stage: "
        "DFT relaxations).",
    )
    patience: int | None = Field(
        None, ge=1, description="Stop after this many rounds without a new stable phase."
    )


class PhysicalConfig(_Section):
    """Only physical candidates reach the screen (``gnomon.pipeline.generation.physical``):
    every generated structure is brought to its predicted volume, and one with a pair nearer
    than ``min_pair_fraction`` of its covalent bond length is refused and counted by reason in
    the round's record."""

    enabled: bool = Field(True, description="Check every generated candidate.")
    rescale: bool = Field(True, description="Rescale every candidate to its predicted volume.")
    min_pair_fraction: float = Field(
        0.7, gt=0, lt=1, description="Refuse a pair nearer than this of its covalent bond length."
    )


class FunnelConfig(_Section):
    """The streaming funnel of a round (``gnomon.campaign.steps.funnel``): generate -> exact
    dedup -> screen in chunks through bounded memory, storing only the candidates that pass the
    screen (with their predictions) and counting the rest. Off by default: a round then stores every
    unique candidate of ``saps.max_candidates`` and ``random_search`` and screens them after."""

    enabled: bool = Field(False, description="Stream the round's candidates through the screen.")
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
    first_member_margin: float | None = Field(
        None,
        ge=0.0,
        description="eV/atom: screen as a cascade; a candidate whose e_above_hull by the "
        "ensemble's first member alone lies more than this above `e_above_hull` fails without "
        "the other members (unset: every candidate meets the whole ensemble). "
        "`bench/screening.py --part cascade` measures what a margin costs in missed passes.",
    )


class CampaignConfig(_Section):
    """A discovery campaign, as written in its YAML file."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="The campaign's name (letters, digits, _ . -): its records and run folder.",
    )
    elements: list[str] = Field(min_length=1, description="The chemical space, e.g. [Li, Mn, O].")
    rounds: int = Field(
        3, ge=1, description="Rounds one `campaign run` runs (a schedule adds rounds per run)."
    )
    seed: int = Field(
        0, description="Seed of every random choice: the same seed gives the same campaign."
    )
    saps: SapsConfig = Field(default_factory=SapsConfig, description=SapsConfig.__doc__)
    random_search: RandomSearchConfig = Field(
        default_factory=RandomSearchConfig, description=RandomSearchConfig.__doc__
    )
    compositions: CompositionsConfig = Field(
        default_factory=CompositionsConfig, description=CompositionsConfig.__doc__
    )
    model: ModelConfig = Field(default_factory=ModelConfig, description=ModelConfig.__doc__)
    selection: SelectionConfig = Field(
        default_factory=SelectionConfig, description=SelectionConfig.__doc__
    )
    engine: EngineConfig = Field(default_factory=EngineConfig, description=EngineConfig.__doc__)
    dispatch: DispatchConfig = Field(
        default_factory=DispatchConfig, description=DispatchConfig.__doc__
    )
    stopping: StoppingConfig = Field(
        default_factory=StoppingConfig, description=StoppingConfig.__doc__
    )
    funnel: FunnelConfig = Field(default_factory=FunnelConfig, description=FunnelConfig.__doc__)
    physical: PhysicalConfig = Field(
        default_factory=PhysicalConfig, description=PhysicalConfig.__doc__
    )
    max_arity: int | None = Field(
        None,
        ge=2,
        description="Explore every sub-system of 2..max_arity of the elements (a campaign "
        "over many elements); unset: the whole space, random search on all the elements together.",
    )
    dask: DaskConfig | None = Field(
        None,
        description=(
            "Fan generation, exact-dedup and screening chunks out over a Dask cluster (else "
            "in-process)."
        ),
    )
    stages: list[Literal["screen", "mlip", "dft"]] = Field(
        default_factory=lambda: ["screen", "dft"],
        description="The fidelity stages in order: [screen, dft] sends what the screen selects "
        "straight to `engine` (the ML potential stands in for DFT by default); [screen, mlip, dft] "
        "first relaxes it with `mlip_engine` and sends on, from the ML-relaxed structure, only "
        "what ends within `mlip_e_above_hull` of the mlip scheme's own hull.",
    )
    mlip_engine: MlipEngineConfig = Field(
        default_factory=MlipEngineConfig, description=MlipEngineConfig.__doc__
    )
    mlip_e_above_hull: float = Field(
        0.1, ge=0, description="eV/atom on the mlip scheme's hull: who goes on to the dft stage."
    )
    mlip_fill: int = Field(
        0, ge=0,
        description="When fewer mlip entries pass the gate than the dft stage takes "
        "(`mlip_dft_budget`, else `selection.budget`), the mlip stage relaxes the screen's next "
        "`selection.budget` candidates too, up to this many more times: once the screen's best "
        "are used up, oracle calls are filled from further down its ranking instead of left "
        "unspent (0: never).",
    )
    mlip_unscreened: int = Field(
        0, ge=0,
        description="Candidates the screen could not judge (an element its model never saw, a "
        "cell it cannot read) that the mlip stage relaxes each round beside the selection, up to "
        "this many, drawn with the round's seed: the universal potential knows chemistry the "
        "screen does not (0: never).",
    )
    mlip_dft_budget: int | None = Field(
        None, ge=1,
        description="At most this many mlip entries go on to the dft stage per round, the "
        "nearest the hull first (unset: every one within `mlip_e_above_hull`).",
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
    task_runner: Literal["thread", "dask"] = Field(
        "thread",
        description="How Prefect runs a round's tasks: threads here, or a DaskTaskRunner.",
    )
    dask_cluster_class: str | None = Field(
        None,
        description="task_runner dask: e.g. dask_jobqueue.SLURMCluster; default a LocalCluster.",
    )
    dask_cluster_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="task_runner dask: the cluster class's arguments."
    )

    @model_validator(mode="before")
    @classmethod
    def _old_spellings(cls, data: Any) -> Any:
        """``mlip_options`` (before both engine keys took ``{name, options}``) moves into
        ``mlip_engine.options``."""
        if not isinstance(data, dict) or "mlip_options" not in data:
            return data
        data = dict(data)
        options = data.pop("mlip_options")
        engine = _engine_form(data.get("mlip_engine", {}))
        if isinstance(engine, dict) and not engine.get("options"):
            data["mlip_engine"] = {**engine, "options": options}
        elif options:
            raise ValueError("give mlip_engine.options only (mlip_options is its old spelling)")
        return data

    @model_validator(mode="after")
    def _distil_needs_a_calibration(self) -> CampaignConfig:
        if self.model.distill and self.mlip_calibration is None:
            raise ValueError("model.distill needs mlip_calibration (a stored calibration of the "
                             "mlip_engine's scheme into the campaign's)")
        return self

    @model_validator(mode="after")
    def _stage_settings_need_the_stage(self) -> CampaignConfig:
        given = [k for k in ("mlip_fill", "mlip_unscreened", "mlip_dft_budget")
                 if getattr(self, k)]
        if given and not self.staged:
            raise ValueError(f"{' and '.join(given)} set, but there is no mlip stage: use "
                             "stages: [screen, mlip, dft]")
        return self

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


def differs_from_stored(stored: dict[str, Any], config: CampaignConfig) -> bool:
    """Whether ``config`` is not the stored campaign's (``rounds`` aside): ``campaign run``
    refuses to mix a different configuration into an old campaign's rounds. The stored config
    is read as today's CampaignConfig writes it, so an option added since (with its default)
    or a key spelt the old way does not make an old campaign look different."""
    try:
        current = CampaignConfig.model_validate(stored).model_dump(mode="json")
    except ValueError:
        current = stored
    new = config.model_dump(mode="json")
    return {k: v for k, v in current.items() if k != "rounds"} != {
        k: v for k, v in new.items() if k != "rounds"
    }


def old_spellings(data: dict[str, Any]) -> list[str]:
    """What a campaign file still spells the old way, each with its new key (a migration)."""
    return [
        f"{old}: accepted for now; write it as {new}"
        for old, new in OLD_SPELLINGS.items()
        if old in data
    ]


def campaign_data(path: str | Path) -> dict[str, Any]:
    """The mapping a campaign file holds, or a one-line reason it holds none."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such campaign file")
    data = _read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a campaign file is a mapping of settings")
    return data


def campaign_config(data: dict[str, Any], source: str) -> CampaignConfig:
    """``data`` as a campaign config, or every problem named: one line each, ``source`` (the
    file, or the stored campaign) and the key."""
    try:
        return CampaignConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            "\n".join(f"{source}: {line}" for line in problems(exc, CampaignConfig))
        ) from None


def load_campaign(path: str | Path) -> CampaignConfig:
    """A campaign config from YAML, with every problem named: one line each, file and key."""
    return campaign_config(campaign_data(path), str(path))
