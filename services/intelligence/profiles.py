"""``user_profiles``: one row per author, recomputed from the author's classified posts.

Incremental: triggers (migration 0010) list in ``intelligence_dirty_authors`` every author
whose posts were classified, re-classified or deleted; :func:`refresh_changed` takes a batch of
them and recomputes exactly those, in the transaction that removes them from the list (a
classification committed meanwhile marks its author again). :func:`recompute_all` is the
admin's full pass. An author left with no counted post loses the profile.

Every field and the four B2B target scores follow docs/intelligence.md ("User profiles");
:data:`TARGET_SCORES` is that formula's single source.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from . import runs
from .base import CLASSIFIED, roomy, try_job_lock

#: Authors recomputed per incremental run at most (the rest wait for the next run).
BATCH = 2000
#: Posts at which the profile's confidence reaches one half: confidence = n / (n + K).
CONFIDENCE_K = 2
#: Effects that signal a wellness or relief use.
RELIEF_EFFECTS = ("pain_relief", "anxiety_relief", "sleepy", "calm", "relaxed")
#: Items kept in each preference list.
TOP = {"product": 3, "effect": 5, "occasion": 3, "lifestyle": 5, "frustration": 3}

#: B2B target scores: score = round(100 * confidence * sum(weight * part)); parts are 0..1
#: shares of the author's counted posts (see the ``parts`` CTE below), weights sum to 1.
TARGET_SCORES: dict[str, dict[str, float]] = {
    "dispensary_target_score": {"intent": 0.35, "purchase_share": 0.25, "dispensary_share": 0.15,
                                "price_share": 0.10, "legal_part": 0.15},
    "wellness_brand_target_score": {"wellness_share": 0.45, "relief_share": 0.30, "low_dose_share": 0.15,
                                    "positive_share": 0.10},
    "premium_product_target_score": {"premium_share": 0.35, "connoisseur_share": 0.25, "brand_share": 0.20,
                                     "experienced_share": 0.20},
    "accessory_target_score": {"accessory_share": 0.40, "smokable_share": 0.30, "ritual_share": 0.15,
                               "heavy_use_share": 0.15},
}
assert all(abs(sum(w.values()) - 1) < 1e-9 for w in TARGET_SCORES.values())

_PART_COLUMNS = sorted({part for weights in TARGET_SCORES.values() for part in weights})


def _score_sql(weights: dict[str, float]) -> str:
    total = " + ".join(f"{w} * {part}" for part, w in weights.items())
    return f"round(100 * confidence * ({total}))::smallint"


_HOUR_BUCKET = """CASE WHEN extract(hour FROM b.created_at AT TIME ZONE 'UTC') BETWEEN 5 AND 11 THEN 'morning'
    WHEN extract(hour FROM b.created_at AT TIME ZONE 'UTC') BETWEEN 12 AND 16 THEN 'afternoon'
    WHEN extract(hour FROM b.created_at AT TIME ZONE 'UTC') BETWEEN 17 AND 20 THEN 'evening'
    WHEN extract(hour FROM b.created_at AT TIME ZONE 'UTC') BETWEEN 21 AND 23 THEN 'night'
    ELSE 'late_night' END"""

_UPSERT = """
WITH base AS (
    SELECT p.author_did, p.created_at, pc.*
    FROM {classified} WHERE {authors}
), dims AS (
    SELECT author_did, 'consumer_type' AS dim, consumer_type AS value, created_at FROM base
        WHERE consumer_type <> 'unknown'
    UNION ALL SELECT author_did, 'experience', experience_level, created_at FROM base
        WHERE experience_level <> 'unknown'
    UNION ALL SELECT author_did, 'product', product_category, created_at FROM base
        WHERE product_category NOT IN ('unknown', 'none', 'other')
    UNION ALL SELECT b.author_did, 'effect', e.value, b.created_at FROM base b
        CROSS JOIN LATERAL (SELECT DISTINCT unnest(coalesce(b.effects_mentioned, '{{}}')
                                                   || coalesce(b.effects_desired, '{{}}'))) AS e(value)
    UNION ALL SELECT author_did, 'occasion', occasion, created_at FROM base WHERE occasion IS NOT NULL
    UNION ALL SELECT b.author_did, 'lifestyle', t, b.created_at FROM base b CROSS JOIN LATERAL unnest(b.lifestyle_tags) t
    UNION ALL SELECT b.author_did, 'frustration', t, b.created_at FROM base b CROSS JOIN LATERAL unnest(b.frustrations) t
    UNION ALL SELECT b.author_did, 'time_of_day', coalesce(nullif(b.time_of_day, 'unknown'), {hour_bucket}), b.created_at
        FROM base b
    UNION ALL SELECT author_did, 'region', region_hint, created_at FROM base WHERE region_hint IS NOT NULL
    UNION ALL SELECT author_did, 'legal', legal_context, created_at FROM base
        WHERE legal_context IN ('legal', 'medical_only', 'illegal')
), counted AS (
    SELECT author_did, dim, value, count(*) AS n, max(created_at) AS last FROM dims GROUP BY 1, 2, 3
), ranked AS (
    SELECT *, row_number() OVER (PARTITION BY author_did, dim ORDER BY n DESC, last DESC, value) AS r FROM counted
), per_dim AS (
    SELECT author_did, dim, jsonb_object_agg(value, n) AS dist, array_agg(value ORDER BY r) AS ordered
    FROM ranked GROUP BY 1, 2
), prefs AS (
    SELECT author_did, jsonb_object_agg(dim, dist) AS dists,
        max(ordered[1]) FILTER (WHERE dim = 'consumer_type') AS primary_type,
        max(ordered[2]) FILTER (WHERE dim = 'consumer_type') AS secondary_type,
        max(ordered[1]) FILTER (WHERE dim = 'experience') AS experience,
        max(ordered[1:{top_product}]) FILTER (WHERE dim = 'product') AS products,
        max(ordered[1:{top_effect}]) FILTER (WHERE dim = 'effect') AS effects,
        max(ordered[1:{top_occasion}]) FILTER (WHERE dim = 'occasion') AS occasions,
        max(ordered[1:{top_lifestyle}]) FILTER (WHERE dim = 'lifestyle') AS lifestyles,
        max(ordered[1:{top_frustration}]) FILTER (WHERE dim = 'frustration') AS frustrations,
        max(ordered[1]) FILTER (WHERE dim = 'time_of_day') AS time_of_day,
        max(ordered[1]) FILTER (WHERE dim = 'region') AS region,
        max(ordered[1]) FILTER (WHERE dim = 'legal') AS legal_mode
    FROM per_dim GROUP BY author_did
), nums AS (
    SELECT author_did, count(*) AS n, min(created_at) AS first_at, max(created_at) AS last_at,
        greatest(extract(epoch FROM max(created_at) - min(created_at)) / 86400, 1) AS span_days,
        avg(sentiment_score) AS avg_sentiment_score, avg(purchase_intent) AS avg_intent,
        max(purchase_intent) AS max_intent,
        count(*) FILTER (WHERE purchase_intent >= 70) AS high_intent_posts,
        count(*) FILTER (WHERE purchase_stage IN ('shopping', 'post_purchase', 'loyal')
                         OR purchase_intent >= 70) AS purchase_signals,
        count(*) FILTER (WHERE dispensary_mentioned IS NOT NULL) AS dispensary_posts,
        count(*) FILTER (WHERE price_mentioned) AS price_posts,
        count(*) FILTER (WHERE consumer_type IN ('wellness', 'medical', 'spiritual')) AS wellness_posts,
        count(*) FILTER (WHERE (coalesce(effects_mentioned, '{{}}') || coalesce(effects_desired, '{{}}'))
                               && CAST(:relief AS text[])) AS relief_posts,
        count(*) FILTER (WHERE dosage_pattern IN ('microdose', 'light')) AS low_dose_posts,
        count(*) FILTER (WHERE sentiment = 'positive') AS positive_posts,
        count(*) FILTER (WHERE quality_perception = 'premium') AS premium_posts,
        count(*) FILTER (WHERE consumer_type = 'connoisseur') AS connoisseur_posts,
        count(*) FILTER (WHERE brand_mentioned IS NOT NULL) AS brand_posts,
        count(*) FILTER (WHERE experience_level IN ('daily', 'expert')) AS experienced_posts,
        count(*) FILTER (WHERE product_category = 'accessory') AS accessory_posts,
        count(*) FILTER (WHERE product_category IN ('flower', 'pre_roll', 'concentrate')) AS smokable_posts,
        count(*) FILTER (WHERE is_ritual) AS ritual_posts,
        count(*) FILTER (WHERE dosage_pattern IN ('moderate', 'heavy')
                         OR experience_level IN ('daily', 'expert')) AS heavy_use_posts
    FROM base GROUP BY author_did
), parts AS (
    SELECT *,
        n::float / (n + {confidence_k}) AS confidence,
        coalesce(avg_intent, 0) / 100.0 AS intent,
        purchase_signals::float / n AS purchase_share,
        dispensary_posts::float / n AS dispensary_share,
        price_posts::float / n AS price_share,
        CASE legal_mode WHEN 'legal' THEN 1.0 WHEN 'medical_only' THEN 0.75 WHEN 'illegal' THEN 0.0
                         ELSE 0.5 END AS legal_part,
        wellness_posts::float / n AS wellness_share,
        relief_posts::float / n AS relief_share,
        low_dose_posts::float / n AS low_dose_share,
        positive_posts::float / n AS positive_share,
        premium_posts::float / n AS premium_share,
        connoisseur_posts::float / n AS connoisseur_share,
        brand_posts::float / n AS brand_share,
        experienced_posts::float / n AS experienced_share,
        accessory_posts::float / n AS accessory_share,
        smokable_posts::float / n AS smokable_share,
        ritual_posts::float / n AS ritual_share,
        heavy_use_posts::float / n AS heavy_use_share,
        purchase_signals * 30.0 / greatest(span_days, 30) AS purchases_per_month
    FROM nums JOIN prefs USING (author_did)
)
INSERT INTO user_profiles AS u (
    author_did, author_handle, first_seen_at, last_seen_at, posts_analyzed, primary_consumer_type,
    secondary_consumer_type, experience_level, preferred_products, preferred_effects, typical_occasions,
    lifestyle_tags, avg_sentiment, posting_frequency, typical_time_of_day, purchase_frequency,
    estimated_monthly_spend, frustrations, likely_region, legal_market, dispensary_target_score,
    wellness_brand_target_score, premium_product_target_score, accessory_target_score, profile_updated_at,
    stats_json)
