"""Secrets stay secret: a database password never shows in what gnomon prints or logs, in the
parameters Prefect records for flows, tasks and deployments, in reports, or in any file of the
workspace (issue 18).

The acceptance test runs a short campaign on a mongomock URL that carries a sentinel password
(the instant fake engine relaxes), schedules it as a deployment, provokes a connection error and
runs ``gnomon db stats``; then it looks for the sentinel everywhere a user or another user of
the machine could.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import uuid
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gnomon.credentials import has_credentials, mask_secrets, mask_url, write_private

CONFIG = {
    "name": "secret-campaign",
    "elements": ["Li", "O"],
    "rounds": 1,
    "known_phases": False,
    "saps": {"max_candidates": 6, "max_template_sites": 4, "max_per_template": 3},
    "random_search": {"enabled": False},
    "model": {"start_from": "scratch", "min_entries": 1000},
    "selection": {"policy": "random", "budget": 2},
    "dispatch": {"name": "local", "workers": 1, "pack": 8, "poll_interval": 0.2},
}


class _RawRecords:
    """Every log record's text as it was made, before any handler (or its filter) sees it.

    Prefect reconfigures logging on import and again when it runs a flow (root handlers are
    replaced), so the records are taken where every logger hands them to its handlers.
    """

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.loggers: set[str] = set()

    def take(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        self.loggers.add(record.name)
        if record.exc_info and record.exc_info[1] is not None:
            self.lines.append(repr(record.exc_info[1]))


@pytest.fixture
def raw_logs(monkeypatch):
    records = _RawRecords()
    call_handlers = logging.Logger.callHandlers

    def spy(logger: logging.Logger, record: logging.LogRecord) -> None:
        records.take(record)
        call_handlers(logger, record)

    monkeypatch.setattr(logging.Logger, "callHandlers", spy)
    gnomon_logger = logging.getLogger("gnomon")
    level = gnomon_logger.level
    gnomon_logger.setLevel(logging.DEBUG)  # all of gnomon's own lines, whatever the user's level
    yield records
    gnomon_logger.setLevel(level)


def _prefect_records() -> str:
    """Flow runs, task runs and deployments as Prefect's client reads them back, as JSON."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        flow_runs = client.read_flow_runs(limit=200)
        task_runs = client.read_task_runs(limit=200)
        deployments = client.read_deployments(limit=200)
    assert any(r.parameters.get("config", {}).get("name") == CONFIG["name"] for r in flow_runs)
    assert any(d.name == CONFIG["name"] for d in deployments)
    assert task_runs
    return json.dumps(
        [json.loads(x.model_dump_json()) for x in [*flow_runs, *task_runs, *deployments]]
    )


def test_no_credential_in_output_logs_prefect_reports_or_files(
    tmp_path, monkeypatch, fake_engine, raw_logs, capfd, prefect_home
):
    from gnomon.cli import app
    from gnomon.dft import engine as engine_module

    sentinel = f"Sentinel{uuid.uuid4().hex[:12]}"
    url = f"mongomock://alice:{sentinel}@secrets-{uuid.uuid4().hex[:8]}/gnomon"
    home = tmp_path / "home"
    monkeypatch.setenv("GNOMON_HOME", str(home))
    monkeypatch.setenv("GNOMON_DB", url)
    # the campaign names the mlip engine; every place that builds it gets the instant double
    monkeypatch.setattr(engine_module, "make_engine", lambda name, settings, **options: fake_engine)
    config = tmp_path / "campaign.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    runner = CliRunner()
    printed: list[str] = []

    def cli(*args: str, ok: bool = True) -> str:
        result = runner.invoke(app, list(args))
        printed.append(result.output + (repr(result.exception) if result.exception else ""))
        assert (result.exit_code == 0) is ok, result.output
        return result.output

    cli("campaign", "run", str(config), "-v")  # -v: every log line, so the check sees them
    # `schedule` registers the deployment where a Prefect API is in force: the one that ran
    # the campaign (Prefect's temporary server, alive for this process)
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        monkeypatch.setenv("PREFECT_API_URL", str(client.api_url))
    scheduled = cli("campaign", "schedule", str(config), "--cron", "0 2 * * *")
    assert "deployment gnomon-campaign/" in scheduled
    refused = cli("phases", "--db", f"mongodb://alice:{sentinel}@127.0.0.1:1/x", ok=False)
    assert "alice:***@127.0.0.1:1" in refused  # the error says which database, without its password
    stats = "".join(cli("db", "stats").split())  # rich wraps the title in a narrow terminal
    assert "mongomock://alice:***@secrets-" in stats and "campaigns" in stats
    cli("db", "stats", "--help")

    out, err = capfd.readouterr()
    assert sentinel not in "\n".join(printed) + out + err
    assert any(
        name.startswith("gnomon.") for name in raw_logs.loggers
    )  # the log check saw gnomon's
    assert not [line for line in raw_logs.lines if sentinel in line]
    assert sentinel not in _prefect_records()
    report = home / "reports" / CONFIG["name"] / "report.md"
    assert report.exists() and sentinel not in report.read_text()
    # every file in the workspace, and everything Prefect keeps (its database included)
    files = [p for root in (home, Path(prefect_home)) for p in root.rglob("*") if p.is_file()]
    assert any(p.suffix == ".db" for p in files)
    leaking = [
        p
        for p in files
        if sentinel.encode() in p.read_bytes() and stat.S_IMODE(p.stat().st_mode) != 0o600
    ]
    assert leaking == []


