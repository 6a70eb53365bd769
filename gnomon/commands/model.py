"""`gnomon model`: train, list, show, run and evaluate the GNN ensembles."""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gnomon.commands.common import (
    DbOption,
    console,
    err_console,
    existing_repository,
    fail,
    repository,
    require,
    settings,
)
from gnomon.commands.help_format import Command, Group
from gnomon.credentials import mask_url
from gnomon.models.errors import ModelNotFound
from gnomon.models.spec import ModelSpec, TrainConfig
from gnomon.pipeline.generation.candidate_io import CandidateFileError, read_structures
from gnomon.storage import Candidate
from gnomon.world.files import default_world_dir

app = typer.Typer(cls=Group, no_args_is_help=True, help="Train, list and run the GNN ensembles.")

KindOption = Annotated[str, typer.Option(
    "--kind", metavar="gnn|composition", help="gnn (structures) or composition.")]
ModelOption = Annotated[
    str | None,
    typer.Option("--model", "-m", metavar="VERSION", help="Model version (default: the latest)."),
]
SchemeOption = Annotated[str | None, typer.Option("--scheme", help="Energy scheme.")]

MONITOR_LABELS = {"val_mae": "val MAE", "train_loss": "train loss"}
"""How the CLI names what picked each member's best epoch (gnomon.models.training.MONITORS)."""


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=err_console,
        transient=True,
    )


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _pick_scheme(repo, scheme: str | None) -> str:
    if scheme:
        return scheme
    schemes = repo.schemes()
    if len(schemes) == 1:
        return schemes[0]
    if not schemes:
        fail("the database holds no entries to train on (gnomon db import ...)")
    fail(f"several energy schemes are stored ({', '.join(schemes)}); choose one with --scheme")
    raise AssertionError  # unreachable


def _resolve(registry, model: str | None, scheme: str | None, kind: str | None):
    """The model to predict with, and its ensemble; the shipped model is not registered (what
    only reads must not make it the latest model)."""
    try:
        record = (registry.get(model, register=False) if model
                  else registry.latest(scheme=scheme, kind=kind))
        return record, registry.load(record)
    except ModelNotFound as exc:
        fail(str(exc))
    except (OSError, ValueError, RuntimeError) as exc:
        fail(f"cannot load model: {exc}")
    raise AssertionError  # unreachable


def _metrics_table(title: str, reports: dict[str, dict[str, Any]]) -> Table:
    table = Table(title=title)
    table.caption = ("energies in eV/atom; cover = share of |error| within ±kσ "
                     "(Gaussian: 0.683, 0.954)")
    table.add_column("set", no_wrap=True)
    for col in ("n", "MAE", "RMSE", "mean σ", "±1σ", "±2σ", "miscal."):
        table.add_column(col, justify="right", no_wrap=True)
    for name, r in reports.items():
        if not r:
            continue
        table.add_row(
            name, _fmt(r.get("n")), _fmt(r.get("mae")), _fmt(r.get("rmse")),
            _fmt(r.get("mean_sigma")),
            _fmt(r.get("coverage_1sigma"), 3), _fmt(r.get("coverage_2sigma"), 3),
            _fmt(r.get("miscalibration_area"), 3),
        )
    return table


