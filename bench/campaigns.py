"""Campaigns whose hit rate rises, measured: the active-learning loop replayed on the world's
held-out systems.

    .venv/bin/python bench/campaigns.py                      # 5 rounds x 3 seeds, both starts
    .venv/bin/python bench/campaigns.py --rounds 3 --seeds 1 --budget 10 --epochs 20 --members 2
    .venv/bin/python bench/campaigns.py --model path/to/ensemble.pt --workers 2

What is replayed (``gnomon.campaign.simulate``, the machinery behind ``gnomon campaign
simulate``): the candidate pool is every structure of the world's *held-out* chemical
systems, which no model here was trained on. Each round the ensemble screens the pool's
*unrelaxed* inputs, a policy picks a fixed budget, and the oracle's labels (CHGNet's relaxed
energies, already in the world) are revealed. Known from the start: the elemental references
and the entries of the *training* systems inside the held-out systems' chemical spaces (the
binaries of a held-out ternary, say), as a campaign starts from the phases its database
already holds. With ``--known first-build`` the held-out systems' own phases of the world's
first build (waves 1-2: SAPS on prototypes, random search, SAPS on the first wave's
compounds) are known too, as GNoME started from Materials Project's hull, and the pool is
what waves 3 and 4 made by substituting into the world's compounds.

* **Policies:** random (the baseline), greedy (lowest predicted e_above_hull) and uncertainty
  (mean - k*sigma, k = ``--k``).
* **Starts:** from scratch (round 0 a random draw, then a fresh ensemble each round) and from
  the pretrained model (``--model``; default the shipped ``gnomon/data/pretrained/*.pt``):
  round 0 screened by it, each later round fine-tuning the previous round's ensemble.
* **Hit rate** of a round: share of its picks with e_above_hull <= 0 against the hull of what
  was known before the round. **Stable per 100 oracle calls:** picks on the whole world's hull
  (the world's own e_above_hull), per 100 picks so far.

Prints mean ± standard deviation over seeds, the ratio to random (ratio of the means) and the
issue's goal as measured (pretrained + uncertainty at least 5x random in every round from
round 1, and round 4 above round 0); writes ``bench/results/campaigns.json``,
``campaigns_hit_rate.png`` and ``campaigns_stable_per_100.png`` (with ``--known first-build``:
``campaigns-first-build.json`` and ``*-first-build.png``). Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from gnomon.world.files import default_world_dir
from gnomon.world.replay import KNOWN_AT_START, campaign_data

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PRETRAINED_DIR = HERE.parent / "gnomon" / "data" / "pretrained"
log = logging.getLogger("campaigns")


# -- data (the pool: gnomon.world.replay.campaign_data) -------------------------------------
def default_model() -> Path | None:
    """The shipped model's weights: the file its card names (older versions may lie beside it)."""
    card = PRETRAINED_DIR / "card.json"
    if not card.is_file():
        return None
    weights = PRETRAINED_DIR / json.loads(card.read_text())["weights"]
    return weights if weights.is_file() else None


# -- runs -------------------------------------------------------------------------------------
_DATA: dict[str, Any] = {}


def _run(job: dict[str, Any]) -> dict[str, Any]:
    """One campaign (start, policy, seed); loads the world once per process."""
    import torch

    from gnomon.campaign.simulate import simulate

    torch.set_num_threads(1)
    key = (job["world"], job["systems"], job["known"])
    if _DATA.get("key") != key:
        _DATA.clear()
        _DATA.update(campaign_data(Path(job["world"]), job["systems"], job["known"]), key=key)
    data = _DATA
    t0 = time.perf_counter()
    r = simulate(
        data["labels"],
        job["policy"],
        rounds=job["rounds"],
        budget=job["budget"],
        initial=0,
        seed=job["seed"],
        policy_options={"k": job["k"]} if job["policy"] == "uncertainty" else {},
        model_options=job["model_options"],
        reference=data["reference"],
        initial_model=job["model"],
        stable=data["stable"],
    )
    out = r.as_dict()
    out.update(start=job["start"], seed=job["seed"], seconds=time.perf_counter() - t0)
    log.info(
        "%s/%s seed %d: hit rate %s, %d stable found in %d calls (%.0f s)",
        job["start"],
        job["policy"],
        job["seed"],
        out["hit_rate"],
        out["stable_found"][-1] if out["stable_found"] else 0,
        out["evaluations"][-1] if out["evaluations"] else 0,
        out["seconds"],
    )
    return out


def jobs(args: argparse.Namespace, model: Path | None) -> list[dict[str, Any]]:
    """Random runs once per seed (they never use a model, so both starts share them)."""
    common = {
        "world": str(args.world),
        "systems": args.systems,
        "known": args.known,
        "rounds": args.rounds,
        "budget": args.budget,
        "k": args.k,
        "model_options": {
            "ensemble_size": args.members,
            "hidden": args.hidden,
            "layers": args.layers,
            "max_epochs": args.epochs,
            "patience": args.patience,
        },
    }
    out = []
    starts = [("scratch", None)] + ([("pretrained", str(model))] if model is not None else [])
    for seed in range(args.seeds):
        for policy in args.policies:
            for start, path in starts if policy != "random" else [("any", None)]:
                out.append(
                    {**common, "policy": policy, "start": start, "model": path, "seed": seed}
                )
    return out


