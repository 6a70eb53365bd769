"""`gnomon mlip`: the universal potentials of the mlip stage, fine-tuned to a campaign's scheme.

See :mod:`gnomon.dft.sevennet_finetune`: the fine-tune is sevenn's own, on relaxed structures
of one scheme (a database's entries, or a world's training rows), and the checkpoint it writes
is the SevenNet engine's ``model``, in a scheme named by its weights.
"""

from __future__ import annotations

import json
import logging
import shlex
from pathlib import Path
from typing import Annotated, Any

import typer

from gnomon.commands.common import (
    DbOption,
    console,
    existing_repository,
    fail,
    require,
    settings,
)
from gnomon.commands.help_format import Command, Group
from gnomon.credentials import mask_url
from gnomon.pipeline.thermo.schemes import SchemeError, known_scheme, registered_schemes
from gnomon.storage.chemsys import canonical_chemsys
from gnomon.world.files import WorldFiles, load_world, sha256
from gnomon.world.oracle import SCHEME, oracle_engine

app = typer.Typer(
    cls=Group,
    no_args_is_help=True,
    help="Fine-tune the universal potential of the mlip stage.",
)


@app.command(
    "finetune",
    cls=Command,
    epilog="Example: gnomon mlip finetune --scheme mlip-chgnet-0.3.0 --out runs/sevennet-ft",
)
def finetune(
    scheme: Annotated[str | None, typer.Option(
        metavar="SCHEME", help="Learn the entries of this energy scheme in the database (--db): "
        "each entry's relaxed structure and energy, elemental and compound.",
        show_default=False)] = None,
    world: Annotated[Path | None, typer.Option(
        metavar="DIR", help="Learn a world folder's training rows instead (gnomon world build); "
        "its held-out systems are never used.", show_default=False)] = None,
    exclude: Annotated[list[str] | None, typer.Option(
        metavar="CHEMSYS", help="Chemical systems never used (e.g. Li-Mn-O); repeat the option "
        "or separate them by commas.", show_default=False)] = None,
    structures: Annotated[int, typer.Option(
        metavar="N", help="Most structures to train on (elements first).")] = 2000,
    epochs: Annotated[int, typer.Option(
        metavar="N", help="Epochs; the one with the lowest validation loss is kept.")] = 2,
    lr: Annotated[float, typer.Option(
        metavar="RATE", help="Learning rate (chosen on validation systems; the preset's 0.004 "
        "diverged).")] = 0.001,
    batch: Annotated[int, typer.Option(metavar="N", help="Structures per batch.")] = 4,
    valid: Annotated[int, typer.Option(
        metavar="N", help="Validation structures scored every epoch, from a seeded tenth of "
        "the compound systems that is never trained on.")] = 40,
    frames: Annotated[int, typer.Option(
        metavar="N", help="With --world: also train on up to N frames of the oracle's "
        "relaxations of training systems (unrelaxed inputs, intermediate geometries), each "
        "labelled by one single point of the world's oracle (energy and forces).")] = 0,
    seed: Annotated[int, typer.Option(metavar="N", help="Seed of the data choices.")] = 0,
    threads: Annotated[int | None, typer.Option(
        metavar="N", help="Threads sevenn's training may use (default: the environment's "
        "OMP_NUM_THREADS, else torch's).", show_default=False)] = None,
    out: Annotated[Path, typer.Option(
        metavar="DIR", help="Where the checkpoint (sevennet-ft.pth), card.json and sevenn's "
        "run go; rerun the same command to resume a stopped fine-tune.")] = Path("sevennet-ft"),
    db: DbOption = None,
) -> None:
    """Fine-tune SevenNet-0 on the relaxed structures of one energy scheme, through sevenn.

    The checkpoint sevenn picks (lowest validation loss) is written with a card (data, epochs,
    learning curve, CPU seconds, sevenn version, sha256 and the energy scheme it has:
    mlip-sevennet-ft-<sha256 prefix>), and the campaign-config line that uses it is printed.
    """
    # heavy: sevenn, torch, ase (the fine-tune and what it loads)
    from gnomon.dft.sevennet_finetune import FineTuneError, SevenNetFineTuner, selected

    try:
        tuner = SevenNetFineTuner(structures=structures, epochs=epochs, lr=lr, batch=batch,
                                  valid=valid, seed=seed, threads=threads, frames=frames)
    except ValueError as exc:
        fail(str(exc))
    if frames and world is None:
        fail("--frames needs --world: the frames of relaxations are kept in a world's rows")
    excluded = [s.strip() for item in exclude or [] for s in item.split(",") if s.strip()]
    every, source, geometries = _rows(scheme, world, db, frames > 0)
    rows = selected(every, excluded)
    if not rows:
        fail("no structure is left to fine-tune on once the excluded systems are removed")
    source["excluded"] = sorted(excluded)
    source["excluded_structures"] = len(every) - len(rows)
    console.print(f"fine-tuning SevenNet-0 on {len(rows)} structures of {source['what']} "
                  f"({len(every) - len(rows)} of excluded systems left out; at most {structures} "
                  f"trained on, {epochs} epochs, lr {lr:g}, batch {batch}) into {out}",
                  highlight=False)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    given = {"--scheme": scheme, "--world": world, "--structures": structures,
             "--epochs": epochs, "--lr": lr, "--batch": batch, "--valid": valid, "--seed": seed,
             "--frames": frames or None, "--threads": threads, "--out": out}
    command = shlex.join(["gnomon", "mlip", "finetune",
                          *(f"--exclude={s}" for s in sorted(excluded)),
                          *(f"{k}={v}" for k, v in given.items() if v is not None)])
    try:
        card = tuner.run(rows, out, source=source, command=command, geometries=geometries,
                         calculator=lambda: oracle_engine().calculator())
    except (FineTuneError, OSError) as exc:
        fail(str(exc))
    best = card["best_epoch"]
    valid_loss = next((e.get("validset_TotalLoss") for e in card["learning_curve"]
                       if int(e["epoch"]) == best), None)
    console.print(
        f"wrote {out / card['checkpoint']} (epoch {best} of {card['epochs']}"
        + (f", validation loss {valid_loss:.5g}" if valid_loss is not None else "")
        + f"; {card['cpu_s']:.0f} CPU-s) and {out / 'card.json'}\n"
        f"energy scheme: {card['scheme']}\nuse it in a campaign file:\n  "
        f"{card['campaign_config']}", highlight=False)