SELECT x.author_did, a.handle, x.first_at, x.last_at, x.n, x.primary_type, x.secondary_type, x.experience,
    coalesce(x.products, '{{}}'), coalesce(x.effects, '{{}}'), coalesce(x.occasions, '{{}}'),
    coalesce(x.lifestyles, '{{}}'), round(x.avg_sentiment_score / 100.0, 2),
    CASE WHEN x.n < 2 THEN 'occasional'
         WHEN (x.n - 1) * 7.0 / x.span_days >= 4 THEN 'daily'
         WHEN (x.n - 1) * 7.0 / x.span_days >= 0.75 THEN 'weekly'
         WHEN (x.n - 1) * 7.0 / x.span_days >= 0.2 THEN 'monthly'
         ELSE 'occasional' END,
    x.time_of_day,
    CASE WHEN x.purchase_signals = 0 THEN NULL
         WHEN x.purchases_per_month >= 3 THEN 'weekly'
         WHEN x.purchases_per_month >= 1.5 THEN 'biweekly'
         WHEN x.purchases_per_month >= 0.5 THEN 'monthly'
         ELSE 'occasional' END,
    CASE WHEN x.purchase_signals = 0 THEN NULL
         WHEN x.purchases_per_month * (CASE WHEN x.premium_share >= 0.3 THEN 60 ELSE 40 END) < 50 THEN '$0-50'
         WHEN x.purchases_per_month * (CASE WHEN x.premium_share >= 0.3 THEN 60 ELSE 40 END) < 100 THEN '$50-100'
         WHEN x.purchases_per_month * (CASE WHEN x.premium_share >= 0.3 THEN 60 ELSE 40 END) < 200 THEN '$100-200'
         ELSE '$200+' END,
    coalesce(x.frustrations, '{{}}'), x.region,
    CASE x.legal_mode WHEN 'legal' THEN true WHEN 'medical_only' THEN true WHEN 'illegal' THEN false END,
    {dispensary}, {wellness}, {premium}, {accessory}, now(),
    jsonb_build_object(
        'posts', x.n, 'confidence', round(x.confidence::numeric, 4),
        'avg_purchase_intent', round(x.avg_intent, 2), 'max_purchase_intent', x.max_intent,
        'high_intent_posts', x.high_intent_posts, 'purchase_signals', x.purchase_signals,
        'purchases_per_month', round(x.purchases_per_month, 3), 'active_days', round(x.span_days, 2),
        'parts', jsonb_build_object({parts_json}),
        'distributions', x.dists)