# -- summaries --------------------------------------------------------------------------------
def _series(runs: list[dict[str, Any]], field: str, rounds: int) -> np.ndarray:
    """(seeds, rounds) array of a per-round figure; NaN where a run has no value."""
    arr = np.full((len(runs), rounds), np.nan)
    for i, r in enumerate(runs):
        for j, v in enumerate(r[field][:rounds]):
            arr[i, j] = np.nan if v is None else v
    return arr


def _per_100(r: dict[str, Any]) -> list[float]:
    return [
        100.0 * s / e if e else float("nan")
        for s, e in zip(r["stable_found"], r["evaluations"], strict=True)
    ]


def summarise(results: list[dict[str, Any]], rounds: int) -> dict[str, dict[str, Any]]:
    """Per (start, policy): mean and std over seeds of hit rate and stable per 100 calls."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        groups[r["policy"] if r["policy"] == "random" else f"{r['start']}/{r['policy']}"].append(r)
    out = {}
    for name, runs in groups.items():
        hits = _series(runs, "hit_rate", rounds)
        per100 = _series([{**r, "per100": _per_100(r)} for r in runs], "per100", rounds)
        with warnings.catch_warnings():  # all-NaN rounds (no pick judged) average to NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            out[name] = {
                "seeds": len(runs),
                "hit_mean": np.nanmean(hits, 0),
                "hit_std": np.nanstd(hits, 0),
                "per100_mean": np.nanmean(per100, 0),
                "per100_std": np.nanstd(per100, 0),
                "evaluations": runs[0]["evaluations"],
                "n_stable_total": runs[0]["n_stable_total"],
                "seconds": float(np.mean([r["seconds"] for r in runs])),
            }
    return out


def _pm(mean: float, std: float, fmt: str = "{:.2f}") -> str:
    return "–" if not np.isfinite(mean) else f"{fmt.format(mean)} ± {fmt.format(std)}"


def print_tables(summary: dict[str, dict[str, Any]], rounds: int, title: str) -> list[str]:
    """The three tables; returns the goal lines (also printed)."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=200)
    order = sorted(summary, key=lambda n: (n != "random", n))
    rand = summary.get("random")
    hit = Table(
        title=f"hit rate per round (e_above_hull <= 0 vs the hull before the round), {title}"
    )
    hit.add_column("start/policy")
    for j in range(rounds):
        hit.add_column(f"round {j}", justify="right")
    hit.add_column("seeds", justify="right")
    hit.add_column("s/run", justify="right")
    for n in order:
        s = summary[n]
        hit.add_row(
            n,
            *[_pm(s["hit_mean"][j], s["hit_std"][j]) for j in range(rounds)],
            str(s["seeds"]),
            f"{s['seconds']:.0f}",
        )
    console.print(hit)
    ratio = Table(title="hit rate / random hit rate (ratio of the means over seeds)")
    ratio.add_column("start/policy")
    for j in range(rounds):
        ratio.add_column(f"round {j}", justify="right")
    for n in order:
        if n == "random" or rand is None:
            continue
        r = summary[n]["hit_mean"] / np.where(rand["hit_mean"] > 0, rand["hit_mean"], np.nan)
        ratio.add_row(n, *["–" if not np.isfinite(v) else f"{v:.1f}x" for v in r])
    console.print(ratio)
    per100 = Table(
        title="stable phases found (on the world's hull) per 100 oracle calls, cumulative"
    )
    per100.add_column("start/policy")
    for j in range(rounds):
        per100.add_column(f"after round {j}", justify="right")
    per100.add_column("stable in pool", justify="right")
    for n in order:
        s = summary[n]
        per100.add_row(
            n,
            *[_pm(s["per100_mean"][j], s["per100_std"][j], "{:.1f}") for j in range(rounds)],
            str(s["n_stable_total"]),
        )
    console.print(per100)
    goals = []
    best = summary.get("pretrained/uncertainty")
    if best is None or rand is None:
        goals.append(
            "goal not measured: needs the pretrained start, the uncertainty policy and random"
        )
    else:
        r = best["hit_mean"] / np.where(rand["hit_mean"] > 0, rand["hit_mean"], np.nan)
        later = r[1:]
        ok5 = bool(len(later)) and bool(np.all(np.isfinite(later) & (later >= 5.0)))
        goals.append(
            f"goal: pretrained+uncertainty >= 5x random in every round from round 1: "
            f"{'met' if ok5 else 'not met'} (ratios {', '.join(f'{v:.1f}' for v in later)})"
        )
        if rounds > 4:
            h = best["hit_mean"]
            goals.append(
                f"goal: round 4 hit rate above round 0: {'met' if h[4] > h[0] else 'not met'} "
                f"({h[4]:.2f} vs {h[0]:.2f})"
            )
        else:
            goals.append("goal: round 4 above round 0: not measured (fewer than 5 rounds)")
    for g in goals:
        console.print(g)
    return goals


