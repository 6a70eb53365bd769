"""Template structures for substitutions: database phases, files, and pymatgen's prototypes.

Every loader yields :class:`Template` objects or, for an input that cannot serve as a
template, a :class:`SkippedTemplate` naming it and saying why; a generator logs the skip and
goes on with the rest. Templates are read lazily, one at a time.

Prototype library: the 288 AFLOW prototypes (Mehl et al., Comput. Mater. Sci. 2017) that
pymatgen ships in ``pymatgen/analysis/prototypes/aflow_prototypes.json.gz``; ids are
``aflow:<AFLOW label>``, e.g. ``aflow:AB_cF8_225_a_b`` for rock salt.
"""

from __future__ import annotations

import functools
import gzip
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import orjson
from pymatgen.core import Structure

from gnomon.pipeline.generation.candidate_io import CandidateFileError, read_structures
from gnomon.pipeline.generation.structure_checks import structure_problem
from gnomon.storage import Entry, Repository

logger = logging.getLogger(__name__)

STRUCTURE_SUFFIXES = {".cif", ".vasp", ".poscar", ".cssr", ".xsf", ".res", ".mcif"}
STRUCTURE_NAMES = ("POSCAR", "CONTCAR")


@dataclass
class Template:
    """A structure to substitute into, with a stable id saying where it came from."""

    id: str
    structure: Structure
    source: str
    tags: dict[str, Any] = field(default_factory=dict)


@dataclass
class SkippedTemplate:
    """An input that could not serve as a template, and why."""

    id: str
    reason: str


TemplateResult = Template | SkippedTemplate


def template_problem(structure: Structure) -> str | None:
    """Why ``structure`` cannot be a substitution template, or None when it can: the check
    every structure input makes (:mod:`gnomon.pipeline.generation.structure_checks`)."""
    return structure_problem(structure)


def make_template(
    template_id: str, structure: Structure, source: str, **tags: Any
) -> TemplateResult:
    """A checked template, or the reason it is skipped."""
    problem = template_problem(structure)
    if problem is not None:
        return SkippedTemplate(template_id, problem)
    return Template(template_id, geometry_only(structure), source, dict(tags))


def geometry_only(structure: Structure) -> Structure:
    """``structure`` without site properties: lattice, species and positions are the template.

    A relaxed entry carries what its calculation found per site (final magnetic moments,
    forces); those belong to that calculation, not to the structures substituted from it, and
    a substitution that leaves them on some sites only makes pymatgen warn at every later
    ``Structure.from_dict`` or ``StructureMatcher.fit`` of the candidate."""
    if not structure.site_properties:
        return structure
    return Structure(
        structure.lattice,
        structure.species_and_occu,
        structure.frac_coords,
        charge=structure.charge,
        properties=structure.properties,
    )


# -- pymatgen's prototype library --------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _prototype_records() -> tuple[dict[str, Any], ...]:
    path = files("pymatgen.analysis.prototypes") / "aflow_prototypes.json.gz"
    with gzip.open(str(path), "rb") as fh:
        return tuple(orjson.loads(fh.read()))


def prototype_templates(
    labels: Iterable[str] | None = None,
    max_sites: int | None = None,
    max_species: int | None = None,
) -> Iterator[TemplateResult]:
    """Templates from the AFLOW prototype library pymatgen ships.

    ``labels`` picks prototypes by AFLOW label, Strukturbericht designation or mineral name
    (case-insensitive, e.g. ``"B1"``, ``"E2_1"``, ``"AB_cF8_225_a_b"``, ``"Halite"``);
    ``max_sites`` and ``max_species`` drop larger ones.
    """
    if labels is None:
        yield from _library_templates(max_sites, max_species)
        return
    yield from _prototype_templates(labels, max_sites, max_species)


@functools.lru_cache(maxsize=8)
def _library_templates(
    max_sites: int | None, max_species: int | None
) -> tuple[TemplateResult, ...]:
    """The whole library's templates, built once per process: parsing ~1,100 prototypes and
    analysing each one's symmetry costs seconds, and every round of a campaign asks again."""
    return tuple(_prototype_templates(None, max_sites, max_species))


