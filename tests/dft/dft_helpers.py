"""Helpers for the gnomon.dft tests (structures, waiting); importable from test modules."""

from __future__ import annotations

import time

from pymatgen.core import Lattice, Structure


def si_diamond(a: float = 5.6) -> Structure:
    """Primitive cell of diamond Si with conventional lattice constant ``a``."""
    return Structure(
        Lattice([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]]),
        ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]],
    )


def rocksalt(a: float = 5.7, a_el: str = "Na", b_el: str = "Cl") -> Structure:
    return Structure(
        Lattice([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]]),
        [a_el, b_el], [[0, 0, 0], [0.5, 0.5, 0.5]],
    )


def errore(routine: str, code: int, message: str) -> str:
    """pw.x's errore() block, as it prints it to pw.out."""
    bar = " " + "%" * 78
    return (f"\n{bar}\n     Error in routine {routine} ({code}):\n     {message}\n{bar}\n\n"
            "     stopping ...\n")


def wait_for(predicate, timeout: float = 120.0, every: float = 0.5, what: str = "condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
