"""The dashboard's pages, one module each; ``NAV`` is the menu, with the plan endpoints each
page needs (a page outside the client's plan stays in the menu, marked, and explains itself)."""

from __future__ import annotations

from flask import request, url_for

from .. import bp
from .. import filters as filter_module
from ..session import current
from ..tables import shown
from . import entities, feed, insights, opportunities, overview, segments, trends, usage, webhooks

VIEWS = (overview, trends, segments, insights, entities, opportunities, feed, usage, webhooks)

#: (endpoint, label, plan endpoints needed)
NAV = [("dashboard.overview", "Overview", ("timeseries",)),
       ("dashboard.trends", "Trends", ("trends",)),
       ("dashboard.segments", "Segments", ("segments",)),
       ("dashboard.insights", "Time", ("timeseries", "insights")),
       ("dashboard.entities", "Brands & strains", ("brands", "strains")),
       ("dashboard.opportunities", "Opportunities", ("opportunities",)),
       ("dashboard.feed", "Live intent", ("intents",)),
       ("dashboard.usage", "Usage", ()),
       ("dashboard.webhooks", "Webhooks", ("webhooks",))]


@bp.app_template_filter("cell")
def _cell_filter(value) -> str:
    return shown(value)


@bp.context_processor
def _common():
    if request.endpoint in ("dashboard.sign_in", "dashboard.sign_in_form"):
        return {}
    session = current()
    if session is None:
        return {}
    allows = session.credentials.allows
    chosen = filter_module.current()

    def csv_url(table_id: str) -> str:
        return url_for(request.endpoint, **(request.view_args or {}), **chosen.args(), csv=table_id)

    return {"csv_url": csv_url, "client": session.credentials, "csrf_token": session.csrf,
            "nav": [(endpoint, label, all(allows(e) for e in needs)) for endpoint, label, needs in NAV],
            "filters": chosen, "ranges": filter_module.RANGE_LABELS,
            "products": filter_module.PRODUCTS}