def test_flow_settings_refer_to_the_database_without_carrying_it(tmp_path, monkeypatch):
    from gnomon.config import Settings
    from gnomon.flows.database import DatabaseNotFound, settings_from_payload, settings_payload

    url = "mongodb://alice:pw-sentinel@db.example.org/gnomon"
    monkeypatch.delenv("GNOMON_DB_SECRET_BLOCK", raising=False)
    # a URL without credentials travels as it is
    plain = settings_payload(Settings(home=tmp_path, db="mongodb://db.example.org/gnomon"))
    assert plain["db"] == "mongodb://db.example.org/gnomon" and "db_from" not in plain
    # from the environment: the flow reads the variable where it runs
    monkeypatch.setenv("GNOMON_DB", url)
    payload = settings_payload(Settings(home=tmp_path))
    assert payload["db_from"] == {"env": "GNOMON_DB"} and "pw-sentinel" not in json.dumps(payload)
    assert settings_from_payload(payload).db == url
    monkeypatch.delenv("GNOMON_DB")
    with pytest.raises(DatabaseNotFound, match=r"\$GNOMON_DB"):
        settings_from_payload(payload)
    # from the workspace settings file
    (tmp_path / "gnomon.yaml").write_text(yaml.safe_dump({"db": url}))
    monkeypatch.setenv("GNOMON_CONFIG", str(tmp_path / "gnomon.yaml"))
    payload = settings_payload(Settings(home=tmp_path))
    assert payload["db_from"] == {"file": str((tmp_path / "gnomon.yaml").resolve())}
    assert "pw-sentinel" not in json.dumps(payload) and settings_from_payload(payload).db == url
    # from a Prefect Secret block, named by GNOMON_DB_SECRET_BLOCK
    monkeypatch.setenv("GNOMON_DB_SECRET_BLOCK", "gnomon-db")
    assert settings_payload(Settings(home=tmp_path))["db_from"] == {"prefect_secret": "gnomon-db"}


def test_secret_slurm_environment_values_stay_out_of_flow_settings(tmp_path, monkeypatch):
    from gnomon.config import Settings
    from gnomon.dft.settings import SlurmSettings
    from gnomon.flows.database import DatabaseNotFound, settings_from_payload, settings_payload

    env = {
        "GNOMON_DB": "mongodb://alice:pw-sentinel@db.example.org/gnomon",
        "HPC_API_TOKEN": "tok-sentinel",
        "OMP_NUM_THREADS": "4",
    }
    settings = Settings(
        home=tmp_path, db=f"sqlite:///{tmp_path}/x.db", slurm=SlurmSettings(environment=env)
    )
    payload = settings_payload(settings)
    text = json.dumps(payload)
    assert "pw-sentinel" not in text and "tok-sentinel" not in text
    assert payload["slurm"]["environment"] == {"OMP_NUM_THREADS": "4"}  # the rest travels
    held = Path(payload["slurm_secrets_from"]["file"])
    assert stat.S_IMODE(held.stat().st_mode) == 0o600
    assert stat.S_IMODE(held.parent.stat().st_mode) == 0o700
    # where the flow runs, the batch scripts export all three again
    assert settings_from_payload(payload).slurm.environment == env
    held.unlink()
    with pytest.raises(DatabaseNotFound, match="HPC_API_TOKEN"):
        settings_from_payload(payload)


