"""A toy benchmark world and a tiny pretrained model made from it by `gnomon model pretrain`, for
the tests of the shipped-model plumbing (never the weights gnomon ships)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from pymatgen.core import Lattice, Structure
from typer.testing import CliRunner

from gnomon.cli import app
from tests.models.conftest import REFS, toy_energy, toy_structures

ROOT = Path(__file__).resolve().parents[2]
HELD_OUT = ["Br-Na", "K-O"]  # canonical: elements sorted


def write_toy_world(folder: Path, n: int = 90, seed: int = 5) -> Path:
    """world.jsonl.gz, heldout.json and manifest.json as `gnomon world` lays them out, labelled
    with the toy energy (elements included, so every system has a hull)."""
    folder.mkdir(parents=True, exist_ok=True)
    structures = toy_structures(n, seed=seed)
    structures += [Structure(Lattice.cubic(a), [el], [[0, 0, 0]])
                   for el in REFS for a in (2.3, 2.5)]
    rows = []
    for i, s in enumerate(structures):
        start = s.copy()
        start.scale_lattice(s.volume * 1.1)
        energy = toy_energy(s) * len(s)
        generator = "element" if len(s.composition.elements) == 1 else "saps"
        rows.append({"id": f"toy-{i}", "chemsys": s.composition.chemical_system,
                     "generator": generator,
                     "relaxed": s.as_dict(), "unrelaxed": start.as_dict(), "energy": energy,
                     "energy_per_atom": energy / len(s)})
    with gzip.open(folder / "world.jsonl.gz", "wt") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    (folder / "heldout.json").write_text(json.dumps({"systems": HELD_OUT}))
    manifest = {"built": "2026-01-01", "oracle": {"model": "toy"}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def run_pretrain(world: Path, out: Path, *extra: str) -> Path:
    """`gnomon model pretrain` on ``world``, writing the model and card to ``out``."""
    args = ["--world", str(world), "--out", str(out), "--ensemble", "2", "--epochs", "3",
            "--patience", "3", "--hidden", "8", "--layers", "1", "--cutoff", "4.0",
            "--batch-size", "16", "--val-fraction", "0.3", "--threads", "1", "--device", "cpu"]
    run = CliRunner().invoke(app, ["model", "pretrain", *args, *extra])
    assert run.exit_code == 0, run.output
    return out
