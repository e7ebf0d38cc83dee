"""Usage and quota: the client's own API calls per day and endpoint, and this month's quota."""

from __future__ import annotations

from collections import defaultdict

from flask import current_app

from services.b2b import usage as usage_report

from .. import bp, filters
from ...extensions import get_redis
from ..session import current
from ..tables import Column, Table, page
from .common import reading


@bp.get("/usage")
def usage():
    chosen = filters.current()
    client = current().credentials
    with reading() as session:
        held = current_app.extensions["b2b_gate"].held(client.client_id)  # leased here, not used yet
        report = usage_report.report(session, get_redis(), client.client_id, client.monthly_quota,
                                     client.rate_limit_per_min, chosen.since, chosen.until, held=held)
    per_day: dict[str, dict] = defaultdict(lambda: {"calls": 0, "errors": 0})
    for row in report["days"]:
        per_day[row["day"]]["calls"] += row["calls"]
        per_day[row["day"]]["errors"] += row["errors"]
    days = Table("usage-days", "API calls per day", [
        Column("day", "Day (UTC)"), Column("calls", "Calls", True, True), Column("errors", "Errors", True, True)],
        [{"day": day, **counts} for day, counts in sorted(per_day.items())], chart="bar")
    detail = Table("usage-endpoints", "Calls per day and endpoint", [
        Column("day", "Day (UTC)"), Column("endpoint", "Endpoint"), Column("calls", "Calls", True),
        Column("errors", "Errors", True), Column("avgResponseMs", "Avg response (ms)", True)], report["days"])
    return page("dashboard/usage.html", [days, detail], report=report)