@app.command(
    "train",
    cls=Command,
    epilog="Example: gnomon model train --scheme mlip-chgnet-0.3.0 --epochs 100",
)
def train(
    scheme: SchemeOption = None,
    kind: KindOption = "gnn",
    ensemble: Annotated[int, typer.Option(help="Number of members K.")] = TrainConfig.ensemble_size,
    hidden: Annotated[int, typer.Option(help="Feature width.")] = ModelSpec.hidden,
    layers: Annotated[int, typer.Option(help="Message-passing layers.")] = ModelSpec.num_layers,
    cutoff: Annotated[float, typer.Option(help="Neighbour cutoff (Å).")] = ModelSpec.cutoff,
    readout: Annotated[str, typer.Option(
        metavar="sum|mean",
        help="sum (atomic energies) or mean (pooled features).")] = ModelSpec.readout,
    epochs: Annotated[int, typer.Option(help="Most epochs per member.")] = TrainConfig.max_epochs,
    patience: Annotated[int, typer.Option(
        help="Early-stopping patience (epochs).")] = TrainConfig.patience,
    batch_size: Annotated[int, typer.Option(help="Structures per batch.")] = TrainConfig.batch_size,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = TrainConfig.lr,
    group_by: Annotated[str, typer.Option(
        metavar="composition|chemsys",
        help="Split by composition or chemsys.")] = TrainConfig.group_by,
    val_fraction: Annotated[float, typer.Option(
        help="Share of groups for validation/calibration; 0: the best epoch is the one with the "
        "lowest training loss.")] = TrainConfig.val_fraction,
    test_fraction: Annotated[float, typer.Option(
        help="Share of groups held out for testing.")] = TrainConfig.test_fraction,
    bootstrap: Annotated[bool, typer.Option(
        help="Train each member on a bootstrap resample.")] = TrainConfig.bootstrap,
    seed: Annotated[int, typer.Option(
        help="Base seed (member k uses seed + 1000k).")] = TrainConfig.seed,
    retrain: Annotated[str, typer.Option(
        metavar="fine-tune|scratch",
        help="fine-tune the latest version, or scratch.")] = "fine-tune",
    device: Annotated[str | None, typer.Option(
        metavar="DEVICE", help="cpu, cuda, cuda:1 (default: CUDA if present).")] = None,
    checkpoints: Annotated[bool, typer.Option(help="Write per-member checkpoints.")] = True,
    db: DbOption = None,
) -> None:
    """Train an ensemble on the stored entries of one energy scheme and register it."""
    s = settings(db)
    try:
        spec = ModelSpec(kind=kind, hidden=hidden, num_layers=layers, cutoff=cutoff,
                         readout=readout)
        config = TrainConfig(
            ensemble_size=ensemble, seed=seed, bootstrap=bootstrap, max_epochs=epochs,
            patience=patience, batch_size=batch_size, lr=lr, group_by=group_by,
            val_fraction=val_fraction, test_fraction=test_fraction, device=device,
            checkpoint_dir=(str(s.models_dir / "checkpoints" / f"{kind}-latest")
                            if checkpoints else None),
        )
    except ValueError as exc:
        fail(str(exc))
    with repository(db, create=False) as repo:
        scheme = _pick_scheme(repo, scheme)
        record, result = _train_with_progress(repo, s.models_dir, scheme, spec, config, retrain)
    _print_trained(record, result, config)


def _train_with_progress(repo, models_dir: Path, scheme: str, spec: ModelSpec,
                         config: TrainConfig, retrain: str):
    """``train_scheme`` with a progress bar of epochs per member; clean failure on bad input."""
    from gnomon.models.retrain import train_scheme  # heavy: torch

    with _progress() as progress:
        task = progress.add_task("training", total=config.max_epochs, info="")

        def report(name: str, epoch: int, total: int, monitor: str, value: float) -> None:
            progress.update(task, description=name, completed=epoch, total=total,
                            info=f"{MONITOR_LABELS[monitor]} {value:.4f}")

        try:
            return train_scheme(
                repo, models_dir, scheme, spec, config, retrain=retrain, progress=report
            )
        except ValueError as exc:
            fail(str(exc))
    raise AssertionError  # unreachable


def _print_trained(record, result, config: TrainConfig) -> None:
    """What was registered, each member's best epoch, and the validation and test metrics."""
    from gnomon.models.training import early_stopping  # heavy: torch

    m = result.metrics
    console.print(
        f"registered [bold]{record.id}[/] ({record.kind}, {config.ensemble_size} members, "
        f"{m['n_train']} train / {m['n_val']} val / {m['n_test']} test, "
        f"{m['n_rejected']} set aside, parent {record.parent or 'none'}, {m['device']})"
    )
    monitor, best = early_stopping(m)
    console.print(
        f"best epoch of each member by {MONITOR_LABELS[monitor]}"
        f"{' (no validation split)' if monitor == 'train_loss' else ' (eV/atom)'}: "
        + ", ".join(_fmt(b) for b in best),
        highlight=False,
    )
    console.print(_metrics_table(
        f"{record.id}: σ scale {m['sigma_scale']:.3g}",
        {"val (raw σ)": m.get("val_uncalibrated", {}), "val (calibrated)": m.get("val", {}),
         "test": m.get("test", {})},
    ))


