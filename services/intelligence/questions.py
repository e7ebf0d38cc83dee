"""The seed's seven time-analysis questions, answered from the counted classifications.

Each function takes a session, a time range [start, end) of post creation times (aware
datetimes; UTC is the clock of every hour and weekday here) and an optional region (matched
case-insensitively against ``region_hint``), and returns plain dicts and lists, ready for JSON
(the B2B API exposes them). Deleted posts are gone from the tables, so from every answer.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import text
from sqlalchemy.orm import Session

from .base import CLASSIFIED, IN_RANGE, IN_REGION, range_params, utcnow

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
TIMES_OF_DAY = ("morning", "afternoon", "evening", "night", "late_night")
_WHERE = f"{IN_RANGE} AND {IN_REGION}"


def _params(start: datetime, end: datetime, region: str | None, **extra) -> dict:
    return {**range_params(start, end), "region": region, **extra}


def _rows(session: Session, sql: str, params: dict) -> list[dict]:
    return [dict(row) for row in session.execute(text(sql), params).mappings()]


def _round(value, digits: int = 2):
    return None if value is None else round(float(value), digits)


def consumption_times(session: Session, start: datetime, end: datetime, region: str | None = None) -> dict:
    """What times do people consume most? Posts per UTC hour, and per consumption time of day."""
    params = _params(start, end, region)
    hours = {int(r["hour"]): r["posts"] for r in _rows(session, f"""
        SELECT extract(hour FROM p.created_at AT TIME ZONE 'UTC') AS hour, count(*) AS posts
        FROM {CLASSIFIED} WHERE {_WHERE} GROUP BY 1""", params)}
    times = {r["time_of_day"]: r["posts"] for r in _rows(session, f"""
        SELECT pc.time_of_day, count(*) AS posts FROM {CLASSIFIED}
        WHERE {_WHERE} AND pc.time_of_day IN ('morning', 'afternoon', 'evening', 'night', 'late_night')
        GROUP BY 1""", params)}
    by_hour = [{"hour": h, "posts": hours.get(h, 0)} for h in range(24)]
    by_time = {t: times.get(t, 0) for t in TIMES_OF_DAY}
    return {
        "by_hour": by_hour,
        "by_time_of_day": by_time,
        "peak_hour": max(by_hour, key=lambda r: (r["posts"], -r["hour"]))["hour"] if hours else None,
        "peak_time_of_day": max(by_time, key=lambda t: by_time[t]) if times else None,
        "posts": sum(hours.values()),
    }


def _days_in(start: datetime, end: datetime) -> dict[str, int]:
    """Weekday and weekend days (UTC) whose start falls in [start, end)."""
    counts = {"weekday": 0, "weekend": 0}
    day = datetime.combine(start.astimezone(timezone.utc).date(), datetime.min.time(), timezone.utc)
    if day < start:
        day += timedelta(days=1)
    while day < end:
        counts["weekend" if day.weekday() >= 5 else "weekday"] += 1
        day += timedelta(days=1)
    return counts


def weekend_vs_weekday(session: Session, start: datetime, end: datetime, region: str | None = None) -> dict:
    """Weekend vs weekday: posts per day of week, per-day rates, sentiment and occasions of each."""
    params = _params(start, end, region)
    rows = _rows(session, f"""
        SELECT extract(isodow FROM p.created_at AT TIME ZONE 'UTC')::int AS dow, count(*) AS posts,
               avg(pc.sentiment_score) AS sentiment, avg(pc.purchase_intent) AS intent
        FROM {CLASSIFIED} WHERE {_WHERE} GROUP BY 1""", params)
    occasions = _rows(session, f"""
        SELECT extract(isodow FROM p.created_at AT TIME ZONE 'UTC')::int >= 6 AS weekend, pc.occasion,
               count(*) AS posts
        FROM {CLASSIFIED} WHERE {_WHERE} AND pc.occasion IS NOT NULL
        GROUP BY 1, 2 ORDER BY 3 DESC, 2""", params)
    by_dow = {r["dow"]: r for r in rows}
    days = _days_in(start, end)
    summary = {}
    for part, dows in (("weekday", range(1, 6)), ("weekend", range(6, 8))):
        chosen = [by_dow[d] for d in dows if d in by_dow]
        posts = sum(r["posts"] for r in chosen)
        weighted = [(r["sentiment"], r["posts"]) for r in chosen if r["sentiment"] is not None]
        summary[part] = {
            "posts": posts, "days": days[part],
            "posts_per_day": _round(posts / days[part]) if days[part] else None,
            "avg_sentiment": _round(sum(float(s) * n for s, n in weighted) / sum(n for _, n in weighted))
            if weighted else None,
            "top_occasions": [{"name": o["occasion"], "posts": o["posts"]} for o in occasions
                              if o["weekend"] == (part == "weekend")][:5],
        }
    rates = {part: summary[part]["posts"] / days[part] if days[part] else None for part in summary}
    weekday_rate, weekend_rate = rates["weekday"], rates["weekend"]
    return {
        "by_weekday": [{"dow": d, "name": WEEKDAYS[d - 1], "posts": by_dow[d]["posts"] if d in by_dow else 0}
                       for d in range(1, 8)],
        **summary,
        "weekend_lift": _round(weekend_rate / weekday_rate - 1, 4) if weekday_rate and weekend_rate is not None
        else None,
    }


def _slope(values: list[float]) -> float:
    """Least-squares slope of values over their index (0 for fewer than two)."""
    n = len(values)
    if n < 2:
        return 0.0
    mean_x, mean_y = (n - 1) / 2, sum(values) / n
    return sum((i - mean_x) * (v - mean_y) for i, v in enumerate(values)) / sum((i - mean_x) ** 2 for i in range(n))


def effect_trends(session: Session, start: datetime, end: datetime, region: str | None = None,
                  effects: list[str] | None = None, top: int = 10) -> dict:
    """Is an effect ("functional high": focused, energetic, creative) trending? Weekly shares and slope.

    share = posts of the week mentioning the effect / posts of the week; slope in share points
    per week (least squares); direction ``up``/``down`` when the slope exceeds 0.5 point a week.
    """
    params = _params(start, end, region)
    weekly = _rows(session, f"""
        SELECT date_trunc('week', p.created_at AT TIME ZONE 'UTC') AS week, count(*) AS posts
        FROM {CLASSIFIED} WHERE {_WHERE} GROUP BY 1 ORDER BY 1""", params)
    mentions = _rows(session, f"""
        SELECT date_trunc('week', p.created_at AT TIME ZONE 'UTC') AS week, effect, count(*) AS posts
        FROM {CLASSIFIED} CROSS JOIN LATERAL (SELECT DISTINCT unnest(pc.effects_mentioned)) AS e(effect)
        WHERE {_WHERE} GROUP BY 1, 2""", params)
    weeks = [r["week"] for r in weekly]
    totals = {r["week"]: r["posts"] for r in weekly}
    per_effect: dict[str, dict] = {}
    for r in mentions:
        per_effect.setdefault(r["effect"], {})[r["week"]] = r["posts"]
    chosen = effects or sorted(per_effect, key=lambda e: (-sum(per_effect[e].values()), e))[:top]
    answer = []
    for effect in chosen:
        counts = [per_effect.get(effect, {}).get(w, 0) for w in weeks]
        shares = [100.0 * c / totals[w] for c, w in zip(counts, weeks)]
        slope = _slope(shares)
        answer.append({"effect": effect, "counts": counts, "shares": [_round(s) for s in shares],
                       "total": sum(counts), "slope_per_week": _round(slope, 3),
                       "direction": "up" if slope > 0.5 else "down" if slope < -0.5 else "flat"})
    return {"weeks": [w.date().isoformat() for w in weeks], "posts": [totals[w] for w in weeks], "effects": answer}


def seasonality(session: Session, start: datetime, end: datetime, region: str | None = None) -> dict:
    """Seasonal trends: posts, sentiment, intent and leading products per month, and per calendar month."""
    params = _params(start, end, region)
    months = _rows(session, f"""
        SELECT date_trunc('month', p.created_at AT TIME ZONE 'UTC') AS month, count(*) AS posts,
               avg(pc.sentiment_score) AS sentiment, avg(pc.purchase_intent) AS intent
        FROM {CLASSIFIED} WHERE {_WHERE} GROUP BY 1 ORDER BY 1""", params)
    products = _rows(session, f"""
        SELECT date_trunc('month', p.created_at AT TIME ZONE 'UTC') AS month, pc.product_category AS product,
               count(*) AS posts
        FROM {CLASSIFIED} WHERE {_WHERE} AND pc.product_category NOT IN ('unknown', 'none')
        GROUP BY 1, 2 ORDER BY 1, 3 DESC, 2""", params)
    by_calendar: dict[int, list[int]] = {}
    series = []
    for m in months:
        by_calendar.setdefault(m["month"].month, []).append(m["posts"])
        series.append({"month": m["month"].strftime("%Y-%m"), "posts": m["posts"],
                       "avg_sentiment": _round(m["sentiment"]), "avg_purchase_intent": _round(m["intent"]),
                       "top_products": [{"name": p["product"], "posts": p["posts"]} for p in products
                                        if p["month"] == m["month"]][:3]})
    calendar = {month: _round(sum(v) / len(v)) for month, v in sorted(by_calendar.items())}
    return {"months": series, "by_calendar_month": calendar,
            "peak_month": max(series, key=lambda m: m["posts"])["month"] if series else None}


def purchase_intent_now(session: Session, start: datetime | None = None, end: datetime | None = None,
                        region: str | None = None, threshold: int = 70, limit: int = 50) -> dict:
    """Real-time purchase intent: high-intent posts (default: the last 24 hours), newest intent first."""
    end = end or utcnow()
    start = start or end - timedelta(hours=24)
    if not 0 <= threshold <= 100:
        raise ValueError("threshold must be between 0 and 100")
    params = _params(start, end, region, threshold=threshold, limit=limit)
    posts = _rows(session, f"""
        SELECT p.id AS post_id, p.uri, p.author_did, pc.purchase_intent, pc.purchase_stage, pc.product_category,
               pc.region_hint, p.created_at
        FROM {CLASSIFIED} WHERE {_WHERE} AND pc.purchase_intent >= :threshold
        ORDER BY pc.purchase_intent DESC, p.created_at DESC, p.id DESC LIMIT :limit""", params)
    totals = _rows(session, f"""
        SELECT coalesce(pc.product_category, 'unknown') AS product, count(*) AS posts
        FROM {CLASSIFIED} WHERE {_WHERE} AND pc.purchase_intent >= :threshold GROUP BY 1 ORDER BY 2 DESC, 1""", params)
    for post in posts:
        post["created_at"] = post["created_at"].isoformat()
    return {"since": start.isoformat(), "until": end.isoformat(), "threshold": threshold,
            "total": sum(t["posts"] for t in totals),
            "by_product": {t["product"]: t["posts"] for t in totals}, "posts": posts}


def complaint_times(session: Session, start: datetime, end: datetime, region: str | None = None) -> dict:
    """When do people complain most? Posts with a frustration by UTC hour and weekday, and their share."""
    params = _params(start, end, region)
    rows = _rows(session, f"""
        SELECT extract(hour FROM p.created_at AT TIME ZONE 'UTC')::int AS hour,
               extract(isodow FROM p.created_at AT TIME ZONE 'UTC')::int AS dow, count(*) AS posts,
               count(*) FILTER (WHERE cardinality(pc.frustrations) > 0) AS complaints
        FROM {CLASSIFIED} WHERE {_WHERE} GROUP BY 1, 2""", params)
    top = _rows(session, f"""
        SELECT f AS name, count(*) AS posts FROM {CLASSIFIED} CROSS JOIN LATERAL unnest(pc.frustrations) AS f
        WHERE {_WHERE} GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10""", params)

    def fold(key: str, keys) -> list[dict]:
        out = []
        for k in keys:
            posts = sum(r["posts"] for r in rows if r[key] == k)
            complaints = sum(r["complaints"] for r in rows if r[key] == k)
            out.append({key: k, "complaints": complaints, "posts": posts,
                        "share": _round(complaints / posts, 4) if posts else None})
        return out

    by_hour, by_dow = fold("hour", range(24)), fold("dow", range(1, 8))
    for entry in by_dow:
        entry["name"] = WEEKDAYS[entry["dow"] - 1]
    any_complaint = any(r["complaints"] for r in rows)
    return {"by_hour": by_hour, "by_weekday": by_dow, "top_frustrations": top,
            "complaints": sum(r["complaints"] for r in rows),
            "peak_hour": max(by_hour, key=lambda r: (r["complaints"], -r["hour"]))["hour"] if any_complaint else None,
            "peak_weekday": max(by_dow, key=lambda r: (r["complaints"], -r["dow"]))["name"] if any_complaint else None}


def brand_sentiment(session: Session, start: datetime, end: datetime, region: str | None = None,
                    brands: list[str] | None = None, top: int = 10) -> dict:
    """Brand sentiment over time: weekly mentions and average sentiment (-100..100) per brand."""
    params = _params(start, end, region, brands=brands)
    rows = _rows(session, f"""
        SELECT pc.brand_mentioned AS brand, date_trunc('week', p.created_at AT TIME ZONE 'UTC') AS week,
               count(*) AS mentions, avg(pc.sentiment_score) AS sentiment
        FROM {CLASSIFIED} WHERE {_WHERE} AND pc.brand_mentioned IS NOT NULL
          AND (CAST(:brands AS text[]) IS NULL OR pc.brand_mentioned = ANY(CAST(:brands AS text[])))
        GROUP BY 1, 2 ORDER BY 1, 2""", params)
    per_brand: dict[str, list[dict]] = {}
    for r in rows:
        per_brand.setdefault(r["brand"], []).append(r)
    chosen = brands or sorted(per_brand, key=lambda b: (-sum(w["mentions"] for w in per_brand[b]), b))[:top]
    answer = []
    for brand in chosen:
        weeks = per_brand.get(brand, [])
        scored = [(float(w["sentiment"]), w["mentions"]) for w in weeks if w["sentiment"] is not None]
        answer.append({
            "brand": brand, "mentions": sum(w["mentions"] for w in weeks),
            "avg_sentiment": _round(sum(s * n for s, n in scored) / sum(n for _, n in scored)) if scored else None,
            "weeks": [{"week": w["week"].date().isoformat(), "mentions": w["mentions"],
                       "avg_sentiment": _round(w["sentiment"])} for w in weeks],
        })
    return {"brands": answer}
