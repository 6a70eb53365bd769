"""Settings: defaults, YAML, GNOMON_* variables and CLI overrides, in that order."""

from __future__ import annotations

from pathlib import Path

import pytest

from gnomon.config import ConfigError, load_settings


def test_default_database_is_sqlite_in_the_workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("GNOMON_HOME", str(tmp_path / "ws"))
    s = load_settings()
    assert s.db_url == f"sqlite:///{(tmp_path / 'ws' / 'gnomon.db').as_posix()}"
    assert s.models_dir == tmp_path / "ws" / "models"


def test_yaml_then_env_then_override(tmp_path, monkeypatch):
    cfg = tmp_path / "site.yaml"
    cfg.write_text(
        "db: sqlite:////data/from-yaml.db\nqe:\n  ecutwfc: 55\n  pseudo_dir: /pp\n"
        "slurm:\n  partition: batch\n"
    )
    monkeypatch.setenv("GNOMON_CONFIG", str(cfg))
    s = load_settings()
    assert s.db == "sqlite:////data/from-yaml.db"
    assert s.qe.ecutwfc == 55 and s.qe.pseudo_dir == Path("/pp") and s.slurm.partition == "batch"
    monkeypatch.setenv("GNOMON_DB", "mongodb://db.cluster:27017/gnomon")
    monkeypatch.setenv("GNOMON_QE__ECUTWFC", "60")
    s = load_settings()
    assert s.db_url == "mongodb://db.cluster:27017/gnomon" and s.qe.ecutwfc == 60
    assert load_settings(db="sqlite:///x.db").db_url == "sqlite:///x.db"


def test_bad_settings_are_named(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="sqlite://"):
        load_settings(db="postgres://nope")
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("qe:\n  ecutwfc: lots\n")
    monkeypatch.setenv("GNOMON_CONFIG", str(cfg))
    with pytest.raises(ConfigError, match="ecutwfc"):
        load_settings()
    cfg.write_text("unknown_key: 1\n")
    with pytest.raises(ConfigError, match="unknown_key"):
        load_settings()


def test_a_settings_typo_is_one_line_with_did_you_mean_and_no_link(tmp_path, monkeypatch):
    cfg = tmp_path / "gnomon.yaml"
    cfg.write_text("qe:\n  ecutwfc: lots\nlog_levle: DEBUG\ndask:\n  worker: 3\n")
    monkeypatch.setenv("GNOMON_CONFIG", str(cfg))
    with pytest.raises(ConfigError) as caught:
        load_settings()
    lines = str(caught.value).splitlines()
    assert sorted(lines) == [
        "dask.worker: unknown key (did you mean 'workers'?)",
        "log_levle: unknown key (did you mean 'log_level'?)",
        "qe.ecutwfc: input should be a valid number, unable to parse string as a number, "
        "got 'lots'",
    ]
    assert "http" not in str(caught.value)


def test_a_broken_settings_file_names_its_line(tmp_path, monkeypatch):
    cfg = tmp_path / "gnomon.yaml"
    cfg.write_text("qe:\n  ecutwfc: 40\n   pseudo_dir: /pp\n")
    monkeypatch.setenv("GNOMON_CONFIG", str(cfg))
    with pytest.raises(ConfigError, match=r"gnomon\.yaml:3:\d+: not valid YAML") as caught:
        load_settings()
    assert "\n" not in str(caught.value)
