"""Classification progress and LLM spend, for ``cannect status`` and ``/metrics``.

Progress counts posts by their state (``pipeline.py``'s rules): classified at the current
version, classified at an older one (the backfill's work), never processed, failed and
waiting for a retry round, failed for good at the current version. Spend comes from
``llm_calls`` (``costs.py``): today's dollars (UTC) and cost per 1,000 posts over the last
day and in all.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import Post

from . import CLASSIFICATION_VERSION, costs


def progress(session: Session) -> dict[str, int]:
    current = Post.classification_version >= CLASSIFICATION_VERSION
    processed, error = Post.processed_at.is_not(None), Post.processing_error.is_not(None)
    row = session.execute(select(
        func.count().filter(processed & current),
        func.count().filter(processed & ~current),
        func.count().filter(~processed & ~error),
        func.count().filter(~processed & error & ~current),
        func.count().filter(~processed & error & current),
    ).select_from(Post)).one()
    return {"classified": row[0], "outdated": row[1], "unprocessed": row[2], "failed_retrying": row[3],
            "failed": row[4]}


def _usd(value) -> float | None:
    return None if value is None else float(value)


def summary(session: Session, now: datetime | None = None) -> dict:
    """Progress, spend today and cost per 1,000 posts (last 24 hours and all time)."""
    now = now or datetime.now(timezone.utc)
    day = costs.usage_since(session, now - timedelta(days=1))
    ever = costs.usage_since(session, datetime(1970, 1, 1, tzinfo=timezone.utc))
    return {
        "version": CLASSIFICATION_VERSION,
        **progress(session),
        "llm": {
            "spend_today_usd": _usd(costs.spend_today(session, "classify")),
            "cost_per_1000_posts_usd_24h": _usd(day.cost_per_1000_posts),
            "cost_per_1000_posts_usd": _usd(ever.cost_per_1000_posts),
            "calls_24h": day.calls,
            "failed_calls_24h": day.failed_calls,
            "cache_hit_ratio_24h": None if day.cache_hit_ratio is None else round(day.cache_hit_ratio, 4),
            "tokens_24h": {"cache_hit": day.cache_hit_tokens, "cache_miss": day.cache_miss_tokens,
                           "output": day.output_tokens},
        },
    }