@app.command("list", cls=Command, epilog="Example: gnomon model list --scheme mlip-chgnet-0.3.0")
def list_(scheme: SchemeOption = None, kind: Annotated[str | None, typer.Option(
              metavar="gnn|composition", help="Only models of this kind.")] = None,
          db: DbOption = None) -> None:
    """Model versions, oldest first."""
    from gnomon.models.registry import ModelRegistry  # heavy: torch

    s = settings(db)
    with repository(db, read_only=True) as repo:
        versions = ModelRegistry(repo, s.models_dir).versions(scheme=scheme, kind=kind)
    if not versions:
        console.print("no models yet (gnomon model train)")
        return
    table = Table(title="model versions")
    table.add_column("version", no_wrap=True)
    for col in ("kind", "scheme", "K", "n train", "val MAE", "±1σ", "parent", "created"):
        table.add_column(col)
    for v in versions:
        val = v.metrics.get("val") or {}
        table.add_row(
            v.id, v.kind, v.scheme, _fmt(v.config.get("ensemble_size")), _fmt(v.n_train),
            _fmt(val.get("mae")), _fmt(val.get("coverage_1sigma"), 2), v.parent or "-",
            v.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    console.print(table)


@app.command("show", cls=Command, epilog="Example: gnomon model show pretrained --json")
def show(
    version: Annotated[str, typer.Argument(metavar="VERSION", help="Model version, or "
                                           "'pretrained' (the model "
                                           "shipped with gnomon: its card).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    db: DbOption = None,
) -> None:
    """Everything recorded about one version; for the pretrained model, its card."""
    with err_console.status("loading the model registry (torch)"):  # seconds on a cold start
        from gnomon.models import pretrained  # heavy: torch
        from gnomon.models.registry import ModelRegistry, _jsonable  # heavy: torch

    s = settings(db)
    with existing_repository(db) as repo:  # the shipped model's card needs no database
        try:
            if repo is None and pretrained.names_shipped(version):
                v = pretrained.record()
            else:
                v = ModelRegistry(require(repo, db), s.models_dir).get(version, register=False)
        except ModelNotFound as exc:
            fail(str(exc))
    card = v.config.get("card")
    if as_json:
        console.print_json(json.dumps(_jsonable(card or v.to_doc()), default=str))
        return
    if card:
        _show_card(v.id, card)
        return
    table = Table(title=f"model {v.id}", show_header=False)
    table.add_column("field")
    table.add_column("value")
    table.add_row("kind", v.kind)
    table.add_row("scheme", v.scheme)
    table.add_row("weights", v.weights_path)
    table.add_row("training data", f"{v.n_train} train entries, hash {v.training_data_hash}")
    table.add_row("parent", v.parent or "-")
    table.add_row("hyperparameters", json.dumps(v.config.get("hparams", {})))
    train_cfg = {k: val for k, val in v.config.get("train", {}).items() if val is not None}
    table.add_row("training", json.dumps(train_cfg))
    table.add_row("σ scale", _fmt(v.calibration.get("sigma_scale"), 4))
    table.add_row("created", v.created_at.isoformat())
    console.print(table)
    console.print(_metrics_table("metrics", {
        "val (raw σ)": v.metrics.get("val_uncalibrated", {}),
        "val (calibrated)": v.metrics.get("val", {}),
        "test": v.metrics.get("test", {}),
    }))


def _show_card(version: str, card: dict[str, Any]) -> None:
    """The pretrained model's card: data, split, scheme, hyperparameters, held-out metrics."""
    data, split = card.get("data", {}), card.get("split", {})
    table = Table(title=f"model {version}: pretrained, shipped with gnomon", show_header=False)
    table.add_column("field")
    table.add_column("value")
    table.add_row("scheme it predicts", card.get("scheme", "-"))
    table.add_row("kind", f"{card.get('kind', '-')}, {card.get('ensemble_size', '-')} members")
    table.add_row("data", f"{data.get('name', '-')}: {data.get('n_structures', '-')} structures, "
                  f"{data.get('n_systems', '-')} chemical systems ({data.get('file', '-')})")
    table.add_row("data hashes", f"world sha256 {str(data.get('sha256', '-'))[:16]}…, manifest "
                  f"sha256 {str(data.get('manifest_sha256', '-'))[:16]}…")
    table.add_row("oracle", json.dumps(data.get("oracle", {})))
    held = split.get("heldout_systems", [])
    table.add_row("split", f"{split.get('kind', '-')}: trained on "
                  f"{len(split.get('train_systems', []))} systems ({split.get('n_train', '-')} "
                  f"structures; {split.get('validation', '')}); {len(held)} held-out systems "
                  f"never seen ({split.get('n_heldout', '-')} structures)")
    table.add_row("held-out systems", ", ".join(held))
    recipe = card.get("recipe") or {"name": "relaxed (v1-v3: relaxed structures only)"}
    table.add_row("learnt from", json.dumps(recipe))
    table.add_row("hyperparameters", json.dumps(card.get("hyperparameters", {})))
    table.add_row("training", json.dumps(card.get("training", {})))
    table.add_row("date", str(card.get("date", "-")))
    table.add_row("code version", str(card.get("code_version", "-")))
    table.add_row("made by", str(card.get("command", "-")))
    table.add_row("weights", f"gnomon/data/pretrained/{card.get('weights')} (sha256 "
                  f"{str(card.get('weights_sha256', '-'))[:16]}…)")
    console.print(table)
    sets = card.get("metrics", {}).get("heldout", {})
    if not sets:
        return
    metrics = Table(title="metrics on the held-out systems (never trained on)")
    metrics.caption = ("energies in eV/atom; stable: e_above_hull <= 0 against the world's hull; "
                       "DAF = precision / prevalence; cover = share of |error| within ±kσ")
    metrics.add_column("metric", no_wrap=True)
    for name in sets:
        metrics.add_column(f"{name} input", justify="right")
    rows = [("structures", "n", 0), ("MAE", "mae", 4), ("RMSE", "rmse", 4), ("R²", "r2", 3),
            ("precision", "precision", 3), ("recall", "recall", 3), ("F1", "f1", 3),
            ("DAF", "daf", 2), ("±1σ cover", "coverage_1sigma", 3),
            ("±2σ cover", "coverage_2sigma", 3), ("miscal. area", "miscalibration_area", 3)]
    for label, key, digits in rows:
        metrics.add_row(label, *(_fmt(r.get(key), digits) for r in sets.values()))
    console.print(metrics)


@app.command("predict", cls=Command, epilog="Example: gnomon model predict POSCAR Li2O.cif --json")
def predict(
    files: Annotated[list[Path] | None, typer.Argument(
        metavar="FILE...", help="CIF, POSCAR or JSON structure files.")] = None,
    model: ModelOption = None,
    scheme: SchemeOption = None,
    kind: Annotated[str | None, typer.Option(
        metavar="gnn|composition", help="Kind of the latest model to use.")] = None,
    tta: Annotated[bool, typer.Option(help="Test-time augmentation over volume scalings.")] = False,
    aggregate: Annotated[str, typer.Option(
        metavar="min|mean", help="TTA aggregate: min or mean.")] = "min",
    candidates: Annotated[bool, typer.Option("--candidates", help="Screen the stored candidates "
                                             "without a prediction from this model; write "
                                             "Prediction records.")] = False,
    campaign: Annotated[str | None, typer.Option(
        metavar="NAME", help="Only candidates of this campaign.")] = None,
    round_: Annotated[int | None, typer.Option(
        "--round", help="Only candidates of this round.")] = None,
    batch_size: Annotated[int | None, typer.Option(
        help="Structures per batch (default: 64 on CPU, 512 on CUDA).", min=1)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    db: DbOption = None,
) -> None:
    """Energy per atom, calibrated σ and e_above_hull of structure files (or stored candidates)."""
    if not files and not candidates:
        fail("give structure files, or --candidates to screen the stored candidates")
    with err_console.status("loading torch and the model code"):  # seconds on a cold start
        from gnomon.models.ensemble import TTA  # heavy: torch
        from gnomon.models.registry import ModelRegistry  # heavy: torch
    try:
        augment = TTA(aggregate=aggregate) if tta else None
    except ValueError as exc:
        fail(str(exc))
    s = settings(db)
    if candidates:  # writes Prediction records into the database that holds the candidates
        with repository(db, create=False) as repo:
            record, ens = _resolve(ModelRegistry(repo, s.models_dir), model, scheme, kind)
            _screen_stored(repo, record, ens, augment, campaign, round_, batch_size)
        return
    structures = _read_inputs(files or [])
    with existing_repository(db) as repo:  # reads only; the shipped model needs no database
        with err_console.status("loading the model"):
            record, ens = _predicting_model(repo, db, s.models_dir, model, scheme, kind)
        with err_console.status(f"predicting {len(structures)} structure(s) with {record.id}"):
            rows = _predict_files(repo, s.db_url, record, ens, structures, augment, batch_size)
    if as_json:
        console.print_json(json.dumps(_predictions_json(record, rows, aggregate if tta else None)))
    else:
        console.print(_predictions_table(record, rows, aggregate if tta else None))
    if any(r["rejected"] for r in rows):
        raise typer.Exit(2)


def _predicting_model(repo, db: str | None, models_dir: Path, model: str | None,
                      scheme: str | None, kind: str | None):
    """The record and ensemble ``model predict`` uses; without a database the shipped model
    (named or not), since a newcomer's first prediction comes before any database."""
    from gnomon.models import pretrained  # heavy: torch
    from gnomon.models.registry import ModelRegistry  # heavy: torch

    shipped = pretrained.names_shipped(model) if model is not None else kind in (None, "gnn")
    if repo is None and shipped:
        try:
            ens = pretrained.load_weights(pretrained.read_card()["weights"])
            return pretrained.record(ens), ens
        except ModelNotFound as exc:
            fail(str(exc))
    return _resolve(ModelRegistry(require(repo, db), models_dir), model, scheme, kind)


def _read_inputs(files: list[Path]) -> list[tuple[Path, str, Any]]:
    """``(file, label, structure)`` of every input, each through the check ``db import``
    makes (gnomon.pipeline.generation.structure_checks); one line naming the first bad one."""
    structures: list[tuple[Path, str, Any]] = []
    for path in files:
        try:
            structures.extend((path, label, st) for label, st in read_structures(path))
        except CandidateFileError as exc:  # names the file and the record
            fail(f"{exc}; nothing was predicted")
        except OSError as exc:
            fail(f"cannot read {path}: {exc}")
    return structures


def _predict_files(repo, db_url: str, record, ens, structures: list[tuple[Path, str, Any]],
                   augment, batch_size: int | None) -> list[dict[str, Any]]:
    """One row per input structure: energy, σ and e_above_hull (with why there is none), or
    why the model rejected it."""
    from gnomon.models.screening import Screener, hull_function  # heavy: torch

    ehull = hull_function(repo, record.scheme) if repo is not None else None
    results = Screener(ens, batch_size=batch_size, tta=augment).predict(
        [st for _, _, st in structures]
    )
    rows = []
    for (path, label, st), r in zip(structures, results, strict=True):
        e_hull, why = None, None
        if r.rejected is None:
            e_hull = ehull(st.composition.formula, r.energy_per_atom) if ehull else None
            if e_hull is None:
                why = _no_hull_reason(repo, db_url, record.scheme, st.composition)
        rows.append({"file": str(path.resolve()), "structure": label,
                     "formula": st.composition.reduced_formula,
                     "energy_per_atom": r.energy_per_atom, "sigma": r.sigma,
                     "e_above_hull": e_hull, "e_above_hull_missing": why,
                     "rejected": r.rejected})
    return rows


def _no_hull_reason(repo, db_url: str, scheme: str, composition) -> str:
    """Why a prediction has no e_above_hull: no database, or which elements lack a reference
    entry in the model's scheme."""
    system = "-".join(sorted(str(el) for el in composition.elements))
    if repo is None:
        return f"no database at {mask_url(db_url)} to hold the {scheme} hull of {system}"
    elements = system.split("-")
    have = set(repo.distinct("entries", "chemsys", {"scheme": scheme, "chemsys": elements}))
    missing = [el for el in elements if el not in have]
    if missing:
        return (f"no hull of {system} in {scheme}: the database holds no {scheme} entry of "
                f"{', '.join(missing)} (a hull needs one per element)")
    return f"no hull of {system} in {scheme}"


UNITS = {"energy_per_atom": "eV/atom", "sigma": "eV/atom", "e_above_hull": "eV/atom"}
"""The units of ``model predict``'s numbers, stated in its table and its JSON."""


def _predictions_json(record, rows: list[dict[str, Any]], aggregate: str | None) -> dict:
    """What ``--json`` prints: the model, its scheme, the units, and one row per structure
    with the input file's full path."""
    return {"model": record.id, "scheme": record.scheme, "units": UNITS,
            "sigma": "calibrated ensemble standard deviation of energy_per_atom",
            "tta": aggregate, "predictions": rows}


def _predictions_table(record, rows: list[dict[str, Any]], aggregate: str | None) -> Table:
    tta = f" with TTA {aggregate}" if aggregate else ""
    table = Table(title=f"{record.id} ({record.scheme}){tta}")
    table.caption = ("E: predicted energy per atom in the model's scheme; σ: calibrated ensemble "
                     "standard deviation; E above hull against the stored hull of that scheme")
    for col in ("structure", "formula", "E (eV/atom)", "σ (eV/atom)", "E above hull (eV/atom)"):
        table.add_column(col)
    for r in rows:
        if r["rejected"]:
            table.add_row(r["structure"], r["formula"], f"[red]rejected: {r['rejected']}[/]", "",
                          "")
        else:
            hull = (_fmt(r["e_above_hull"]) if r["e_above_hull"] is not None
                    else f"- ({r['e_above_hull_missing']})")
            table.add_row(r["structure"], r["formula"], _fmt(r["energy_per_atom"]),
                          _fmt(r["sigma"]), hull)
    return table


def _screen_stored(repo, record, ens, augment, campaign, round_, batch_size) -> None:
    from gnomon.models.screening import screen_candidates  # heavy: torch

    filters = {k: v for k, v in {"campaign": campaign, "round": round_}.items() if v is not None}
    total = repo.count("candidates", filters)
    done = set(repo.distinct("predictions", "candidate_id", {"model_version": record.id}))

    def todo():
        for c in repo.query(Candidate, filters):
            if c.id not in done:
                yield c

    with _progress() as progress:
        task = progress.add_task("screening", total=max(total - len(done), 0), info="")
        stats = screen_candidates(
            repo, todo(), ens, record.id, record.scheme, tta=augment, batch_size=batch_size,
            campaign=campaign, round=round_, progress=lambda n: progress.advance(task, n),
        )
    console.print(f"screened {stats.screened} candidates with {record.id}; "
                  f"{stats.written} predictions written, {stats.rejected} rejected")
    for reason, n in sorted(stats.reasons.items(), key=lambda kv: -kv[1])[:10]:
        console.print(f"  {n} x {reason}", highlight=False)


@app.command(
    "evaluate",
    cls=Command,
    epilog="Example: gnomon model evaluate --scheme mlip-chgnet-0.3.0 --split chemsys",
)
def evaluate(
    model: Annotated[str | None, typer.Option(
        "--model", "-m", metavar="VERSION",
        help="Evaluate this registered version (default: train a fresh ensemble "
        "per split).")] = None,
    scheme: SchemeOption = None,
    split: Annotated[str, typer.Option(metavar="random|chemsys|both",
                                       help="random (in-distribution), chemsys (held-out "
                                       "systems) or both, side by side.")] = "both",
    test_fraction: Annotated[float, typer.Option(help="Share of entries (random) or of chemical "
                                                 "systems (chemsys) held out.")] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed of the splits and of the fresh ensemble.")] = 0,
    kind: Annotated[str, typer.Option(
        metavar="gnn|composition", help="Fresh ensemble: gnn or composition.")] = "gnn",
    ensemble: Annotated[int, typer.Option(help="Fresh ensemble: members K.")] = 3,
    hidden: Annotated[int, typer.Option(help="Fresh ensemble: feature width.")] = 32,
    layers: Annotated[int, typer.Option(help="Fresh ensemble: message-passing layers.")] = 2,
    cutoff: Annotated[float, typer.Option(help="Fresh ensemble: neighbour cutoff (Å).")] = 5.0,
    epochs: Annotated[int, typer.Option(help="Fresh ensemble: most epochs per member.")] = 100,
    patience: Annotated[int, typer.Option(help="Fresh ensemble: early-stopping patience.")] = 15,
    batch_size: Annotated[int, typer.Option(help="Fresh ensemble: structures per batch.")] = 32,
    chemsys: Annotated[list[str] | None, typer.Option(
        metavar="CHEMSYS", help="Only entries of these chemical systems.")] = None,
    include_training: Annotated[bool, typer.Option(help="With --model: also score the entries "
                                                   "it was trained on.")] = False,
    tta: Annotated[bool, typer.Option(help="Test-time augmentation over volume scalings.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    db: DbOption = None,
) -> None:
    """Energy, stability (Matbench Discovery) and σ metrics on splits that do not leak.

    Without --model a fresh ensemble is trained on each split's training side: a random split
    (in-distribution) and a split by whole chemical system (held-out systems), reported side by
    side. With --model the registered version is scored on the stored entries it was not
    trained on, split into systems its training data held and systems it never saw (--split,
    --test-fraction and --seed then do not apply: its own training split decides).
    """
    from gnomon.models.ensemble import TTA  # heavy: torch
    from gnomon.models.evaluation import NotEnoughData  # heavy: torch
    from gnomon.models.registry import _jsonable  # heavy: torch

    splits = _splits(split)
    augment = TTA() if tta else None
    s = settings(db)
    with repository(db, read_only=True) as repo:
        try:
            if model:
                result = _evaluate_version(repo, s.models_dir, model, scheme, chemsys,
                                           include_training, augment)
            else:
                spec = ModelSpec(kind=kind, hidden=hidden, num_layers=layers, cutoff=cutoff)
                config = TrainConfig(ensemble_size=ensemble, max_epochs=epochs, patience=patience,
                                     batch_size=batch_size, checkpoint_dir=None)
                result = _evaluate_fresh(repo, scheme, chemsys, spec, config, splits,
                                         test_fraction, seed, augment)
        except NotEnoughData as exc:
            fail(str(exc))
        except ValueError as exc:
            fail(f"cannot evaluate: {exc}")
    if as_json:
        console.print_json(json.dumps(_jsonable(result)))
    else:
        console.print(_evaluation_table(result, include_training))


def _splits(split: str) -> tuple[str, ...]:
    """The splits ``--split`` names (``both``: random and chemsys, side by side)."""
    if split not in ("both", "random", "chemsys"):
        fail(f"--split must be random, chemsys or both, not {split!r}")
    return ("random", "chemsys") if split == "both" else (split,)


def _evaluate_version(repo, models_dir: Path, model: str, scheme: str | None,
                      chemsys: list[str] | None, include_training: bool,
                      augment) -> dict[str, Any]:
    """A registered version scored on the stored entries of its scheme (``--model``)."""
    from gnomon.models.evaluation import evaluate_version  # heavy: torch
    from gnomon.models.registry import ModelRegistry  # heavy: torch

    registry = ModelRegistry(repo, models_dir)
    record, ens = _resolve(registry, model, scheme, None)
    entries = repo.entries(scheme=record.scheme, chemsys=chemsys)
    reference = repo.entries(scheme=record.scheme) if chemsys else entries
    return evaluate_version(record, ens, entries, registry.training_keys(record),
                            reference=reference, include_training=include_training, tta=augment)


def _evaluate_fresh(repo, scheme: str | None, chemsys: list[str] | None, spec: ModelSpec,
                    config: TrainConfig, splits: tuple[str, ...], test_fraction: float,
                    seed: int, augment) -> dict[str, Any]:
    """A fresh ensemble trained and scored per split (no ``--model``)."""
    from gnomon.models.evaluation import evaluate_fresh  # heavy: torch

    scheme = _pick_scheme(repo, scheme)
    entries = repo.entries(scheme=scheme, chemsys=chemsys)
    reference = repo.entries(scheme=scheme) if chemsys else entries
    with err_console.status("training") as status:
        return evaluate_fresh(
            scheme, entries, reference=reference, splits=splits,
            test_fraction=test_fraction, seed=seed, spec=spec, config=config,
            tta=augment, progress=status.update,
        )


def _evaluation_table(result: dict[str, Any], include_training: bool) -> Table:
    from gnomon.models.evaluation import SET_LABELS  # heavy: torch

    if result["mode"] == "fresh":
        title = f"fresh ensemble on {result['n_entries']} entries of {result['scheme']}"
    else:
        title = (f"{result['model']} on {result['n_entries']} stored entries of {result['scheme']}"
                 f"{' (incl. training)' if include_training else ' (held out)'}")
        if not result["split_known"]:
            title += "; its training split is not recorded"
    table = Table(title=title)
    table.caption = ("energies in eV/atom; stable: e_above_hull <= 0 against the hull of the true "
                     "energies; DAF = precision / prevalence; cover = share of |error| within ±kσ")
    table.add_column("metric", no_wrap=True)
    sets = result["sets"]
    for name, r in sets.items():
        label = SET_LABELS.get(name, name)
        table.add_column(f"{label} ({r['split']} split)" if "split" in r else label,
                         justify="right")
    rows = [("entries", "n", 0), ("systems", "n_systems", 0), ("no prediction", "n_missing", 0),
            ("MAE", "mae", 4), ("RMSE", "rmse", 4), ("R²", "r2", 3),
            ("stable (true)", "prevalence", 3),
            ("precision", "precision", 3), ("recall", "recall", 3), ("F1", "f1", 3),
            ("accuracy", "accuracy", 3), ("DAF", "daf", 2), ("mean σ", "mean_sigma", 4),
            ("±1σ cover", "coverage_1sigma", 3), ("±2σ cover", "coverage_2sigma", 3),
            ("miscal. area", "miscalibration_area", 3)]
    for label, key, digits in rows:
        values = [r.get(key) for r in sets.values()]
        cells = [_fmt(v, digits) if isinstance(v, float) and v == v else
                 ("-" if isinstance(v, float) else _fmt(v)) for v in values]
        table.add_row(label, *cells)
    return table


@app.command(
    "pretrain",
    cls=Command,
    epilog="Example: gnomon model pretrain --world bench/world --out /tmp/pt --epochs 20",
)
def pretrain(
    world: Annotated[Path | None, typer.Option(
        metavar="DIR",
        help="World folder (world.jsonl.gz, heldout.json, manifest.json); default: the shipped "
        "world, bench/world of the checkout.", show_default=False)] = None,
    out: Annotated[Path | None, typer.Option(
        metavar="DIR", help="Where the weights and card.json go; default: gnomon/data/pretrained.",
        show_default=False)] = None,
    version: Annotated[int, typer.Option(help="N of pretrained-<scheme>-vN.")] = 1,
    members: Annotated[int, typer.Option("--ensemble", help="Members K.")] = 5,
    epochs: Annotated[int, typer.Option(help="Most epochs per member.")] = 100,
    patience: Annotated[int, typer.Option(help="Early-stopping patience (epochs).")] = 15,
    width: Annotated[int, typer.Option("--hidden", help="Feature width.")] = 48,
    layers: Annotated[int, typer.Option(help="Message-passing layers.")] = 3,
    cutoff: Annotated[float, typer.Option(help="Neighbour cutoff (Å).")] = 5.0,
    batch_size: Annotated[int, typer.Option(help="Structures per batch.")] = 32,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 2e-3,
    val_fraction: Annotated[float, typer.Option(
        help="Share of the training systems for early stopping and σ calibration.")] = 0.15,
    seed: Annotated[int, typer.Option(help="Base seed.")] = 0,
    threads: Annotated[int | None, typer.Option(
        help="Torch threads (default: torch's).")] = None,
    device: Annotated[str | None, typer.Option(
        metavar="DEVICE", help="cpu, cuda (default: CUDA when present).")] = None,
    recipe: Annotated[str | None, typer.Option(
        metavar="RECIPE",
        help="What it learns from: relaxed, relaxed+unrelaxed, unrelaxed-heavy, unrelaxed "
        "(gnomon.world.pretrain.RECIPES); default: the shipped model's.",
        show_default=False)] = None,
) -> None:
    """Train the pretrained model that ships with gnomon, on a world's training systems.

    The world's held-out systems are never trained on; every metric on the card is measured
    on them. Writes <version>.pt and card.json (data hashes, split, metrics, hyperparameters,
    and this command). The options exist for other hardware or a quick trial, not to search.
    """
    # heavy: torch
    from gnomon.world.pretrain import DEFAULT_OUT, RECIPES, SHIPPED_RECIPE, PretrainOptions

    if recipe is not None and recipe not in RECIPES:
        fail(f"unknown recipe {recipe!r}; expected one of {', '.join(RECIPES)}")
    options = PretrainOptions(
        version=version, members=members, epochs=epochs, patience=patience, width=width,
        layers=layers, cutoff=cutoff, batch_size=batch_size, lr=lr, val_fraction=val_fraction,
        seed=seed, threads=threads, device=device, recipe=recipe or SHIPPED_RECIPE)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    _pretrain(world or default_world_dir(), out or DEFAULT_OUT, options,
              options.command(world, out))


def _pretrain(world: Path, out: Path, options, command: str) -> None:
    """Load, train, measure on the held-out systems, write the weights and the card."""
    # heavy: torch (the models and what they load)
    from gnomon.world.pretrain import (
        PretrainError,
        load,
        metrics,
        model_card,
        split_world,
        train,
        write_card,
        write_weights,
    )

    t0 = time.time()
    try:
        data = load(world)
        split = split_world(data)
    except (OSError, KeyError, ValueError) as exc:
        fail(f"cannot pretrain on the world in {world}: {exc}")
    console.print(
        f"world {world}: {len(data.rows)} structures, {len(set(data.chemsys))} systems; "
        f"training on {len(split.train)} structures of {len(split.train_systems)} systems, "
        f"{len(split.test)} structures of {len(split.test_systems)} held-out systems never seen",
        highlight=False)
    result = train(data, split, options)
    m = result.metrics
    console.print(
        f"trained {result.ensemble.size} members in {m['train_seconds']:.0f} s on {m['device']}: "
        f"{m['n_train']} train / {m['n_val']} validation structures, {m['n_rejected']} set "
        f"aside; σ scale {m['sigma_scale']:.3g}", highlight=False)
    scores = metrics(result, data, split)
    console.print(f"\nHeld-out systems ({len(split.test_systems)} systems, {len(split.test)} "
                  "structures), energies eV/atom:", highlight=False)
    console.print("\n".join(_metrics_markdown(scores["heldout"])), highlight=False)
    console.print(f"\nValidation systems (drawn from the training systems; recipe "
                  f"{options.recipe}), energies eV/atom:", highlight=False)
    console.print("\n".join(_metrics_markdown(scores["validation_systems"])), highlight=False)
    try:
        weights = write_weights(result.ensemble, out, options.version)
    except PretrainError as exc:
        fail(str(exc))
    card = write_card(out, model_card(world, weights, data, split, result, options, scores,
                                      command))
    console.print(f"\nwrote {weights} ({weights.stat().st_size / 2**20:.2f} MB) and {card}; "
                  f"{time.time() - t0:.0f} s in all", highlight=False)


def _metrics_markdown(metrics: dict[str, dict[str, Any]]) -> list[str]:
    """The held-out metrics as a Markdown table, one column per input (ready for a README)."""
    from gnomon.world.pretrain import METRIC_KEYS  # heavy: torch

    names = list(metrics)
    lines = ["| metric | " + " | ".join(f"{n} input" for n in names) + " |",
             "|---|" + "---|" * len(names)]
    for key in METRIC_KEYS:
        cells = []
        for n in names:
            v = metrics[n].get(key)
            cells.append("–" if v is None or (isinstance(v, float) and not math.isfinite(v))
                         else f"{v:.4f}" if isinstance(v, float) else str(v))
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return lines
