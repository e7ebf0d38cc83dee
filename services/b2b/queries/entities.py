"""Brands, strains (with their sentiment week by week) and the time series.

Brands and strains are the rows ``services/intelligence/entities.py`` keeps (mention counts
and sentiment over all counted posts); a strain's weekly sentiment is read from the counted
classifications whose mention resolves to the strain by the same *key* rule (lower case,
letters and digits, against the name, normalized name or an alias). Time series are the
stored periods of ``time_series_aggregates``. All cached until their jobs run again.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

from services.intelligence.base import CLASSIFIED, IN_RANGE, range_params

from . import cache
from .ranges import resolve

#: Default span of a strain's weekly sentiment.
STRAIN_WEEKS_SPAN = timedelta(weeks=12)
#: Default span of a time series per period type.
SERIES_SPAN = {"hour": timedelta(days=2), "day": timedelta(days=30), "week": timedelta(weeks=26),
               "month": timedelta(days=365)}

JOBS = {
    "brands": ("entities",),
    # weekly sentiment is read from the classifications: refreshed with the time series
    "strains": ("entities", "time_series"),
    "timeseries": ("time_series", "time_series_range"),
}

_KEY = "regexp_replace(lower({}), '[^[:alnum:]]+', '', 'g')"


def _num(value, digits: int = 2):
    return None if value is None else round(float(value), digits)


def _iso(value):
    return value.isoformat() if value is not None else None


_BRANDS = text("""
    SELECT name, category, website, is_verified, mention_count, avg_sentiment, first_seen_at, last_seen_at
    FROM brands WHERE mention_count >= :min_mentions
    ORDER BY mention_count DESC, name LIMIT :limit""")


def brands(session: Session, min_mentions: int = 1, limit: int = 50) -> dict:
    """Brands by mentions over all counted posts; sentiment -1..1."""
    params = {"min_mentions": min_mentions, "limit": limit}
    return cache.answer(session, "brands", params, JOBS["brands"], lambda s: _brands(s, params))


def brands_json(session: Session, min_mentions: int = 1, limit: int = 50) -> cache.JsonAnswer:
    """:func:`brands` as its JSON body (the same for every client)."""
    params = {"min_mentions": min_mentions, "limit": limit}
    return cache.answer_json(session, "brands", params, JOBS["brands"], lambda s: _brands(s, params))


def _brands(session: Session, params: dict) -> dict:
    return {"brands": [{"name": b["name"], "category": b["category"], "website": b["website"],
                        "is_verified": b["is_verified"], "mention_count": b["mention_count"],
                        "avg_sentiment": _num(b["avg_sentiment"]), "first_seen_at": _iso(b["first_seen_at"]),
                        "last_seen_at": _iso(b["last_seen_at"])}
                       for b in session.execute(_BRANDS, params).mappings()]}


_STRAINS = text("""
    SELECT id, name, strain_type, mention_count, avg_sentiment, common_effects, first_seen_at, last_seen_at
    FROM strains WHERE mention_count >= :min_mentions
      AND (CAST(:strain_type AS text) IS NULL OR strain_type = CAST(:strain_type AS text))
    ORDER BY mention_count DESC, name LIMIT :limit""")
_STRAIN_WEEKS = text(f"""
    WITH keys AS (
        SELECT DISTINCT t.id, k.key FROM strains t
        CROSS JOIN LATERAL (SELECT t.normalized_name AS key UNION SELECT {_KEY.format('t.name')}
                            UNION SELECT {_KEY.format('a')} FROM unnest(t.aliases) a) k
        WHERE t.id = ANY(CAST(:ids AS int[])) AND k.key <> ''
    ), spellings AS (
        SELECT pc.strain_mentioned AS spelling, date_trunc('week', p.created_at AT TIME ZONE 'UTC') AS week,
               count(*) AS mentions, sum(pc.sentiment_score) AS sentiment_sum, count(pc.sentiment_score) AS scored
        FROM {CLASSIFIED} WHERE {IN_RANGE} AND pc.strain_mentioned IS NOT NULL GROUP BY 1, 2
    )
    SELECT k.id, s.week, sum(s.mentions)::bigint AS mentions,
           round(sum(s.sentiment_sum) / nullif(sum(s.scored), 0), 2) AS sentiment
    FROM spellings s JOIN keys k ON k.key = {_KEY.format('s.spelling')}
    GROUP BY 1, 2 ORDER BY 1, 2""")


def strains(session: Session, since: datetime | None = None, until: datetime | None = None,
            strain_type: str | None = None, min_mentions: int = 1, limit: int = 20) -> dict:
    """Strains by mentions, each with mentions and mean sentiment score (-100..100) per ISO week
    of [since, until) (default: the last 12 weeks up to now)."""
    params = {"since": since, "until": until, "strain_type": strain_type, "min_mentions": min_mentions,
              "limit": limit}
    return cache.answer(session, "strains", params, JOBS["strains"], lambda s: _strains(s, params))


def strains_json(session: Session, since: datetime | None = None, until: datetime | None = None,
                 strain_type: str | None = None, min_mentions: int = 1, limit: int = 20) -> cache.JsonAnswer:
    """:func:`strains` as its JSON body (the same for every client)."""
    params = {"since": since, "until": until, "strain_type": strain_type, "min_mentions": min_mentions,
              "limit": limit}
    return cache.answer_json(session, "strains", params, JOBS["strains"], lambda s: _strains(s, params))


def _strains(session: Session, params: dict) -> dict:
    since, until = resolve(params["since"], params["until"], STRAIN_WEEKS_SPAN)
    rows = list(session.execute(_STRAINS, params).mappings())
    weeks: dict[int, list[dict]] = {}
    if rows:
        found = session.execute(_STRAIN_WEEKS, {"ids": [r["id"] for r in rows], **range_params(since, until)})
        for w in found.mappings():
            weeks.setdefault(w["id"], []).append({"week": w["week"].date().isoformat(), "mentions": w["mentions"],
                                                  "avg_sentiment_score": _num(w["sentiment"])})
    return {"since": since.isoformat(), "until": until.isoformat(), "strains": [
        {"name": r["name"], "strain_type": r["strain_type"], "mention_count": r["mention_count"],
         "avg_sentiment": _num(r["avg_sentiment"]), "common_effects": list(r["common_effects"] or []),
         "first_seen_at": _iso(r["first_seen_at"]), "last_seen_at": _iso(r["last_seen_at"]),
         "weeks": weeks.get(r["id"], [])} for r in rows]}


_SERIES = text("""
    SELECT period_start, period_end, total_posts, unique_authors, posts_with_media, positive_count, negative_count,
           neutral_count, avg_sentiment_score, avg_purchase_intent, high_intent_count, consumer_type_dist,
           product_dist, effects_dist, top_strains, top_brands, top_frustrations, top_emotions
    FROM time_series_aggregates
    WHERE period_type = :period AND period_start >= :since AND period_start < :until
    ORDER BY period_start""")


def timeseries(session: Session, period: str, since: datetime | None = None, until: datetime | None = None) -> dict:
    """Stored periods starting in [since, until), oldest first (default: ``SERIES_SPAN`` up to
    now); a period without posts is absent."""
    params = {"period": period, "since": since, "until": until}
    return cache.answer(session, "timeseries", params, JOBS["timeseries"], lambda s: _timeseries(s, params))


def timeseries_json(session: Session, period: str, since: datetime | None = None,
                    until: datetime | None = None) -> cache.JsonAnswer:
    """:func:`timeseries` as its JSON body (the same for every client)."""
    params = {"period": period, "since": since, "until": until}
    return cache.answer_json(session, "timeseries", params, JOBS["timeseries"], lambda s: _timeseries(s, params))


def _timeseries(session: Session, params: dict) -> dict:
    period = params["period"]
    since, until = resolve(params["since"], params["until"], SERIES_SPAN[period])
    points = []
    for r in session.execute(_SERIES, {"period": period, "since": since, "until": until}).mappings():
        point = dict(r)
        point.update(period_start=_iso(r["period_start"]), period_end=_iso(r["period_end"]),
                     avg_sentiment_score=_num(r["avg_sentiment_score"]),
                     avg_purchase_intent=_num(r["avg_purchase_intent"]))
        points.append(point)
    return {"period": period, "since": since.isoformat(), "until": until.isoformat(), "points": points}
