"""Campaign reports: Markdown with per-round metrics, stage and per-system tables, and the
figures (learning curves, hull diagrams) as PNG. The CLI, the web explorer and a round's
report step all draw from here.

Importing this package selects no matplotlib backend: the curves are drawn on figures of
their own, and only drawing a hull diagram brings in pyplot.
"""

from gnomon.campaign.reports.campaign import write_report
from gnomon.campaign.reports.counts import CampaignCounts, campaign_counts
from gnomon.campaign.reports.tables import (
    METRIC_COLUMNS,
    campaign_rounds,
    format_value,
    markdown_table,
    metric_rows,
)

__all__ = [
    "METRIC_COLUMNS",
    "CampaignCounts",
    "campaign_counts",
    "campaign_rounds",
    "format_value",
    "markdown_table",
    "metric_rows",
    "write_report",
]
