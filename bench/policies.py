"""Selection policies compared on a labelled set: stable phases found per 100 evaluations.

    .venv/bin/python bench/policies.py            # builds (once) and replays a labelled set
    .venv/bin/python bench/policies.py --rounds 4 --budget 15

The labelled set is made here: SAPS candidates from pymatgen's prototype library in a few
chemical spaces plus elemental references, labelled with CHGNet's energy of the given
structure (static, no relaxation, so it builds in a minute or two). It is cached under
bench/results/. Then `gnomon.campaign.simulate` replays the loop with each policy, same seeds,
in the same run: random (the baseline), greedy on predicted e_above_hull, and
uncertainty-aware (mean - k*sigma).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).resolve().parent / "results"
SPACES = (("Li", "Mn", "O"), ("Na", "Fe", "S"), ("Mg", "Al", "O"))


def build_labels(path: Path, per_space: int, seed: int) -> Path:
    import warnings

    from ase.collections import dcdft
    from chgnet.model import CHGNet
    from pymatgen.core import Structure
    from pymatgen.entries.computed_entries import ComputedStructureEntry
    from pymatgen.io.ase import AseAtomsAdaptor

    from gnomon.pipeline.generation.saps import SAPSGenerator
    from gnomon.pipeline.generation.templates import prototype_templates

    structures: list[Structure] = []
    for space in SPACES:
        structures += [AseAtomsAdaptor.get_structure(dcdft[el]) for el in space]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gen = SAPSGenerator(
                elements=space, max_species=len(space), max_per_template=10, seed=seed
            )
            for c in gen.generate(prototype_templates(max_sites=8, max_species=3), limit=per_space):
                structures.append(Structure.from_dict(c.structure))
    model = CHGNet.load(verbose=False)
    preds = model.predict_structure(structures, task="e", batch_size=32)
    entries = [
        ComputedStructureEntry(s, float(p["e"]) * len(s)).as_dict()
        for s, p in zip(structures, preds, strict=True)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entries))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--per-space", type=int, default=150)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--budget", type=int, default=15)
    ap.add_argument("--initial", type=int, default=30)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--ensemble", type=int, default=3)
    args = ap.parse_args()
    console = Console()
    import torch

    torch.set_num_threads(1)
    from gnomon.campaign.simulate import load_labels, simulate

    labels_path = RESULTS / f"labels-{args.per_space}.json"
    if not labels_path.exists():
        t0 = time.perf_counter()
        build_labels(labels_path, args.per_space, seed=0)
        console.print(f"labelled set built in {time.perf_counter() - t0:.0f} s: {labels_path}")
    labels = load_labels(labels_path)
    rows = []
    for policy in ("random", "greedy", "uncertainty"):
        found, evals, hits, secs = [], [], [], []
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            r = simulate(
                labels,
                policy,
                rounds=args.rounds,
                budget=args.budget,
                initial=args.initial,
                seed=seed,
                policy_options={"k": 1.0} if policy == "uncertainty" else {},
                model_options={"ensemble_size": args.ensemble, "max_epochs": 120, "patience": 15},
            )
            secs.append(time.perf_counter() - t0)
            found.append(r.stable_found[-1])
            evals.append(r.evaluations[-1])
            hits += [h for h in r.hits if h is not None]
            total = r.n_stable_total
        rows.append(
            (
                policy,
                sum(evals) / len(evals),
                sum(found) / len(found),
                100 * sum(found) / max(sum(evals), 1),
                sum(hits) / max(len(hits), 1),
                sum(secs) / len(secs),
            )
        )
    table = Table(
        title=f"bench/policies.py: {len(labels)} labelled structures, {total} stable compounds; "
        f"{args.rounds} rounds x {args.budget}, {args.initial} known at start, "
        f"mean of {args.seeds} seeds"
    )
    for h in (
        "policy",
        "evaluations",
        "stable found",
        "stable per 100 evaluations",
        "mean hit rate",
        "time (s)",
    ):
        table.add_column(h, justify="right")
    for p, e, f, per100, hit, t in rows:
        table.add_row(p, f"{e:.0f}", f"{f:.1f}", f"{per100:.1f}", f"{hit:.2f}", f"{t:.0f}")
    console.print(table)


if __name__ == "__main__":
    main()
