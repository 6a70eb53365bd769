"""`gnomon generate saps|random|compositions` and `gnomon dedup`.

Generators stream: candidates are deduplicated and written chunk by chunk, to a file
(``--out``: ``.json``, ``.jsonl`` or ``.extxyz``) or to the database (``--to-db``), so a run of
any length holds one chunk in memory.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from pymatgen.core import Composition
from rich.markup import escape
from rich.progress import MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from gnomon.commands.common import DbOption, console, err_console, fail, repository
from gnomon.commands.help_format import Command, Group
from gnomon.credentials import mask_url
from gnomon.pipeline.generation.candidate_io import (
    CandidateFileError,
    file_format,
    read_candidates,
    write_candidates,
)
from gnomon.pipeline.generation.compositions import (
    BalanceMode,
    CompositionError,
    CompositionGenerator,
    known_formulas,
    parse_elements,
)
from gnomon.pipeline.generation.physical import PhysicalCheck
from gnomon.pipeline.generation.random_search import RandomSearch, RandomSearchError
from gnomon.pipeline.generation.streaming import chunked
from gnomon.pipeline.generation.templates import (
    TemplateResult,
    prototype_templates,
    templates_from_files,
    templates_from_repository,
)
from gnomon.storage import StorageError

if TYPE_CHECKING:
    from gnomon.pipeline.generation.dedup import Deduplicator
    from gnomon.storage import Candidate, Repository

logger = logging.getLogger(__name__)

app = typer.Typer(cls=Group, no_args_is_help=True, help="Generate candidate structures.")
#: The top-level commands of this module (`gnomon dedup`).
commands = typer.Typer()

CHUNK = 500

OutOption = Annotated[
    Path | None,
    typer.Option(
        "--out", "-o", metavar="FILE", help="Write candidates to FILE (.json, .jsonl or .extxyz)."
    ),
]
ToDbOption = Annotated[bool, typer.Option("--to-db", help="Store candidates in the database.")]
SeedOption = Annotated[int, typer.Option(help="Seed: the same seed gives the same candidates.")]
ProcessesOption = Annotated[int, typer.Option("--workers", "-j", min=1, help="Worker processes.")]
CampaignOption = Annotated[
    str | None, typer.Option(metavar="NAME", help="Campaign to record on the candidates.")
]
RoundOption = Annotated[
    int | None, typer.Option("--round", help="Round to record on the candidates.")
]
ShardOption = Annotated[
    str | None,
    typer.Option(
        "--shard",
        metavar="I/N",
        help="I/N: do the I-th of N equal shares of the work (I from 0), for N batch jobs.",
    ),
]
PhysicalOption = Annotated[
    bool,
    typer.Option(
        "--physical/--raw",
        help="Rescale every candidate to its predicted volume and refuse those with atoms "
        "closer than their radii allow (--raw keeps the generator's cells).",
    ),
]
DedupOption = Annotated[
    bool,
    typer.Option(
        "--dedup/--no-dedup",
        help="Drop duplicates (within the run, and against the database with --to-db).",
    ),
]


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )


def _check_destination(out: Path | None, to_db: bool) -> None:
    if out is None and not to_db:
        fail("say where the candidates go: --out FILE or --to-db")
    if out is not None and to_db:
        fail("choose one of --out FILE and --to-db")
    if out is not None:
        if file_format(out) not in ("json", "jsonl", "extxyz"):
            fail(f"cannot write candidates to {out}: use a .json, .jsonl or .extxyz file")


def _emit(
    candidates: Iterable[Candidate],
    out: Path | None,
    to_db: bool,
    db: str | None,
    dedup: bool,
    label: str,
    limit: int | None = None,
    physical: bool = True,
) -> tuple[int, int, int]:
    """Check, deduplicate and write a candidate stream; returns (generated, duplicates,
    written). The physical check runs before the dedup, so a refused cell never shadows a
    physical duplicate of it."""
    # heavy: pymatgen.analysis
    from gnomon.pipeline.generation.dedup import Deduplicator

    counts = {"generated": 0}

    def counted(stream: Iterable[Candidate], progress: Progress, task) -> Iterator[Candidate]:
        for c in stream:
            counts["generated"] += 1
            progress.update(task, advance=1)
            yield c

    def kept(dd: Deduplicator | None, stream: Iterable[Candidate]) -> Iterator[Candidate]:
        for chunk in chunked(stream, CHUNK):
            yield from (dd.unique(chunk) if dd is not None else chunk)

    with _progress() as progress:
        task = progress.add_task(label, total=limit)
        check = PhysicalCheck(rescale=True) if physical else None
        stream = counted(candidates, progress, task)
        if check is not None:
            stream = check.candidates(stream)
        if to_db:
            with repository(db) as repo:
                dd = (
                    Deduplicator(repository=repo, remember=False, record_duplicates=False)
                    if dedup
                    else None
                )
                written = 0
                for chunk in chunked(stream, CHUNK):
                    fresh = dd.unique(chunk) if dd is not None else chunk
                    written += len(_store(repo, fresh))
                duplicates = dd.stats.duplicates if dd is not None else 0
                where = mask_url(repo.url)
        else:
            assert out is not None
            dd = Deduplicator(record_duplicates=False) if dedup else None
            written = write_candidates(out, kept(dd, stream))
            duplicates = dd.stats.duplicates if dd is not None else 0
            where = str(out)
    console.print(
        f"{label}: [bold]{counts['generated']}[/] generated, {_physical_summary(check)}"
        f"{duplicates} duplicates dropped, [bold]{written}[/] written to {escape(where)}",
        highlight=False,
    )
    return counts["generated"], duplicates, written


def _physical_summary(check: PhysicalCheck | None) -> str:
    if check is None:
        return ""
    refused = sum(check.counts()["refused"].values())
    reasons = ", ".join(
        f"{k.replace('_', ' ')} {v}" for k, v in sorted(check.counts()["refused"].items())
    )
    return (
        f"{check.rescaled} rescaled to their predicted volume, {refused} refused as "
        f"unphysical{f' ({reasons})' if reasons else ''}, "
    )


def _store(repo: Repository, candidates: list[Candidate]) -> list[str]:

    try:
        return repo.add_candidates(candidates)
    except StorageError as exc:
        fail(f"could not store candidates: {exc}")
        raise  # unreachable: fail() exits


def _parse_supercell(text: str | None) -> tuple[int, int, int] | None:
    if text is None:
        return None
    parts = text.lower().replace(",", "x").split("x")
    try:
        dims = [int(p) for p in parts]
    except ValueError:
        dims = []
    if len(dims) == 1:
        dims = dims * 3
    if len(dims) != 3 or min(dims) < 1:
        fail(f"--supercell {text!r}: give three positive integers like 2x2x2 (or one, like 2)")
    return dims[0], dims[1], dims[2]


def _parse_minsep(text: str | None) -> float | dict[str, float] | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    out: dict[str, float] = {}
    for item in text.split(","):
        pair, _, value = item.partition("=")
        try:
            out[pair.strip()] = float(value)
        except ValueError:
            fail(f"--min-sep {text!r}: give one distance (1.5) or pairs (Li-O=1.8,O-O=2.2)")
    return out


def _parse_shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    index, _, count = text.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        i, n = -1, 0
    if n < 1 or not 0 <= i < n:
        fail(f"--shard {text!r}: give I/N with 0 <= I < N, e.g. 0/4")
    return i, n


def _report_skipped(skipped) -> None:
    for s in skipped:
        err_console.print(
            f"[yellow]skipped template[/] {escape(s.id)}: {escape(s.reason)}", highlight=False
        )


SapsElementsOption = Annotated[
    str | None,
    typer.Option(
        help="Substituting elements and the chemical "
        "space of the outputs, e.g. Li,Mn,O (default: "
        "any element of the substitution table)."
    ),
]
SapsTemplatesOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--templates",
        metavar="PATH",
        help="Template files or directories (CIF, POSCAR, JSON, extxyz); repeatable.",
    ),
]
SapsPrototypesOption = Annotated[
    bool | None,
    typer.Option(
        "--prototypes/--no-prototypes",
        help="Use pymatgen's AFLOW prototype library "
        "(default: on unless --templates or --from-db is given).",
    ),
]
SapsPrototypeOption = Annotated[
    list[str] | None,
    typer.Option(
        "--prototype",
        metavar="NAME",
        help="Only these prototypes (AFLOW label, Strukturbericht, mineral); repeatable.",
    ),
]
SapsFromDbOption = Annotated[
    bool, typer.Option("--from-db", help="Use the stable phases in the database.")
]
SapsSchemeOption = Annotated[
    str | None, typer.Option(help="With --from-db: phases of this scheme only.")
]
SapsMaxCandidatesOption = Annotated[
    int | None, typer.Option("--limit", min=1, help="Stop after N candidates.")
]
SapsPartialOption = Annotated[
    bool,
    typer.Option(
        "--partial/--no-partial", help="Also substitute symmetry-distinct subsets of the sites."
    ),
]
SapsPartialModeOption = Annotated[
    str,
    typer.Option(
        metavar="wyckoff|sites",
        help="wyckoff: unions of Wyckoff orbits; sites: every subset up to symmetry.",
    ),
]
SapsSupercellOption = Annotated[
    str | None, typer.Option(metavar="AxBxC", help="Expand templates first, e.g. 2x2x2.")
]
SapsThresholdOption = Annotated[float, typer.Option(help="Minimum ionic substitution probability.")]
SapsMaxSpeciesOption = Annotated[
    int, typer.Option(min=1, help="Template elements substituted at once.")
]
SapsChargeBalanceOption = Annotated[
    str,
    typer.Option(
        metavar="RULE",
        help="strict or relaxed: keep only what SMACT can charge balance by that rule; none: all.",
    ),
]


def _template_sources(
    templates: list[Path] | None,
    prototypes: bool | None,
    prototype: list[str] | None,
    from_db: bool,
    scheme: str | None,
    db: str | None,
) -> Iterator[TemplateResult]:
    """SAPS's templates: the database's stable phases, files, then the prototype library
    (by default only when neither of the others is named). The database is read before the
    stream starts, so a bad URL or an empty database fails before anything is generated."""
    use_prototypes = prototypes if prototypes is not None else (not templates and not from_db)
    if not (from_db or templates or use_prototypes):
        fail("no templates: give --templates, --from-db or --prototypes")
    db_templates = []
    if from_db:
        with repository(db) as repo:
            db_templates = list(templates_from_repository(repo, scheme=scheme))
        if not db_templates:
            fail("--from-db: the database holds no stable phases with structures")

    def sources() -> Iterator[TemplateResult]:
        yield from db_templates
        if templates:
            yield from templates_from_files(templates)
        if use_prototypes:
            yield from prototype_templates(prototype)

    return sources()


@app.command(
    "saps",
    cls=Command,
    epilog="Example: gnomon generate saps --elements Li,Mn,O --limit 500 --out saps.json",
)
def saps(
    elements: SapsElementsOption = None,
    templates: SapsTemplatesOption = None,
    prototypes: SapsPrototypesOption = None,
    prototype: SapsPrototypeOption = None,
    from_db: SapsFromDbOption = False,
    scheme: SapsSchemeOption = None,
    max_candidates: SapsMaxCandidatesOption = None,
    partial: SapsPartialOption = True,
    partial_mode: SapsPartialModeOption = "wyckoff",
    supercell: SapsSupercellOption = None,
    threshold: SapsThresholdOption = 0.01,
    max_species: SapsMaxSpeciesOption = 2,
    charge_balance: SapsChargeBalanceOption = "none",
    dedup: DedupOption = True,
    physical: PhysicalOption = True,
    seed: SeedOption = 0,
    processes: ProcessesOption = 1,
    shard_: ShardOption = None,
    campaign: CampaignOption = None,
    round_: RoundOption = None,
    out: OutOption = None,
    to_db: ToDbOption = False,
    db: DbOption = None,
) -> None:
    """Symmetry-aware partial substitutions of template structures."""
    # heavy: pymatgen.analysis
    from gnomon.pipeline.generation.saps import SAPSGenerator

    _check_destination(out, to_db)
    if partial_mode not in ("wyckoff", "sites"):
        fail(f"--partial-mode must be wyckoff or sites, not {partial_mode!r}")
    if charge_balance not in ("strict", "relaxed", "none"):
        fail(f"--charge-balance must be strict, relaxed or none, not {charge_balance!r}")
    try:
        els = tuple(parse_elements(elements)) if elements else None
    except CompositionError as exc:
        fail(str(exc))
    generator = SAPSGenerator(
        elements=els,
        threshold=threshold,
        max_species=max_species,
        partial=partial,
        partial_mode=partial_mode,
        supercell=_parse_supercell(supercell),
        charge_balance=None if charge_balance == "none" else charge_balance,  # type: ignore[arg-type]
        seed=seed,
        campaign=campaign,
        round=round_,
    )
    sources = _template_sources(templates, prototypes, prototype, from_db, scheme, db)
    stream = generator.generate(
        sources, limit=max_candidates, processes=processes, shard_of=_parse_shard(shard_)
    )
    _emit(stream, out, to_db, db, dedup, "SAPS", limit=max_candidates, physical=physical)
    _report_skipped(generator.skipped)


RandomCompositionOption = Annotated[
    list[str],
    typer.Option(
        "--composition", "-c", metavar="FORMULA", help="Formula, e.g. Li2MnO3; repeatable."
    ),
]
RandomNOption = Annotated[int, typer.Option("--n", min=1, help="Structures per composition.")]
RandomBackendOption = Annotated[
    str,
    typer.Option(metavar="pyxtal|airss", help="pyxtal (default) or airss (buildcell on PATH)."),
]
RandomVolumePerAtomOption = Annotated[
    float | None,
    typer.Option(
        metavar="VOLUME", help="Target volume per atom, Å^3 (default: an atomic-radius estimate)."
    ),
]
RandomMinSepOption = Annotated[
    str | None,
    typer.Option(
        "--min-sep",
        metavar="DISTANCES",
        help="Minimum separation in Å: one value, or pairs like Li-O=1.8,O-O=2.2."
    ),
]
RandomMaxAtomsOption = Annotated[int, typer.Option(min=1, help="Most atoms per cell.")]
RandomBuildcellTimeoutOption = Annotated[
    float, typer.Option(metavar="SECONDS", help="Seconds per buildcell call.")
]


@app.command(
    "random",
    cls=Command,
    epilog="Example: gnomon generate random --composition Li2MnO3 --n 100 --out random.json",
)
def random_(
    composition: RandomCompositionOption,
    n: RandomNOption = 100,
    backend: RandomBackendOption = "pyxtal",
    volume_per_atom: RandomVolumePerAtomOption = None,
    min_sep: RandomMinSepOption = None,
    max_atoms: RandomMaxAtomsOption = 20,
    buildcell_timeout: RandomBuildcellTimeoutOption = 60.0,
    dedup: DedupOption = True,
    physical: PhysicalOption = True,
    seed: SeedOption = 0,
    processes: ProcessesOption = 1,
    shard_: ShardOption = None,
    campaign: CampaignOption = None,
    round_: RoundOption = None,
    out: OutOption = None,
    to_db: ToDbOption = False,
    db: DbOption = None,
) -> None:
    """Random structures per composition (AIRSS buildcell or pyxtal)."""

    _check_destination(out, to_db)
    try:
        search = RandomSearch(
            n_per_composition=n,
            backend=backend,
            volume_per_atom=volume_per_atom,
            min_separation=_parse_minsep(min_sep),
            max_atoms=max_atoms,
            seed=seed,
            buildcell_timeout=buildcell_timeout,
            campaign=campaign,
            round=round_,
        )
        for formula in composition:  # check every request before drawing anything
            search.check_packing(search.check_composition(formula))
        stream = search.generate(composition, processes=processes, shard_of=_parse_shard(shard_))
        _emit(
            stream,
            out,
            to_db,
            db,
            dedup,
            f"random ({backend})",
            limit=n * len(composition),
            physical=physical,
        )
    except (CompositionError, RandomSearchError, ValueError) as exc:
        fail(str(exc))
    for failure in search.failures:
        err_console.print(f"[yellow]failed[/] {escape(failure)}", highlight=False)


@app.command(
    "compositions",
    cls=Command,
    epilog="Example: gnomon generate compositions --elements Li,Mn,O --max-atoms 8",
)
def compositions(
    elements: Annotated[str, typer.Option(help="Element set, e.g. Li,Mn,O.")],
    max_atoms: Annotated[int, typer.Option(min=1, help="Most atoms in a reduced formula.")] = 12,
    relaxed: Annotated[
        bool,
        typer.Option(
            "--relaxed",
            help="GNoME's relaxed oxidation-state balance instead of the strict SMACT rule.",
        ),
    ] = False,
    subsystems: Annotated[
        bool, typer.Option("--subsystems", help="Also formulas of fewer of the elements.")
    ] = False,
    skip_known: Annotated[
        bool,
        typer.Option("--skip-known/--keep-known", help="Skip formulas already in the database."),
    ] = True,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", metavar="FILE", help="Write the formulas, one per line."),
    ] = None,
    db: DbOption = None,
) -> None:
    """Reduced formulas over an element set that SMACT can charge balance."""

    try:
        els = parse_elements(elements)
        known: set[str] = set()
        if skip_known:
            with repository(db) as repo:
                known = known_formulas(repo, els)
        gen = CompositionGenerator(
            max_atoms=max_atoms,
            include_subsystems=subsystems,
            mode=BalanceMode.relaxed if relaxed else BalanceMode.strict,
        )
        formulas = list(gen.generate(els, skip=known))
    except CompositionError as exc:
        fail(str(exc))
    if out is not None:
        out.write_text("".join(f"{f}\n" for f in formulas))
    table = Table(
        title=f"{'-'.join(els)}: {len(formulas)} compositions "
        f"({'relaxed' if relaxed else 'strict'}; {len(known)} known skipped)"
    )
    table.add_column("formula")
    table.add_column("atoms", justify="right")

    for f in formulas:
        table.add_row(f, str(int(Composition(f).num_atoms)))
    console.print(table)


@commands.command("dedup", cls=Command, epilog="Example: gnomon dedup saps.json --against-db")
def dedup(
    file: Annotated[
        Path, typer.Argument(metavar="FILE", help="Candidate file (.json, .jsonl, .extxyz).")
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            metavar="FILE",
            help="Where the unique candidates go (default: FILE with .unique before the suffix).",
        ),
    ] = None,
    against_db: Annotated[
        bool,
        typer.Option(
            "--against-db", help="Also drop candidates that match stored candidates or entries."
        ),
    ] = False,
    db: DbOption = None,
) -> None:
    """Remove duplicate structures from a candidate file."""
    # heavy: pymatgen.analysis
    from gnomon.pipeline.generation.dedup import Deduplicator

    if not file.exists():
        fail(f"{file}: no such file")
    target = out or file.with_name(f"{file.stem}.unique{file.suffix}")
    if target.resolve() == file.resolve():
        fail("--out must differ from the input file")

    def run(dd: Deduplicator) -> int:
        def kept():
            for chunk in chunked(read_candidates(file), CHUNK):
                yield from dd.unique(chunk)

        with _progress() as progress:
            progress.add_task(f"deduplicating {file.name}", total=None)
            return write_candidates(target, kept())

    try:
        if against_db:
            with repository(db) as repo:
                dd = Deduplicator(repository=repo)
                written = run(dd)
        else:
            dd = Deduplicator()
            written = run(dd)
    except (CandidateFileError, ValueError) as exc:
        fail(str(exc))
    s = dd.stats
    console.print(
        f"{escape(str(file))}: {s.seen} candidates, {s.same_id} identical, {s.matched} "
        f"matched by StructureMatcher; [bold]{written}[/] unique written to "
        f"{escape(str(target))}",
        highlight=False,
    )
