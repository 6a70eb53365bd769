"""How gnomon's help pages read: every value named in words (``CHEMSYS``, ``FILE...``, ``N``),
flags bare, and usage lines as people have read them for decades (``gnomon hull CHEMSYS``).

typer shows a parameter by its Python type (``<bool>``, ``<list[Path]>``) and a required
argument in braces (``{chemsys}``); a newcomer reads neither. Every typer app of
gnomon.commands therefore builds its commands with these classes: ``typer.Typer(cls=Group)``
and ``@app.command(cls=Command)``. A parameter keeps the metavar it declares; one without gets
a word from its type (an int is ``N``, a path ``PATH``, a choice lists its values) or, for text,
its own name. This module imports nothing but typer: ``gnomon --help`` uses it.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, get_args

from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

#: The word for a value of each type, where the parameter's name says no more.
TYPE_WORDS: dict[Any, str] = {int: "N", float: "NUMBER", Path: "PATH"}


class _Argument(TyperArgument):
    """An argument shown by its metavar alone: no type column, no braces in the usage."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None

    def get_usage_pieces(self, ctx: Any) -> list[str]:
        word = self.metavar or self.name or ""
        return [word if self.required else f"[{word}]"]


def in_words(param: Any) -> None:
    """Give ``param`` a metavar in words (unless it declares one); flags take none."""
    if isinstance(param, TyperArgument):
        if param.metavar is None:
            param.metavar = _word(param) + ("..." if param.nargs != 1 else "")
        if type(param) is TyperArgument:
            param.__class__ = _Argument  # same fields; only how it is shown differs
    elif isinstance(param, TyperOption) and param.metavar is None:
        param.metavar = "" if param.is_flag or param.count else _word(param)


def _word(param: TyperArgument | TyperOption) -> str:
    described = param.type_descriptor
    if described.is_choice:
        return "|".join(str(getattr(c, "value", c)) for c in described.choices or ())
    annotation = described.annotation
    if described.is_list:
        annotation = (get_args(annotation) or (str,))[0]
    if isinstance(param, TyperOption) and annotation in TYPE_WORDS:
        return TYPE_WORDS[annotation]
    if described.is_path and isinstance(param, TyperOption):
        return "PATH"
    return (param.name or "value").upper()


def one_line_paragraphs(text: str | None) -> str | None:
    """``text`` with each paragraph on one line: typer's rich help keeps a docstring's line
    breaks, so a paragraph wrapped at 100 columns in the source would break mid-sentence on
    the screen (and its first paragraph is the summary other pages list)."""
    if not text:
        return text
    return "\n\n".join(" ".join(p.split()) for p in inspect.cleandoc(text).split("\n\n"))


class Command(TyperCommand):
    """A gnomon command whose help page reads in words (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help = one_line_paragraphs(self.help)

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        for param in params:
            in_words(param)
        return params


class Group(TyperGroup):
    """A gnomon command group whose help page reads in words (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help = one_line_paragraphs(self.help)

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        for param in params:
            in_words(param)
        return params
