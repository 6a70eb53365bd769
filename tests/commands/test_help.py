"""Help pages a newcomer can read: values in words, an example on every command, whole
sentences, one spelling per idea (old spellings still accepted), `--version`, and a root help
that imports none of the command modules."""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
import re
import subprocess
import sys

import pytest
import typer.main
from typer.testing import CliRunner

import gnomon
import gnomon.commands
from gnomon.cli import COMMANDS, OLD_OPTIONS, app, load

#: What typer shows when a parameter has no metavar in words: its Python type, or braces.
PYTHON_TYPES = re.compile(r"<(bool|int|float|str|path|text|list\[)[^>]*>|\{[a-z_]+\}", re.I)


def _walk(command, path):
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _walk(sub, [*path, name])


def every_command():
    """(path, click command) of every command and group under ``gnomon``, hidden ones too."""
    return [pair for name in COMMANDS for pair in _walk(load(name), [name])]


def _help(path: list[str]) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=120)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("path", [[]] + [p for p, _ in every_command()], ids=" ".join)
def test_help_pages_name_values_in_words(path):
    text = _help(path)
    assert not PYTHON_TYPES.findall(text), text


def test_every_leaf_command_has_an_example_of_itself():
    missing = [
        " ".join(path)
        for path, command in every_command()
        if not getattr(command, "commands", None)
        and f"Example: gnomon {' '.join(path)}" not in " ".join(_help(path).split())
    ]
    assert missing == []


def test_summaries_are_whole_sentences_on_one_line():
    broken = {}
    for path, command in every_command():
        summary = (command.help or "").split("\n\n")[0]
        if not summary or "\n" in summary or not summary.rstrip().endswith((".", ")")):
            broken[" ".join(path)] = summary
    assert broken == {}
    # and the listing shows each whole: the schedule summary once broke before its last word
    listing = re.sub(r"[│\s]+", " ", _help(["campaign"]))
    assert "until its stopping rules end it." in listing


def test_the_lazy_table_agrees_with_the_commands():
    for name, entry in COMMANDS.items():
        module = importlib.import_module(entry.module)
        if entry.group:
            real = typer.main.get_group(module.app)
        else:
            real = typer.main.get_group(module.commands).commands.get(name)
        assert real is not None, f"{entry.module} defines no command {name!r}"
        assert (real.help or "").split("\n\n")[0] == entry.summary, name
        assert bool(real.hidden) == entry.hidden, name


def test_every_command_a_module_defines_is_in_the_lazy_table():
    defined = set()
    for info in pkgutil.iter_modules(gnomon.commands.__path__):
        module = importlib.import_module(f"gnomon.commands.{info.name}")
        if isinstance(getattr(module, "app", None), typer.Typer):
            defined.add(("app", module.__name__, None))
        if isinstance(getattr(module, "commands", None), typer.Typer):
            for name in typer.main.get_group(module.commands).commands:
                defined.add(("commands", module.__name__, name))
    listed = {
        ("app", e.module, None) if e.group else ("commands", e.module, name)
        for name, e in COMMANDS.items()
    }
    assert defined == listed


def test_root_help_lists_every_command_without_importing_them():
    code = (
        "import sys\n"
        "from gnomon.cli import main\n"
        "sys.argv = ['gnomon', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = ('gnomon.commands.', 'pymatgen', 'torch', 'prefect', 'matplotlib', 'pydantic')\n"
        "print('IMPORTED', sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    assert "IMPORTED ['gnomon.commands.help_format']" in out
    listing = " ".join(out.split())
    for name, entry in COMMANDS.items():
        assert (f"{name} {entry.summary}" in listing) != entry.hidden, name


def test_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"gnomon {gnomon.__version__}\n"
    assert gnomon.__version__ == importlib.metadata.version("gnomon")


def test_an_unknown_command_is_named_with_the_nearest():
    result = CliRunner().invoke(app, ["phsaes"])
    assert result.exit_code == 2
    assert "No such command 'phsaes'. Did you mean 'phases'?" in " ".join(result.output.split())


def _parsed(path: list[str], args: list[str]) -> dict:
    """The parameters ``gnomon PATH ARGS`` would run with (nothing runs)."""
    command = load(path[0])
    for part in path[1:]:
        command = command.commands[part]
    required: list[str] = []
    for param in command.params:
        if param.required and not (set(param.opts) & set(args)):
            required += ["1"] if param.param_type_name == "argument" else [param.opts[0], "1"]
    return command.make_context(path[-1], [*args, *required]).params


@pytest.mark.parametrize(
    ("path", "old", "new"),
    [(p.split(), old, new) for p, renamed in OLD_OPTIONS.items() for old, new in renamed.items()],
    ids=lambda v: " ".join(v) if isinstance(v, list) else v,
)
def test_an_old_spelling_still_works_and_is_not_shown(path, old, new):
    assert _parsed(path, [old, "3"]) == _parsed(path, [new, "3"])
    assert _parsed(path, [old, "3"]) != _parsed(path, [])
    shown = re.findall(r"--[a-z][a-z-]*", _help(path))
    assert new in shown and old not in shown
