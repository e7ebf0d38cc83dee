"""``time_series_aggregates``: one row per hour, day, week (ISO, from Monday) and month (UTC).

A recompute covers whole periods: every period that starts in the range is rebuilt from the
counted posts created in it (set-based, one statement per period type) and upserted; a stored
period left with no post is deleted, so deleted posts drop out. The scheduler rebuilds the
current and the previous period of each type; :func:`recompute_range` rebuilds any range.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

from . import runs
from .base import CLASSIFIED, IN_RANGE, range_params, roomy, try_job_lock, utcnow

PERIOD_TYPES = ("hour", "day", "week", "month")
#: Entries in the top_* lists.
TOP_ITEMS = 10

_TOP = "coalesce(jsonb_agg(jsonb_build_object('name', value, 'count', n) ORDER BY r) " \
       "FILTER (WHERE dim = '{dim}' AND r <= :top), '[]')"
_DIST = "coalesce(jsonb_object_agg(value, n) FILTER (WHERE dim = '{dim}'), '{{}}')"

_UPSERT = text(f"""
WITH base AS (
    SELECT date_trunc(:unit, p.created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS period_start,
           p.author_did, p.has_media, pc.*
    FROM {CLASSIFIED} WHERE {IN_RANGE}
), totals AS (
    SELECT period_start, count(*) AS total, count(DISTINCT author_did) AS authors,
           count(*) FILTER (WHERE has_media) AS media,
           count(*) FILTER (WHERE sentiment = 'positive') AS positive,
           count(*) FILTER (WHERE sentiment = 'negative') AS negative,
           count(*) FILTER (WHERE sentiment = 'neutral') AS neutral,
           round(avg(sentiment_score), 2) AS sentiment, round(avg(purchase_intent), 2) AS intent,
           count(*) FILTER (WHERE purchase_intent >= 70) AS high_intent
    FROM base GROUP BY period_start
), dims AS (
    SELECT period_start, 'consumer_type' AS dim, coalesce(consumer_type, 'unknown') AS value FROM base
    UNION ALL SELECT period_start, 'product', coalesce(product_category, 'unknown') FROM base
    UNION ALL SELECT period_start, 'effect', e FROM base CROSS JOIN LATERAL unnest(effects_mentioned) e
    UNION ALL SELECT period_start, 'strain', strain_mentioned FROM base WHERE strain_mentioned IS NOT NULL
    UNION ALL SELECT period_start, 'brand', brand_mentioned FROM base WHERE brand_mentioned IS NOT NULL
    UNION ALL SELECT period_start, 'frustration', f FROM base CROSS JOIN LATERAL unnest(frustrations) f
    UNION ALL SELECT period_start, 'emotion', m FROM base CROSS JOIN LATERAL unnest(emotions) m
), ranked AS (
    SELECT period_start, dim, value, count(*) AS n,
           row_number() OVER (PARTITION BY period_start, dim ORDER BY count(*) DESC, value) AS r
    FROM dims GROUP BY period_start, dim, value
), packed AS (
    SELECT period_start,
        {_DIST.format(dim='consumer_type')} AS consumer_type_dist,
        {_DIST.format(dim='product')} AS product_dist,
        {_DIST.format(dim='effect')} AS effects_dist,
        {_TOP.format(dim='strain')} AS top_strains,
        {_TOP.format(dim='brand')} AS top_brands,
        {_TOP.format(dim='frustration')} AS top_frustrations,
        {_TOP.format(dim='emotion')} AS top_emotions
    FROM ranked GROUP BY period_start
)
INSERT INTO time_series_aggregates AS a (period_type, period_start, period_end, total_posts, unique_authors,
    posts_with_media, positive_count, negative_count, neutral_count, avg_sentiment_score, consumer_type_dist,
    product_dist, effects_dist, avg_purchase_intent, high_intent_count, top_strains, top_brands, top_frustrations,
    top_emotions, computed_at)
SELECT :unit, t.period_start, t.period_start + CAST('1 ' || :unit AS interval), t.total, t.authors, t.media,
    t.positive, t.negative, t.neutral, t.sentiment, k.consumer_type_dist, k.product_dist, k.effects_dist,
    t.intent, t.high_intent, k.top_strains, k.top_brands, k.top_frustrations, k.top_emotions, now()
FROM totals t JOIN packed k USING (period_start)
ON CONFLICT (period_type, period_start) DO UPDATE SET
    period_end = EXCLUDED.period_end, total_posts = EXCLUDED.total_posts, unique_authors = EXCLUDED.unique_authors,
    posts_with_media = EXCLUDED.posts_with_media, positive_count = EXCLUDED.positive_count,
    negative_count = EXCLUDED.negative_count, neutral_count = EXCLUDED.neutral_count,
    avg_sentiment_score = EXCLUDED.avg_sentiment_score, consumer_type_dist = EXCLUDED.consumer_type_dist,
    product_dist = EXCLUDED.product_dist, effects_dist = EXCLUDED.effects_dist,
    avg_purchase_intent = EXCLUDED.avg_purchase_intent, high_intent_count = EXCLUDED.high_intent_count,
    top_strains = EXCLUDED.top_strains, top_brands = EXCLUDED.top_brands,
    top_frustrations = EXCLUDED.top_frustrations, top_emotions = EXCLUDED.top_emotions,
    computed_at = EXCLUDED.computed_at
RETURNING a.id
""")

# Periods of the range the upsert did not write: none of their posts is left.
_DELETE_EMPTY = text("""
    DELETE FROM time_series_aggregates WHERE period_type = :unit AND period_start >= :lo AND period_start < :hi
      AND id <> ALL(CAST(:written AS bigint[]))""")
_BOUNDS = text("SELECT date_trunc(:unit, CAST(:lo AS timestamptz) AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', "
               "date_trunc(:unit, CAST(:hi AS timestamptz) AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'")

_PREVIOUS = text("SELECT date_trunc(:unit, date_trunc(:unit, CAST(:now AS timestamptz) AT TIME ZONE 'UTC') "
                 "- interval '1 second') AT TIME ZONE 'UTC'")


def _bounds(session: Session, period_type: str, start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """Whole periods covering [start, end): from the period containing start to the one after end's."""
    if period_type not in PERIOD_TYPES:
        raise ValueError(f"period_type must be one of {', '.join(PERIOD_TYPES)}, not {period_type!r}")
    range_params(start, end)  # validates
    lo, hi = session.execute(_BOUNDS, {"unit": period_type, "lo": start, "hi": end}).one()
    if hi < end:
        hi = session.execute(_BOUNDS, {"unit": period_type, "lo": end + _one(period_type), "hi": end}).one()[0]
    return lo, hi


def _one(period_type: str) -> timedelta:
    return {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1),
            "month": timedelta(days=31)}[period_type]


