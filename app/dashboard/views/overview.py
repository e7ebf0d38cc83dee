"""Overview: posts, high-intent posts and sentiment over the range, and the week's top movers."""

from __future__ import annotations

from services.b2b.queries import entities, market
from services.intelligence.trends import KINDS

from .. import bp, filters
from ..session import current, requires
from ..tables import Column, Table, page
from .common import reading

MOVERS = 10


def activity_table(points: list[dict], period: str) -> Table:
    return Table("activity", "Posts, high-intent posts and sentiment per " + period, [
        Column("period", period.capitalize()), Column("posts", "Posts", True, True),
        Column("high_intent", "High-intent posts", True, True), Column("sentiment", "Avg sentiment (-100..100)", True)],
        [{"period": p["period_start"][:16 if period == "hour" else 10].replace("T", " "), "posts": p["total_posts"],
          "high_intent": p["high_intent_count"], "sentiment": p["avg_sentiment_score"]} for p in points], chart="line")


def movers_table(answer: dict) -> Table:
    rows = [{"kind": kind, **t} for kind, found in answer["trends"].items() for t in found]
    rows.sort(key=lambda t: (-t["velocity"], -t["current_count"], t["name"]))
    return Table("movers", "Top movers of the week (7-day trends by velocity)", [
        Column("name", "Name"), Column("kind", "Kind"), Column("current_count", "Posts this week", True, True),
        Column("previous_count", "Posts the week before", True, True), Column("velocity", "Velocity", True)],
        rows[:MOVERS], chart="bar")


@bp.get("/")
@requires("timeseries")
def overview():
    chosen = filters.current()
    allows = current().credentials.allows
    with reading() as session:
        series = entities.timeseries(session, chosen.period, chosen.since, chosen.until)
        movers = market.trends(session, KINDS, "7d", MOVERS, 0) if allows("trends") else None
    points = series["points"]
    posts = sum(p["total_posts"] for p in points)
    scored = [(p["avg_sentiment_score"], p["total_posts"]) for p in points if p["avg_sentiment_score"] is not None]
    weight = sum(n for _, n in scored)
    stats = {"posts": posts, "high_intent": sum(p["high_intent_count"] for p in points),
             "sentiment": round(sum(s * n for s, n in scored) / weight, 1) if weight else None,
             "positive": sum(p["positive_count"] for p in points), "negative": sum(p["negative_count"] for p in points)}
    tables = [activity_table(points, chosen.period)]
    if movers is not None:
        tables.append(movers_table(movers))
    return page("dashboard/overview.html", tables, stats=stats, trends_allowed=movers is not None)
