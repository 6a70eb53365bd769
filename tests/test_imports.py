"""gnomon's import graph, read from the source with ``ast``: no circle, no arrow up the layers,
and no import inside a function except of a heavy optional dependency.

Every import statement counts, at module level, under ``if TYPE_CHECKING:`` or inside a
function: a deferred import is still a dependency, and deferring it only hides a circle until
the day it bites. A function may import only what is slow to import or optional on a site
(torch, Prefect, Dask, matplotlib, ...; :data:`HEAVY`), or a gnomon module that imports such a
thing at its top, and says so in a comment containing ``heavy`` on that line or the one above.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

import gnomon

ROOT = Path(gnomon.__file__).resolve().parent

# The layers, lowest first: a module may import from its own layer or any layer below it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("gnomon", "gnomon.credentials"),
    ("gnomon.storage",),
    ("gnomon.pipeline",),
    ("gnomon.dft", "gnomon.models"),
    ("gnomon.config",),
    ("gnomon.campaign", "gnomon.world"),
    ("gnomon.flows", "gnomon.serve"),
    ("gnomon.commands",),
    ("gnomon.cli",),
)

# Third-party packages a function may import lazily: each costs a third of a second or more to
# import (measured with `python -c "import X"` here), or is needed only on some sites.
HEAVY = frozenset(
    {
        "torch",
        "torch_geometric",
        "sevenn",
        "chgnet",
        "matgl",
        "mace",
        "prefect",
        "prefect_dask",
        "dask",
        "distributed",
        "dask_jobqueue",
        "matplotlib",
        "plotly",
        "playwright",
        "uvicorn",
        "fastapi",
        "pyxtal",
        "smact",
        "amd",
        "jobflow",
        "atomate2",
        "jobflow_remote",
        "custodian",
        "pymongo",
        "mongomock",
        "ase",
        "pymatgen.analysis",
        "pymatgen.io",
        "pymatgen.entries",
        "pymatgen.symmetry",
        "pymatgen.transformations",
        "pymatgen.alchemy",
    }
)


@dataclass(frozen=True)
class Import:
    target: str  # the imported module, absolute (a gnomon module, or a third-party dotted name)
    line: int
    in_function: bool
    commented_heavy: bool


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    return ".".join(p for p in rel.parts if p != "__init__")


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _is_gnomon_module(dotted: str) -> bool:
    parts = dotted.split(".")
    if parts[0] != "gnomon":
        return False
    base = ROOT.parent.joinpath(*parts)
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _owner(dotted: str) -> str:
    """The gnomon module that defines ``dotted`` (a module, or a name inside one)."""
    while not _is_gnomon_module(dotted) and "." in dotted:
        dotted = dotted.rpartition(".")[0]
    return dotted


def imports_of(path: Path, name: str) -> list[Import]:
    """Every import of ``path``; ``from pkg import sub`` names ``pkg.sub`` when ``sub`` is a
    module, else ``pkg``; relative imports are made absolute."""
    source = path.read_text()
    lines = source.splitlines()
    tree = ast.parse(source, filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    in_function: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_function.update(
                id(n) for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))
            )
    out: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                src = ".".join([*base, node.module] if node.module else base)
            else:
                src = node.module or ""
            targets = [
                f"{src}.{a.name}" if _is_gnomon_module(f"{src}.{a.name}") else src
                for a in node.names
            ]
        else:
            continue
        heavy = any("heavy" in c.lower() for c in _comments_of_block(lines, node))
        for target in targets:
            if target.startswith("gnomon"):
                target = _owner(target)
            out.append(Import(target, node.lineno, id(node) in in_function, heavy))
    return out


def _comments_of_block(lines: list[str], node: ast.stmt) -> list[str]:
    """The comments on an import's own lines and on the lines above it up to a blank line or a
    block's header: one ``# heavy: ...`` line may head a run of lazy imports."""
    comments = [
        ln.partition("#")[2] for ln in lines[node.lineno - 1 : node.end_lineno] if "#" in ln
    ]
    k = node.lineno - 2
    while k >= 0 and lines[k].strip() and not lines[k].rstrip().endswith(":"):
        if lines[k].strip().startswith("#"):
            comments.append(lines[k])
        k -= 1
    return comments


def graph() -> dict[str, list[Import]]:
    return {name: imports_of(path, name) for name, path in modules().items()}


