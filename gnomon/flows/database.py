"""How flows, tasks and deployments find the database without carrying its password.

Prefect records every flow run's parameters in its database and shows them in its UI, to
anyone who can see the server; a deployment keeps its parameters for as long as it exists.
So the settings handed to flows (:func:`settings_payload`) carry a database URL only when it
holds no credential. Otherwise they carry where to find it at run time, in the process that
runs the flow (:func:`settings_from_payload`):

- ``{"prefect_secret": NAME}``: a Prefect Secret block (``GNOMON_DB_SECRET_BLOCK=NAME``), for
  deployments run by a Prefect server's workers;
- ``{"env": "GNOMON_DB"}``: the environment variable the URL came from (a URL given with
  ``--db`` or in code is put there for the flows this process runs, its Dask workers and its
  served runs);
- ``{"file": PATH}``: the workspace settings file (``gnomon.yaml``) that holds it.

The site's SLURM ``environment`` (variables exported in every batch script) may hold secrets
too, e.g. the database URL for the compute nodes or a token. Values that carry a credential,
or whose variable is named like a secret (``*PASSWORD*``, ``*TOKEN*``, ``*SECRET*``, ``*KEY*``),
are left out of the payload; they are written to ``$GNOMON_HOME/secrets/slurm-environment.json``
(0600 in a 0700 folder) and read back from there by :func:`settings_from_payload`.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import yaml

from gnomon.config import Settings
from gnomon.credentials import has_credentials, mask_url, write_private

log = logging.getLogger(__name__)

#: where the CLI and Settings read the database URL from
DB_ENV = "GNOMON_DB"
#: names a Prefect Secret block holding the database URL; flows then read it from there
DB_SECRET_BLOCK_ENV = "GNOMON_DB_SECRET_BLOCK"


class DatabaseNotFound(RuntimeError):
    """A flow was told where its database URL is, and it is not there."""


def _settings_file(settings: Settings) -> Path:
    return (
        Path(os.environ["GNOMON_CONFIG"])
        if os.environ.get("GNOMON_CONFIG")
        else settings.home / "gnomon.yaml"
    )


def _file_db(path: Path) -> str | None:
    try:
        data = yaml.safe_load(path.read_text()) if path.is_file() else None
    except yaml.YAMLError:
        return None
    return data.get("db") if isinstance(data, dict) else None


def database_ref(settings: Settings) -> dict[str, str]:
    """Where a flow finds ``settings``' database URL at run time (see the module's docstring)."""
    url = settings.db_url
    block = os.environ.get(DB_SECRET_BLOCK_ENV)
    if block:
        return {"prefect_secret": block}
    if os.environ.get(DB_ENV) == url:
        return {"env": DB_ENV}
    path = _settings_file(settings)
    if _file_db(path) == url:
        return {"file": str(path.resolve())}
    # given on the command line or in code: the flows this process runs (threads, Dask
    # workers, served runs: its children) inherit it from here
    log.debug("database %s handed to this process's flows through %s", mask_url(url), DB_ENV)
    os.environ[DB_ENV] = url
    return {"env": DB_ENV}


def database_url(ref: dict[str, str]) -> str:
    """The database URL a reference from :func:`database_ref` points to, read now."""
    if "prefect_secret" in ref:
        from prefect.blocks.system import Secret  # heavy: prefect, only for a Secret block

        try:
            return str(Secret.load(ref["prefect_secret"]).get())
        except ValueError as exc:  # Prefect: no block of that name
            raise DatabaseNotFound(
                f"no Prefect Secret block {ref['prefect_secret']!r} holding the database URL: {exc}"
            ) from None
    if "env" in ref:
        url = os.environ.get(ref["env"])
        if not url:
            raise DatabaseNotFound(
                f"the campaign's database URL is read from ${ref['env']}, which "
                "is not set where this flow runs: set it there (or use "
                f"${DB_SECRET_BLOCK_ENV} with a Prefect Secret block)"
            )
        return url
    if "file" in ref:
        url = _file_db(Path(ref["file"]))
        if not url:
            raise DatabaseNotFound(f"{ref['file']} holds no database URL (db:)")
        return url
    raise DatabaseNotFound(f"unknown database reference {sorted(ref)}")


#: SLURM environment variables named like this hold a secret whatever their value looks like
SECRET_NAME = re.compile(r"passw|secret|token|key|credential|auth", re.IGNORECASE)


def is_secret_variable(name: str, value: str) -> bool:
    """Whether an exported variable must stay out of flow parameters."""
    return bool(SECRET_NAME.search(name)) or has_credentials(value)


def secret_environment_file(settings: Settings) -> Path:
    return settings.home / "secrets" / "slurm-environment.json"


def settings_payload(settings: Settings) -> dict[str, Any]:
    """Settings as plain data for flows, tasks and deployments: paths as strings, the database
    URL fixed, or, when it carries a credential, where to find it (``db_from``); secret SLURM
    environment values replaced by the private file that holds them (``slurm_secrets_from``)."""
    data = settings.model_dump(mode="json")
    url = settings.db_url
    if has_credentials(url):
        data.pop("db", None)
        data["db_from"] = database_ref(settings)
    else:
        data["db"] = url
    env = settings.slurm.environment
    secret = {k: v for k, v in env.items() if is_secret_variable(k, v)}
    if secret:
        path = write_private(secret_environment_file(settings), json.dumps(secret, indent=1))
        data["slurm"]["environment"] = {k: v for k, v in env.items() if k not in secret}
        data["slurm_secrets_from"] = {"file": str(path.resolve()), "names": sorted(secret)}
    return data


def _secret_environment(ref: dict[str, Any]) -> dict[str, str]:
    path = Path(ref["file"])
    try:
        values = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DatabaseNotFound(
            f"the SLURM environment's secret values ({', '.join(ref['names'])}) "
            f"are read from {path}, which cannot be read here: {exc}"
        ) from None
    missing = [n for n in ref["names"] if n not in values]
    if missing:
        raise DatabaseNotFound(f"{path} does not hold the SLURM environment values {missing}")
    return {n: values[n] for n in ref["names"]}


def settings_from_payload(payload: dict[str, Any]) -> Settings:
    """The Settings a flow or task was handed, with the database URL and the secret SLURM
    environment values read where they live."""
    data = dict(payload)
    ref = data.pop("db_from", None)
    if ref is not None:
        data["db"] = database_url(ref)
    secrets = data.pop("slurm_secrets_from", None)
    if secrets is not None:
        slurm = dict(data.get("slurm") or {})
        slurm["environment"] = {**(slurm.get("environment") or {}), **_secret_environment(secrets)}
        data["slurm"] = slurm
    return Settings(**data)


__all__ = [
    "DB_ENV",
    "DB_SECRET_BLOCK_ENV",
    "DatabaseNotFound",
    "database_ref",
    "database_url",
    "settings_from_payload",
    "settings_payload",
]