def _prototype_templates(
    labels: Iterable[str] | None,
    max_sites: int | None,
    max_species: int | None,
) -> Iterator[TemplateResult]:
    wanted = {w.lower() for w in labels} if labels is not None else None
    found: set[str] = set()
    for record in _prototype_records():
        tags = record.get("tags", {})
        keys = {str(tags.get(k, "")).lower() for k in ("aflow", "strukturbericht", "pearson")}
        mineral = str(tags.get("mineral", "")).lower()
        if wanted is not None:
            hits = {w for w in wanted if w in keys or (w and w in mineral)}
            if not hits:
                continue
            found |= hits
        structure = Structure.from_dict(record["snl"])
        if max_sites is not None and len(structure) > max_sites:
            continue
        if max_species is not None and len(structure.composition) > max_species:
            continue
        yield make_template(f"aflow:{tags.get('aflow')}", structure, "prototype", **tags)
    for missing in sorted((wanted or set()) - found):
        yield SkippedTemplate(f"aflow:{missing}", "no prototype has this label")


# -- files ------------------------------------------------------------------------------------
def templates_from_files(paths: Iterable[str | Path]) -> Iterator[TemplateResult]:
    """Templates from structure files, directories of them, and gnomon candidate files.

    A directory contributes every file pymatgen can read (CIF, POSCAR, ...); JSON holds a
    pymatgen Structure dict, a list of them, or gnomon candidates; ``.extxyz``/``.xyz`` every
    frame. Each file's ids are ``file:<path>`` (``#<n>`` for the n-th structure of a file).
    """
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            children = sorted(
                p
                for p in path.iterdir()
                if p.is_file()
                and (
                    p.suffix.lower() in STRUCTURE_SUFFIXES | {".json", ".extxyz"}
                    or p.name.startswith(STRUCTURE_NAMES)
                )
            )
            if not children:
                yield SkippedTemplate(f"file:{path}", "the directory holds no structure files")
            for child in children:
                yield from _templates_from_file(child)
        elif path.exists():
            yield from _templates_from_file(path)
        else:
            yield SkippedTemplate(f"file:{path}", "no such file or directory")


def _templates_from_file(path: Path) -> Iterator[TemplateResult]:

    try:
        items = list(read_structures(path))
    except CandidateFileError as exc:
        yield SkippedTemplate(f"file:{path}", str(exc))
        return
    for n, (label, structure) in enumerate(items):
        tid = f"file:{path}" if len(items) == 1 else f"file:{path}#{label or n}"
        yield make_template(tid, structure, "file")


# -- the database -----------------------------------------------------------------------------
def templates_from_repository(
    repo: Repository,
    scheme: str | None = None,
    chemsys: str | Iterable[str] | None = None,
    stable_only: bool = True,
    batch: int = 500,
) -> Iterator[TemplateResult]:
    """Templates from the database: the entries of stable phases (or every entry).

    Ids are ``entry:<entry id>``. Entries stored without a structure are skipped.
    """
    filters: dict[str, Any] = {}
    if scheme is not None:
        filters["scheme"] = scheme
    if chemsys is not None:
        filters["chemsys"] = chemsys if isinstance(chemsys, str) else list(chemsys)
    if stable_only:
        ids = [p["id"] for p in repo.find("phases", {**filters, "is_stable": True})]
        docs = (
            doc
            for start in range(0, len(ids), batch)
            for doc in repo.find("entries", {"id": ids[start : start + batch]})
        )
    else:
        docs = repo.find("entries", filters)
    for doc in docs:
        entry = Entry.from_doc(doc)
        tid = f"entry:{entry.id}"
        if not entry.structure:
            yield SkippedTemplate(tid, "the entry has no structure")
            continue
        try:
            structure = Structure.from_dict(entry.structure)
        except (KeyError, ValueError, TypeError) as exc:
            yield SkippedTemplate(tid, f"unreadable structure ({exc})")
            continue
        yield make_template(tid, structure, "database", scheme=entry.scheme)


def split_skipped(
    results: Iterable[TemplateResult],
) -> tuple[list[Template], list[SkippedTemplate]]:
    """Templates and skips of a finite stream, each logged once."""
    good: list[Template] = []
    bad: list[SkippedTemplate] = []
    for r in results:
        if isinstance(r, SkippedTemplate):
            logger.warning("template %s skipped: %s", r.id, r.reason)
            bad.append(r)
        else:
            good.append(r)
    return good, bad
