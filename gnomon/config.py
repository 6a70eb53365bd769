"""One settings object for a gnomon workspace.

Settings come from, in rising priority: defaults, a YAML file (``GNOMON_CONFIG`` or
``$GNOMON_HOME/gnomon.yaml``), ``GNOMON_*`` environment variables (nested with ``__``, e.g.
``GNOMON_QE__PSEUDO_DIR``), and finally explicit overrides such as the CLI's ``--db``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from gnomon.dft.settings import QESettings, SlurmSettings, VaspSettings

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

    @field_validator("db")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not value.startswith(("sqlite://", "mongodb://", "mongodb+srv://", "mongomock://")):
            raise ValueError(
                f"database URL {value!r} must start with sqlite://, mongodb:// or mongomock://"
            )
        return value

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
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
