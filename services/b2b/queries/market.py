"""Segments, high-intent posts, trends and opportunities: the precomputed market picture.

Each answer comes from a table or view that a job of ``services/intelligence`` fills (named in
``JOBS``) and is cached until that job runs again (``cache``). Post ids are cached with the
answer, post contents are looked up live (``posts.alive``: from the read cache ``live`` the
realtime stream keeps exact, when given), so deleted posts are left out at once.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

from services.intelligence import opportunities as opportunity_scores
from services.intelligence import trends as trend_tables
from services.intelligence.base import utcnow
from services.read_cache import ReadCache

from . import cache, cursors, posts

#: Endpoint → the intelligence jobs (``intelligence_runs.job``) whose runs change its answer.
JOBS = {
    "segments": ("mv_consumer_segments",),
    "intents": ("mv_high_intent_users",),
    "trends": ("trends",),
    "opportunities": ("opportunities",),
}
INTENT_WINDOW = timedelta(hours=24)


def _num(value, digits: int = 2):
    return None if value is None else round(float(value), digits)


# -- segments ---------------------------------------------------------------------------------

_SEGMENTS = text("""
    SELECT consumer_type, experience_level, user_count, post_count, avg_sentiment, avg_intent,
           common_lifestyles[1:CAST(:lifestyles AS int)] AS common_lifestyles
    FROM mv_consumer_segments
    WHERE (CAST(:consumer_type AS text) IS NULL OR consumer_type = CAST(:consumer_type AS text))
      AND (CAST(:experience_level AS text) IS NULL OR experience_level = CAST(:experience_level AS text))
    ORDER BY post_count DESC, consumer_type, experience_level""")


def segments(session: Session, consumer_type: str | None = None, experience_level: str | None = None,
             lifestyles: int = 5) -> dict:
    """Consumer type × experience level over the last 30 days (``mv_consumer_segments``)."""
    params = {"consumer_type": consumer_type, "experience_level": experience_level, "lifestyles": lifestyles}
    return cache.answer(session, "segments", params, JOBS["segments"], lambda s: _segments(s, params))


def segments_json(session: Session, consumer_type: str | None = None, experience_level: str | None = None,
                  lifestyles: int = 5) -> cache.JsonAnswer:
    """:func:`segments` as its JSON body, cached as such: the whole answer comes from the view
    and is the same for every client."""
    params = {"consumer_type": consumer_type, "experience_level": experience_level, "lifestyles": lifestyles}
    return cache.answer_json(session, "segments", params, JOBS["segments"], lambda s: _segments(s, params))


def _segments(session: Session, params: dict) -> dict:
    rows = [{"consumer_type": r["consumer_type"], "experience_level": r["experience_level"],
             "user_count": r["user_count"], "post_count": r["post_count"],
             "avg_sentiment": _num(r["avg_sentiment"]), "avg_intent": _num(r["avg_intent"]),
             "common_lifestyles": list(r["common_lifestyles"] or [])}
            for r in session.execute(_SEGMENTS, params).mappings()]
    return {"window_days": 30, "total_posts": sum(r["post_count"] for r in rows), "segments": rows}


# -- intents ----------------------------------------------------------------------------------

_INTENTS = text("""
    SELECT post_id, purchase_intent, purchase_stage, product_category, region_hint, created_at
    FROM mv_high_intent_users
    WHERE purchase_intent >= :min_intent AND created_at >= :since
      AND (CAST(:product AS text) IS NULL OR product_category = CAST(:product AS text))
      AND (CAST(:region AS text) IS NULL OR lower(region_hint) = lower(CAST(:region AS text)))
      AND (CAST(:after_intent AS int) IS NULL OR (purchase_intent, created_at, post_id)
           < (CAST(:after_intent AS int), CAST(:after_at AS timestamptz), CAST(:after_id AS bigint)))
    ORDER BY purchase_intent DESC, created_at DESC, post_id DESC
    LIMIT :fetch""")
_INTENT_TOTALS = text("""
    SELECT coalesce(product_category, 'unknown') AS product, count(*) AS posts
    FROM mv_high_intent_users
    WHERE purchase_intent >= :min_intent AND created_at >= :since
      AND (CAST(:product AS text) IS NULL OR product_category = CAST(:product AS text))
      AND (CAST(:region AS text) IS NULL OR lower(region_hint) = lower(CAST(:region AS text)))
    GROUP BY 1 ORDER BY 2 DESC, 1""")


def intents(session: Session, cursor_key: bytes, *, min_intent: int = 70, product: str | None = None,
            region: str | None = None, since: datetime | None = None, limit: int = 50,
            cursor: str | None = None, now: datetime | None = None, live: ReadCache | None = None) -> dict:
    """High-intent posts of the last 24 hours (``mv_high_intent_users``), highest intent first.

    ``since`` narrows the window (never beyond 24 hours). Rows the view still holds but that
    left the window since its refresh, or whose post was deleted, are left out at every request.
    """
    now = now or utcnow()
    oldest = now - INTENT_WINDOW
    filters = {"min_intent": min_intent, "product": product, "region": region.lower() if region else None,
               "since": since.isoformat() if since else None}
    after = cursors.decode(cursor_key, filters, cursor) if cursor else [None, None, None]
    if len(after) != 3:
        raise cursors.InvalidCursor("cursor is not one this API returned")
    params = {**filters, "since": max(since, oldest) if since else oldest, "fetch": limit + 1,
              "after_intent": after[0], "after_at": after[1], "after_id": after[2]}

    def compute(s: Session) -> dict:
        rows = [dict(r) for r in s.execute(_INTENTS, params).mappings()]
        totals = {r["product"]: r["posts"] for r in s.execute(_INTENT_TOTALS, params).mappings()}
        return {"rows": rows, "by_product": totals}

    # The window's lower bound moves with the clock: key the cache on the minute.
    key = {**params, "since": params["since"].replace(second=0, microsecond=0).isoformat(),
           "after_at": str(after[1])}
    cached = cache.answer(session, "intents", key, JOBS["intents"], compute)
    rows = [r for r in cached["rows"] if r["created_at"] >= params["since"]]
    page, more = rows[:limit], len(cached["rows"]) > limit
    found = posts.alive(session, [r["post_id"] for r in page], live)
    items = [{**found[r["post_id"]], "purchase_intent": r["purchase_intent"], "purchase_stage": r["purchase_stage"],
              "product_category": r["product_category"], "region": r["region_hint"]}
             for r in page if r["post_id"] in found]
    last = page[-1] if page else None
    next_cursor = cursors.encode(cursor_key, filters, [last["purchase_intent"], last["created_at"].isoformat(),
                                                       last["post_id"]]) if more and last else None
    return {"since": params["since"].isoformat(), "until": now.isoformat(), "min_intent": min_intent,
            "total": sum(cached["by_product"].values()), "by_product": dict(cached["by_product"]),
            "posts": items, "cursor": next_cursor}


# -- trends -----------------------------------------------------------------------------------

def trends(session: Session, kinds: tuple[str, ...] = trend_tables.KINDS, window: str = "24h", limit: int = 20,
           sources: int = 3, live: ReadCache | None = None) -> dict:
    """Rising hashtags, strains, brands and effects (``trends``), each with its supporting posts."""
    params = {"kinds": list(kinds), "window": window, "limit": limit}

    def compute(s: Session) -> dict:
        return {kind: [{"name": t["name"], "current_count": t["current_count"],
                        "previous_count": t["previous_count"], "velocity": round(t["velocity"], 4),
                        "computed_at": t["computed_at"].isoformat(), "post_ids": list(t["post_ids"])}
                       for t in trend_tables.rising(s, kind, window, limit)] for kind in kinds}

    cached = cache.answer(session, "trends", params, JOBS["trends"], compute)
    found = posts.alive(session, [i for rows in cached.values() for t in rows for i in t["post_ids"][:sources]], live)
    answer = {}
    for kind, rows in cached.items():
        answer[kind] = [{key: value for key, value in t.items() if key != "post_ids"}
                        | {"supporting_posts": t["current_count"],
                           "sources": posts.pick(found, t["post_ids"][:sources])}
                        for t in rows]
    return {"window": window, "trends": answer}


# -- opportunities ----------------------------------------------------------------------------

def opportunities(session: Session, kind: str = "product", region: str | None = None, limit: int = 20,
                  samples: int = 3, live: ReadCache | None = None) -> dict:
    """Opportunity scores of a kind in a region (or ``all``), with their parts and sample posts."""
    params = {"kind": kind, "region": (region or "all").lower(), "limit": limit}

    def compute(s: Session) -> list[dict]:
        return [{"kind": o["kind"], "subject": o["subject"], "region": o["region"], "score": _num(o["score"]),
                 "demand_score": _num(o["demand_score"]), "unmet_need_score": _num(o["unmet_need_score"]),
                 "saturation_score": _num(o["saturation_score"]), "parts": o["parts"],
                 "computed_at": o["computed_at"].isoformat(), "sample_post_ids": list(o["sample_post_ids"])}
                for o in opportunity_scores.top(s, kind, region, limit)]

    cached = cache.answer(session, "opportunities", params, JOBS["opportunities"], compute)
    found = posts.alive(session, [i for o in cached for i in o["sample_post_ids"][:samples]], live)
    return {"kind": kind, "region": region or "all", "opportunities": [
        {key: value for key, value in o.items() if key != "sample_post_ids"}
        | {"samples": posts.pick(found, o["sample_post_ids"][:samples])} for o in cached]}
