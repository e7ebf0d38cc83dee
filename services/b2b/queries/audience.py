"""Aggregated user profiles and their B2B target scores, filtered and paged by score.

Rows of ``user_profiles`` (services/intelligence/profiles.py, refreshed every minute for the
authors whose posts changed). A profile is shown only while its author still has a post in
``posts``: a purged account (its posts deleted by ingest) disappears at once, before the
profile job drops its row. Not cached: pages are keyed lookups on the score indexes.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from . import cursors

#: Score name in the API → column of ``user_profiles``.
SCORES = {
    "dispensary": "dispensary_target_score",
    "wellness_brand": "wellness_brand_target_score",
    "premium_product": "premium_product_target_score",
    "accessory": "accessory_target_score",
}

_PROFILES = """
    SELECT up.id, up.author_did, up.author_handle, up.first_seen_at, up.last_seen_at, up.posts_analyzed,
           up.primary_consumer_type, up.secondary_consumer_type, up.experience_level, up.preferred_products,
           up.preferred_effects, up.typical_occasions, up.lifestyle_tags, up.avg_sentiment, up.posting_frequency,
           up.typical_time_of_day, up.purchase_frequency, up.estimated_monthly_spend, up.frustrations,
           up.likely_region, up.legal_market, up.dispensary_target_score, up.wellness_brand_target_score,
           up.premium_product_target_score, up.accessory_target_score, up.stats_json -> 'parts' AS score_parts,
           up.{score} AS sort_score
    FROM user_profiles up
    WHERE up.{score} >= :min_score
      AND (CAST(:consumer_type AS text) IS NULL OR up.primary_consumer_type = CAST(:consumer_type AS text))
      AND (CAST(:experience_level AS text) IS NULL OR up.experience_level = CAST(:experience_level AS text))
      AND (CAST(:region AS text) IS NULL OR lower(up.likely_region) = lower(CAST(:region AS text)))
      AND EXISTS (SELECT 1 FROM posts p WHERE p.author_did = up.author_did)
      {after}
    ORDER BY up.{score} DESC, up.id DESC
    LIMIT :fetch"""
_AFTER = "AND (up.{score}, up.id) < (CAST(:after_score AS int), CAST(:after_id AS bigint))"


def profiles(session: Session, cursor_key: bytes, *, score: str = "dispensary", min_score: int = 0,
             consumer_type: str | None = None, experience_level: str | None = None, region: str | None = None,
             limit: int = 50, cursor: str | None = None) -> dict:
    """Profiles with ``score`` at least ``min_score``, highest first (then newest profile id)."""
    if score not in SCORES:
        raise ValueError(f"score must be one of {', '.join(SCORES)}")
    column = SCORES[score]
    filters = {"score": score, "min_score": min_score, "consumer_type": consumer_type,
               "experience_level": experience_level, "region": region.lower() if region else None}
    params = {**filters, "fetch": limit + 1}
    if cursor:
        after = cursors.decode(cursor_key, filters, cursor)
        if len(after) != 2 or not all(isinstance(v, int) for v in after):
            raise cursors.InvalidCursor("cursor is not one this API returned")
        params.update(after_score=after[0], after_id=after[1])
    sql = _PROFILES.format(score=column, after=_AFTER.format(score=column) if cursor else "")
    rows = list(session.execute(text(sql), params).mappings())
    more, rows = len(rows) > limit, rows[:limit]
    items = [_view(r) for r in rows]
    next_cursor = cursors.encode(cursor_key, filters, [rows[-1]["sort_score"], rows[-1]["id"]]) if more else None
    return {"score": score, "profiles": items, "cursor": next_cursor}


def _view(r) -> dict:
    iso = lambda v: v.isoformat() if v is not None else None  # noqa: E731
    return {
        "author_did": r["author_did"], "author_handle": r["author_handle"],
        "first_seen_at": iso(r["first_seen_at"]), "last_seen_at": iso(r["last_seen_at"]),
        "posts_analyzed": r["posts_analyzed"], "primary_consumer_type": r["primary_consumer_type"],
        "secondary_consumer_type": r["secondary_consumer_type"], "experience_level": r["experience_level"],
        "preferred_products": list(r["preferred_products"] or []),
        "preferred_effects": list(r["preferred_effects"] or []),
        "typical_occasions": list(r["typical_occasions"] or []), "lifestyle_tags": list(r["lifestyle_tags"] or []),
        "avg_sentiment": float(r["avg_sentiment"]) if r["avg_sentiment"] is not None else None,
        "posting_frequency": r["posting_frequency"], "typical_time_of_day": r["typical_time_of_day"],
        "purchase_frequency": r["purchase_frequency"], "estimated_monthly_spend": r["estimated_monthly_spend"],
        "frustrations": list(r["frustrations"] or []), "likely_region": r["likely_region"],
        "legal_market": r["legal_market"],
        "target_scores": {name: r[column] for name, column in SCORES.items()},
        "score_parts": r["score_parts"],
    }