def _rows(scheme: str | None, world: Path | None, db: str | None,
          frames: bool = False) -> tuple[list, dict[str, Any], list]:
    """The labelled structures, where they came from and (``frames``: a world's) the frames of
    their relaxations: a database's entries of ``scheme``, or a world's rows outside its
    held-out systems."""
    # heavy: ase (through the fine-tune)
    from gnomon.dft.sevennet_finetune import Geometry, Labelled

    if world is not None and scheme is not None:
        fail("give --scheme (a database's entries) or --world (a world's rows), not both")
    if world is not None:
        rows, source, records = _world_rows(world, Labelled)
        if not frames:
            return rows, source, []
        if source["scheme"] is None:
            fail(f"the world in {world} records no oracle scheme (its manifest.json): its "
                 "frames cannot be labelled in its scheme")
        if source["scheme"] != SCHEME:
            fail(f"the world in {world} was labelled in {source['scheme']}, not by this "
                 f"oracle ({SCHEME}): its frames cannot be labelled in its scheme")
        geometries = [g for r in records for g in Geometry.of_world_row(r)]
        source["frames_available"] = len(geometries)
        return rows, source, geometries
    if scheme is None:
        fail("what should SevenNet-0 learn? --scheme NAME (that scheme's entries in the "
             "database) or --world DIR (a world's training rows)")
    with existing_repository(db) as repo:
        repo = require(repo, db)
        try:
            name = known_scheme(scheme, list(registered_schemes(repo)))
        except SchemeError as exc:
            fail(str(exc))
        entries = repo.entries(scheme=name)
    url = mask_url(settings(db).db_url)
    rows = [Labelled.from_entry(e) for e in entries if e.structure is not None]
    if not rows:
        fail(f"the database holds no {name} entry with a structure to fine-tune on")
    return rows, {"what": f"the {name} entries", "scheme": name, "db": url,
                  "entries": len(entries), "without_structure": len(entries) - len(rows)}, []


def _world_rows(world: Path, labelled) -> tuple[list, dict[str, Any], list[dict[str, Any]]]:
    """The world's rows outside its held-out systems (as ``labelled``, and as they are
    stored), and what the card says of them."""
    files = WorldFiles(world)
    try:
        records, held = load_world(files)
    except (OSError, KeyError, ValueError) as exc:
        fail(f"cannot read the world in {world}: {exc}")
    total = len(records)
    held = {canonical_chemsys(s) for s in held}
    records = [r for r in records if canonical_chemsys(r["chemsys"]) not in held]
    rows = [labelled.from_world_row(r) for r in records]
    try:  # the oracle's scheme, as the world's manifest records it
        scheme = json.loads(files.manifest.read_text())["oracle"]["scheme"]
    except (OSError, KeyError, TypeError, ValueError):
        scheme = None
    return rows, {"what": f"the world in {world} (its training systems)", "scheme": scheme,
                  "world": str(world.resolve()), "world_sha256": sha256(files.world),
                  "heldout_systems": sorted(held), "rows": total,
                  "heldout_rows": total - len(rows)}, records
