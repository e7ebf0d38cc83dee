"""Trends: rising hashtags, strains, brands and effects with velocity, a sparkline and supporting posts.

The sparkline is the entity's count per day from the stored daily time series where it keeps
one (effects, and the top strains and brands); otherwise the two windows' counts."""

from __future__ import annotations

from services.b2b.queries import entities, market
from services.intelligence.trends import KINDS

from .. import bp, filters
from ..session import current, requires
from ..tables import Column, Table, page
from .common import reading

LIMIT = 15
SOURCES = 3
LABELS = {"hashtag": "Hashtags", "strain": "Strains", "brand": "Brands", "effect": "Effects"}


def daily_counts(points: list[dict], kind: str) -> dict[str, list[int]]:
    """name (lower case) -> count per day, from the daily points (effects_dist, top_strains, top_brands)."""
    counts: dict[str, list[int]] = {}
    for index, point in enumerate(points):
        if kind == "effect":
            found = {k.lower(): v for k, v in (point.get("effects_dist") or {}).items()}
        elif kind in ("strain", "brand"):
            found = {t["name"].lower(): t["count"] for t in point.get(f"top_{kind}s") or []}
        else:
            continue
        for name, count in found.items():
            counts.setdefault(name, [0] * len(points))[index] = count
    return counts


def trend_table(kind: str, rows: list[dict], spark: dict[str, list[int]], window: str) -> Table:
    shaped = [{"name": t["name"], "current_count": t["current_count"], "previous_count": t["previous_count"],
               "velocity": t["velocity"],
               "spark": spark.get(t["name"].lower()) or [t["previous_count"], t["current_count"]],
               "sources": t["sources"]} for t in rows]
    return Table(f"trends-{kind}", f"{LABELS[kind]} ({window})", [
        Column("name", "Name"), Column("current_count", "Posts now", True, True),
        Column("previous_count", "Posts the window before", True, True), Column("velocity", "Velocity", True)],
        shaped, chart="bar")


@bp.get("/trends")
@requires("trends")
def trends():
    chosen = filters.current()
    with reading() as session:
        answer = market.trends(session, KINDS, chosen.trend_window, LIMIT, SOURCES)
        daily = entities.timeseries(session, "day", chosen.since if chosen.range != "24h" else None, chosen.until) \
            if current().credentials.allows("timeseries") else {"points": []}
    tables = [trend_table(kind, answer["trends"].get(kind, []), daily_counts(daily["points"], kind),
                          chosen.trend_window) for kind in KINDS]
    return page("dashboard/trends.html", tables, window=chosen.trend_window)