def edges(g: dict[str, list[Import]]) -> dict[str, set[str]]:
    return {
        name: {i.target for i in imps if i.target.startswith("gnomon") and i.target != name}
        for name, imps in g.items()
    }


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
                return [*stack[stack.index(nxt) :], nxt]
            if colour[nxt] == white and (found := visit(nxt)):
                return found
        stack.pop()
        colour[node] = black
        return None

    for start in sorted(edges):
        if colour[start] == white and (found := visit(start)):
            return found
    return None


def layer(module: str) -> int:
    """The layer of ``module``: that of the longest declared prefix it falls under."""
    best, best_len = -1, -1
    for k, names in enumerate(LAYERS):
        for prefix in names:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = k, len(prefix)
    return best


def is_heavy_package(target: str) -> bool:
    return any(target == h or target.startswith(h + ".") for h in HEAVY)


def heavy_modules(g: dict[str, list[Import]]) -> set[str]:
    """gnomon modules that import a heavy package at their top, directly or through others."""
    heavy = {
        name
        for name, imps in g.items()
        if any(not i.in_function and is_heavy_package(i.target) for i in imps)
    }
    changed = True
    while changed:
        changed = False
        for name, imps in g.items():
            if name not in heavy and any(not i.in_function and i.target in heavy for i in imps):
                heavy.add(name)
                changed = True
    return heavy


# -- the rules ---------------------------------------------------------------------------------
def test_the_graph_is_read():
    """The reader sees what it must (or the rules below would pass on an empty graph)."""
    g = graph()
    e = edges(g)
    assert {"gnomon.dft.qe", "gnomon.storage", "gnomon.flows.round", "gnomon.cli"} <= g.keys()
    assert "gnomon.dft.engine" in e["gnomon.dft.qe"]
    assert any(i.in_function for imps in g.values() for i in imps)
    assert all(layer(name) >= 0 for name in g), [n for n in g if layer(n) < 0]


def test_no_import_circle_in_gnomon():
    cycle = find_cycle(edges(graph()))
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_no_import_against_the_layer_order():
    """storage -> pipeline -> dft/models -> config -> campaign/world -> flows/serve -> commands."""
    upward = sorted(
        f"{name}:{i.line} imports {i.target}"
        for name, imps in graph().items()
        for i in imps
        if i.target.startswith("gnomon") and layer(i.target) > layer(name)
    )
    assert upward == []


def test_imports_inside_functions_are_heavy_and_say_so():
    g = graph()
    heavy = heavy_modules(g)
    offenders = sorted(
        f"{name}:{i.line} imports {i.target}"
        + ("" if i.commented_heavy else " (no '# heavy' comment)")
        for name, imps in g.items()
        for i in imps
        if i.in_function
        and not (i.commented_heavy and (is_heavy_package(i.target) or i.target in heavy))
    )
    assert offenders == []


# -- the reader itself -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("graph_edges", "cycle"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
        ({"a": {"a"}}, ["a", "a"]),
        ({"a": {"b", "x.outside"}, "b": set()}, None),
    ],
)
def test_find_cycle(graph_edges, cycle):
    assert find_cycle(graph_edges) == cycle


def test_every_spelling_of_an_import_is_caught(tmp_path):
    src = tmp_path / "m.py"
    src.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from gnomon.flows import round\n"
        "def f():\n    from gnomon.config import Settings\n"
        "def g():\n    import torch  # heavy: torch\n"
        "def h():\n    # heavy: Prefect\n    from prefect import flow\n    import dask\n\n"
        "    import json\n"
        "import gnomon.storage as s\nfrom gnomon import config\nfrom . import chemsys\n"
    )
    found = {
        (i.target, i.in_function, i.commented_heavy) for i in imports_of(src, "gnomon.storage.m")
    }
    assert found == {
        ("typing", False, False),
        ("gnomon.flows.round", False, False),
        ("gnomon.config", True, False),
        ("torch", True, True),
        ("prefect", True, True),
        ("dask", True, True),
        ("json", True, False),
        ("gnomon.storage", False, False),
        ("gnomon.config", False, False),
        ("gnomon.storage.chemsys", False, False),
    }


def test_layers_order_the_packages():
    assert layer("gnomon.storage.sqlite") < layer("gnomon.pipeline.thermo.hull")
    assert layer("gnomon.pipeline.generation.saps") < layer("gnomon.models.gnn")
    assert layer("gnomon.models.gnn") == layer("gnomon.dft.qe") < layer("gnomon.campaign")
    assert layer("gnomon.campaign.steps") < layer("gnomon.flows.round") < layer("gnomon.commands")
    assert layer("gnomon.credentials") < layer("gnomon.storage")
