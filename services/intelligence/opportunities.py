"""Opportunity scores: where a client's product would meet demand that nobody serves well.

The idea scoring of business-portfolio-architecture.md (market size, competition, demand ...
averaged to 0-100) turned toward clients. Segments: each product category and each effect
(mentioned or desired), in each region (``region_hint``; ``unknown`` when none) and in ``all``
regions together. Over the last WINDOW_DAYS (*current*) and the WINDOW_DAYS before
(*previous*), with shares of the segment's current posts (docs/intelligence.md, "Opportunity
scores")::

    demand     = 100 * (0.5 * volume + 0.3 * high_intent_share + 0.2 * growth)
                 volume = posts / (posts + VOLUME_K); growth = (clamp(velocity, -1, 1) + 1) / 2,
                 velocity = (posts + 5) / (previous_posts + 5) - 1
    unmet_need = 100 * (0.4 * availability_share + 0.3 * price_share + 0.3 * negative_share)
                 price: a 'price' frustration or price_sentiment 'expensive';
                 negative: negative sentiment, mixed counting one half
    saturation = 100 * branded_share * HHI   (HHI = sum of squared brand shares of mentions)
    score      = 0.45 * demand + 0.35 * unmet_need + 0.20 * (100 - saturation)

Each row stores the three parts, their contributions (which sum to the score) and the inputs in
``parts``; ``opportunity_samples`` holds up to SAMPLES current posts (highest purchase intent,
then engagement), removed with their post. Segments with fewer than MIN_POSTS current posts are
not scored.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

from . import runs
from .base import CLASSIFIED, IN_RANGE, range_params, roomy, try_job_lock, utcnow

WINDOW_DAYS = 30
VOLUME_K = 20
SMOOTHING = 5
MIN_POSTS = 3
SAMPLES = 5
WEIGHTS = {"demand": 0.45, "unmet_need": 0.35, "openness": 0.20}
DEMAND = {"volume": 0.5, "high_intent_share": 0.3, "growth": 0.2}
UNMET = {"availability_share": 0.4, "price_share": 0.3, "negative_share": 0.3}

_ROWS = f"""
CREATE TEMP TABLE opportunity_rows ON COMMIT DROP AS
WITH counted AS (
    SELECT p.id AS post_id, p.created_at >= :mid AS current, pc.product_category, pc.effects_mentioned,
           pc.effects_desired, pc.purchase_intent, pc.frustrations, pc.price_sentiment, pc.sentiment,
           pc.brand_mentioned, p.like_count + p.repost_count + p.reply_count AS engagement,
           coalesce(nullif(btrim(pc.region_hint), ''), 'unknown') AS region
    FROM {CLASSIFIED} WHERE {IN_RANGE}
), subjects AS (
    SELECT 'product' AS kind, product_category AS subject, c.* FROM counted c
        WHERE product_category NOT IN ('unknown', 'none', 'other')
    UNION ALL
    SELECT 'effect', e.effect, c.* FROM counted c
        CROSS JOIN LATERAL (SELECT DISTINCT unnest(coalesce(c.effects_mentioned, '{{}}')
                                                   || coalesce(c.effects_desired, '{{}}'))) AS e(effect)
)
SELECT s.kind, s.subject, r.region, s.post_id, s.current, s.purchase_intent, s.frustrations, s.price_sentiment,
       s.sentiment, s.brand_mentioned, s.engagement
FROM subjects s CROSS JOIN LATERAL (VALUES (s.region), ('all')) AS r(region)
"""

_SCORE = text(f"""
WITH seg AS (
    SELECT kind, subject, region,
        count(*) FILTER (WHERE current) AS posts,
        count(*) FILTER (WHERE NOT current) AS previous_posts,
        count(*) FILTER (WHERE current AND purchase_intent >= 70) AS high_intent_posts,
        count(*) FILTER (WHERE current AND 'availability' = ANY(frustrations)) AS availability_posts,
        count(*) FILTER (WHERE current AND ('price' = ANY(frustrations) OR price_sentiment = 'expensive'))
            AS price_posts,
        count(*) FILTER (WHERE current AND sentiment = 'negative') AS negative_posts,
        count(*) FILTER (WHERE current AND sentiment = 'mixed') AS mixed_posts,
        count(*) FILTER (WHERE current AND brand_mentioned IS NOT NULL) AS branded_posts
    FROM opportunity_rows GROUP BY kind, subject, region
), brand_counts AS (
    SELECT kind, subject, region, brand_mentioned AS brand, count(*) AS n
    FROM opportunity_rows WHERE current AND brand_mentioned IS NOT NULL GROUP BY 1, 2, 3, 4
), concentration AS (
    SELECT kind, subject, region, sum(power(n::float / total, 2)) AS hhi,
           jsonb_agg(jsonb_build_object('name', brand, 'count', n) ORDER BY n DESC, brand)
               FILTER (WHERE r <= 5) AS top_brands
    FROM (SELECT *, sum(n) OVER w AS total, row_number() OVER (w ORDER BY n DESC, brand) AS r
          FROM brand_counts WINDOW w AS (PARTITION BY kind, subject, region)) b
    GROUP BY 1, 2, 3
), inputs AS (
    SELECT seg.*, coalesce(c.hhi, 0) AS hhi, coalesce(c.top_brands, '[]') AS top_brands,
        posts::float / (posts + :volume_k) AS volume,
        high_intent_posts::float / posts AS high_intent_share,
        (posts + :k)::float / (previous_posts + :k) - 1 AS velocity,
        availability_posts::float / posts AS availability_share,
        price_posts::float / posts AS price_share,
        (negative_posts + 0.5 * mixed_posts)::float / posts AS negative_share,
        branded_posts::float / posts AS branded_share
    FROM seg LEFT JOIN concentration c USING (kind, subject, region)
    WHERE posts >= :min_posts
), parts AS (
    SELECT inputs.*, (least(greatest(velocity, -1), 1) + 1) / 2 AS growth,
        100 * ({UNMET['availability_share']} * availability_share + {UNMET['price_share']} * price_share
               + {UNMET['negative_share']} * negative_share) AS unmet,
        100 * branded_share * hhi AS saturation
    FROM inputs
), scored AS (
    SELECT parts.*, 100 * ({DEMAND['volume']} * volume + {DEMAND['high_intent_share']} * high_intent_share
                           + {DEMAND['growth']} * growth) AS demand
    FROM parts
)
INSERT INTO opportunity_scores AS o (kind, subject, region, score, demand_score, unmet_need_score, saturation_score,
                                     parts, computed_at)
