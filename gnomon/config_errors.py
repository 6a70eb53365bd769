"""A settings or campaign file's problems in a person's words: one line per problem, naming
the key path, with "did you mean" for a misspelt key or choice, and never a web link.

pydantic's own message ends each problem with "For further information visit
https://errors.pydantic.dev/...": useless on an offline cluster node, and it never says which
key was meant. The lines here are built from ``ValidationError.errors()`` instead.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Iterable
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError


def problems(exc: ValidationError, model: type[BaseModel]) -> list[str]:
    """One line per problem of ``exc`` (raised validating ``model``): ``key.path: what``."""
    return [_line(error, model) for error in exc.errors(include_url=False)]


def key_path(loc: Iterable[str | int]) -> str:
    """``('selection', 'budget')`` -> ``selection.budget``; list positions as ``[i]``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or nothing."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _line(error: dict[str, Any], model: type[BaseModel]) -> str:
    loc = tuple(error["loc"])
    kind = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        keys = _keys_at(model, loc[:-1])
        return f"{key_path(loc)}: unknown key{did_you_mean(str(loc[-1]), keys)}"
    if kind == "missing":
        return f"{key_path(loc)}: required, but not given"
    if kind in ("value_error", "assertion_error"):
        return f"{key_path(loc)}: {error.get('ctx', {}).get('error') or error['msg']}"
    if kind == "model_type":
        return f"{key_path(loc)}: expected a mapping of keys, got {_shown(value)}"
    message = error["msg"]
    message = message[:1].lower() + message[1:]
    choices = _choices_at(model, loc)
    hint = did_you_mean(str(value), choices) if choices and isinstance(value, str) else ""
    return f"{key_path(loc)}: {message}, got {_shown(value)}{hint}"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _keys_at(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    """The keys the section at ``loc`` takes (empty when it is not a model)."""
    found = _annotation_at(model, loc)
    return list(found.model_fields) if _is_model(found) else []


def _choices_at(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    """The allowed values of the ``Literal`` key at ``loc`` (empty when it is not one)."""
    found = _annotation_at(model, loc)
    return [str(a) for a in get_args(found)] if get_origin(found) is Literal else []


def _annotation_at(model: type[BaseModel], loc: tuple[str | int, ...]) -> Any:
    """The type at ``loc`` inside ``model``, through optional values, lists and mappings."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if _is_model(current) and isinstance(part, str) and part in current.model_fields:
            current = current.model_fields[part].annotation
        elif get_origin(current) in (list, tuple, set) and isinstance(part, int):
            current = (get_args(current) or (Any,))[0]
        elif get_origin(current) is dict:
            current = (get_args(current) or (Any, Any))[-1]
        else:
            return None
    return _unwrap(current)


def _unwrap(annotation: Any) -> Any:
    """``X | None`` -> ``X``."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)