def test_a_prefect_secret_block_supplies_the_url(tmp_path, monkeypatch):
    from prefect.blocks.system import Secret

    from gnomon.config import Settings
    from gnomon.flows.database import settings_from_payload, settings_payload

    url = f"mongodb://alice:{uuid.uuid4().hex}@db.example.org/gnomon"
    name = f"gnomon-db-{uuid.uuid4().hex[:8]}"
    Secret(value=url).save(name)
    monkeypatch.setenv("GNOMON_DB_SECRET_BLOCK", name)
    payload = settings_payload(Settings(home=tmp_path, db=url))
    assert url not in json.dumps(payload)
    assert settings_from_payload(payload).db == url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("mongodb://alice:s3cret@127.0.0.1:1/x", "mongodb://alice:***@127.0.0.1:1/x"),
        (
            "mongodb+srv://bob:p%40ss@c.example.net/db?retryWrites=true",
            "mongodb+srv://bob:***@c.example.net/db?retryWrites=true",
        ),
        (
            "mongodb://h/db?tlsCertificateKeyFilePassword=s3cret",
            "mongodb://h/db?tlsCertificateKeyFilePassword=***",
        ),
        ("mongodb://host:27017/db", "mongodb://host:27017/db"),
        ("sqlite:////tmp/gnomon.db", "sqlite:////tmp/gnomon.db"),
    ],
)
def test_mask_url(url, shown):
    assert mask_url(url) == shown
    assert has_credentials(url) is (url != shown)
    assert (
        mask_secrets(f"cannot reach MongoDB at {url} (timed out)")
        == f"cannot reach MongoDB at {shown} (timed out)"
    )


def test_config_errors_do_not_echo_the_password(monkeypatch):
    from gnomon.config import ConfigError, load_settings

    with pytest.raises(ConfigError) as info:
        load_settings(db="mongdb://alice:s3cret@h/x")  # misspelt scheme: pydantic echoes the input
    assert "s3cret" not in str(info.value) and "alice:***@h" in str(info.value)


def test_files_that_hold_credentials_are_private(tmp_path, monkeypatch):
    from gnomon.dft.jobflow_remote import project_config, write_project_file
    from gnomon.dft.settings import SlurmSettings
    from gnomon.dft.slurm import SlurmDispatcher

    url = "mongodb://alice:s3cret@db.example.org/gnomon"
    folder = tmp_path / "jfremote"
    folder.mkdir(mode=0o755)
    path = write_project_file(project_config(url, SlurmSettings(), tmp_path / "runs"), folder)
    assert "s3cret" in path.read_text()
    assert (
        stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(folder.stat().st_mode) == 0o700
    )
    # rewriting an existing, readable file makes it private as well
    path.chmod(0o644)
    write_private(path, "x")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    # a batch script exporting the database URL to the compute nodes
    dispatcher = SlurmDispatcher(SlurmSettings(environment={"GNOMON_DB": url}))
    monkeypatch.setattr(
        dispatcher.manager,
        "execute_cmd",
        lambda cmd, cwd=None, timeout=None: ("Submitted batch job 42\n", "", 0),
    )
    assert dispatcher.submit([tmp_path / "calc"], "gnomon-x-1", tmp_path / "batches") == "42"
    script = tmp_path / "batches" / "gnomon-x-1.sh"
    assert "s3cret" in script.read_text() and stat.S_IMODE(script.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "batches").stat().st_mode) == 0o700
    assert os.access(script, os.R_OK)
