"""gnomon.dft's import graph, read from the source with ``ast``: no circle among its modules
and nothing from the layers above it (the configuration, the CLI, the flows).

Every import statement counts, at module level or inside a function (a deferred import is
still a dependency; deferring it only hides a circle until the day it bites).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import gnomon.dft

PACKAGE = "gnomon.dft"
ROOT = Path(gnomon.dft.__file__).resolve().parent
UPWARD = ("gnomon.config", "gnomon.cli", "gnomon.commands", "gnomon.flows")


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join([PACKAGE, *parts])


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imported_modules(path: Path, name: str, known: set[str]) -> set[str]:
    """Every module ``path`` imports, absolute names; ``from pkg import sub`` names ``pkg.sub``
    when ``sub`` is a module, else ``pkg``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                out.add(sub if sub in known or _is_module(sub) else source)
    return out


def _is_module(dotted: str) -> bool:
    """``gnomon.x.y`` names a module or package of the source tree (not a name inside one)."""
    parts = dotted.split(".")
    if parts[0] != "gnomon":
        return False
    base = ROOT.parents[0].joinpath(*parts[1:])
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imported_modules(path, name, known) for name, path in mods.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import circle among the keys of ``edges`` (as a path that returns to its start)."""
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(edges, white)
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = grey
        stack.append(node)
        for nxt in sorted(edges[node] & edges.keys()):
            if colour[nxt] == grey:
                return [*stack[stack.index(nxt):], nxt]
            if colour[nxt] == white and (found := visit(nxt)):
                return found
        stack.pop()
        colour[node] = black
        return None

    for start in sorted(edges):
        if colour[start] == white and (found := visit(start)):
            return found
    return None


def test_the_graph_is_read():
    """The reader sees what it must (or the tests below would pass on an empty graph)."""
    g = graph()
    assert {"gnomon.dft.engine", "gnomon.dft.qe", "gnomon.dft.qe_io", "gnomon.dft.registry"} <= g.keys()
    assert "gnomon.dft.engine" in g["gnomon.dft.qe"]
    assert "gnomon.dft.worker" in g["gnomon.dft.service"]  # `from gnomon.dft import worker`
    assert "gnomon.dft.task" in g["gnomon.dft.worker"]  # an import inside a function


def test_no_import_cycle_in_gnomon_dft():
    cycle = find_cycle(graph())
    assert cycle is None, "import circle in gnomon.dft: " + " -> ".join(cycle or [])


@pytest.mark.parametrize(
    ("edges", "cycle"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
        ({"a": {"a"}}, ["a", "a"]),
        ({"a": {"b", "x.outside"}, "b": set()}, None),
    ],
)
def test_find_cycle(edges, cycle):
    assert find_cycle(edges) == cycle


def test_no_upward_import_from_gnomon_dft():
    """gnomon.dft sits below the configuration: settings come in as arguments."""
    offenders = {
        name: sorted(m for m in imports if any(m == up or m.startswith(up + ".") for up in UPWARD))
        for name, imports in graph().items()
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_imports_of_gnomon_config_are_caught(tmp_path):
    """The reader recognises every spelling of an import of gnomon.config."""
    src = tmp_path / "m.py"
    src.write_text(
        "def f():\n    from gnomon.config import Settings\n"
        "import gnomon.config as c\nfrom gnomon import config\n"
    )
    assert imported_modules(src, "gnomon.dft.m", set()) == {"gnomon.config"}
