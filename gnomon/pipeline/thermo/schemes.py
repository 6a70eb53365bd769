"""Energy schemes: which code, functional and corrections made an energy.

A hull is only meaningful within one scheme, so every Entry carries one and the hull engine
groups by it. Names follow ``<code>-<functional or model>-<qualifier>``:
``vasp-pbe-mp2020`` (MP-compatible GGA/GGA+U, MaterialsProject2020Compatibility applied),
``vasp-r2scan``, ``qe-pbe-<pseudopotential family>``, ``mlip-<model>-<version>``
(``mlip-chgnet-0.3.0``, ``mlip-sevennet-0``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pymatgen.entries.computed_entries import ComputedEntry

VASP_MP2020 = "vasp-pbe-mp2020"
VASP_R2SCAN = "vasp-r2scan"
IMPORTED = "imported"

_NAME = re.compile(r"^[a-z0-9][a-z0-9._+-]*$")


class SchemeError(ValueError):
    """An energy scheme name that cannot be used, or entries that don't fit their scheme."""


def check_scheme(name: str) -> str:
    """A scheme name as stored: lower case, no spaces."""
    name = name.strip().lower()
    if not _NAME.match(name):
        raise SchemeError(
            f"energy scheme {name!r} is not a valid name: use lower-case letters, digits, "
            "'.', '_', '+', '-' (e.g. vasp-pbe-mp2020, qe-pbe-pslibrary, mlip-chgnet-0.3.0)"
        )
    return name


def mlip_scheme(model: str, version: str) -> str:
    return check_scheme(f"mlip-{model}-{version}")


def sevennet_scheme(model: str) -> str:
    """SevenNet's scheme: ``7net-0`` (SevenNet-0) is ``mlip-sevennet-0``; another checkpoint
    name (``7net-l3i5``) gets its own scheme."""
    return mlip_scheme("sevennet", model.lower().removeprefix("7net-").removeprefix("sevennet-"))


def qe_scheme(functional: str, family: str) -> str:
    return check_scheme(f"qe-{functional}-{family}")


def uses_mp2020(scheme: str) -> bool:
    return scheme == VASP_MP2020


def apply_corrections(scheme: str, entries: Sequence[ComputedEntry]) -> list[ComputedEntry | None]:
    """Entries with their scheme's corrections applied, in the same order.

    Only ``vasp-pbe-mp2020`` has corrections: pymatgen's MaterialsProject2020Compatibility,
    which needs the entries' ``parameters`` (run_type, hubbards, potcar_spec). An entry the
    compatibility scheme rejects comes back as None so the caller can name it.
    """
    if not uses_mp2020(scheme):
        # heavy: pymatgen.entries
        return list(entries)
    from pymatgen.entries.compatibility import MaterialsProject2020Compatibility

    compat = MaterialsProject2020Compatibility(check_potcar=False)
    out: list[ComputedEntry | None] = []
    for entry in entries:
        processed = compat.process_entries([entry], clean=True, inplace=False)
        out.append(processed[0] if processed else None)
    return out
