"""`gnomon campaign`: run, resume, inspect, report, schedule and simulate campaigns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from gnomon.campaign.round_steps import STEPS, with_current_step_names
from gnomon.campaign.selection import policy_options
from gnomon.commands.common import DbOption, console, fail, repository, settings
from gnomon.config import CampaignConfig, ConfigError, load_campaign
from gnomon.flows.server import ServerError
from gnomon.pipeline.thermo.known import phase_origins
from gnomon.pipeline.thermo.phase_query import PhaseQuery
from gnomon.storage import Campaign

app = typer.Typer(no_args_is_help=True)

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart.yaml"


def _config(path: Path) -> CampaignConfig:
    try:
        return load_campaign(path)
    except ConfigError as exc:
        fail(str(exc))


def _stored_config(name: str, db: str | None) -> CampaignConfig:
    """The configuration a stored campaign was run with."""

    with repository(db) as repo:
        record = repo.get(Campaign, name)
    if record is None:
        fail(f"no campaign named {name!r} in this database")
    return CampaignConfig.model_validate(record.config)


def _run(cfg: CampaignConfig, db: str | None, rounds: int | None) -> dict:
    # heavy: prefect
    from gnomon.flows.campaign import CampaignError, campaign_flow, settings_payload

    s = settings(db)
    try:
        return campaign_flow(cfg.model_dump(mode="json"), settings_payload(s), rounds)
    except CampaignError as exc:
        fail(str(exc))


def _metrics_table(db: str | None, name: str) -> Table:
    # heavy: matplotlib
    from gnomon.campaign.reports import METRIC_COLUMNS, format_value, metric_rows

    with repository(db) as repo:
        rows = metric_rows(repo, name)
    table = Table(title=f"campaign {name}")
    for _, head in METRIC_COLUMNS:
        table.add_column(head, justify="right")
    for r in rows:
        table.add_row(*(format_value(r.get(k)) for k, _ in METRIC_COLUMNS))
    return table


def _finish(cfg: CampaignConfig, db: str | None, result: dict) -> None:
    # heavy: matplotlib
    from gnomon.campaign.reports import write_report

    console.print(_metrics_table(db, cfg.name))
    with repository(db) as repo:
        path = write_report(repo, settings(db), cfg)
    console.print(
        f"campaign {cfg.name}: {result['status']}"
        + (f" ({result['reason']})" if result.get("reason") else "")
        + f", {result['relaxations']} relaxations"
    )
    console.print(f"report: [bold]{path}[/]")


@app.command("run")
def run(
    config: Annotated[Path, typer.Argument(help="Campaign YAML file.")],
    rounds: Annotated[
        int | None, typer.Option(help="Run this many rounds (default: the config's).")
    ] = None,
    db: DbOption = None,
) -> None:
    """Run a campaign (resuming it if it was interrupted)."""
    cfg = _config(config)
    _finish(cfg, db, _run(cfg, db, rounds))


@app.command("resume")
def resume(
    name: Annotated[str, typer.Argument(help="Campaign name.")],
    rounds: Annotated[int | None, typer.Option(help="Run up to this many rounds in total.")] = None,
    db: DbOption = None,
) -> None:
    """Resume a stored campaign at its first unfinished step."""
    cfg = _stored_config(name, db)
    _finish(cfg, db, _run(cfg, db, rounds))


@app.command("status")
def status(
    name: Annotated[str | None, typer.Argument(help="Campaign name (all when omitted).")] = None,
    db: DbOption = None,
) -> None:
    """Campaigns, their rounds and the state of every step."""
    # heavy: matplotlib
    from gnomon.campaign.reports import campaign_rounds

    with repository(db) as repo:
        campaigns = [repo.get(Campaign, name)] if name else list(repo.query(Campaign))
        if name and campaigns[0] is None:
            fail(f"no campaign named {name!r} in this database")
        for c in campaigns:
            table = Table(title=f"{c.name}: {c.status}, {c.rounds_done} rounds done")
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
            f"schedule: {c.schedule}, {c.rounds_per_run} round(s) per run; next run: {nxt}"
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


@app.command("report")
def report(
    name: Annotated[str, typer.Argument(help="Campaign name.")],
    out: Annotated[Path | None, typer.Option(help="Directory for report.md and its PNGs.")] = None,
    db: DbOption = None,
) -> None:
    """Write the campaign report (Markdown + PNG)."""
    # heavy: matplotlib
    from gnomon.campaign.reports import write_report

    cfg = _stored_config(name, db)
    with repository(db) as repo:
        path = write_report(repo, settings(db), cfg, out)
    console.print(_metrics_table(db, name))
    console.print(f"report: [bold]{path}[/]")


@app.command("quickstart")
def quickstart(db: DbOption = None) -> None:
    """The quickstart campaign (examples/quickstart.yaml) on embedded defaults."""

    cfg = _config(QUICKSTART)
    result = _run(cfg, db, None)
    _finish(cfg, db, result)
    # heavy: jobflow
    from gnomon.dft.engine import make_engine

    scheme = make_engine(cfg.engine.name, settings(db), **cfg.engine.options).scheme
    with repository(db) as repo:
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


@app.command("schedule")
def schedule(
    config: Annotated[Path, typer.Argument(help="Campaign YAML file.")],
    cron: Annotated[
        str | None, typer.Option(help="Cron schedule, e.g. '0 2 * * *' (daily at 02:00).")
    ] = None,
    every: Annotated[
        str | None,
        typer.Option(
            help="Interval schedule instead of a cron: '10s', '15m', '6h', '1d' (slots counted "
            "from 2000-01-01 00:00 UTC)."
        ),
    ] = None,
    rounds_per_run: Annotated[int, typer.Option(help="Rounds each scheduled run adds.")] = 1,
    db: DbOption = None,
) -> None:
    """Schedule a campaign: each run adds --rounds-per-run rounds until its stopping rules end
    it."""
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
        f"{where} scheduled {when}, {rounds_per_run} round(s) per run; "
        "run `gnomon campaign serve` to execute it"
    )


@app.command("serve")
def serve(
    names: Annotated[
        list[str] | None, typer.Argument(help="Campaigns to serve (default: all scheduled).")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            help="Port of the workspace's Prefect server (default: a free one); unused with "
            "PREFECT_API_URL."
        ),
    ] = None,
    ui: Annotated[
        bool, typer.Option(help="Serve Prefect's web UI with the workspace's server.")
    ] = True,
    poll: Annotated[
        float, typer.Option(help="Seconds between asking the server for due runs.")
    ] = 5.0,
    db: DbOption = None,
) -> None:
    """Run scheduled campaigns when they come due, until interrupted.

    Without PREFECT_API_URL this starts the workspace's own Prefect server (scheduler
    included, state in $GNOMON_HOME/prefect, loopback only) and stops it on exit.
    """
    # heavy: prefect
    from gnomon.flows.deploy import serve as serve_deployments

    try:
        serve_deployments(settings(db), names, port=port, ui=ui, poll_s=poll)
    except (ValueError, ServerError) as exc:
        fail(str(exc))


SimulateConfigOption = Annotated[
    Path, typer.Argument(help="Campaign YAML file (selection and model settings).")
]
SimulateLabelsOption = Annotated[
    Path, typer.Option(help="Labelled structures: JSON entries or extxyz with energies.")
]
SimulatePoliciesOption = Annotated[str, typer.Option(help="Comma-separated policies to compare.")]
SimulateRoundsOption = Annotated[int | None, typer.Option(help="Rounds (default: the config's).")]
SimulateInitialOption = Annotated[
    int, typer.Option(help="Labelled compounds known before round 0.")
]
SimulateJsonOutOption = Annotated[
    Path | None, typer.Option("--json", help="Write the results as JSON.")
]
SimulateModelOption = Annotated[
    Path | None,
    typer.Option(
        help="Ensemble file to start from: it screens round 0 and is fine-tuned each round "
        "(default: a fresh ensemble each round; round 0 random when --initial is 0)."
    ),
]


@app.command("simulate")
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
