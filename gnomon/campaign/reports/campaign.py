"""A campaign's report: Markdown with per-round metrics, the models that screened, the
chemical systems, the stable phases found, the fidelity stages, and the figures as PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gnomon.campaign.reports.counts import campaign_counts
from gnomon.campaign.reports.figures import learning_curves
from gnomon.campaign.reports.stages import stage_section
from gnomon.campaign.reports.systems import system_section
from gnomon.campaign.reports.tables import (
    METRIC_COLUMNS,
    campaign_rounds,
    markdown_table,
    metric_rows,
)
from gnomon.config import CampaignConfig, Settings
from gnomon.dft import engine as dft_engine
from gnomon.pipeline.thermo.hull import HullEngine
from gnomon.pipeline.thermo.known import phase_origins
from gnomon.pipeline.thermo.novelty import novelty_of_rows, novelty_text
from gnomon.pipeline.thermo.phase_query import PhaseQuery
from gnomon.pipeline.thermo.plots import plot_hull
from gnomon.plural import counted
from gnomon.storage import ModelVersion, Repository

STABLE_HEADERS = ("formula", "chemsys", "E_f (eV/atom)", "decomposition energy (eV/atom)",
                  "novelty (AMD to nearest known)", "id")


def write_report(repo: Repository, settings: Settings, config: CampaignConfig,
                 out: Path | None = None, *, scheme: str | None = None) -> Path:
    """Write ``report.md`` (and its PNGs) for a campaign; returns the Markdown path.

    ``scheme`` is the campaign engine's energy scheme (built from the config when not given).
    """
    out = Path(out or settings.home / "reports" / config.name)
    out.mkdir(parents=True, exist_ok=True)
    if scheme is None:
        engine = dft_engine.make_engine(config.engine.name, settings, **config.engine.options)
        scheme = engine.scheme
    rows = metric_rows(repo, config.name)
    lines = [f"# Campaign {config.name}", "",
             f"Chemical space **{config.chemsys}**, energy scheme `{scheme}`, "
             f"policy `{config.selection.policy}`, budget "
             f"{counted(config.selection.budget, 'relaxation')} per round.", ""]
    lines += round_section(repo, rows, out, config.name)
    lines += system_section(repo, config, scheme)
    found, stable_lines = stable_section(repo, config, scheme)
    lines += stable_lines
    lines += stage_section(repo, config, campaign_rounds(repo, config.name), found)
    lines += hull_section(repo, config, scheme, out)
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def round_section(repo: Repository, rows: list[dict[str, Any]], out: Path,
                  campaign: str) -> list[str]:
    """The per-round table, what the campaign's relaxations were for (the counts a run's
    summary prints), the models that screened, and the learning curves (``out``)."""
    table = [[r.get(k) for k, _ in METRIC_COLUMNS] for r in rows]
    counts = campaign_counts(repo, campaign)
    lines = ["## Rounds", "", *markdown_table([h for _, h in METRIC_COLUMNS], table), "",
             f"{counted(counts.rounds_done, 'round')} done; "
             f"{counts.relaxations_sentence()}.", ""]
    if rows:
        lines += ["Screening models:", "", *screening_lines(repo, rows), ""]
        learning_curves(rows, out / "metrics.png")
        lines += ["![hit rate and MAE per round](metrics.png)", ""]
    return lines


def screening_lines(repo: Repository, rows: list[dict[str, Any]]) -> list[str]:
    """One line per round naming the model that screened it, and where that model came from
    (``round 0 screened by pretrained-mlip-chgnet-0.3.0-v1, the pretrained model shipped with
    gnomon``); a round without one says its selection was random."""
    lines = []
    for r in rows:
        version = r.get("model_version")
        if not version:
            lines.append(f"- round {r['round']}: not screened by a model "
                         f"(selection `{r.get('policy')}`)")
            continue
        lines.append(f"- round {r['round']} screened by `{version}`"
                     f"{model_origin(repo.get(ModelVersion, version))}")
    return lines


def model_origin(record: ModelVersion | None) -> str:
    """Where a screening model came from, as the tail of a sentence (may be empty)."""
    if record is None:
        return ""
    if record.config.get("pretrained"):
        return ", the pretrained model shipped with gnomon"
    if record.config.get("retrain") == "transfer":
        return f", the pretrained `{record.parent}` carried over to `{record.scheme}`"
    if record.parent:
        return f", fine-tuned from `{record.parent}`"
    return ""


def stable_section(repo: Repository, config: CampaignConfig,
                   scheme: str) -> tuple[list[str], list[str]]:
    """The ids of the stable phases the campaign found, and the Markdown of every phase on
    the hull (with the novelty of each found one)."""
    stable = PhaseQuery(chemsys=config.chemsys, scheme=scheme, stable=True).run(repo)
    origins = phase_origins(repo, stable)
    found = [r for r, origin in zip(stable, origins, strict=True) if origin == "campaign"]
    novelty = novelty_of_rows(repo, found)  # new / known / ordering of a known disordered phase
    table = [[r["formula"], r["chemsys"], r["formation_energy_per_atom"],
              r["decomposition_energy"], novelty_text(novelty.get(r["id"]), origin), r["id"]]
             for r, origin in zip(stable, origins, strict=True)]
    lines = ["## Stable phases", "",
             f"{counted(len(stable), 'phase')} on the hull of {config.chemsys}; "
             f"{counted(len(found), 'compound')} found by this campaign.", "",
             *markdown_table(STABLE_HEADERS, table), ""]
    return [r["id"] for r in found], lines


def hull_section(repo: Repository, config: CampaignConfig, scheme: str, out: Path) -> list[str]:
    """The hull diagram of a 2- to 4-element campaign (``out/hull.png``); nothing otherwise."""
    if not 2 <= len(config.elements) <= 4:
        return []
    pd = HullEngine(repo).phase_diagram(scheme, config.chemsys)
    if pd is None:
        return []
    plot_hull(pd, out / "hull.png", scheme=scheme)
    return ["## Hull", "", f"![hull of {config.chemsys}](hull.png)", ""]

