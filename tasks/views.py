"""Queue ``views``: recompute the intelligence aggregates, views and trends (services/intelligence).

- Enqueued by: the scheduler (``tasks/scheduler.py``, one job per actor below, at the cadence
  given there), and by admins for the full or ranged recomputes (``recompute_all_profiles``,
  ``recompute_time_series``), which the scheduler never sends.
- Latency: seconds each on a million classified posts (bench/aggregates.py); the materialized
  views refresh concurrently, so readers never wait.
- Idempotency: every job recomputes its rows from the posts as they are (upserts keyed by
  author, period, name or segment), so a message run twice writes the same thing; a run that
  finds the same job running elsewhere (advisory lock) skips.
- Retries: a few, with backoff (a failed run rolls back whole; the next scheduled run redoes
  it anyway).
"""

from __future__ import annotations

import logging
from datetime import datetime

import dramatiq

from services.db import session_scope
from services.intelligence import entities, metrics, opportunities, profiles, timeseries, trends, views

log = logging.getLogger(__name__)

_OPTIONS = dict(queue_name="views", max_retries=3, min_backoff=10_000, max_backoff=120_000, time_limit=15 * 60_000)


def _run(job: str, work) -> None:
    with session_scope() as session:
        rows = work(session)
    log.info("views: %s wrote %d rows", job, rows)


@dramatiq.actor(actor_name="views.refresh_profiles", **_OPTIONS)
def refresh_profiles() -> None:
    _run("profiles", profiles.refresh_changed)


@dramatiq.actor(actor_name="views.recompute_all_profiles", **_OPTIONS)
def recompute_all_profiles() -> None:
    _run("profiles_full", profiles.recompute_all)


@dramatiq.actor(actor_name="views.recompute_entities", **_OPTIONS)
def recompute_entities() -> None:
    _run("entities", entities.recompute)


@dramatiq.actor(actor_name="views.refresh_time_series", **_OPTIONS)
def refresh_time_series() -> None:
    _run("time_series", timeseries.recompute_recent)


@dramatiq.actor(actor_name="views.recompute_time_series", throws=(ValueError,), **_OPTIONS)
def recompute_time_series(period_type: str, start: str, end: str) -> None:
    """Rebuild a range (ISO timestamps with zone) on demand; a bad range fails once, unretried."""
    lo, hi = datetime.fromisoformat(start), datetime.fromisoformat(end)
    _run("time_series_range", lambda session: timeseries.recompute_on_demand(session, period_type, lo, hi))


@dramatiq.actor(actor_name="views.refresh_consumer_segments", **_OPTIONS)
def refresh_consumer_segments() -> None:
    _run("mv_consumer_segments", lambda session: views.refresh(session, "mv_consumer_segments"))


@dramatiq.actor(actor_name="views.refresh_trending_effects", **_OPTIONS)
def refresh_trending_effects() -> None:
    _run("mv_trending_effects", lambda session: views.refresh(session, "mv_trending_effects"))


@dramatiq.actor(actor_name="views.refresh_high_intent_users", **_OPTIONS)
def refresh_high_intent_users() -> None:
    _run("mv_high_intent_users", lambda session: views.refresh(session, "mv_high_intent_users"))


@dramatiq.actor(actor_name="views.compute_trends", **_OPTIONS)
def compute_trends() -> None:
    _run("trends", trends.compute)


@dramatiq.actor(actor_name="views.snapshot_metrics", **_OPTIONS)
def snapshot_metrics() -> None:
    _run("post_metrics", metrics.snapshot)


@dramatiq.actor(actor_name="views.compute_opportunities", **_OPTIONS)
def compute_opportunities() -> None:
    _run("opportunities", opportunities.compute)


#: (actor, seconds between runs) for the scheduler; the views' cadence is the seed's.
SCHEDULE = [
    (refresh_profiles, 60),
    (recompute_entities, 300),
    (refresh_time_series, 300),
    (refresh_consumer_segments, views.VIEWS["mv_consumer_segments"]),
    (refresh_trending_effects, views.VIEWS["mv_trending_effects"]),
    (refresh_high_intent_users, views.VIEWS["mv_high_intent_users"]),
    (compute_trends, 900),
    (snapshot_metrics, 900),
    (compute_opportunities, 3600),
]
