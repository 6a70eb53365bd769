"""Campaign reports: Markdown with per-round metrics, curves and hull diagrams as PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from gnomon.config import CampaignConfig, Settings  # noqa: E402
from gnomon.pipeline.thermo.hull import HullEngine  # noqa: E402
from gnomon.pipeline.thermo.known import phase_origins  # noqa: E402
from gnomon.pipeline.thermo.phase_query import PhaseQuery  # noqa: E402
from gnomon.storage import Repository, Round  # noqa: E402

METRIC_COLUMNS = (
    ("round", "round"), ("policy", "policy"), ("generated", "generated"), ("unique", "unique"),
    ("screened", "screened"), ("passed_screen", "passed screen"), ("selected", "selected"), ("relaxed", "relaxed"), ("failed", "failed"),
    ("hit_rate", "hit rate"), ("hit_rate_25meV", "hit rate (25 meV)"), ("new_stable", "new stable"),
    ("mae", "MAE (eV/atom)"), ("sigma_coverage_1", "±1σ coverage"),
)


def campaign_rounds(repo: Repository, campaign: str) -> list[Round]:
    return sorted(repo.query(Round, {"campaign": campaign}), key=lambda r: r.index)


def metric_rows(repo: Repository, campaign: str) -> list[dict[str, Any]]:
    return [{"round": r.index, **r.metrics} for r in campaign_rounds(repo, campaign) if r.metrics]


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def screening_lines(repo: Repository, rows: list[dict[str, Any]]) -> list[str]:
    """One line per round naming the model that screened it, and where that model came from
    (``round 0 screened by pretrained-mlip-chgnet-0.3.0-v1, the pretrained model shipped with
    gnomon``); a round without one says its selection was random."""
    from gnomon.storage import ModelVersion

    lines = []
    for r in rows:
        version = r.get("model_version")
        if not version:
            lines.append(f"- round {r['round']}: not screened by a model (selection `{r.get('policy')}`)")
            continue
        record = repo.get(ModelVersion, version)
        origin = ""
        if record is not None and record.config.get("pretrained"):
            origin = ", the pretrained model shipped with gnomon"
        elif record is not None and record.config.get("retrain") == "transfer":
            origin = f", the pretrained `{record.parent}` carried over to `{record.scheme}`"
        elif record is not None and record.parent:
            origin = f", fine-tuned from `{record.parent}`"
        lines.append(f"- round {r['round']} screened by `{version}`{origin}")
    return lines


def _curves(rows: list[dict[str, Any]], path: Path) -> None:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
    xs = [r["round"] for r in rows]
    for key, label in (("hit_rate", "E_hull ≤ 0"), ("hit_rate_25meV", "E_hull ≤ 25 meV")):
        ax1.plot(xs, [r.get(key) if r.get(key) is not None else float("nan") for r in rows], "o-", label=label)
    ax1.set_xlabel("round")
    ax1.set_ylabel("hit rate (vs. hull before round)")
    ax1.set_ylim(-0.05, 1.05)
    ax1.legend()
    ax2.plot(xs, [r.get("mae") if r.get("mae") is not None else float("nan") for r in rows], "s-", color="C3")
    ax2.set_xlabel("round")
    ax2.set_ylabel("MAE on new results (eV/atom)")
    for ax in (ax1, ax2):
        ax.set_xticks(xs)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(repo: Repository, settings: Settings, config: CampaignConfig, out: Path | None = None) -> Path:
    """Write ``report.md`` (and its PNGs) for a campaign; returns the Markdown path."""
    from gnomon.dft.engine import make_engine
    from gnomon.pipeline.thermo.plots import plot_hull

    out = Path(out or settings.home / "reports" / config.name)
    out.mkdir(parents=True, exist_ok=True)
    scheme = make_engine(config.engine.name, settings, **config.engine.options).scheme
    rows = metric_rows(repo, config.name)
    lines = [f"# Campaign {config.name}", "",
             f"Chemical space **{config.chemsys}**, energy scheme `{scheme}`, "
             f"policy `{config.selection.policy}`, budget {config.selection.budget} relaxations per round.", ""]
    lines += ["## Rounds", "", "| " + " | ".join(h for _, h in METRIC_COLUMNS) + " |",
              "|" + "---|" * len(METRIC_COLUMNS)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(k)) for k, _ in METRIC_COLUMNS) + " |")
    lines.append("")
    if rows:
        lines += ["Screening models:", "", *screening_lines(repo, rows), ""]
        _curves(rows, out / "metrics.png")
        lines += ["![hit rate and MAE per round](metrics.png)", ""]
    from gnomon.campaign.reports.systems import system_section

    lines += system_section(repo, config, scheme)
    stable = PhaseQuery(chemsys=config.chemsys, scheme=scheme, stable=True).run(repo)
    origins = phase_origins(repo, stable)
    found = [r for r, origin in zip(stable, origins, strict=True) if origin == "campaign"]
    from gnomon.pipeline.thermo.novelty import novelty_of_rows, novelty_text

    novelty = novelty_of_rows(repo, found)  # new / known / ordering of a known disordered phase
    lines += ["## Stable phases", "", f"{len(stable)} phases on the hull of {config.chemsys}; "
              f"{len(found)} compounds found by this campaign.", "",
              "| formula | chemsys | E_f (eV/atom) | decomposition energy (eV/atom) | novelty (AMD to nearest known) | id |",
              "|---|---|---|---|---|---|"]
    for r, origin in zip(stable, origins, strict=True):
        lines.append(f"| {r['formula']} | {r['chemsys']} | {_fmt(r['formation_energy_per_atom'])} | "
                     f"{_fmt(r['decomposition_energy'])} | {novelty_text(novelty.get(r['id']), origin)} | {r['id']} |")
    lines.append("")
    from gnomon.campaign.reports.stages import stage_section

    lines += stage_section(repo, config, campaign_rounds(repo, config.name), [r["id"] for r in found])
    n = len(config.elements)
    if 2 <= n <= 4:
        pd = HullEngine(repo).phase_diagram(scheme, config.chemsys)
        if pd is not None:
            plot_hull(pd, out / "hull.png")
            lines += ["## Hull", "", f"![hull of {config.chemsys}](hull.png)", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
