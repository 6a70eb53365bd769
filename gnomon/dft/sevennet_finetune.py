"""Fine-tuning SevenNet-0 on a scheme's own energies, through sevenn's own path.

The mlip stage's universal potential, zero-shot, puts energies in a scheme of its own whose
offsets from the campaign's (per element, and more) a calibration maps only in part. Fine-tuned
on relaxed structures of the target scheme, SevenNet-0 learns that scheme itself: on the
shipped world (oracle CHGNet 0.3.0), 2,000 structures for 2 epochs at lr 0.001 cut the held-out
single-point error from 0.126 eV/atom (zero-shot, calibrated) to 0.064 (``bench/
sevennet_finetune.py``, README "SevenNet-0 fine-tuned through sevenn's own path").

How, as ``gnomon mlip finetune`` runs it (:class:`SevenNetFineTuner`):

* **Data** (:class:`Labelled`): relaxed structures with their total energies, from a
  database's entries of one scheme or a world's training rows (never its held-out systems, nor
  systems the caller excludes). Forces are set to zero (the structures are relaxed minima: an
  approximation, as a relaxation stops at a small residual force, not at none), no stress.
* **Frames** (optional, ``frames``): a minimum teaches a potential its energy but not the way
  to it, and the mlip stage relaxes *from* unrelaxed SAPS cells. A world's rows keep a few
  frames of each oracle relaxation (:mod:`gnomon.dft.frames`: the unrelaxed input, intermediate
  geometries); up to ``frames`` of them, of training systems only and never a relaxation's last
  frame (the minimum, already a row), are labelled by the scheme's own calculator (one single
  point each: energy and forces, :func:`label_frames`) and trained on beside the minima.
* **Validation**: a seeded tenth of the compound systems (whole systems, as screening meets
  systems it has not seen) is never trained on; up to ``valid`` of their structures are the
  validation set sevenn scores every epoch, and the epoch with the lowest validation loss is
  the model (sevenn's ``checkpoint_best.pth``).
* **Training set** (:func:`training_rows`): every elemental structure, one structure of each
  element not yet covered, then a seeded sample of the rest up to ``structures``.
* **sevenn** trains from its preset ``fine_tune.yaml`` (continue from ``SevenNet-0_11July2024``,
  which ships in the wheel; its Huber loss, Adam and exponential schedule, frozen per-element
  shifts and scales) with this CPU's epochs and batch and the learning rate chosen on
  validation: 0.001 (the preset's 0.004 diverged on the world's data), through its own
  command line (``sevenn train input.yaml``) in a child process.

Resumable: sevenn's working folder holds ``done.json`` once a fine-tune finished, and a
finished one is never rerun; a folder without it (a killed run) is removed and the fine-tune
starts again. Writes ``<out>/sevennet-ft.pth`` (the checkpoint sevenn chose as best) and
``<out>/card.json``; the checkpoint is the SevenNet engine's ``model``, in the energy scheme
``mlip-sevennet-ft-<first 12 hex of its sha256>``::

    mlip_engine: {name: sevennet, options: {model: <out>/sevennet-ft.pth}}
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pymatgen.core import Structure

from gnomon.dft.potentials import installed_version
from gnomon.pipeline.thermo.schemes import checkpoint_sha256, sevennet_scheme
from gnomon.storage.chemsys import canonical_chemsys
from gnomon.storage.documents import Entry, stable_hash

log = logging.getLogger(__name__)

PRESET = "fine_tune.yaml"
"""sevenn's fine-tuning preset (``sevenn/presets/``), the start of every fine-tune here."""
MODEL_FILE = "sevennet-ft.pth"
CARD_FILE = "card.json"
RUN_DIR = "sevenn"
"""sevenn's working folder inside ``out``: its inputs, log, learning curve, checkpoints."""
DONE_FILE = "done.json"
REQUEST_FILE = "request.json"
BEST = "checkpoint_best.pth"


