"""Many phases in one download: a zip of their CIFs and a CSV of their energies.

A system page and a search result download this way. Every file name in the archive is made
from the phase's formula and id by :func:`gnomon.serve.explorer.downloads.filename`, which
keeps only letters, digits, dots, dashes and underscores and strips leading dots, so no name
can climb out of the folder it is unpacked in (``../``) or be absolute, whatever a stored id
or formula says; names that come out equal get a number.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Sequence

from gnomon.serve.explorer import downloads
from gnomon.serve.explorer.views import structure_of
from gnomon.storage import Entry, Phase, Repository

COLUMNS = ("id", "formula", "chemsys", "scheme", "energy_per_atom", "formation_energy_per_atom",
           "e_above_hull", "decomposition_energy", "is_stable", "nsites", "source", "campaign",
           "round", "cif")
MAX_PHASES = 5000  # phases one archive holds


def _unique(name: str, taken: set[str]) -> str:
    stem, dot, ext = name.rpartition(".")
    k, out = 1, name
    while out in taken:
        k += 1
        out = f"{stem}-{k}{dot}{ext}"
    taken.add(out)
    return out


def _value(v: object) -> object:
    return "" if v is None else v


def phases_zip(repo: Repository, ids: Sequence[str], note: str) -> bytes:
    """The archive of the phases ``ids`` (in that order): ``cif/<formula>_<id>.cif`` for each
    with a structure, ``energies.csv`` with a row for each, and ``README.txt`` (``note``)."""
    ids = list(dict.fromkeys(ids))[:MAX_PHASES]
    entries = {e.id: e for e in repo.query(Entry, {"id": ids})}
    phases = {p.id: p for p in repo.query(Phase, {"id": ids})}
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(COLUMNS)
    taken: set[str] = set()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for pid in ids:
            entry, phase = entries.get(pid), phases.get(pid)
            if entry is None:
                continue
            structure = structure_of(entry)
            cif = ""
            if structure is not None:
                name = downloads.filename(entry.reduced_formula, entry.id, "cif")
                cif = "cif/" + _unique(name, taken)
                title = f"{entry.reduced_formula} {entry.id} ({entry.scheme})"
                zf.writestr(cif, downloads.FORMATS["cif"].write(structure, title))
            writer.writerow([_value(v) for v in (
                entry.id, entry.reduced_formula, entry.chemsys, entry.scheme,
                entry.energy_per_atom, phase.formation_energy_per_atom if phase else None,
                phase.e_above_hull if phase else None,
                phase.decomposition_energy if phase else None,
                phase.is_stable if phase else None, entry.nsites, entry.source, entry.campaign,
                entry.round, cif)])
        zf.writestr("energies.csv", table.getvalue())
        zf.writestr("README.txt", note.rstrip() + "\n")
    return buf.getvalue()


def archive_name(stem: str) -> str:
    """``Li-Mn-O_mlip-chgnet-0.3.0.zip``: a safe file name for the download."""
    return downloads.safe_stem(stem, "phases") + ".zip"
