"""Time: the hour-of-day × day-of-week heat map and the seven time-analysis questions."""

from __future__ import annotations

from datetime import datetime, timedelta

from services.b2b.queries import entities, insights as questions

from .. import bp, filters
from ..answers import tables_from
from ..session import current, requires
from ..tables import Column, Table, page
from .common import reading

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
HOURLY_SPAN = timedelta(days=31)  # the longest range of hourly points one call may ask
TITLES = {"consumption-times": "What times do people consume most?",
          "weekend-vs-weekday": "Weekend vs weekday",
          "effect-trends": "Is an effect trending?",
          "seasonality": "Seasonal trends",
          "purchase-intent-now": "Purchase intent right now",
          "complaint-times": "When do people complain most?",
          "brand-sentiment": "Brand sentiment over time"}


def heat_table(points: list[dict]) -> Table:
    """Posts per UTC weekday (rows) and hour (columns), summed from the stored hourly points."""
    grid = [[0] * 24 for _ in DAYS]
    for point in points:
        start = datetime.fromisoformat(point["period_start"])
        grid[start.weekday()][start.hour] += point["total_posts"]
    columns = [Column("day", "Day (UTC)")] + [Column(f"h{h:02d}", f"{h:02d}", True, True) for h in range(24)]
    rows = [{"day": day, **{f"h{h:02d}": grid[d][h] for h in range(24)}} for d, day in enumerate(DAYS)]
    return Table("heatmap", "Posts by hour of day and day of week (UTC)", columns, rows, chart="heat")


@bp.get("/time")
@requires("timeseries", "insights")
def insights():
    chosen = filters.current()
    since = max(chosen.since, chosen.until - HOURLY_SPAN)
    with reading() as session:
        hourly = entities.timeseries(session, "hour", since, chosen.until)
        answers = {q: questions.answer(session, q, chosen.since, chosen.until, chosen.region)
                   for q in questions.QUESTIONS}
    sections = []
    for question, answer in answers.items():
        sections.append((question, TITLES[question], tables_from(question, "", answer["answer"])))
    heat = heat_table(hourly["points"])
    tables = [heat] + [t for _, _, found in sections for t in found]
    return page("dashboard/insights.html", tables, heat=heat, sections=sections,
                clamped=since > chosen.since, region=chosen.region, client_name=current().credentials.name)
