"""Campaign files: `campaign validate` runs run's checks without running, `campaign schema`
prints the JSON Schema the models define, docs/config-reference.md is that schema for people,
and every problem is one line naming its key, with "did you mean" and never a web link."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from gnomon.campaign.config_reference import reference_markdown
from gnomon.cli import app
from gnomon.config import (
    CampaignConfig,
    ConfigError,
    differs_from_stored,
    load_campaign,
    old_spellings,
)

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "examples" / "quickstart.yaml"
REFERENCE = ROOT / "docs" / "config-reference.md"


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """An empty workspace and database location: validating must leave both untouched."""
    monkeypatch.setenv("GNOMON_HOME", str(tmp_path / "ws"))
    monkeypatch.delenv("GNOMON_DB", raising=False)
    monkeypatch.delenv("GNOMON_CONFIG", raising=False)
    return tmp_path


def _write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _schema() -> dict:
    result = CliRunner().invoke(app, ["campaign", "schema"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_the_printed_schema_accepts_the_shipped_campaigns_and_refuses_a_typo():
    schema = _schema()
    for example in (QUICKSTART, ROOT / "examples" / "many_systems.yaml"):
        jsonschema.validate(yaml.safe_load(example.read_text()), schema)
    typo = {**yaml.safe_load(QUICKSTART.read_text()), "selection": {"budgte": 3}}
    with pytest.raises(jsonschema.ValidationError, match="budgte"):
        jsonschema.validate(typo, schema)


def test_every_key_of_the_schema_says_what_it_means():
    schema = _schema()

    def described(prop: dict) -> bool:  # a section's meaning may sit on the section it names
        refs = [prop, *prop.get("anyOf", [])]
        targets = [schema["$defs"][r["$ref"].rpartition("/")[2]] for r in refs if "$ref" in r]
        return bool(prop.get("description") or any(t.get("description") for t in targets))

    undescribed = [
        f"{model}.{key}"
        for model, part in [("CampaignConfig", schema), *schema["$defs"].items()]
        for key, prop in part.get("properties", {}).items()
        if not described(prop)
    ]
    assert undescribed == []


def test_validate_accepts_a_good_campaign_and_writes_nothing(workspace):
    db = workspace / "db" / "gnomon.db"
    result = CliRunner().invoke(
        app, ["campaign", "validate", str(QUICKSTART), "--db", f"sqlite:///{db}"]
    )
    assert result.exit_code == 0, result.output
    assert "campaign quickstart is valid" in result.output
    assert "does not exist yet" in result.output
    assert not db.exists() and not db.parent.exists() and not (workspace / "ws").exists()


def test_validate_refuses_a_typo_with_did_you_mean_and_no_link(workspace):
    config = _write(workspace, "name: t\nelements: [Li, O]\nselection:\n  budgte: 3\n")
    result = CliRunner().invoke(app, ["campaign", "validate", str(config)])
    assert result.exit_code == 1
    assert "selection.budgte: unknown key (did you mean 'budget'?)" in result.output
    assert "http" not in result.output and "Traceback" not in result.output


def test_validate_runs_the_engine_checks_run_would_meet_later(workspace):
    bad_option = _write(
        workspace, "name: t\nelements: [Li, O]\nengine: {name: chgnet, options: {fmx: 0.1}}\n"
    )
    result = CliRunner().invoke(app, ["campaign", "validate", str(bad_option)])
    assert result.exit_code == 1
    assert "engine.options: the CHGNet engine has no setting fmx" in result.output
    same_scheme = _write(
        workspace,
        "name: t\nelements: [Li, O]\nstages: [screen, mlip, dft]\nengine: mlip\n"
        "mlip_engine: chgnet\n",
        "s.yaml",
    )
    result = CliRunner().invoke(app, ["campaign", "validate", str(same_scheme)])
    assert result.exit_code == 1 and "share the scheme" in result.output


def test_validate_refuses_a_different_config_under_a_stored_name(workspace, sqlite_repo):
    from gnomon.storage import Campaign

    cfg = load_campaign(QUICKSTART)
    stored = cfg.model_copy(update={"seed": cfg.seed + 1}).model_dump(mode="json")
    sqlite_repo.insert_new("campaigns", [Campaign(id=cfg.name, name=cfg.name, config=stored)])
    before = Path(sqlite_repo.path).read_bytes()
    result = CliRunner().invoke(
        app, ["campaign", "validate", str(QUICKSTART), "--db", sqlite_repo.url]
    )
    assert result.exit_code == 1
    assert "exists with a different configuration" in result.output
    assert Path(sqlite_repo.path).read_bytes() == before


def test_a_stored_campaign_that_no_longer_validates_is_named_not_a_traceback(
    workspace, sqlite_repo
):
    from gnomon.storage import Campaign

    old = {"name": "old", "elements": ["Li", "O"], "selection": {"budgte": 3}}
    sqlite_repo.insert_new("campaigns", [Campaign(id="old", name="old", config=old)])
    result = CliRunner().invoke(app, ["campaign", "resume", "old", "--db", sqlite_repo.url])
    assert result.exit_code == 1
    assert "stored campaign old: selection.budgte: unknown key (did you mean 'budget'?)" in (
        " ".join(result.output.split())
    )
    assert "Traceback" not in result.output and "http" not in result.output


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: t\nelements: [Li, Xx]\n", "elements: unknown elements ['Xx']"),
        ("name: t\nelements: [Li]\nrounds: three\n", "rounds: input should be a valid integer"),
        (
            "name: t\nelements: [Li]\nselection: {policy: gredy}\n",
            "selection.policy: input should be 'threshold', 'greedy', 'uncertainty' or "
            "'random', got 'gredy' (did you mean 'greedy'?)",
        ),
        ("name: t\nelements: [Li]\nmlip_engin: chgnet\n", "(did you mean 'mlip_engine'?)"),
        ("elements: [Li]\n", "name: required, but not given"),
        ("name: t\nelements: [Li, O\n", "c.yaml:3:1: not valid YAML"),
    ],
)
def test_each_problem_is_one_line_naming_its_key(tmp_path, text, expected):
    with pytest.raises(ConfigError) as caught:
        load_campaign(_write(tmp_path, text))
    message = str(caught.value)
    assert expected in message
    assert "errors.pydantic.dev" not in message and "http" not in message
    assert all(line.startswith(str(tmp_path / "c.yaml")) for line in message.splitlines())


def test_every_problem_of_a_file_is_named_at_once(tmp_path):
    text = "name: t\nelements: [Li]\nrounds: 0\nsaps: {max_candidatez: 3}\ndask: {workers: 0}\n"
    with pytest.raises(ConfigError) as caught:
        load_campaign(_write(tmp_path, text))
    keys = [line.split(": ")[1] for line in str(caught.value).splitlines()]
    assert keys == ["rounds", "saps.max_candidatez", "dask.workers"]


def test_both_engine_keys_take_the_same_forms_and_names():
    spelt = [
        {"engine": "chgnet", "mlip_engine": "chgnet"},
        {"engine": {"name": "chgnet"}, "mlip_engine": {"name": "chgnet"}},
        {"engine": {"name": "mlip", "options": {}}, "mlip_engine": {"name": "mlip"}},
    ]
    configs = [CampaignConfig(name="t", elements=["Li"], **keys) for keys in spelt]
    assert {(c.engine.name, c.mlip_engine.name) for c in configs} == {("mlip", "mlip")}
    qe = CampaignConfig(name="t", elements=["Li"], engine="qe", mlip_engine="sevennet")
    assert (qe.engine.name, qe.mlip_engine.name) == ("qe", "sevennet")
    with pytest.raises(ValueError, match="did you mean 'sevennet'"):
        CampaignConfig(name="t", elements=["Li"], mlip_engine="sevenet")


def test_the_old_mlip_options_key_is_read_and_named_as_old():
    data = {"name": "t", "elements": ["Li"], "mlip_engine": "chgnet", "mlip_options": {"fmax": 0.1}}
    cfg = CampaignConfig.model_validate(data)
    assert cfg.mlip_engine.options == {"fmax": 0.1}
    assert old_spellings(data) == [
        "mlip_options: accepted for now; write it as mlip_engine.options"
    ]
    # a campaign stored before the change is the same campaign when its file is run again
    assert not differs_from_stored(data, cfg)
    with pytest.raises(ValueError, match="mlip_engine.options only"):
        CampaignConfig.model_validate(
            {**data, "mlip_engine": {"name": "chgnet", "options": {"steps": 5}}}
        )


def test_the_config_reference_is_in_sync_with_the_models():
    assert REFERENCE.read_text() == reference_markdown(), (
        "docs/config-reference.md is out of date: "
        "gnomon campaign schema --markdown > docs/config-reference.md"
    )


def test_the_reference_names_every_key_with_its_default():
    text = reference_markdown()
    for name, info in CampaignConfig.model_fields.items():
        assert f"| `{name}` |" in text
        section = info.annotation if isinstance(info.annotation, type) else None
        if section is not None and hasattr(section, "model_fields"):
            for key in section.model_fields:
                assert f"| `{name}.{key}` |" in text
    assert "| `selection.budget` | integer ≥ 1 | `10` | Relaxations per round. |" in text
    assert "| `max_arity` | integer ≥ 2, or unset | unset |" in text
