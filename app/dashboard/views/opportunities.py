"""Opportunities: scores (0-100) of product categories and effects, with their parts and sample posts."""

from __future__ import annotations

from services.b2b.queries import market

from .. import bp, filters
from ..session import requires
from ..tables import Column, Table, page
from .common import reading

LIMIT = 20
SAMPLES = 3
KINDS = {"product": "Product categories", "effect": "Effects"}


def score_table(kind: str, rows: list[dict], region: str) -> Table:
    return Table(f"opportunities-{kind}", f"{KINDS[kind]}: opportunity scores ({region})", [
        Column("subject", "Subject"), Column("score", "Score", True, True),
        Column("demand_score", "Demand", True, True), Column("unmet_need_score", "Unmet need", True, True),
        Column("saturation_score", "Saturation", True, True), Column("computed_at", "Computed")],
        rows, chart="bar")


@bp.get("/opportunities")
@requires("opportunities")
def opportunities():
    chosen = filters.current()
    with reading() as session:
        answers = {kind: market.opportunities(session, kind, chosen.region, LIMIT, SAMPLES) for kind in KINDS}
    tables = []
    for kind, answer in answers.items():
        rows = answer["opportunities"]
        if kind == "product" and chosen.product:
            rows = [o for o in rows if o["subject"] == chosen.product]
        tables.append(score_table(kind, rows, answer["region"]))
    return page("dashboard/opportunities.html", tables)