def plot(
    summary: dict[str, dict[str, Any]], rounds: int, title: str, suffix: str = ""
) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    RESULTS.mkdir(parents=True, exist_ok=True)
    x = np.arange(rounds)
    paths = []
    for field, ylabel, name in (
        ("hit", "hit rate (vs hull before the round)", "campaigns_hit_rate.png"),
        ("per100", "stable found per 100 oracle calls", "campaigns_stable_per_100.png"),
    ):
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for n in sorted(summary, key=lambda n: (n != "random", n)):
            s = summary[n]
            style = (
                "--" if n.startswith("scratch") else ("-" if n.startswith("pretrained") else ":")
            )
            ax.errorbar(
                x, s[f"{field}_mean"], yerr=s[f"{field}_std"], fmt="o" + style, capsize=3, label=n
            )
        ax.set(xlabel="round", ylabel=ylabel, xticks=x)
        ax.set_title(title.replace("; ", "\n", 1), fontsize=9)
        if field == "hit":
            ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = RESULTS / name.replace(".png", f"{suffix}.png")
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--budget", type=int, default=20, help="oracle calls per round")
    ap.add_argument("--policies", default="random,greedy,uncertainty")
    ap.add_argument("--k", type=float, default=1.0, help="uncertainty policy: mean - k*sigma")
    ap.add_argument(
        "--model",
        default="default",
        help="initial ensemble (.pt) for the pretrained start; 'default': the shipped "
        "gnomon/data/pretrained/*.pt; 'none': from scratch only",
    )
    ap.add_argument("--epochs", type=int, default=60, help="max epochs per (re)training")
    ap.add_argument("--patience", type=int, default=10)
    ap.add_argument("--members", type=int, default=5, help="ensemble members trained each round")
    ap.add_argument("--hidden", type=int, default=48, help="from scratch: hidden width")
    ap.add_argument("--layers", type=int, default=3, help="from scratch: message-passing layers")
    ap.add_argument(
        "--systems", type=int, default=None, help="use only the first N held-out systems"
    )
    ap.add_argument("--workers", type=int, default=1, help="campaigns run in parallel processes")
    ap.add_argument(
        "--known",
        choices=KNOWN_AT_START,
        default="elements",
        help="known before round 0 besides the training systems' entries: the "
        "elements only, or also the held-out systems' first-build phases",
    )
    ap.add_argument(
        "--world",
        type=Path,
        default=default_world_dir(),
        help="folder with world.jsonl.gz, heldout.json",
    )
    args = ap.parse_args(argv)
    args.policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for name in ("gnomon", "pymatgen"):
        logging.getLogger(name).setLevel(logging.WARNING)

    model = (
        default_model()
        if args.model == "default"
        else (None if args.model == "none" else Path(args.model))
    )
    if args.model == "default" and model is None:
        print(f"no pretrained model under {PRETRAINED_DIR}: from scratch only")
    data = campaign_data(args.world, args.systems, args.known)
    title = (
        f"{len(data['held'])} held-out systems, {data['n_pool']} candidates, "
        f"{len(data['stable'])} stable, "
        f"known at start: {args.known}; "
        f"{args.rounds} rounds x {args.budget} calls; {args.seeds} seeds"
    )
    print(
        f"world: {data['n_world']} structures; pool {data['n_pool']} in {', '.join(data['held'])}; "
        f"{len(data['reference'])} reference entries known from the start; model: {model or 'none'}"
    )
    todo = jobs(args, model)
    t0 = time.perf_counter()
    if args.workers > 1:
        import multiprocessing as mp

        with ProcessPoolExecutor(args.workers, mp_context=mp.get_context("spawn")) as pool:
            results = list(pool.map(_run, todo))
    else:
        results = [_run(job) for job in todo]
    print(f"{len(todo)} campaigns in {time.perf_counter() - t0:.0f} s")
    summary = summarise(results, args.rounds)
    goals = print_tables(summary, args.rounds, title)
    suffix = "" if args.known == "elements" else f"-{args.known}"
    pngs = plot(summary, args.rounds, title, suffix)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"campaigns{suffix}.json"
    out.write_text(
        json.dumps(
            {
                "date": time.strftime("%Y-%m-%d"),
                "args": {**vars(args), "world": str(args.world)},
                "model": str(model) if model else None,
                "title": title,
                "goals": goals,
                "held_out_systems": data["held"],
                "runs": results,
            },
            indent=1,
            default=str,
        )
    )
    print(f"results: {out}; plots: {', '.join(str(p) for p in pngs)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