class FineTuneError(RuntimeError):
    """A fine-tune that cannot run or did not give a model; the message says why."""


@dataclass(frozen=True)
class Labelled:
    """One structure and its total energy (eV) in the scheme being learnt: a relaxed minimum
    (``forces`` None, taken as zero) or a frame of a relaxation with the forces of its single
    point (eV/Å, one row per site)."""

    id: str
    chemsys: str  # canonical (``Li-O``)
    structure: Structure
    energy: float
    forces: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def elemental(self) -> bool:
        return "-" not in self.chemsys

    @classmethod
    def from_entry(cls, entry: Entry) -> Labelled:
        """A database entry: its final structure and its energy (corrections applied)."""
        if entry.structure is None:
            raise ValueError(f"entry {entry.id} ({entry.formula}) stores no structure")
        return cls(entry.id, canonical_chemsys(entry.chemsys),
                   Structure.from_dict(entry.structure), float(entry.energy))

    @classmethod
    def from_world_row(cls, row: Mapping[str, Any]) -> Labelled:
        """A world row (``gnomon world build``): its oracle-relaxed structure and energy."""
        return cls(str(row["id"]), canonical_chemsys(row["chemsys"]),
                   Structure.from_dict(row["relaxed"]), float(row["energy"]))


@dataclass(frozen=True)
class Geometry:
    """A frame of a training row's relaxation, not yet labelled (its energy and forces come
    from the scheme's calculator, :func:`label_frames`)."""

    id: str  # ``<row id>:frame<step>``
    chemsys: str
    structure: dict[str, Any]  # as stored (a Structure dict): parsed only if it is labelled

    @classmethod
    def of_world_row(cls, row: Mapping[str, Any]) -> list[Geometry]:
        """A world row's frames but the last (the relaxed minimum, which the row is)."""
        frames = sorted(row.get("frames") or [], key=lambda f: int(f["step"]))
        chemsys = canonical_chemsys(row["chemsys"])
        return [cls(f"{row['id']}:frame{int(f['step'])}", chemsys, f["structure"])
                for f in frames[:-1]]


#: a frame whose largest force exceeds this (eV/Å) is not trained on: a cell the oracle's
#: relaxation started far from any minimum (atoms nearly on top of each other), whose forces
#: would dominate the loss of every batch it falls in
MAX_FRAME_FORCE = 50.0


def label_frames(geometries: Sequence[Geometry], calculator: Any) -> tuple[list[Labelled], int]:
    """Each geometry's single point with ``calculator`` (an ASE calculator of the scheme being
    learnt) as a :class:`Labelled` with forces; and how many were left out (a non-finite
    energy or force, or a force above :data:`MAX_FRAME_FORCE`)."""
    from pymatgen.io.ase import AseAtomsAdaptor  # heavy: pymatgen.io (ase)

    out, dropped = [], 0
    for g in geometries:
        structure = Structure.from_dict(g.structure)
        atoms = AseAtomsAdaptor.get_atoms(structure)
        atoms.calc = calculator
        energy = float(atoms.get_potential_energy())
        forces = np.asarray(atoms.get_forces(), dtype=float)
        if not (math.isfinite(energy) and np.isfinite(forces).all()
                and np.abs(forces).max(initial=0.0) <= MAX_FRAME_FORCE):
            dropped += 1
            continue
        out.append(Labelled(g.id, g.chemsys, structure, energy, forces))
    return out, dropped


# -- the data ------------------------------------------------------------------------------------