def recompute_range(session: Session, period_type: str, start: datetime, end: datetime) -> int:
    """Rebuild every ``period_type`` period overlapping [start, end); periods written."""
    lo, hi = _bounds(session, period_type, start, end)
    params = {"unit": period_type, "top": TOP_ITEMS, **range_params(lo, hi)}
    roomy(session)
    written = list(session.execute(_UPSERT, params).scalars())
    session.execute(_DELETE_EMPTY, {**params, "written": written})
    return len(written)


def recompute_on_demand(session: Session, period_type: str, start: datetime, end: datetime) -> int:
    """An admin's rebuild of a range (recorded as job ``time_series_range``); periods written."""
    with runs.recorded(session, "time_series_range") as tally:
        tally.rows = recompute_range(session, period_type, start, end)
    return tally.rows


def recompute_recent(session: Session, now: datetime | None = None) -> int:
    """The scheduled job: the current and the previous period of each type."""
    if not try_job_lock(session, "time_series"):
        return 0
    now = now or utcnow()
    with runs.recorded(session, "time_series") as tally:
        for period_type in PERIOD_TYPES:
            previous = session.execute(_PREVIOUS, {"unit": period_type, "now": now}).scalar()
            tally.rows += recompute_range(session, period_type, previous, now)
    return tally.rows
