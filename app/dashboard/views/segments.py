"""Segments: consumer type × experience level over the last 30 days."""

from __future__ import annotations

from services.b2b.queries import market

from .. import bp
from ..session import requires
from ..tables import Column, Table, page
from .common import reading


@bp.get("/segments")
@requires("segments")
def segments():
    with reading() as session:
        answer = market.segments(session)
    rows = [{**s, "segment": f"{s['consumer_type']} / {s['experience_level']}",
             "lifestyles": ", ".join(s["common_lifestyles"])} for s in answer["segments"]]
    table = Table("segments", "Segments of the last 30 days", [
        Column("segment", "Segment"), Column("user_count", "Users", True, True),
        Column("post_count", "Posts", True, True),
        Column("avg_sentiment", "Avg sentiment", True), Column("avg_intent", "Avg purchase intent", True),
        Column("lifestyles", "Common lifestyles")], rows, chart="bar")
    return page("dashboard/segments.html", [table], total=answer["total_posts"])
