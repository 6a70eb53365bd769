"""A campaign's page (``/campaigns/{name}``) and the comparison of two
(``/campaigns/compare?a=&b=``); the numbers come from :mod:`.campaign_view`."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse

from gnomon.serve.explorer import campaign_view, views
from gnomon.serve.explorer.web import Shared, error, page


class CampaignPages:
    def __init__(self, shared: Shared):
        self.shared = shared

    def campaign(self, request: Request, name: str) -> HTMLResponse:
        try:
            view = campaign_view.campaign_page(self.shared.repo(), name)
        except views.NotFound as exc:
            return error(request, 404, "No such campaign", str(exc))
        return page(request, "campaign.html", c=view)

    def compare(self, request: Request, a: str = "", b: str = "") -> HTMLResponse:
        if not a or not b:
            return error(request, 400, "Two campaigns to compare",
                         "name them as ?a=FIRST&b=SECOND")
        try:
            totals = [campaign_view.campaign_totals(self.shared.repo(), n) for n in (a, b)]
        except views.NotFound as exc:
            return error(request, 404, "No such campaign", str(exc))
        return page(request, "compare.html", a=totals[0], b=totals[1])
