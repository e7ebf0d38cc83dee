"""Queue ``webhooks``: signed deliveries of B2B events to clients' endpoints (``services/webhooks``).

- Enqueued by: whoever produced events, after its commit, through :func:`request` with the
  delivery ids (the classification step via :func:`after_classification`, the API's "send test
  event"); the scheduler's ``webhooks.detect`` (trend_spike and sentiment_shift from the trends
  and hourly aggregates, every 5 minutes); each attempt that failed, for its next one; and the
  scheduler's ``webhooks.sweep`` (every minute), for deliveries overdue by a minute (a lost
  message, a worker that died mid-attempt); the sweep also deletes finished deliveries older
  than ``WEBHOOK_LOG_RETENTION_DAYS``.
- Latency: one HTTPS POST to the client's server, at most ``WEBHOOK_TIMEOUT_SECONDS`` to
  connect and as much to answer, between two single-statement transactions.
- Idempotency: the delivery row. An attempt first claims it (due, not delivered, endpoint
  enabled) in one UPDATE, so a message run twice sends once; an event is one row per
  endpoint (unique ``(endpoint_id, event_id)``), so an event produced twice is sent once.
- Retries: not Dramatiq's. A failed attempt stores when the next is due
  (``WEBHOOK_RETRY_SCHEDULE``: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h by default) and sends
  this actor again with that delay; after the last the delivery is given up; an endpoint
  failing for ``WEBHOOK_DISABLE_AFTER_SECONDS`` is disabled. Dramatiq retries only errors of
  our own (database away), a few times.
"""

from __future__ import annotations

import functools
import logging
from typing import Iterable

import dramatiq

from cannect.config import get_settings
from services.db import session_scope
from services.outbound import GuardedClient
from services.webhooks import delivery, endpoints, events

log = logging.getLogger(__name__)

#: Deliveries due for longer than this are re-sent by the sweep.
SWEEP_GRACE_SECONDS = 60
SWEEP_BATCH = 1000
#: Old deliveries deleted per sweep at most (a minute apart: 14 million a day).
PRUNE_BATCH = 10_000


@functools.lru_cache(maxsize=1)
def _http() -> GuardedClient:
    """One client per process: connections to each receiver are kept and shared by threads."""
    return GuardedClient(endpoints.policy(get_settings()), pool_maxsize=32)


def request(delivery_ids: Iterable[int]) -> None:
    """After a commit: one ``webhooks.deliver`` message per new delivery."""
    for delivery_id in sorted(set(delivery_ids)):
        deliver.send(delivery_id)


@dramatiq.actor(queue_name="webhooks", actor_name="webhooks.deliver", max_retries=5, min_backoff=2_000,
                max_backoff=120_000, time_limit=5 * 60_000)
def deliver(delivery_id: int) -> None:
    """One attempt of one delivery; the next attempt is this message again, delayed."""
    outcome = delivery.attempt(session_scope, _http(), get_settings(), delivery_id)
    if outcome.result in ("retry", "early") and outcome.retry_in is not None:
        deliver.send_with_options(args=(delivery_id,), delay=max(0, int(outcome.retry_in * 1000)))


@dramatiq.actor(queue_name="webhooks", actor_name="webhooks.sweep", max_retries=0, time_limit=60_000)
def sweep() -> None:
    """Scheduled: re-send deliveries whose message was lost (overdue by a minute), and delete
    finished ones older than ``WEBHOOK_LOG_RETENTION_DAYS``."""
    with session_scope() as session:
        ids = delivery.overdue(session, SWEEP_GRACE_SECONDS, SWEEP_BATCH)
    request(ids)
    with session_scope() as session:
        pruned = delivery.prune(session, get_settings().webhook_log_retention_days, PRUNE_BATCH)
    if ids or pruned:
        log.info("webhooks sweep: %d overdue deliveries queued again, %d old ones deleted", len(ids), pruned)


@dramatiq.actor(queue_name="webhooks", actor_name="webhooks.detect", max_retries=0, time_limit=5 * 60_000)
def detect() -> None:
    """Scheduled: trend_spike and sentiment_shift events from the latest trends and aggregates."""
    settings = get_settings()
    with session_scope() as session:
        ids = events.detect_trend_spikes(session, settings) + events.detect_sentiment_shift(session, settings)
    request(ids)
    if ids:
        log.info("webhooks detect: %d deliveries queued", len(ids))


def after_classification(post_ids: Iterable[int]) -> int:
    """For the classification step, after its commit: queue the high_intent_post and
    brand_mention events of these posts. Returns the deliveries queued."""
    with session_scope() as session:
        ids = events.events_for_classifications(session, post_ids, get_settings().webhook_high_intent_threshold)
    request(ids)
    _publish_live(post_ids)
    return len(ids)


def _publish_live(post_ids: Iterable[int]) -> None:
    """The dashboard's live feed (services/b2b/live.py): the same posts as realtime events."""
    from services.b2b import live
    from tasks.broker import app_redis

    with session_scope() as session:
        live.publish(app_redis(), session, post_ids, get_settings().webhook_high_intent_threshold)


#: (actor, seconds between runs) for tasks/scheduler.py.
SCHEDULE = [(sweep, 60), (detect, 300)]
