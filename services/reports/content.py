"""The numbers of one client's report for one period, read through the service functions the
B2B API answers with (``services/b2b/queries``, ``services/b2b/usage``): no second
implementation, the same caches, the same live look-up of posts (a deleted post never appears).

Sections follow the client's plan, as the API would: the overview needs ``timeseries``, trends
``trends``, opportunities ``opportunities``, the high-intent highlights ``intents``; the usage
section (the client's own calls) is always there. The market sections are market-wide, the
same for every client; only the name, the plan and the usage are the client's own.

Trends and opportunities are the latest computed (as of building the report: their jobs keep
only the current windows); the overview, the activity series and the highlights cover exactly
the period.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from models import ApiClient
from services.b2b import usage
from services.b2b.queries import entities, insights, market
from services.intelligence.base import utcnow
from services.intelligence.trends import KINDS

from .periods import Period

#: Items listed per section.
TOP_TRENDS = 5
TOP_OPPORTUNITIES = 5
TOP_HIGHLIGHTS = 5
#: (period of the totals, period of the activity series) per frequency.
SERIES = {"daily": ("day", "hour"), "weekly": ("week", "day")}
#: Length of one bar of the activity series (every bar is there, empty ones with zeros).
BUCKET = {"daily": timedelta(hours=1), "weekly": timedelta(days=1)}
#: Trend window per frequency.
TREND_WINDOW = {"daily": "24h", "weekly": "7d"}
#: Section -> the API endpoint a plan must allow for it.
SECTION_ENDPOINTS = {"overview": "timeseries", "trends": "trends", "opportunities": "opportunities",
                     "highlights": "intents"}

_SUMS = {"posts": "total_posts", "unique_authors": "unique_authors", "high_intent_posts": "high_intent_count",
         "positive_posts": "positive_count", "negative_posts": "negative_count", "neutral_posts": "neutral_count"}


def _overview(session: Session, period: Period) -> tuple[dict, list[dict]]:
    total_type, series_type = SERIES[period.frequency]
    totals = entities.timeseries(session, total_type, period.start, period.end)["points"]
    point = totals[0] if totals else {}
    overview = {name: int(point.get(column) or 0) for name, column in _SUMS.items()}
    overview["avg_sentiment_score"] = point.get("avg_sentiment_score")
    overview["avg_purchase_intent"] = point.get("avg_purchase_intent")
    series = {datetime.fromisoformat(p["period_start"]): p
              for p in entities.timeseries(session, series_type, period.start, period.end)["points"]}
    step = BUCKET[period.frequency]
    buckets = [period.start + step * i for i in range(int((period.end - period.start) / step))]
    activity = [{"start": b.isoformat(), "posts": series[b]["total_posts"] if b in series else 0,
                 "high_intent_posts": series[b]["high_intent_count"] if b in series else 0} for b in buckets]
    return overview, activity


def _trends(session: Session, period: Period) -> list[dict]:
    answer = market.trends(session, KINDS, TREND_WINDOW[period.frequency], TOP_TRENDS, sources=1)
    rows = [{"kind": kind, **t} for kind in KINDS for t in answer["trends"].get(kind, [])]
    return sorted(rows, key=lambda t: (-t["velocity"], -t["current_count"], t["kind"], t["name"]))


def _opportunities(session: Session) -> list[dict]:
    found = market.opportunities(session, "product", None, TOP_OPPORTUNITIES, samples=1)["opportunities"]
    return [{**o, "contributions": dict((o.get("parts") or {}).get("contributions") or {})} for o in found]


def _highlights(session: Session, period: Period) -> dict:
    answer = insights.answer(session, "purchase-intent-now", period.start, period.end)["answer"]
    return {"total": answer["total"], "by_product": dict(answer["by_product"]),
            "posts": answer["posts"][:TOP_HIGHLIGHTS]}


def _usage(session: Session, redis, client: ApiClient, period: Period) -> dict:
    found = usage.report(session, redis, client.id, client.monthly_quota, client.rate_limit_per_min,
                         period.start, period.end)
    endpoints: dict[str, dict] = {}
    for day in found["days"]:
        row = endpoints.setdefault(day["endpoint"], {"calls": 0, "errors": 0})
        row["calls"] += day["calls"]
        row["errors"] += day["errors"]
    return {"calls": found["totalCalls"], "errors": sum(e["errors"] for e in endpoints.values()),
            "endpoints": dict(sorted(endpoints.items(), key=lambda kv: (-kv[1]["calls"], kv[0]))),
            "quota": found["quota"]}


def sections(client: ApiClient) -> list[str]:
    """The market sections the client's plan allows, in report order."""
    allowed = set(client.allowed_endpoints or ())
    return [name for name, endpoint in SECTION_ENDPOINTS.items() if endpoint in allowed]


def gather(session: Session, redis, client: ApiClient, period: Period) -> dict:
    """Everything the report shows, as plain data (the email, the charts and the CSV are made from it)."""
    shown = sections(client)
    report: dict = {"client": {"id": client.id, "name": client.client_name, "tier": client.tier},
                    "period": period, "sections": shown, "overview": None, "activity": [], "trends": [],
                    "opportunities": [], "highlights": None, "trend_window": TREND_WINDOW[period.frequency], "built_at": utcnow()}
    if "overview" in shown:
        report["overview"], report["activity"] = _overview(session, period)
    if "trends" in shown:
        report["trends"] = _trends(session, period)
    if "opportunities" in shown:
        report["opportunities"] = _opportunities(session)
    if "highlights" in shown:
        report["highlights"] = _highlights(session, period)
    report["usage"] = _usage(session, redis, client, period)
    return report
