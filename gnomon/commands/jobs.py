"""`gnomon jobs status|cancel|retry`: the relaxations the database knows about."""

from __future__ import annotations

from typing import Annotated

import typer

from gnomon.commands.common import DbOption, console, err_console, fail, repository, settings
from gnomon.commands.help_format import Command, Group
from gnomon.commands.relax import _wait, service_for, show_calculations
from gnomon.dft.errors import DispatchError
from gnomon.storage.documents import CalcState

app = typer.Typer(
    cls=Group, no_args_is_help=True, help="Track relaxations submitted to a dispatcher."
)


def _resolve(repo, ids: list[str]) -> list[str]:
    """Full calculation ids from ids or unique prefixes."""
    known = [c["id"] for c in repo.find("calculations")]
    out = []
    for i in ids:
        cand, _, settings_part = i.partition(":")
        matches = [k for k in known if k == i] or [
            k for k in known if k.startswith(cand) and k.partition(":")[2].startswith(settings_part)
        ]
        if not matches:
            fail(f"no calculation {i!r}")
        if len(matches) > 1:
            fail(f"{i!r} matches {len(matches)} calculations; give more of the id")
        out.append(matches[0])
    return out


def _service(repo, s, names):

    return service_for(repo, s, sorted(n for n in names if n))


@app.command("status", cls=Command, epilog="Example: gnomon jobs status --wait --timeout 3600")
def status(
    state: Annotated[
        str | None,
        typer.Option(
            metavar="STATE",
            help="Only calculations in this state: queued, submitted, running, done, failed, "
            "cancelled.",
        ),
    ] = None,
    refresh: Annotated[
        bool, typer.Option(help="Poll the dispatchers and collect results first.")
    ] = True,
    wait: Annotated[bool, typer.Option(help="Track until nothing is queued or running.")] = False,
    poll: Annotated[
        float, typer.Option(metavar="SECONDS", help="Seconds between polls with --wait.")
    ] = 5.0,
    timeout: Annotated[
        float | None,
        typer.Option(metavar="SECONDS", help="Give up waiting after this many seconds."),
    ] = None,
    db: DbOption = None,
) -> None:
    """Show calculations; by default ask the dispatchers first, so the table is the truth
    (collecting what finished is the one write; with --no-refresh nothing is written)."""

    if state is not None and state not in CalcState.__members__:
        fail(f"unknown state {state!r}: {', '.join(CalcState.__members__)}")
    s = settings(db)
    # --no-refresh only reads: it creates nothing and changes no record
    with repository(db, create=False, read_only=not (refresh or wait)) as repo:
        if refresh or wait:
            open_states = [
                CalcState.queued.value,
                CalcState.submitted.value,
                CalcState.running.value,
            ]
            names = {c.dispatcher for c in repo.calculations(state=open_states)}
            if names:
                svc = _service(repo, s, names)
                try:
                    if wait:
                        _wait(svc, poll, timeout)
                    else:
                        rep = svc.track()
                        if rep.done or rep.failed or rep.retried or rep.reattached:
                            console.print(
                                f"collected {len(rep.done)}, failed {len(rep.failed)}, "
                                f"resubmitted {len(rep.retried)}, re-attached {len(rep.reattached)}"
                            )
                except DispatchError as exc:
                    err_console.print(f"[yellow]warning:[/] could not ask the dispatcher: {exc}")
        show_calculations(repo, state=state)
        counts = {st.value: repo.count("calculations", {"state": st.value}) for st in CalcState}
        console.print("  ".join(f"{k}: {v}" for k, v in counts.items() if v))


@app.command("cancel", cls=Command, epilog="Example: gnomon jobs cancel 3f2a9c1e:81b0d4")
def cancel(
    ids: Annotated[
        list[str] | None,
        typer.Argument(metavar="ID...", help="Calculation ids (or unique prefixes)."),
    ] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Cancel every queued, submitted or running one.")
    ] = False,
    db: DbOption = None,
) -> None:
    """Cancel calculations (their batch jobs are stopped)."""

    s = settings(db)
    with repository(db) as repo:
        if all_:
            ids = [
                c.id
                for c in repo.calculations(
                    state=[
                        CalcState.queued.value,
                        CalcState.submitted.value,
                        CalcState.running.value,
                    ]
                )
            ]
        elif not ids:
            fail("give calculation ids or --all")
        else:
            ids = _resolve(repo, ids)
        names = {c.dispatcher for c in repo.calculations(id=ids)} if ids else set()
        svc = _service(repo, s, names)
        done = svc.cancel(ids)
        console.print(f"cancelled {len(done)} of {len(ids)} calculation(s)")


@app.command("retry", cls=Command, epilog="Example: gnomon jobs retry --failed")
def retry(
    ids: Annotated[
        list[str] | None,
        typer.Argument(metavar="ID...", help="Calculation ids (or unique prefixes)."),
    ] = None,
    failed: Annotated[
        bool, typer.Option("--failed", help="Retry every failed calculation.")
    ] = False,
    db: DbOption = None,
) -> None:
    """Queue failed or cancelled calculations again and submit them."""

    s = settings(db)
    with repository(db) as repo:
        if failed:
            ids = [c.id for c in repo.calculations(state=CalcState.failed.value)]
        elif not ids:
            fail("give calculation ids or --failed")
        else:
            ids = _resolve(repo, ids)
        names = {c.dispatcher for c in repo.calculations(id=ids)} if ids else set()
        svc = _service(repo, s, names)
        try:
            for name in names:
                svc.dispatchers[name].check()
            done = svc.retry(ids)
        except DispatchError as exc:
            fail(str(exc))
        console.print(f"queued again {len(done)} of {len(ids)} calculation(s)")
