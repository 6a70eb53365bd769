"""A count and its noun, in the number the count asks for: "1 round", "2 rounds".

Every line a person reads (a command's summary, a report, a daemon's log) counts things; one
helper keeps "1 rounds done" out of all of them.
"""

from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and ``noun``, the noun plural unless ``n`` is 1 (``plural`` when the English
    plural is not the noun plus "s": ``counted(2, "entry", "entries")``)."""
    if n == 1:
        return f"{n} {noun}"
    return f"{n} {plural or noun + 's'}"


__all__ = ["counted"]
