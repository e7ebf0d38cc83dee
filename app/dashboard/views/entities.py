"""Brands and strains: mentions, sentiment, and strains' sentiment week by week."""

from __future__ import annotations

from services.b2b.queries import entities

from .. import bp, filters
from ..session import requires
from ..tables import Column, Table, page
from .common import reading

LIMIT = 20
LINES = 6  # strains drawn in the sentiment-over-time chart


def strain_weeks_table(strains: list[dict]) -> Table:
    """Weeks (rows) × the top strains (columns): mean sentiment score of the week's mentions."""
    drawn = strains[:LINES]
    weeks = sorted({w["week"] for s in drawn for w in s["weeks"]})
    by_week = {s["name"]: {w["week"]: w["avg_sentiment_score"] for w in s["weeks"]} for s in drawn}
    columns = [Column("week", "Week")] + [Column(f"s{i}", s["name"], True, True) for i, s in enumerate(drawn)]
    rows = [{"week": week, **{f"s{i}": by_week[s["name"]].get(week) for i, s in enumerate(drawn)}} for week in weeks]
    return Table("strain-sentiment", "Strain sentiment per week (-100..100)", columns, rows, chart="line")


@bp.get("/brands-strains", endpoint="entities")
@requires("brands", "strains")
def entities_page():
    chosen = filters.current()
    with reading() as session:
        brands = entities.brands(session, 1, LIMIT)["brands"]
        strains = entities.strains(session, chosen.since, chosen.until, None, 1, LIMIT)["strains"]
    brand_table = Table("brands", "Brands by mentions (all time)", [
        Column("name", "Brand"), Column("mention_count", "Mentions", True, True),
        Column("avg_sentiment", "Avg sentiment (-1..1)", True, True), Column("category", "Category"),
        Column("last_seen_at", "Last mention")], brands, chart="bar")
    strain_rows = [{**s, "effects": ", ".join(s["common_effects"]),
                    "range_mentions": sum(w["mentions"] for w in s["weeks"])} for s in strains]
    strain_table = Table("strains", "Strains by mentions", [
        Column("name", "Strain"), Column("strain_type", "Type"),
        Column("mention_count", "Mentions (all time)", True, True),
        Column("range_mentions", "Mentions in range", True, True),
        Column("avg_sentiment", "Avg sentiment (-1..1)", True),
        Column("effects", "Common effects")], strain_rows, chart="bar")
    return page("dashboard/entities.html", [brand_table, strain_table, strain_weeks_table(strains)])

