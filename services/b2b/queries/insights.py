"""The seed's seven time-analysis questions (``services/intelligence/questions.py``) for clients.

The answers are computed from the counted classifications of the range and cached until the
next time-series run (every 5 minutes): a question over a year of posts takes seconds, and the
time series it would agree with change no faster. The posts of ``purchase-intent-now`` are
looked up live, so a deleted post is left out at once.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from services.intelligence import questions
from services.read_cache import ReadCache

from . import cache, posts
from .ranges import resolve

JOBS = ("time_series",)

#: Question (URL name) → (function, default span before ``until``).
QUESTIONS = {
    "consumption-times": (questions.consumption_times, timedelta(days=90)),
    "weekend-vs-weekday": (questions.weekend_vs_weekday, timedelta(days=90)),
    "effect-trends": (questions.effect_trends, timedelta(weeks=12)),
    "seasonality": (questions.seasonality, timedelta(days=365)),
    "purchase-intent-now": (questions.purchase_intent_now, timedelta(hours=24)),
    "complaint-times": (questions.complaint_times, timedelta(days=90)),
    "brand-sentiment": (questions.brand_sentiment, timedelta(weeks=12)),
}


def _string_keys(value):
    """JSON objects have string keys (seasonality's calendar months are ints)."""
    if isinstance(value, dict):
        return {str(k): _string_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_string_keys(v) for v in value]
    return value


def answer(session: Session, question: str, since: datetime | None = None, until: datetime | None = None,
           region: str | None = None, names: list[str] | None = None, live: ReadCache | None = None) -> dict:
    """One question's answer over [since, until) (defaults per question), in a region if given.

    ``names`` chooses the effects (effect-trends) or brands (brand-sentiment) to follow.
    """
    if question not in QUESTIONS:
        raise ValueError(f"unknown question {question!r}; one of {', '.join(QUESTIONS)}")
    ask, span = QUESTIONS[question]
    params = {"since": since, "until": until, "region": region.lower() if region else None, "names": names}

    def compute(s: Session) -> dict:
        lo, hi = resolve(since, until, span)
        extra = {"effects": names} if question == "effect-trends" else {"brands": names} \
            if question == "brand-sentiment" else {}
        return {"question": question, "since": lo.isoformat(), "until": hi.isoformat(), "region": region,
                "answer": _string_keys(ask(s, lo, hi, region, **extra))}

    cached = cache.answer(session, f"insights/{question}", params, JOBS, compute)
    if question != "purchase-intent-now":
        return cached
    found = posts.alive(session, [p["post_id"] for p in cached["answer"]["posts"]], live)
    shown = [{**found[p["post_id"]], **{k: v for k, v in p.items() if k not in ("post_id", "uri", "author_did",
                                                                               "created_at")}}
             for p in cached["answer"]["posts"] if p["post_id"] in found]
    return {**cached, "answer": {**cached["answer"], "posts": shown}}
