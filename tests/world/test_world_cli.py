"""`gnomon world check` and `status` on the shipped world and on damaged copies."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gnomon.cli import app
from gnomon.world.files import CHECKOUT_WORLD

SHIPPED = ["world.jsonl.gz", "heldout.json", "manifest.json"]

pytestmark = pytest.mark.skipif(not (CHECKOUT_WORLD / "manifest.json").is_file(),
                                reason="no shipped world in this checkout (bench/world)")


def _copy(tmp_path: Path) -> Path:
    folder = tmp_path / "world"
    folder.mkdir()
    for name in SHIPPED:
        shutil.copy(CHECKOUT_WORLD / name, folder / name)
    return folder


def _errors(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def test_check_passes_on_the_shipped_world():
    run = CliRunner().invoke(app, ["world", "check", str(CHECKOUT_WORLD)])
    assert run.exit_code == 0, run.output
    counts = json.loads((CHECKOUT_WORLD / "manifest.json").read_text())["counts"]
    assert "world.jsonl.gz       ok" in run.output and "heldout.json         ok" in run.output
    assert f"{counts['structures']} structures, {counts['systems']} systems" in run.output
    assert not _errors(run.output)


def test_check_defaults_to_the_shipped_world():
    run = CliRunner().invoke(app, ["world", "check"])
    assert run.exit_code == 0, run.output


def test_check_fails_on_a_damaged_copy_with_one_line(tmp_path):
    folder = _copy(tmp_path)
    held = json.loads((folder / "heldout.json").read_text())
    held["systems"] = held["systems"][1:]
    (folder / "heldout.json").write_text(json.dumps(held))
    run = CliRunner().invoke(app, ["world", "check", str(folder)])
    assert run.exit_code == 1
    assert "heldout.json         MISMATCH" in run.output
    errors = _errors(run.output)
    assert len(errors) == 1 and "heldout.json does not match" in errors[0]


def test_check_fails_on_a_truncated_world_file(tmp_path):
    folder = _copy(tmp_path)
    data = (folder / "world.jsonl.gz").read_bytes()
    (folder / "world.jsonl.gz").write_bytes(data[: len(data) // 2])
    run = CliRunner().invoke(app, ["world", "check", str(folder)])
    assert run.exit_code == 1
    errors = _errors(run.output)
    assert len(errors) == 1 and "world.jsonl.gz does not match" in errors[0]


def test_check_of_a_folder_without_a_world_is_one_error(tmp_path):
    run = CliRunner().invoke(app, ["world", "check", str(tmp_path)])
    assert run.exit_code == 1
    errors = _errors(run.output)
    assert len(errors) == 1 and "manifest.json is missing" in errors[0]


def test_grow_refuses_a_folder_without_a_world(tmp_path):
    run = CliRunner().invoke(app, ["world", "grow", str(tmp_path)])
    assert run.exit_code == 1 and "gnomon world build first" in run.output


def test_status_of_an_empty_folder_says_nothing_is_planned(tmp_path):
    run = CliRunner().invoke(app, ["world", "status", str(tmp_path)])
    assert run.exit_code == 0, run.output
    assert "work/wave1: 0 planned" in run.output and "grow: relaxed 0 (0 failed)" in run.output