def validation_split(rows: Sequence[Labelled], fraction: float, n_valid: int,
                     seed: int) -> tuple[list[Labelled], list[Labelled], list[str]]:
    """``(training pool, validation set, validation systems)``.

    A seeded ``fraction`` of the compound systems (at least one) is held from training; up to
    ``n_valid`` of its structures, seeded, are the set sevenn picks the epoch on. With fewer
    than two compound systems, the validation set is a seeded ``fraction`` of the structures
    (at least one) instead."""
    if len(rows) < 2:
        raise FineTuneError(f"a fine-tune needs at least 2 structures (one to validate on); "
                            f"got {len(rows)}")
    rng = random.Random(seed)
    systems = sorted({r.chemsys for r in rows if not r.elemental})
    if len(systems) >= 2:
        held = set(rng.sample(systems, min(len(systems) - 1,
                                           max(1, round(fraction * len(systems))))))
        pool = [r for r in rows if r.chemsys not in held]
        valid = [r for r in rows if r.chemsys in held]
        rng.shuffle(valid)
        return pool, valid[:n_valid], sorted(held)
    order = list(rows)
    rng.shuffle(order)
    k = min(n_valid, max(1, round(fraction * len(order))))
    return order[k:], order[:k], []


def training_rows(pool: Sequence[Labelled], n: int, seed: int) -> list[Labelled]:
    """Every elemental structure, then one seeded structure of each element not yet covered,
    then seeded structures of the rest up to ``n`` (elements first: each element's reference
    energy is what a fine-tune must not lose)."""
    rng = random.Random(seed)
    chosen = [r for r in pool if r.elemental]
    seen = {r.id for r in chosen}
    compounds = [r for r in pool if not r.elemental]
    rng.shuffle(compounds)
    covered = {el for r in chosen for el in r.chemsys.split("-")}
    for el in sorted({el for r in compounds for el in r.chemsys.split("-")}):
        if el not in covered:
            row = next(r for r in compounds if el in r.chemsys.split("-"))
            chosen.append(row)
            seen.add(row.id)
            covered |= set(row.chemsys.split("-"))
    chosen += [r for r in compounds if r.id not in seen][: max(0, n - len(chosen))]
    return chosen


def write_extxyz(rows: Sequence[Labelled], path: Path) -> None:
    """``rows`` as sevenn reads them: total energy, forces (zero for relaxed minima), no
    stress."""
    from ase.calculators.singlepoint import SinglePointCalculator  # heavy: ase
    from ase.io import write  # heavy: ase
    from pymatgen.io.ase import AseAtomsAdaptor  # heavy: pymatgen.io (ase)

    frames = []
    for r in rows:
        atoms = AseAtomsAdaptor.get_atoms(r.structure)
        forces = np.zeros((len(atoms), 3)) if r.forces is None else r.forces
        atoms.calc = SinglePointCalculator(atoms, energy=r.energy, forces=forces)
        atoms.info["id"] = r.id
        frames.append(atoms)
    path.parent.mkdir(parents=True, exist_ok=True)
    write(path, frames, format="extxyz")


def frames_to_train(geometries: Sequence[Geometry], systems: set[str], n: int,
                    seed: int) -> list[Geometry]:
    """A seeded ``n`` of the geometries of ``systems`` (the training systems), spread over as
    many relaxations as there are: one frame of each relaxation per pass, relaxations and
    their frames in seeded order (many relaxations teach more than many frames of one)."""
    by_row: dict[str, list[Geometry]] = {}
    for g in geometries:
        if g.chemsys in systems:
            by_row.setdefault(g.id.rsplit(":", 1)[0], []).append(g)
    rng = random.Random(seed)
    rows = sorted(by_row)
    rng.shuffle(rows)
    for key in rows:
        rng.shuffle(by_row[key])
    chosen: list[Geometry] = []
    depth = 0
    while len(chosen) < n and any(len(by_row[k]) > depth for k in rows):
        chosen += [by_row[k][depth] for k in rows if len(by_row[k]) > depth]
        depth += 1
    return chosen[:n]


# -- sevenn ----------------------------------------------------------------------------------------


