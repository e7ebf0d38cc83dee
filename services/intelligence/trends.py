"""Rising hashtags, strains, brands and effects, and the posts behind each trend.

For each kind and window (``24h``, ``7d``), a name's *current* count is the number of posts
naming it in the last window and its *previous* count those in the window before. Its
velocity is the smoothed growth (docs/intelligence.md, "Trends")::

    velocity = (current + K) / (previous + K) - 1        K = SMOOTHING = 5

so 1 → 3 posts reads +0.33, not +200 %, while 20 → 60 reads +1.6. Names with fewer than
MIN_POSTS posts over both windows are not stored. ``trend_sources`` keeps, per trend, the
TOP_SOURCES current-window posts with most engagement (relevance = (1 + engagement) / (1 + the
trend's best)); it references ``posts`` with a cascade, so a deleted post never appears.
Hashtags come from ``posts.tags`` and the facets' tag features of every indexed post that is not
classified off topic; strains, brands and effects from the counted classifications.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

from . import runs
from .base import CLASSIFIED, IN_RANGE, LATEST, range_params, roomy, try_job_lock, utcnow

WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}
KINDS = ("hashtag", "strain", "brand", "effect")
SMOOTHING = 5
MIN_POSTS = 3
TOP_SOURCES = 10

_OFF_TOPIC = ("EXISTS (SELECT 1 FROM post_classifications pc WHERE pc.post_id = p.id AND NOT pc.cannabis_related "
              "AND NOT EXISTS (SELECT 1 FROM post_classifications newer "
              "WHERE newer.post_id = pc.post_id AND newer.id > pc.id))")

_MENTIONS = {
    "hashtag": f"""SELECT DISTINCT lower(ltrim(tag, '#')) AS name, p.id AS post_id, p.created_at,
            p.like_count + p.repost_count + p.reply_count AS engagement
        FROM posts p CROSS JOIN LATERAL (
            SELECT unnest(p.tags) AS tag
            UNION ALL
            SELECT jsonb_path_query(p.facets, '$[*].features[*] ? (@."$type" == "app.bsky.richtext.facet#tag").tag')
                   #>> '{{}}') AS tags
        WHERE {IN_RANGE} AND NOT {_OFF_TOPIC} AND tag IS NOT NULL AND ltrim(tag, '#') <> ''""",
    "strain": f"""SELECT pc.strain_mentioned AS name, p.id AS post_id, p.created_at,
            p.like_count + p.repost_count + p.reply_count AS engagement
        FROM {CLASSIFIED} WHERE {IN_RANGE} AND pc.strain_mentioned IS NOT NULL""",
    "brand": f"""SELECT pc.brand_mentioned AS name, p.id AS post_id, p.created_at,
            p.like_count + p.repost_count + p.reply_count AS engagement
        FROM {CLASSIFIED} WHERE {IN_RANGE} AND pc.brand_mentioned IS NOT NULL""",
    "effect": f"""SELECT DISTINCT effect AS name, p.id AS post_id, p.created_at,
            p.like_count + p.repost_count + p.reply_count AS engagement
        FROM {CLASSIFIED} CROSS JOIN LATERAL unnest(pc.effects_mentioned) AS effect WHERE {IN_RANGE}""",
}
assert set(_MENTIONS) == set(KINDS) and LATEST in CLASSIFIED

_UPSERT = text("""
    INSERT INTO trends (kind, name, "window", current_count, previous_count, velocity, computed_at)
    SELECT :kind, name, :window, cur, prev, (cur + :k)::float / (prev + :k) - 1, now() FROM (
        SELECT name, count(*) FILTER (WHERE created_at >= :mid) AS cur,
               count(*) FILTER (WHERE created_at < :mid) AS prev
        FROM trend_mentions GROUP BY name) c
    WHERE cur + prev >= :min_posts
    ON CONFLICT (kind, "window", name) DO UPDATE SET current_count = EXCLUDED.current_count,
        previous_count = EXCLUDED.previous_count, velocity = EXCLUDED.velocity, computed_at = EXCLUDED.computed_at
    RETURNING id""")
_DROP_STALE = text('DELETE FROM trends WHERE kind = :kind AND "window" = :window '
                   'AND id <> ALL(CAST(:written AS bigint[]))')
_DROP_SOURCES = text('DELETE FROM trend_sources s USING trends t WHERE s.trend_id = t.id AND t.kind = :kind '
                     'AND t."window" = :window')
_SOURCES = text("""
    INSERT INTO trend_sources (trend_id, post_id, relevance_score)
    SELECT id, post_id, (1 + engagement)::float / (1 + best) FROM (
        SELECT t.id, m.post_id, m.engagement, max(m.engagement) OVER (PARTITION BY t.id) AS best,
               row_number() OVER (PARTITION BY t.id ORDER BY m.engagement DESC, m.created_at DESC, m.post_id) AS r
        FROM trend_mentions m JOIN trends t ON t.kind = :kind AND t."window" = :window AND t.name = m.name
        WHERE m.created_at >= :mid) ranked
    WHERE r <= :top""")


def velocity(current: int, previous: int) -> float:
    """The smoothed growth of the current window over the previous one (see the module doc)."""
    return (current + SMOOTHING) / (previous + SMOOTHING) - 1


def compute(session: Session, now: datetime | None = None) -> int:
    """The scheduled job: every kind and window; trends stored."""
    if not try_job_lock(session, "trends"):
        return 0
    now = now or utcnow()
    with runs.recorded(session, "trends") as tally:
        roomy(session)
        for window, length in WINDOWS.items():
            for kind in KINDS:
                tally.rows += _compute_one(session, kind, window, now - length, now - 2 * length, now)
    return tally.rows


def _compute_one(session: Session, kind: str, window: str, mid: datetime, lo: datetime, hi: datetime) -> int:
    params = {"kind": kind, "window": window, "mid": mid, "k": SMOOTHING, "min_posts": MIN_POSTS,
              "top": TOP_SOURCES, **range_params(lo, hi)}
    session.execute(text("DROP TABLE IF EXISTS trend_mentions"))
    session.execute(text(f"CREATE TEMP TABLE trend_mentions ON COMMIT DROP AS {_MENTIONS[kind]}"), params)
    written = list(session.execute(_UPSERT, params).scalars())
    session.execute(_DROP_STALE, {**params, "written": written})
    session.execute(_DROP_SOURCES, params)
    session.execute(_SOURCES, params)
    session.execute(text("DROP TABLE trend_mentions"))
    return len(written)


def rising(session: Session, kind: str, window: str = "24h", limit: int = 20) -> list[dict]:
    """Trends of a kind, fastest growing first, each with its supporting post ids."""
    if kind not in KINDS or window not in WINDOWS:
        raise ValueError(f"kind must be one of {KINDS} and window one of {tuple(WINDOWS)}")
    rows = session.execute(text("""
        SELECT t.name, t.current_count, t.previous_count, t.velocity, t.computed_at,
               coalesce(array_agg(s.post_id ORDER BY s.relevance_score DESC, s.post_id)
                        FILTER (WHERE s.post_id IS NOT NULL), '{}') AS post_ids
        FROM trends t LEFT JOIN trend_sources s ON s.trend_id = t.id
        WHERE t.kind = :kind AND t."window" = :window AND t.current_count > 0
        GROUP BY t.id ORDER BY t.velocity DESC, t.current_count DESC, t.name LIMIT :limit"""),
        {"kind": kind, "window": window, "limit": limit}).mappings()
    return [dict(row) for row in rows]
