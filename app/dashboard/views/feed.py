"""Live intent: high-intent posts of the last 24 hours, then new ones as they are classified,
over ``/ws`` (the page's script sends a ``dashboard_feed`` message with a short-lived ticket)."""

from __future__ import annotations

from services.b2b.queries import market

from .. import bp, filters
from ..session import feed_ticket, requires
from ..tables import Column, Table, page
from .common import cursor_key, reading

LIMIT = 50


@bp.get("/live")
@requires("intents")
def feed():
    chosen = filters.current()
    with reading() as session:
        answer = market.intents(session, cursor_key(), product=chosen.product, region=chosen.region, limit=LIMIT)
    rows = [{"created_at": str(p.get("created_at") or "")[:16].replace("T", " "), "purchase_intent": p["purchase_intent"],
             "purchase_stage": p["purchase_stage"], "product_category": p["product_category"], "region": p["region"],
             "text": p.get("text"), "uri": p.get("uri")} for p in answer["posts"]]
    posts = Table("intents", "High-intent posts of the last 24 hours", [
        Column("created_at", "Posted"), Column("purchase_intent", "Intent", True), Column("purchase_stage", "Stage"),
        Column("product_category", "Product"), Column("region", "Region"), Column("text", "Text")], rows)
    by_product = Table("intents-by-product", "High-intent posts by product (24 h)", [
        Column("product", "Product"), Column("posts", "Posts", True, True)],
        [{"product": k, "posts": v} for k, v in answer["by_product"].items()], chart="bar")
    return page("dashboard/feed.html", [by_product, posts], total=answer["total"], ticket=feed_ticket(),
                product=chosen.product, region=chosen.region)