FROM parts x
LEFT JOIN profiles a ON a.did = x.author_did
ON CONFLICT (author_did) DO UPDATE SET
    author_handle = EXCLUDED.author_handle, first_seen_at = EXCLUDED.first_seen_at,
    last_seen_at = EXCLUDED.last_seen_at, posts_analyzed = EXCLUDED.posts_analyzed,
    primary_consumer_type = EXCLUDED.primary_consumer_type, secondary_consumer_type = EXCLUDED.secondary_consumer_type,
    experience_level = EXCLUDED.experience_level, preferred_products = EXCLUDED.preferred_products,
    preferred_effects = EXCLUDED.preferred_effects, typical_occasions = EXCLUDED.typical_occasions,
    lifestyle_tags = EXCLUDED.lifestyle_tags, avg_sentiment = EXCLUDED.avg_sentiment,
    posting_frequency = EXCLUDED.posting_frequency, typical_time_of_day = EXCLUDED.typical_time_of_day,
    purchase_frequency = EXCLUDED.purchase_frequency, estimated_monthly_spend = EXCLUDED.estimated_monthly_spend,
    frustrations = EXCLUDED.frustrations, likely_region = EXCLUDED.likely_region,
    legal_market = EXCLUDED.legal_market, dispensary_target_score = EXCLUDED.dispensary_target_score,
    wellness_brand_target_score = EXCLUDED.wellness_brand_target_score,
    premium_product_target_score = EXCLUDED.premium_product_target_score,
    accessory_target_score = EXCLUDED.accessory_target_score, profile_updated_at = EXCLUDED.profile_updated_at,
    stats_json = EXCLUDED.stats_json
