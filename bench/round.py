"""A campaign round at scale, run end to end: 10^6 generated candidates through the funnel.

    nice -n 10 .venv/bin/python bench/round.py --candidates 10000     # a few minutes
    nice -n 10 .venv/bin/python bench/round.py                        # 10^6; resumable

The round is the product's own (``gnomon.campaign.steps``, what ``gnomon campaign run`` and
the Prefect flow call), with the streaming funnel on (``funnel.enabled``): its ``references``
step relaxes the elemental references with the campaign's engine (CHGNet), then its ``dedup``
step pulls SAPS's lazy stream over every chemical system of up to ``--max-arity`` (4) of the
elements (AFLOW prototypes of at most ``--template-sites`` sites, ionic substitution probability at
least ``--threshold``, no cap per template) through the physical check, exact dedup (seen
store on disk), the screen (the shipped pretrained 5-model ensemble against the stored hull,
one torch thread) and stores the candidates whose predicted e_above_hull minus one σ is at
most ``--e-above-hull`` with their predictions, chunk by chunk, in a SQLite database in
``--home``. The campaign's hull holds only the elemental references (``known_phases`` off:
relaxing the shipped known phases of a 40-element space would take hours), so e_above_hull is
the formation energy here, and the default threshold, -3 eV/atom, passes 1-4 % of the
screened candidates, the few per cent a hull of known phases passes in GNoME's funnel (with
0.0, 90 % passed in a 10^4 run). The ``screen`` step then finds them predicted. The round
stops there: selection and relaxation of the stored candidates is not what this measures
(and would relax thousands of structures). The random search is off: pyxtal makes about 2
structures a second.

Resumable: the same command continues a killed run. Done steps are skipped; the funnel goes on
from its last checkpoint (``funnel-checkpoint.json`` in the round's run folder), regenerating
the seeded stream up to it but deduplicating, screening and storing nothing twice. The CPU and
wall seconds per stage are the funnel's own counts, summed over every run of the step; peak RSS
is this process's (and its children's, the references' relaxations), per run.

Prints one markdown table; a JSON summary of each run goes to ``<home>/round-runs.jsonl``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported: one core
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402 - after the thread settings above
import json  # noqa: E402
import logging  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from gnomon.campaign.steps import STEP_FUNCTIONS, RoundContext, run_step  # noqa: E402
from gnomon.config import CampaignConfig, Settings  # noqa: E402
from gnomon.storage import Candidate  # noqa: E402
from gnomon.storage.chemsys import arity  # noqa: E402

#: a 40-element space (cations of oxides, chalcogenides and halides, and their anions; every
#: one known to the shipped model and in ase's dcdft references): 10,660 systems of 2-3 elements
ELEMENTS = [
    "Li", "Na", "K", "Rb", "Cs", "Si", "Mg", "Ca", "Sr", "Ba", "Sc", "Y", "Ge", "Ti",
    "Zr", "Hf", "V", "Nb", "Ta", "Cr", "Mo", "W", "Mn", "Fe", "Co", "Ni", "Cu", "Zn",
    "Cd", "Al", "Ga", "In", "Sn", "Pb", "Bi", "O", "S", "Se", "F", "Cl",
]  # fmt: skip
STEPS = ("references", "generate", "dedup", "screen")
STAGES = ("generate", "dedup", "screen", "store")


def config(args: argparse.Namespace) -> CampaignConfig:
    return CampaignConfig(
        name=f"bench-round-{args.candidates}",
        elements=ELEMENTS,
        max_arity=args.max_arity,
        known_phases=False,
        seed=args.seed,
        saps={
            "max_candidates": args.candidates,
            "max_template_sites": args.template_sites,
            "max_per_template": None,
            "threshold": args.threshold,
        },
        random_search={"enabled": False},
        funnel={
            "enabled": True,
            "chunk_size": args.chunk_size,
            "max_generated": args.candidates,
            "e_above_hull": args.e_above_hull,
        },
    )


def peak_rss_gb() -> tuple[float, float]:
    """This process's and its waited-for children's peak resident memory (GB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
    return own, children


def stored(ctx: RoundContext) -> dict[str, int]:
    """What the round stored, by kind."""
    repo = ctx.repo
    by_generator: Counter[str] = Counter()
    by_arity: Counter[int] = Counter()
    for c in repo.query(Candidate, {"campaign": ctx.campaign, "round": ctx.index}):
        by_generator[c.generator] += 1
        if c.generator not in ("reference", "known"):
            by_arity[arity(c.chemsys)] += 1
    out = {f"candidates ({g})": n for g, n in sorted(by_generator.items())}
    out |= {f"  of {k} elements": n for k, n in sorted(by_arity.items())}
    for table in ("predictions", "calculations", "entries", "phases"):
        out[table] = repo.count(table)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--candidates", type=int, default=1_000_000, help="generated (default 10^6)")
    ap.add_argument(
        "--home",
        type=Path,
        help="gnomon home (default ~/.cache/gnomon-bench/round-N-sS-tT-aA: a space of its own)",
    )
    ap.add_argument("--chunk-size", type=int, default=1000)
    # over systems of up to 3 of the 40 elements, 10 sites at 0.001 ran out at 292,964
    # candidates and 16 sites at 0.0001 at 450,332 (2026-12-07): 10^6 needs quaternaries.
    # With four species SAPS first held every substitution map (16.6 GB), then every outcome
    # of a template (8 GB after 1,000 candidates); both now stream (2026-12-07)
    ap.add_argument("--template-sites", type=int, default=16)
    ap.add_argument("--threshold", type=float, default=0.0001)
    ap.add_argument("--max-arity", type=int, default=4, help="elements per system, at most")
    ap.add_argument(
        "--e-above-hull",
        type=float,
        default=-3.0,
        help="eV/atom: store a candidate when its predicted e_above_hull - sigma is at most this "
        "(default -3.0: the hull holds only the elemental references, so this is a formation "
        "energy; it keeps 1-4 %% of the screened, as a hull of known phases would)",
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    home = args.home or Path.home() / ".cache" / "gnomon-bench" / (
        f"round-{args.candidates}-s{args.template_sites}-t{args.threshold:g}-a{args.max_arity}"
    )
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    for name in ("gnomon.campaign.steps", "__main__"):
        logging.getLogger(name).setLevel(logging.INFO)
    logging.getLogger("gnomon.campaign.steps.funnel").setLevel(logging.DEBUG)  # progress
    warnings.filterwarnings("ignore", message=".*ionic radius.*")
    torch.set_num_threads(1)

    cfg = config(args)
    ctx = RoundContext(Settings(home=home), cfg, 0)
    run: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "load_start": os.getloadavg()[0]}
    steps: dict[str, dict[str, float]] = {}
    try:
        for step in STEPS:
            done = ctx.round().steps.get(step) == "done"
            cpu, wall = time.process_time(), time.perf_counter()
            run_step(ctx, step, STEP_FUNCTIONS[step])
            steps[step] = {
                "cpu": time.process_time() - cpu,
                "wall": time.perf_counter() - wall,
                "already_done": done,
            }
            logging.getLogger(__name__).info("step %s: %s", step, steps[step])
        outputs = ctx.round().outputs
        what = stored(ctx)
    finally:
        ctx.close()
    own, children = peak_rss_gb()
    run |= {
        "ended": time.strftime("%Y-%m-%d %H:%M:%S"),
        "load_end": os.getloadavg()[0],
        "steps": steps,
        "peak_rss_gb": own,
        "children_peak_rss_gb": children,
    }
    with open(home / "round-runs.jsonl", "a") as f:
        f.write(json.dumps(run) + "\n")
    report(args, home, outputs, what, run)


def report(args, home: Path, outputs: dict, what: dict[str, int], run: dict) -> None:
    f = outputs["dedup"]["funnel"]
    runs = [json.loads(line) for line in (home / "round-runs.jsonl").read_text().splitlines()]
    got = outputs["dedup"]["generated"]
    short = "" if got >= args.candidates else f" (the stream ran out at {got:,})"
    print(
        f"\ngnomon round benchmark: {args.candidates:,} candidates asked for{short}, one "
        f"process, 1 torch thread "
        f"({run['started']} - {run['ended']}, load average {run['load_start']:.1f} -> "
        f"{run['load_end']:.1f} on {os.cpu_count()} cores; {len(runs)} run(s) of this command "
        f"in {home})\n"
    )
    print("| stage | CPU s | wall s | per generated candidate (CPU) |\n|---|---|---|---|")
    n = max(f["generated"], 1)
    for stage in STAGES:
        cpu, wall = f["seconds"][stage], f.get("wall", {}).get(stage, float("nan"))
        print(f"| funnel: {stage} | {cpu:,.0f} | {wall:,.0f} | {cpu / n * 1e3:.2f} ms |")
    cpu, wall = sum(f["seconds"].values()), sum(f.get("wall", {}).values())
    print(f"| funnel, all stages | {cpu:,.0f} | {wall:,.0f} | {cpu / n * 1e3:.2f} ms |")
    for step in STEPS:
        s = run["steps"][step]
        note = " (done by an earlier run)" if s["already_done"] else ""
        print(f"| step {step}, this run{note} | {s['cpu']:,.0f} | {s['wall']:,.0f} | |")
    print(
        f"| peak RSS, this run | {run['peak_rss_gb']:.2f} GB (children "
        f"{run['children_peak_rss_gb']:.2f} GB); all runs: "
        f"{max(r['peak_rss_gb'] for r in runs):.2f} GB | | goal <= 3 GB |"
    )
    print("\n| count | n |\n|---|---|")
    rows = {
        "generated (pulled from the stream)": outputs["dedup"]["generated"],
        "duplicates (exact dedup)": f["duplicates"],
        "screened": f["screened"],
        "unscreenable": f["unscreenable"],
        f"passed (e_above_hull - sigma <= {f['e_above_hull']} eV/atom) and stored": f["passed"],
        "resumed (stored by a killed run after its last checkpoint)": f["resumed"],
        "chunks / most held at once": f"{f['chunks']} / {f['max_buffered']}",
        "physical check": f.get("physical", {}),
        "screen step: predictions found": outputs["screen"].get("screened"),
    }
    for k, v in {**rows, **{f"stored: {k}": v for k, v in what.items()}}.items():
        print(f"| {k} | {v:,} |" if isinstance(v, int) else f"| {k} | {v} |")
    if f["reasons"]:
        print(f"\nunscreenable, by reason: {f['reasons']}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
