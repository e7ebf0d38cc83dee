"""Full-text search over classified posts, with classification filters, newest first.

The text condition is ``to_tsvector('english', coalesce(text, '')) @@ websearch_to_tsquery(...)``:
the expression of the GIN index ``idx_posts_text_search`` exactly, so matches come from it
(the ``OFFSET 0`` subquery is planned on its own: PostgreSQL never walks every post of the
range testing the text). ``websearch_to_tsquery`` takes any input (quotes, ``or``, ``-word``)
without a syntax error; a query of stop words only matches nothing. The subquery sorts the
matches newest first, and each is then joined, in that order, to the classification that
counts (base.CLASSIFIED: newest, about cannabis) and tested against the filters, until the page
is full: a selective filter costs lookups, never a join of every match. Only existing posts
can match: a deleted post is gone from ``posts``.

A common word matches thousands of posts a month, and reading and sorting them all costs more
than the page needs; so the search runs in windows back from the page's start (the cursor, or
``until``): the last day, then 8 days, then the whole range (:data:`WINDOWS`). The first
window that fills the page ends it (every post in it is newer than any outside it, so the page
is the same); rare words reach the whole range, where they are few.

Pages are keyset pages over (created_at, id) with a signed cursor bound to the query and
filters: stable while new posts arrive.

A page's matches (ids, times, classifications) are kept for ``B2B_SEARCH_CACHE_SECONDS`` per
process: the same search again within them costs no text search, and may miss a post
classified meanwhile. The posts themselves are looked up at every request (``posts.alive``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

from services.intelligence.base import CLASSIFIED, IN_RANGE, range_params
from services.read_cache import ReadCache

from . import cache, cursors, posts
from .ranges import resolve

_SEARCH = f"""
    SELECT p.id, p.created_at, pc.consumer_type, pc.experience_level, pc.product_category, pc.sentiment,
           pc.sentiment_score, pc.purchase_intent, pc.purchase_stage, pc.region_hint, pc.strain_mentioned,
           pc.brand_mentioned, pc.effects_mentioned
    FROM {CLASSIFIED}
    JOIN (SELECT p.id, p.created_at FROM posts p
          WHERE to_tsvector('english', coalesce(p.text, '')) @@ websearch_to_tsquery('english', :q)
            AND {IN_RANGE} {{after}}
          ORDER BY p.created_at DESC, p.id DESC
          OFFSET 0) m ON m.id = p.id
    WHERE (CAST(:product AS text) IS NULL OR pc.product_category = CAST(:product AS text))
      AND (CAST(:sentiment AS text) IS NULL OR pc.sentiment = CAST(:sentiment AS text))
      AND (CAST(:min_intent AS int) IS NULL OR pc.purchase_intent >= CAST(:min_intent AS int))
      AND (CAST(:region AS text) IS NULL OR lower(pc.region_hint) = lower(CAST(:region AS text)))
      AND (CAST(:strain AS text) IS NULL OR lower(pc.strain_mentioned) = lower(CAST(:strain AS text)))
      AND (CAST(:brand AS text) IS NULL OR lower(pc.brand_mentioned) = lower(CAST(:brand AS text)))
    ORDER BY m.created_at DESC, m.id DESC
    LIMIT :fetch"""
_AFTER = "AND (p.created_at, p.id) < (CAST(:after_at AS timestamptz), CAST(:after_id AS bigint))"


#: How far back each attempt looks from the page's start; None: the whole range.
WINDOWS = (timedelta(days=1), timedelta(days=8), None)
#: Range searched when the caller gives none.
DEFAULT_SPAN = timedelta(days=30)


def search(session: Session, cursor_key: bytes, q: str, since: datetime | None = None,
           until: datetime | None = None, *,
           product: str | None = None, sentiment: str | None = None, min_intent: int | None = None,
           region: str | None = None, strain: str | None = None, brand: str | None = None,
           limit: int = 50, cursor: str | None = None, fresh_seconds: float = 0.0,
           live: ReadCache | None = None) -> dict:
    """Classified posts in [since, until) (default: the last 30 days) matching ``q`` and the filters,
    newest first. The cursor is bound to the filters as given (an open range stays open).

    The matches of a page may be up to ``fresh_seconds`` old (``cache.recent``); the posts they
    name are looked up at each request (``posts.alive``, from ``live`` where it holds them), so a
    deleted post leaves every page at once and counts are current.
    """
    filters = {"q": q, "since": since.isoformat() if since else None, "until": until.isoformat() if until else None,
               "product": product,
               "sentiment": sentiment, "min_intent": min_intent, "region": region.lower() if region else None,
               "strain": strain.lower() if strain else None, "brand": brand.lower() if brand else None}
    since, until = resolve(since, until, DEFAULT_SPAN)
    params = {**filters, "fetch": limit + 1}
    start = until
    if cursor:
        after = cursors.decode(cursor_key, filters, cursor)
        try:
            start = min(until, datetime.fromisoformat(after[0]) + timedelta(microseconds=1))
        except (TypeError, ValueError, IndexError):
            raise cursors.InvalidCursor("cursor is not one this API returned") from None
        if len(after) != 2 or not isinstance(after[1], int) or start.tzinfo is None:
            raise cursors.InvalidCursor("cursor is not one this API returned")
        params.update(after_at=after[0], after_id=after[1])
    statement = text(_SEARCH.format(after=_AFTER if cursor else ""))

    def matches() -> list[dict]:
        for window in WINDOWS:
            lo = max(since, start - window) if window is not None else since
            if lo >= start:
                rows = []
                continue
            rows = [_match(r) for r in session.execute(statement, {**params, **range_params(lo, start)}).mappings()]
            if len(rows) > limit or lo == since:
                break
        return rows

    found = cache.recent("search", {**filters, "limit": limit, "cursor": cursor}, fresh_seconds, matches)
    more, page = len(found) > limit, found[:limit]
    views = posts.alive(session, [m["id"] for m in page], live)
    items = [{**views[m["id"]], "classification": m["classification"]} for m in page if m["id"] in views]
    next_cursor = cursors.encode(cursor_key, filters, [page[-1]["created_at"].isoformat(), page[-1]["id"]]) \
        if more else None
    return {"q": q, "since": since.isoformat(), "until": until.isoformat(), "posts": items, "cursor": next_cursor}


def _match(r) -> dict:
    """A matching post's id, time and classification (its view is looked up per request)."""
    return {"id": r["id"], "created_at": r["created_at"], "classification": {
        "consumer_type": r["consumer_type"], "experience_level": r["experience_level"],
        "product_category": r["product_category"], "sentiment": r["sentiment"], "sentiment_score": r["sentiment_score"],
        "purchase_intent": r["purchase_intent"], "purchase_stage": r["purchase_stage"], "region": r["region_hint"],
        "strain": r["strain_mentioned"], "brand": r["brand_mentioned"],
        "effects": list(r["effects_mentioned"] or [])}}