SELECT kind, subject, region,
    round(CAST({WEIGHTS['demand']} * demand + {WEIGHTS['unmet_need']} * unmet
               + {WEIGHTS['openness']} * (100 - saturation) AS numeric), 2),
    round(demand::numeric, 2), round(unmet::numeric, 2), round(saturation::numeric, 2),
    jsonb_build_object(
        'contributions', jsonb_build_object(
            'demand', round(CAST({WEIGHTS['demand']} * demand AS numeric), 4),
            'unmet_need', round(CAST({WEIGHTS['unmet_need']} * unmet AS numeric), 4),
            'openness', round(CAST({WEIGHTS['openness']} * (100 - saturation) AS numeric), 4)),
        'posts', posts, 'previous_posts', previous_posts, 'high_intent_posts', high_intent_posts,
        'availability_posts', availability_posts, 'price_posts', price_posts, 'negative_posts', negative_posts,
        'mixed_posts', mixed_posts, 'branded_posts', branded_posts,
        'volume', round(volume::numeric, 4), 'high_intent_share', round(high_intent_share::numeric, 4),
        'velocity', round(velocity::numeric, 4), 'growth', round(growth::numeric, 4),
        'availability_share', round(availability_share::numeric, 4), 'price_share', round(price_share::numeric, 4),
        'negative_share', round(negative_share::numeric, 4), 'branded_share', round(branded_share::numeric, 4),
        'hhi', round(hhi::numeric, 4), 'top_brands', top_brands, 'window_days', :window_days),
    now()
FROM scored
ON CONFLICT (kind, subject, region) DO UPDATE SET score = EXCLUDED.score, demand_score = EXCLUDED.demand_score,
    unmet_need_score = EXCLUDED.unmet_need_score, saturation_score = EXCLUDED.saturation_score,
    parts = EXCLUDED.parts, computed_at = EXCLUDED.computed_at
RETURNING o.id
""")
_DROP_STALE = text("DELETE FROM opportunity_scores WHERE id <> ALL(CAST(:written AS bigint[]))")
_DROP_SAMPLES = text("DELETE FROM opportunity_samples")
_SAMPLES = text("""
    INSERT INTO opportunity_samples (opportunity_id, post_id, rank)
    SELECT id, post_id, r FROM (
        SELECT o.id, x.post_id, row_number() OVER (PARTITION BY o.id ORDER BY x.purchase_intent DESC NULLS LAST,
                                                   x.engagement DESC, x.post_id DESC) AS r
        FROM opportunity_rows x JOIN opportunity_scores o
          ON o.kind = x.kind AND o.subject = x.subject AND o.region = x.region
        WHERE x.current) ranked
    WHERE r <= :samples""")


def compute(session: Session, now: datetime | None = None) -> int:
    """The scheduled job: score every segment of the last two windows; segments scored."""
    if not try_job_lock(session, "opportunities"):
        return 0
    now = now or utcnow()
    window = timedelta(days=WINDOW_DAYS)
    params = {"mid": now - window, "k": SMOOTHING, "volume_k": VOLUME_K, "min_posts": MIN_POSTS,
              "window_days": WINDOW_DAYS, "samples": SAMPLES, **range_params(now - 2 * window, now)}
    with runs.recorded(session, "opportunities") as tally:
        roomy(session)
        session.execute(text("DROP TABLE IF EXISTS opportunity_rows"))
        session.execute(text(_ROWS), params)
        written = list(session.execute(_SCORE, params).scalars())
        session.execute(_DROP_STALE, {"written": written})
        tally.rows = len(written)
        session.execute(_DROP_SAMPLES)
        session.execute(_SAMPLES, params)
        session.execute(text("DROP TABLE opportunity_rows"))
    return tally.rows


def top(session: Session, kind: str = "product", region: str | None = None, limit: int = 20) -> list[dict]:
    """Best opportunities of a kind (in one region, or across ``all``), with parts and sample posts."""
    if kind not in ("product", "effect"):
        raise ValueError("kind must be 'product' or 'effect'")
    rows = session.execute(text("""
        SELECT o.kind, o.subject, o.region, o.score, o.demand_score, o.unmet_need_score, o.saturation_score,
               o.parts, o.computed_at,
               coalesce(array_agg(s.post_id ORDER BY s.rank) FILTER (WHERE s.post_id IS NOT NULL), '{}')
                   AS sample_post_ids
        FROM opportunity_scores o LEFT JOIN opportunity_samples s ON s.opportunity_id = o.id
        WHERE o.kind = :kind AND lower(o.region) = lower(:region)
        GROUP BY o.id ORDER BY o.score DESC, o.subject LIMIT :limit"""),
        {"kind": kind, "region": region or "all", "limit": limit}).mappings()
    return [dict(row) for row in rows]
