"""Energy schemes: which code, functional and corrections made an energy.

A hull is only meaningful within one scheme, so every Entry carries one and the hull engine
groups by it. Names follow ``<code>-<functional or model>-<qualifier>``:
``vasp-pbe-mp2020`` (MP-compatible GGA/GGA+U, MaterialsProject2020Compatibility applied),
``vasp-r2scan``, ``qe-pbe-<pseudopotential family>``, ``mlip-<model>-<version>``
(``mlip-chgnet-0.3.0``, ``mlip-sevennet-0``; a fine-tuned SevenNet checkpoint
``mlip-sevennet-ft-<sha256 prefix>``).

A scheme name is checked against the registered ones before anything is stored under it: a
typo (``vasp_pbe``) would otherwise open a scheme of its own, silently without the MP2020
corrections, with a hull of its own. Registered are the schemes gnomon's engines produce
(:data:`BUILTIN_SCHEMES`), those a person added with a description (``gnomon db import
--new-scheme NAME --description TEXT``, a :class:`~gnomon.storage.documents.Scheme` record),
and any that already holds entries in the database.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gnomon.storage import Repository
from gnomon.storage.documents import Scheme

if TYPE_CHECKING:  # pymatgen.entries imports its compatibility module: seconds, for a name
    from pymatgen.entries.computed_entries import ComputedEntry

VASP_MP2020 = "vasp-pbe-mp2020"
VASP_R2SCAN = "vasp-r2scan"

BUILTIN_SCHEMES: dict[str, str] = {
    VASP_MP2020: "VASP PBE/PBE+U with Materials Project inputs; MaterialsProject2020"
    "Compatibility corrections applied, so every entry needs its run parameters (run_type, "
    "hubbards, potcar_spec): energies from files without them are refused",
    VASP_R2SCAN: "VASP r2SCAN; no corrections",
    "qe-pbe-pslibrary": "Quantum ESPRESSO, PBE, PSlibrary pseudopotentials (gnomon's qe "
    "engine with its default settings); no corrections",
    "mlip-chgnet-0.3.0": "CHGNet 0.3.0 relaxations (gnomon's mlip engine; the pretrained "
    "screening model's scheme)",
    "mlip-sevennet-0": "SevenNet-0 relaxations (gnomon's sevennet engine)",
    "mlip-emt": "ASE's EMT potential (tests and demonstrations only)",
}
"""The schemes gnomon's own engines produce with their default settings, and what they mean
(another QE pseudopotential family or potential model is a scheme of its own)."""

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


def registered_schemes(repo: Repository) -> dict[str, str]:
    """Every scheme ``repo`` knows, with its description: the built-in ones, those registered
    with a description, and those that hold entries (however they got there)."""
    known = dict(BUILTIN_SCHEMES)
    known.update({s.id: s.description for s in repo.query(Scheme)})
    for name in repo.schemes():
        known.setdefault(name, "holds entries in this database (registered before schemes "
                         "needed a description)")
    return known


def unknown_scheme(name: str, registered: Sequence[str]) -> SchemeError:
    """The error for a scheme nobody registered: the closest registered names, all of them,
    and how to add a new one."""
    close = difflib.get_close_matches(name.replace("_", "-"), list(registered), n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    return SchemeError(
        f"unknown energy scheme {name!r}: {hint}registered: {', '.join(sorted(registered))}; "
        "a new one needs --new-scheme NAME --description TEXT"
    )


def known_scheme(name: str, registered: Sequence[str]) -> str:
    """``name`` as stored, if registered; else :func:`unknown_scheme`'s error."""
    checked = check_scheme(name)
    if checked not in registered:
        raise unknown_scheme(name, registered)
    return checked


def register_scheme(repo: Repository, name: str, description: str) -> Scheme:
    """Record a new scheme and what it means; refuses a name already registered (use it with
    ``--scheme``) and an empty description (a scheme nobody can interpret later is how
    hulls that should not mix end up mixed)."""
    name = check_scheme(name)
    registered = registered_schemes(repo)
    if name in registered:
        raise SchemeError(f"energy scheme {name!r} is registered already: use --scheme {name}")
    if not description.strip():
        raise SchemeError(
            f"a new energy scheme needs a description of what produced its energies: "
            f"--new-scheme {name} --description 'code, functional, settings, corrections'"
        )
    record = Scheme(id=name, description=" ".join(description.split()))
    repo.put([record])
    return record


def mlip_scheme(model: str, version: str) -> str:
    return check_scheme(f"mlip-{model}-{version}")


#: How sevenn's own checkpoint names begin (``7net-0``, ``SevenNet-l3i5``); any other model
#: is a checkpoint file.
SEVENNET_NAMES = ("7net-", "sevennet-")

#: Hex digits of a checkpoint's sha256 in its scheme (``mlip-sevennet-ft-<12 hex>``).
FT_DIGITS = 12


def is_checkpoint_path(model: str) -> bool:
    """Whether a SevenNet ``model`` is a checkpoint file (``runs/ft/sevennet-ft.pth``) rather
    than a name sevenn resolves itself (``7net-0``, ``7net-l3i5``)."""
    text = model.strip()
    return (
        "/" in text
        or "\\" in text
        or text.lower().endswith((".pth", ".pt"))
        or not text.lower().startswith(SEVENNET_NAMES)
    )


def checkpoint_sha256(path: str | Path) -> str:
    """The sha256 of a checkpoint file, read once per file version (path, size, mtime).

    Raises SchemeError, one line naming the file, when it is missing or cannot be read."""
    where = Path(path).expanduser()
    try:
        stat = where.stat()
    except OSError as exc:
        reason = "no such file" if isinstance(exc, FileNotFoundError) else exc.strerror
        raise SchemeError(f"SevenNet checkpoint {path}: {reason}") from None
    if not where.is_file():
        raise SchemeError(f"SevenNet checkpoint {path}: not a file")
    return _sha256(str(where.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise SchemeError(f"SevenNet checkpoint {path}: cannot be read ({exc.strerror})") from None
    return digest.hexdigest()


def sevennet_scheme(model: str) -> str:
    """SevenNet's scheme: ``7net-0`` (SevenNet-0) is ``mlip-sevennet-0``; another checkpoint
    name (``7net-l3i5``) gets its own scheme; a checkpoint file (a fine-tune, ``gnomon mlip
    finetune``) is ``mlip-sevennet-ft-<first 12 hex of its sha256>``: its weights name it, not
    where the file lies, so two fine-tunes never share a hull and copies of one always do."""
    if is_checkpoint_path(model):
        return mlip_scheme("sevennet", f"ft-{checkpoint_sha256(model)[:FT_DIGITS]}")
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
        return list(entries)
    # heavy: pymatgen.entries
    from pymatgen.entries.compatibility import MaterialsProject2020Compatibility

    compat = MaterialsProject2020Compatibility(check_potcar=False)
    out: list[ComputedEntry | None] = []
    for entry in entries:
        processed = compat.process_entries([entry], clean=True, inplace=False)
        out.append(processed[0] if processed else None)
    return out
