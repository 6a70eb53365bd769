"""`gnomon campaign`: run, resume, inspect, report, schedule and simulate campaigns."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from gnomon.campaign.config_reference import reference_markdown
from gnomon.campaign.round_steps import STEPS, with_current_step_names
from gnomon.campaign.selection import policy_options
from gnomon.commands.common import DbOption, console, fail, repository, settings
from gnomon.commands.daemon_log import daemon_log
from gnomon.commands.help_format import Command, Group
from gnomon.commands.progress import CampaignProgress
from gnomon.config import (
    CampaignConfig,
    ConfigError,
    Settings,
    campaign_config,
    campaign_data,
    load_campaign,
    old_spellings,
)
from gnomon.flows.server import ServerError
from gnomon.pipeline.thermo.known import phase_origins
from gnomon.pipeline.thermo.phase_query import PhaseQuery
from gnomon.plural import counted
from gnomon.storage import Campaign, DatabaseMissing, StorageError, open_repository
from gnomon.storage.disk import as_disk_full

app = typer.Typer(
    cls=Group, no_args_is_help=True, help="Run, schedule and report discovery campaigns."
)

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart.yaml"


def _config(path: Path) -> CampaignConfig:
    try:
        return load_campaign(path)
    except ConfigError as exc:
        fail(str(exc))


def _stored_config(name: str, db: str | None) -> CampaignConfig:
    """The configuration a stored campaign was run with."""

    with repository(db, read_only=True) as repo:
        record = repo.get(Campaign, name)
    if record is None:
        fail(f"no campaign named {name!r} in this database")
    try:
        return campaign_config(record.config, f"stored campaign {name}")
    except ConfigError as exc:
        fail(str(exc))


VerboseOption = Annotated[
    bool,
    typer.Option(
        "--verbose",
        "-v",
        help="Show Prefect's own log (every flow and task run) and gnomon's INFO lines.",
    ),
]


def _prefect_log(verbose: bool) -> None:
    """Prefect imported (its logging configured) and its log kept off the terminal unless
    ``verbose``: before anything else logs, so that with ``-v`` its lines come in its own
    format, run and task names included."""
    # heavy: prefect
    from gnomon.flows.logs import prefect_console

    prefect_console(verbose)


def _run(cfg: CampaignConfig, db: str | None, rounds: int | None, verbose: bool) -> dict:
    """The campaign flow, its progress shown meanwhile: live on a terminal, one line per event
    elsewhere or with ``verbose`` (Prefect's log lines then run among them)."""
    # heavy: prefect
    from gnomon.campaign.steps import StepError
    from gnomon.flows.campaign import CampaignError, campaign_flow, settings_payload

    _prefect_log(verbose)
    s = settings(db)
    _preflight(cfg, s)
    # gnomon's own INFO lines (each step done, each batch submitted) are the progress
    # display's to tell; -v shows them, Prefect's among them
    logging.getLogger("gnomon").setLevel(s.log_level if verbose else logging.WARNING)
    live = console.is_terminal and not verbose
    try:
        with (
            repository(db) as repo,
            CampaignProgress(repo, cfg, rounds or cfg.rounds, console, live=live),
        ):
            return campaign_flow(cfg.model_dump(mode="json"), settings_payload(s), rounds)
    except CampaignError as exc:
        fail(str(exc))
    except StepError as exc:
        fail(f"campaign {cfg.name}: {exc}; once its cause is fixed, "
             f"`gnomon campaign resume {cfg.name}` goes on from that step")
    except (StorageError, OSError) as exc:
        full = as_disk_full(exc)
        if full is None:
            raise
        fail(f"campaign {cfg.name} stopped: {full}; once space is freed, "
             f"`gnomon campaign resume {cfg.name}` goes on from where it stopped")


def _preflight(cfg: CampaignConfig, s: Settings) -> None:
    """The checks ``campaign validate`` makes, before any round: a missing pw.x or a refused
    option stops the campaign now, not after a round of screening and a queue wait."""
    # heavy: jobflow, torch (the engines and the shipped model)
    from gnomon.campaign.preflight import preflight

    stored, _ = _stored_campaign(s.db_url, cfg.name)
    found = preflight(cfg, s, stored)
    if found.problems:
        fail("\n".join(f"campaign {cfg.name}: {problem}" for problem in found.problems))


def _metrics_table(db: str | None, name: str) -> Table:
    # heavy: matplotlib
    from gnomon.campaign.reports import METRIC_COLUMNS, format_value, metric_rows

    with repository(db, read_only=True) as repo:
        rows = metric_rows(repo, name)
    table = Table(title=f"campaign {name}")
    for _, head in METRIC_COLUMNS:
        table.add_column(head, justify="right")
    for r in rows:
        table.add_row(*(format_value(r.get(k)) for k, _ in METRIC_COLUMNS))
    return table


def _finish(cfg: CampaignConfig, db: str | None, result: dict) -> None:
    """The per-round table, then the summary: its counts are the table's and the report's
    (``campaign_counts``), the relaxations outside the table named for what they were."""
    # heavy: matplotlib
    from gnomon.campaign.reports import campaign_counts, write_report

    console.print(_metrics_table(db, cfg.name))
    with repository(db, read_only=True) as repo:
        path = write_report(repo, settings(db), cfg)
        counts = campaign_counts(repo, cfg.name)
    reason = f" ({result['reason']})" if result.get("reason") else ""
    console.print(
        f"campaign {cfg.name}: {result['status']}{reason}, "
        f"{counted(counts.rounds_done, 'round')} done; {counts.relaxations_sentence()}",
        markup=False,
    )
    console.print(f"report: [bold]{path}[/]")


@app.command(
    "run",
    cls=Command,
    epilog="Example: gnomon campaign run examples/quickstart.yaml --rounds 5",
)
def run(
    config: Annotated[Path, typer.Argument(help="Campaign YAML file.")],
    rounds: Annotated[
        int | None, typer.Option(help="Run this many rounds (default: the config's).")
    ] = None,
    db: DbOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Run a campaign (resuming it if it was interrupted)."""
    cfg = _config(config)
    _finish(cfg, db, _run(cfg, db, rounds, verbose))


@app.command("resume", cls=Command, epilog="Example: gnomon campaign resume quickstart --rounds 5")
def resume(
    name: Annotated[str, typer.Argument(help="Campaign name.")],
    rounds: Annotated[int | None, typer.Option(help="Run up to this many rounds in total.")] = None,
    db: DbOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Resume a stored campaign at its first unfinished step."""
    _prefect_log(verbose)
    cfg = _stored_config(name, db)
    _finish(cfg, db, _run(cfg, db, rounds, verbose))


@app.command("status", cls=Command, epilog="Example: gnomon campaign status quickstart")
def status(
    name: Annotated[str | None, typer.Argument(help="Campaign name (all when omitted).")] = None,
    db: DbOption = None,
) -> None:
    """Campaigns, their rounds and the state of every step."""
    # heavy: matplotlib
    from gnomon.campaign.reports import campaign_rounds

    with repository(db, read_only=True) as repo:
        campaigns = [repo.get(Campaign, name)] if name else list(repo.query(Campaign))
        if name and campaigns[0] is None:
            fail(f"no campaign named {name!r} in this database")
        for c in campaigns:
            table = Table(title=f"{c.name}: {c.status}, {counted(c.rounds_done, 'round')} done")
            table.add_column("round")
            for s in STEPS:
                table.add_column(s)
            for r in map(with_current_step_names, campaign_rounds(repo, c.name)):
                table.add_row(str(r.index), *(str(r.steps.get(s, "pending")) for s in STEPS))
            console.print(table)
            for line in _schedule_lines(c):
                console.print(line)


def _schedule_lines(c) -> list[str]:
    """What a person asks of a scheduled campaign: when next, how the last run went, why it
    stopped."""
    lines = []
    if c.stop_reason:
        lines.append(f"stopped: {c.stop_reason}")
    if c.schedule:
        # heavy: prefect
        from gnomon.flows.deploy import next_due

        nxt = (
            "none (stopped; its schedule is paused)"
            if c.stop_reason
            else f"{next_due(c.schedule).isoformat(timespec='seconds')} "
            "(when `gnomon campaign serve` runs)"
        )
        lines.append(
            f"schedule: {c.schedule}, {counted(c.rounds_per_run, 'round')} per run; next run: {nxt}"
        )
    done = [r for r in c.runs if r.get("outcome") not in ("skipped", "missed")]
    if done:
        last = done[-1]
        rounds = ", ".join(map(str, last.get("rounds") or [])) or "none"
        lines.append(
            f"last run: {last.get('outcome')} (started {last.get('started_at')}, finished "
            f"{last.get('finished_at') or '–'}, rounds {rounds})"
            + (f": {last['reason']}" if last.get("reason") else "")
        )
    skipped = sum(1 for r in c.runs if r.get("outcome") == "skipped")
    missed = sum(int(r.get("count", 1)) for r in c.runs if r.get("outcome") == "missed")
    if skipped or missed:
        lines.append(
            f"runs skipped (another still going): {skipped}; missed while serve was down: {missed}"
        )
    return lines


@app.command(
    "report",
    cls=Command,
    epilog="Example: gnomon campaign report quickstart --out report",
)
def report(
    name: Annotated[str, typer.Argument(help="Campaign name.")],
    out: Annotated[
        Path | None, typer.Option(metavar="DIR", help="Directory for report.md and its PNGs.")
    ] = None,
    db: DbOption = None,
) -> None:
    """Write the campaign report (Markdown + PNG)."""
    # heavy: matplotlib
    from gnomon.campaign.reports import write_report

    cfg = _stored_config(name, db)
    with repository(db, read_only=True) as repo:
        path = write_report(repo, settings(db), cfg, out)
    console.print(_metrics_table(db, name))
    console.print(f"report: [bold]{path}[/]")


@app.command("quickstart", cls=Command, epilog="Example: gnomon campaign quickstart")
def quickstart(db: DbOption = None, verbose: VerboseOption = False) -> None:
    """The quickstart campaign (examples/quickstart.yaml) on embedded defaults."""

    cfg = _config(QUICKSTART)
    result = _run(cfg, db, None, verbose)
    _finish(cfg, db, result)
    # heavy: jobflow
    from gnomon.dft.engine import make_engine

    scheme = make_engine(cfg.engine.name, settings(db), **cfg.engine.options).scheme
    with repository(db, read_only=True) as repo:
        rows = PhaseQuery(chemsys=cfg.chemsys, scheme=scheme, stable=True).run(repo)
        origins = phase_origins(repo, rows)
    table = Table(title=f"stable phases of {cfg.chemsys} ({scheme})")
    for h in ("formula", "chemsys", "E_f (eV/atom)", "decomposition energy", "source"):
        table.add_column(h)
    for r, origin in zip(rows, origins, strict=True):
        table.add_row(
            r["formula"],
            r["chemsys"],
            f"{r['formation_energy_per_atom']:.3f}",
            f"{r['decomposition_energy']:.3f}",
            origin,
        )
    console.print(table)


@app.command(
    "schedule",
    cls=Command,
    epilog="Example: gnomon campaign schedule examples/quickstart.yaml --every 6h",
)
def schedule(
    config: Annotated[Path, typer.Argument(help="Campaign YAML file.")],
    cron: Annotated[
        str | None,
        typer.Option(metavar="CRON", help="Cron schedule, e.g. '0 2 * * *' (daily at 02:00)."),
    ] = None,
    every: Annotated[
        str | None,
        typer.Option(
            metavar="INTERVAL",
            help="Interval schedule instead of a cron: '10s', '15m', '6h', '1d' (slots counted "
            "from 2000-01-01 00:00 UTC)."
        ),
    ] = None,
    rounds_per_run: Annotated[int, typer.Option(help="Rounds each scheduled run adds.")] = 1,
    db: DbOption = None,
) -> None:
    """Schedule a campaign: each run adds rounds until its stopping rules end it.

    Each run adds --rounds-per-run rounds; `gnomon campaign serve` runs them when due.
    """
    # heavy: prefect
    from gnomon.flows.campaign import CampaignError
    from gnomon.flows.deploy import schedule as make_schedule

    cfg = _config(config)
    try:
        deployment_id = make_schedule(
            cfg, settings(db), cron=cron, interval=every, rounds_per_run=rounds_per_run
        )
    except (ValueError, CampaignError) as exc:
        fail(str(exc))
    when = f"'{cron}'" if cron else f"every {every}"
    where = (
        f"deployment gnomon-campaign/{cfg.name} ({deployment_id})"
        if deployment_id
        else f"campaign {cfg.name}"
    )
    console.print(
        f"{where} scheduled {when}, {counted(rounds_per_run, 'round')} per run; "
        "run `gnomon campaign serve` to execute it"
    )


@app.command("serve", cls=Command, epilog="Example: gnomon campaign serve quickstart")
def serve(
    names: Annotated[
        list[str] | None,
        typer.Argument(metavar="NAME...", help="Campaigns to serve (default: all scheduled)."),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            metavar="PORT",
            help="Port of the workspace's Prefect server (default: a free one); unused with "
            "PREFECT_API_URL."
        ),
    ] = None,
    ui: Annotated[
        bool, typer.Option(help="Serve Prefect's web UI with the workspace's server.")
    ] = True,
    poll: Annotated[
        float,
        typer.Option(metavar="SECONDS", help="Seconds between asking the server for due runs."),
    ] = 5.0,
    db: DbOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Run scheduled campaigns when they come due, until interrupted.

    Without PREFECT_API_URL this starts the workspace's own Prefect server (scheduler
    included, state in $GNOMON_HOME/prefect, loopback only) and stops it on exit. Its log
    (stderr, one timestamped line per event) gives the server's URL and UI, the campaigns
    served and when each is next due, and every run's start, rounds and outcome.
    """
    # heavy: prefect
    from gnomon.flows.deploy import serve as serve_deployments
    from gnomon.flows.logs import prefect_console

    prefect_console(verbose)
    s = settings(db)
    daemon_log(logging.DEBUG if verbose else s.log_level)
    try:
        serve_deployments(s, names, port=port, ui=ui, poll_s=poll)
    except (ValueError, ServerError) as exc:
        fail(str(exc))


SimulateConfigOption = Annotated[
    Path, typer.Argument(help="Campaign YAML file (selection and model settings).")
]
SimulateLabelsOption = Annotated[
    Path,
    typer.Option(metavar="FILE", help="Labelled structures: JSON entries or extxyz with energies."),
]
SimulatePoliciesOption = Annotated[
    str, typer.Option(metavar="POLICY,...", help="Comma-separated policies to compare.")
]
SimulateRoundsOption = Annotated[int | None, typer.Option(help="Rounds (default: the config's).")]
SimulateInitialOption = Annotated[
    int, typer.Option(help="Labelled compounds known before round 0.")
]
SimulateJsonOutOption = Annotated[
    Path | None,
    typer.Option("--out", "-o", metavar="FILE", help="Also write the results to FILE as JSON."),
]
SimulateModelOption = Annotated[
    Path | None,
    typer.Option(
        metavar="FILE",
        help="Ensemble file to start from: it screens round 0 and is fine-tuned each round "
        "(default: a fresh ensemble each round; round 0 random when --initial is 0)."
    ),
]


@app.command(
    "simulate",
    cls=Command,
    epilog="Example: gnomon campaign simulate examples/quickstart.yaml --labels labelled.json "
    "--out results.json",
)
def simulate(
    config: SimulateConfigOption,
    labels: SimulateLabelsOption,
    policies: SimulatePoliciesOption = "random,greedy,uncertainty",
    rounds: SimulateRoundsOption = None,
    initial: SimulateInitialOption = 20,
    json_out: SimulateJsonOutOption = None,
    model: SimulateModelOption = None,
) -> None:
    """Replay the loop on a labelled set to compare selection policies (no engine runs)."""

    # heavy: pymatgen.analysis
    from gnomon.campaign.simulate import load_labels
    from gnomon.campaign.simulate import simulate as run_simulation

    cfg = _config(config)
    try:
        items = load_labels(labels)
    except ValueError as exc:
        fail(str(exc))
    results = []
    for name in [p.strip() for p in policies.split(",") if p.strip()]:
        try:
            options = policy_options(cfg.selection, name)
            results.append(
                run_simulation(
                    items,
                    name,
                    rounds or cfg.rounds,
                    options.pop("budget"),
                    initial,
                    cfg.seed,
                    options,
                    {
                        "ensemble_size": cfg.model.ensemble_size,
                        "hidden": cfg.model.hidden,
                        "layers": cfg.model.layers,
                        "max_epochs": cfg.model.max_epochs,
                        "patience": cfg.model.patience,
                    },
                    initial_model=model,
                )
            )
        except ValueError as exc:
            fail(str(exc))
    console.print(_simulation_table(labels, len(items), results))
    if json_out:
        json_out.write_text(json.dumps([r.as_dict() for r in results], indent=1))


def _simulation_table(labels: Path, n_items: int, results: list[Any]) -> Table:
    """One row per policy: what it evaluated, what it found, its hit rate round by round."""
    table = Table(
        title=f"simulation on {labels} ({n_items} labelled, "
        f"{results[0].n_stable_total if results else 0} stable)"
    )
    for h in ("policy", "evaluations", "stable found", "stable per 100", "hit rate per round"):
        table.add_column(h)
    for r in results:
        hits = " ".join("–" if h is None else f"{h:.2f}" for h in r.hits)
        table.add_row(
            r.policy,
            str(r.evaluations[-1] if r.evaluations else 0),
            str(r.stable_found[-1] if r.stable_found else 0),
            f"{r.per_100:.1f}",
            hits,
        )
    return table


ValidateConfigArgument = Annotated[
    Path, typer.Argument(metavar="CONFIG", help="Campaign YAML file to check.")
]


@app.command(
    "validate",
    cls=Command,
    epilog="Example: gnomon campaign validate examples/quickstart.yaml",
)
def validate(config: ValidateConfigArgument, db: DbOption = None) -> None:
    """Check a campaign file as `campaign run` would, without running or writing anything.

    Keys and values, the database URL and a stored campaign of the same name, the engines
    (options, executables, pseudopotentials, elements they cover) and the dispatcher.
    """
    try:
        data = campaign_data(config)
    except ConfigError as exc:
        fail(str(exc))
    cfg = _config(config)
    s = settings(db)
    stored, where = _stored_campaign(s.db_url, cfg.name)
    # heavy: jobflow, torch (the engines and the shipped model)
    from gnomon.campaign.preflight import preflight

    found = preflight(cfg, s, stored)
    for note in [*old_spellings(data), *found.notes, where]:
        console.print(f"note: {note}", highlight=False)
    if found.problems:
        fail("\n".join(f"{config}: {problem}" for problem in found.problems))
    stages = " -> ".join(cfg.stages)
    console.print(
        f"{config}: campaign {cfg.name} is valid ({len(cfg.systems)} chemical systems, stages "
        f"{stages}, engine {cfg.engine.name}, dispatch {cfg.dispatch.name})",
        highlight=False,
    )


def _stored_campaign(url: str, name: str) -> tuple[dict[str, Any] | None, str]:
    """The config of a stored campaign called ``name`` (None if there is none) and where it
    was looked for, opening the database read-only: validating creates nothing."""
    try:
        repo = open_repository(url, read_only=True)
    except DatabaseMissing:
        return None, "the database does not exist yet; `campaign run` creates it"
    except StorageError as exc:
        fail(str(exc))
    try:
        record = repo.get(Campaign, name)
    except StorageError as exc:
        fail(str(exc))
    finally:
        repo.close()
    if record is None:
        return None, f"no campaign {name!r} is stored yet; `campaign run` starts it"
    return record.config, f"campaign {name!r} is stored; `campaign run` resumes it"


SchemaMarkdownOption = Annotated[
    bool,
    typer.Option(
        "--markdown",
        help="Print the key reference (docs/config-reference.md) instead of the JSON Schema.",
    ),
]


@app.command(
    "schema",
    cls=Command,
    epilog="Example: gnomon campaign schema > campaign.schema.json\n\n"
    "Example: gnomon campaign schema --markdown > docs/config-reference.md",
)
def schema(markdown: SchemaMarkdownOption = False) -> None:
    """Print the JSON Schema of a campaign file, with every key's meaning.

    It comes from the models `campaign run` validates with; an editor with a YAML language
    server completes and checks campaign files with it.
    """
    if markdown:
        print(reference_markdown(), end="")
    else:
        print(json.dumps(CampaignConfig.model_json_schema(), indent=2))