RETURNING u.author_did
"""


def _statement(authors: str) -> str:
    parts_json = ", ".join(f"'{part}', round(x.{part}::numeric, 4)" for part in _PART_COLUMNS)
    return _UPSERT.format(
        classified=CLASSIFIED, authors=authors, hour_bucket=_HOUR_BUCKET, confidence_k=CONFIDENCE_K,
        parts_json=parts_json, dispensary=_score_sql(TARGET_SCORES["dispensary_target_score"]),
        wellness=_score_sql(TARGET_SCORES["wellness_brand_target_score"]),
        premium=_score_sql(TARGET_SCORES["premium_product_target_score"]),
        accessory=_score_sql(TARGET_SCORES["accessory_target_score"]),
        **{f"top_{k}": v for k, v in TOP.items()})


_SOME = _statement("p.author_did = ANY(CAST(:dids AS text[]))")
_ALL = _statement("true")
# Profiles of authors the upsert did not write: no counted post is left.
_DROP_SOME = text("""DELETE FROM user_profiles WHERE author_did = ANY(CAST(:dids AS text[]))
                     AND author_did <> ALL(CAST(:written AS text[]))""")
_DROP_ALL = text("""DELETE FROM user_profiles u WHERE NOT EXISTS (
                        SELECT 1 FROM unnest(CAST(:written AS text[])) AS w(did) WHERE w.did = u.author_did)""")
_CLAIM = text("""
    DELETE FROM intelligence_dirty_authors WHERE author_did IN (
        SELECT author_did FROM intelligence_dirty_authors ORDER BY marked_at LIMIT :limit
        FOR UPDATE SKIP LOCKED)
    RETURNING author_did""")


def recompute(session: Session, dids: list[str]) -> int:
    """Recompute the profiles of these authors (dropping those with no counted post); rows written."""
    if not dids:
        return 0
    params = {"dids": sorted(set(dids)), "relief": list(RELIEF_EFFECTS)}
    roomy(session)
    written = list(session.execute(text(_SOME), params).scalars())
    session.execute(_DROP_SOME, {**params, "written": written})
    return len(written)


def refresh_changed(session: Session, limit: int = BATCH) -> int:
    """The scheduled job: recompute authors whose classified posts changed since the last run."""
    if not try_job_lock(session, "profiles"):
        return 0
    with runs.recorded(session, "profiles") as tally:
        dids = list(session.execute(_CLAIM, {"limit": limit}).scalars())
        tally.rows = recompute(session, dids)
    return tally.rows


def recompute_all(session: Session) -> int:
    """The admin's full pass: every author's profile from scratch."""
    if not try_job_lock(session, "profiles"):
        raise RuntimeError("a profile run is in progress; try again when it ends")
    with runs.recorded(session, "profiles_full") as tally:
        session.execute(text("DELETE FROM intelligence_dirty_authors"))
        roomy(session)
        written = list(session.execute(text(_ALL), {"relief": list(RELIEF_EFFECTS)}).scalars())
        session.execute(_DROP_ALL, {"written": written})
        tally.rows = len(written)
    return tally.rows
