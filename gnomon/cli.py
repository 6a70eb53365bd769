"""The ``gnomon`` command line: one verb group per stage.

This is the only module that parses command lines. Sub-command groups live in
``gnomon.commands`` (one module each, typer apps) and are mounted here.
"""

from __future__ import annotations

import typer

from gnomon.commands import campaign, db, generate, jobs, model, phases, relax, serve, world
from gnomon.dft.worker import run_batch

app = typer.Typer(
    name="gnomon",
    help="GNoME-style active learning for stable inorganic crystals.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(db.app, name="db", help="Import entries and inspect the phase database.")
app.command("phases", help="Query the phases found.")(phases.phases)
app.command("hull", help="Show (and plot) the convex hull of a chemical system.")(phases.hull)
app.add_typer(generate.app, name="generate", help="Generate candidate structures.")
app.command("dedup", help="Remove duplicate structures from a candidate file.")(generate.dedup)
app.add_typer(model.app, name="model", help="Train, list and run the GNN ensembles.")
app.command("relax", help="Relax structures with an engine through a dispatcher.")(relax.relax)
app.add_typer(jobs.app, name="jobs", help="Track relaxations submitted to a dispatcher.")
app.add_typer(campaign.app, name="campaign", help="Run, schedule and report discovery campaigns.")
app.command("serve", help="Serve the phases as an OPTIMADE API and the web explorer.")(serve.serve)
app.add_typer(world.app, name="world", help="Build, grow and check a labelled world (ML oracle).")


@app.command("worker", hidden=True)
def worker(workdirs: list[str]) -> None:
    """Run prepared calculation directories (what a batch job executes)."""

    raise typer.Exit(run_batch(workdirs))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