def preset_config(train: Path, valid: Path, epochs: int, batch: int, lr: float,
                  shift_scale: bool = False, keep_epochs: bool = True) -> dict[str, Any]:
    """sevenn's fine-tune preset with the epochs, batch and learning rate given, no stress;
    ``shift_scale``: the per-element shifts and scales trained too (the preset freezes them);
    ``keep_epochs``: every epoch's checkpoint kept (else only the best and the last)."""
    import sevenn  # heavy: sevenn (torch)

    config = yaml.safe_load((Path(sevenn.__file__).parent / "presets" / PRESET).read_text())
    config["train"].update(epoch=epochs, per_epoch=1 if keep_epochs else epochs,
                           is_train_stress=False)
    config["train"]["optim_param"]["lr"] = lr
    config["model"]["train_shift_scale"] = shift_scale
    config["train"]["error_record"] = [["Energy", "RMSE"], ["Energy", "MAE"], ["Force", "RMSE"],
                                       ["TotalLoss", "None"]]
    config["data"].update(batch_size=batch, load_trainset_path=[str(train)],
                          load_validset_path=[str(valid)])
    config["data"].pop("load_testset_path", None)
    return config


def learning_curve(run: Path) -> list[dict[str, float]]:
    """sevenn's ``lc.csv``: one dict per epoch (epoch, lr, train and validation errors)."""
    path = run / "lc.csv"
    if not path.is_file():
        return []
    with path.open() as fh:
        return [{k.strip(): float(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def fine_tune(run: Path, rows: Sequence[Labelled], valid: Sequence[Labelled], epochs: int,
              batch: int, lr: float, shift_scale: bool = False, keep_epochs: bool = True,
              threads: int | None = 1) -> dict[str, Any]:
    """sevenn's command line on the preset, in ``run``; what ran, its CPU-seconds (the child's)
    and learning curve, written to ``run/done.json`` and returned. A finished run (its
    ``done.json``) is not rerun; ``run`` without it (a killed fine-tune) is removed first.
    ``threads``: the child's OMP/MKL threads (None: this process's environment)."""
    run = Path(run).resolve()  # sevenn runs inside it: every path it is given is absolute
    done = run / DONE_FILE
    if done.is_file():
        return json.loads(done.read_text())
    if run.exists():
        log.info("fine-tune: %s has no %s (a stopped run): starting again", run, DONE_FILE)
        shutil.rmtree(run)
    write_extxyz(rows, run / "train.extxyz")
    write_extxyz(valid, run / "valid.extxyz")
    config = preset_config(run / "train.extxyz", run / "valid.extxyz", epochs, batch, lr,
                           shift_scale, keep_epochs)
    (run / "input.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    # the package's own command line (the ``sevenn`` console script's module), so the
    # fine-tune is exactly sevenn's, whichever folder the script was installed to
    cmd = [sys.executable, "-m", "sevenn.main.sevenn", "train", "input.yaml", "-w", str(run)]
    env = dict(os.environ)
    if threads is not None:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    log.info("fine-tune: %s (in %s)", " ".join(cmd), run)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    with (run / "stdout.log").open("w") as fh:
        code = subprocess.run(cmd, cwd=run, env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code != 0:
        tail = (run / "stdout.log").read_text(errors="replace").strip().splitlines()[-1:]
        raise FineTuneError(f"sevenn train failed (exit {code}) in {run}: "
                            f"{tail[0] if tail else 'no output'}; see {run / 'stdout.log'}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lc = learning_curve(run)
    # sevenn's choice: the first epoch of lowest validation loss (a NaN loss is never best)
    best = min((e for e in lc if math.isfinite(e.get("validset_TotalLoss", math.nan))),
               key=lambda e: e["validset_TotalLoss"], default=None)
    out = {"structures": len(rows), "valid": len(valid), "epochs": epochs, "batch": batch,
           "lr": lr, "train_shift_scale": shift_scale, "cpu_s": cpu, "wall_s": time.time() - t0,
           "cpu_s_per_structure_epoch": cpu / max(len(rows) * epochs, 1),
           "best_epoch": int(best["epoch"]) if best else None, "learning_curve": lc,
           "command": " ".join(cmd[2:])}
    done.write_text(json.dumps(out, indent=1))
    return out


# -- the product ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SevenNetFineTuner:
    """SevenNet-0 fine-tuned through sevenn on labelled structures, written with its card.

    The defaults are those chosen on validation systems of the shipped world (``bench/
    sevennet_finetune.py``, 2026-12-07): 2,000 structures, 2 epochs, batches of 4, lr 0.001.
    Example::

        card = SevenNetFineTuner(structures=500).run(rows, Path("runs/ft"))
        card["scheme"]   # "mlip-sevennet-ft-<12 hex>"
    """

    structures: int = 2000
    epochs: int = 2
    lr: float = 0.001
    batch: int = 4
    valid: int = 40  # validation structures sevenn scores each epoch (the epoch choice)
    val_fraction: float = 0.1  # share of the compound systems held from training for that
    seed: int = 0
    threads: int | None = None  # the child's OMP threads (None: as this process has)
    frames: int = 0  # most relaxation frames (with single-point forces) beside the minima

    def __post_init__(self) -> None:
        for name in ("structures", "epochs", "batch", "valid"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.frames < 0:
            raise ValueError(f"frames must be 0 or more, not {self.frames}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, not {self.lr}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must lie between 0 and 1, not {self.val_fraction}")

    def run(self, rows: Sequence[Labelled], out: Path, source: Mapping[str, Any] | None = None,
            command: str | None = None, geometries: Sequence[Geometry] = (),
            calculator: Callable[[], Any] | None = None) -> dict[str, Any]:
        """Fine-tune on ``rows`` into ``out`` and return the card (also ``out/card.json``).

        ``source`` says where the rows came from (database and scheme, or world), for the card;
        ``command`` is the command line that asked for it. ``geometries``: relaxation frames
        of the rows, of which up to ``frames`` of training systems are labelled by the ASE
        calculator ``calculator()`` builds (the scheme's own) and trained on too. A finished
        fine-tune of the same request in ``out`` is returned as it is; one of another request
        is refused."""
        out = Path(out)
        pool, valid, val_systems = validation_split(rows, self.val_fraction, self.valid,
                                                    self.seed)
        train = training_rows(pool, self.structures, self.seed)
        if not train:
            raise FineTuneError("no structure is left to train on once the validation systems "
                                "are set aside")
        chosen = frames_to_train(geometries, {r.chemsys for r in pool}, self.frames,
                                 self.seed)
        if chosen and calculator is None:
            raise FineTuneError("frames to train on need the scheme's calculator to label them")
        request = {"settings": asdict(self) | {"threads": None},
                   "train": stable_hash(sorted(r.id for r in train)),
                   "valid": stable_hash(sorted(r.id for r in valid))}
        if chosen:  # a request without frames keeps the form older fine-tunes recorded
            request["frames"] = stable_hash(sorted(g.id for g in chosen))
        run = out / RUN_DIR
        self._claim(out, request)
        card_path, model = out / CARD_FILE, out / MODEL_FILE
        if card_path.is_file() and model.is_file():
            card = json.loads(card_path.read_text())
            if card.get("sha256") == checkpoint_sha256(model):
                log.info("fine-tune: %s is done already", out)
                return card
        framed: list[Labelled] = []
        if chosen and not (run / DONE_FILE).is_file():
            t0 = time.process_time()
            framed, dropped = label_frames(chosen, calculator())
            log.info("fine-tune: %d frames labelled by single points in %.0f CPU-s (%d left out)",
                     len(framed), time.process_time() - t0, dropped)
        ft = fine_tune(run, train + framed, valid, self.epochs, self.batch, self.lr,
                       keep_epochs=False, threads=self.threads)
        # what was trained on beyond the minima were frames (as done.json counts it, so a
        # fine-tune finished before a crash reports them too)
        ft = ft | {"frames": ft["structures"] - len(train)}
        ft["frames_dropped"] = len(chosen) - ft["frames"]
        if not (run / BEST).is_file():
            raise FineTuneError(f"sevenn wrote no {BEST} in {run}: the validation loss was never "
                                f"finite; see {run / 'log.sevenn'}")
        tmp = model.with_suffix(".tmp")
        shutil.copyfile(run / BEST, tmp)
        os.replace(tmp, model)
        card = self._card(model, ft, train, valid, val_systems, len(rows), source, command)
        tmp = card_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(card, indent=1) + "\n")
        os.replace(tmp, card_path)
        return card

    @staticmethod
    def _claim(out: Path, request: dict[str, Any]) -> None:
        """``out`` is this request's: a finished fine-tune of another request there is
        refused (it would be returned as this one); an unfinished one is started again. Of
        ``out`` only sevenn's own folder is ever removed, never what else the folder holds."""
        path, run = out / REQUEST_FILE, out / RUN_DIR
        if path.is_file() and json.loads(path.read_text()) == request:
            return
        if any(p.is_file() for p in (run / DONE_FILE, out / CARD_FILE, out / MODEL_FILE)):
            raise FineTuneError(f"{out} holds a finished fine-tune of other data or settings; "
                                "give another --out")
        if run.exists():
            shutil.rmtree(run)
        out.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(request, indent=1) + "\n")
        os.replace(tmp, path)

    def _card(self, model: Path, ft: dict[str, Any], train: Sequence[Labelled],
              valid: Sequence[Labelled], val_systems: list[str], available: int,
              source: Mapping[str, Any] | None, command: str | None) -> dict[str, Any]:
        sha = checkpoint_sha256(model)
        elements = sorted({el for r in train for el in r.chemsys.split("-")})
        return {
            "model": "SevenNet-0 fine-tuned through sevenn",
            "checkpoint": MODEL_FILE,
            "sha256": sha,
            "scheme": sevennet_scheme(str(model)),
            "campaign_config": campaign_line(model),
            "command": command,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "source": dict(source or {}),
            "data": {
                "available": available,
                "train": len(train),
                "train_elemental": sum(r.elemental for r in train),
                "train_systems": len({r.chemsys for r in train}),
                "valid": len(valid),
                "validation_systems": val_systems,
                "frames": ft.get("frames", 0),
                "frames_left_out": ft.get("frames_dropped", 0),
                "labels": "total energy of the relaxed structure, forces zero; of a frame, its "
                          "single point's energy and forces; no stress",
            },
            "elements": elements,
            "base": "SevenNet-0_11July2024 (sevenn preset " + PRESET + ")",
            "epochs": self.epochs,
            "best_epoch": ft["best_epoch"],
            "lr": self.lr,
            "batch": self.batch,
            "seed": self.seed,
            "learning_curve": ft["learning_curve"],
            "cpu_s": ft["cpu_s"],
            "wall_s": ft["wall_s"],
            "sevenn_version": installed_version("sevenn"),
            "torch_version": installed_version("torch"),
            "sevenn_command": ft.get("command"),
            "run_dir": RUN_DIR,
        }


def campaign_line(model: Path) -> str:
    """The campaign-config line that makes ``model`` the mlip stage's potential."""
    path = json.dumps(str(Path(model).resolve()))  # a YAML double-quoted string
    return f"mlip_engine: {{name: sevennet, options: {{model: {path}}}}}"


def selected(rows: Sequence[Labelled], exclude: Sequence[str] = ()) -> list[Labelled]:
    """``rows`` without those of the chemical systems named in ``exclude`` (any element order;
    by name, as calibrations exclude systems)."""
    drop = {canonical_chemsys(s) for s in exclude}
    return [r for r in rows if r.chemsys not in drop]
