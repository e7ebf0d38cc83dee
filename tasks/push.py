"""Queue ``push``: web pushes, one message per (subscription, notification or broadcast).

- Enqueued by: the notify step, after its commit, with the pairs of
  ``services.push.subscriptions.fan_out`` (:func:`enqueue_notifications`); and
  ``POST /api/push/broadcast``, one :data:`broadcast` message that pages through the
  subscriptions ``PUSH_BROADCAST_BATCH_SIZE`` at a time, each page enqueuing its deliveries
  and the next page.
- Latency: one HTTPS request to the browser vendor's push service (``PUSH_TIMEOUT_SECONDS``
  to connect and as much to answer); a notification older than ``PUSH_TTL_SECONDS`` is dropped.
- Idempotency: a delivered push is remembered in Redis for its TTL, so a message run twice
  sends once; what to send is re-read at send time (``services.push.delivery``).
- Retries: 408, 429, 5xx and network errors raise ``dramatiq.Retry``, with the push
  service's ``Retry-After`` as the delay when it gave one, else backoff from 5 s to 15 min,
  up to ``PUSH_MAX_RETRIES`` times; then :data:`gave_up` counts it and keeps it in the list
  of recent give-ups (``cannect status``). Dead subscriptions (404, 410, other 4xx) are deleted.
"""

from __future__ import annotations

import functools
import logging

import dramatiq
import redis

from cannect.config import DatabaseSettings, get_settings, load_settings
from services.db import make_engine, session_scope
from services.outbound import GuardedClient
from services.push import delivery, stats, subscriptions

log = logging.getLogger(__name__)

RETRIES = dict(max_retries=get_settings().push_max_retries, min_backoff=5_000, max_backoff=15 * 60_000,
               on_retry_exhausted="push.gave_up", time_limit=2 * 60_000)


@functools.lru_cache(maxsize=1)
def _redis() -> redis.Redis:
    return redis.Redis.from_url(get_settings().redis_url, socket_timeout=5)


@functools.lru_cache(maxsize=1)
def _http() -> GuardedClient:
    """One client per process: connections to each push service are kept and shared by threads."""
    return GuardedClient(subscriptions.endpoint_policy(get_settings()), pool_maxsize=64)


@functools.lru_cache(maxsize=1)
def _engine():
    """Deliveries run single statements (read, then delete or touch): autocommit, and no ping
    on checkout, which would double their round trips. A connection PostgreSQL dropped fails
    one attempt, which is retried."""
    return make_engine(load_settings(DatabaseSettings).sqlalchemy_url, pool_pre_ping=False,
                       isolation_level="AUTOCOMMIT")


def _connection():
    return _engine().connect()


def _deliver(prepare) -> None:
    settings = get_settings()
    if not settings.vapid_private_key:
        stats.record(_redis(), "skipped", "push_not_configured")
        return
    outcome = delivery.deliver(_connection, _redis(), _http(), settings, prepare)
    if outcome.retry:
        delay = None if outcome.retry_after is None else int(outcome.retry_after * 1000)
        raise dramatiq.Retry(f"push answered {outcome.reason}", delay=delay)


@dramatiq.actor(queue_name="push", actor_name="push.deliver", **RETRIES)
def deliver(subscription_id: int, notification_id: int) -> None:
    """Push one notification to one of its recipient's subscriptions."""
    _deliver(lambda connection, now: delivery.prepare_notification(
        connection, get_settings(), subscription_id, notification_id, now))


@dramatiq.actor(queue_name="push", actor_name="push.deliver_broadcast", **RETRIES)
def deliver_broadcast(subscription_id: int, message: dict) -> None:
    """Push an admin's broadcast to one subscription."""
    _deliver(lambda connection, now: delivery.prepare_broadcast(
        connection, get_settings(), subscription_id, message, now))


@dramatiq.actor(queue_name="push", actor_name="push.broadcast", max_retries=20, min_backoff=1_000,
                max_backoff=60_000)
def broadcast(message: dict, after_id: int = 0) -> None:
    """One page of a broadcast's fan-out: a delivery per subscription, then the next page."""
    size = get_settings().push_broadcast_batch_size
    with session_scope() as session:
        ids = subscriptions.broadcast_page(session, message, after_id, size)
    for subscription_id in ids:
        deliver_broadcast.send(subscription_id, message)
    if len(ids) == size:
        broadcast.send(message, ids[-1])


@dramatiq.actor(queue_name="push", actor_name="push.gave_up", max_retries=5)
def gave_up(message: dict, retries: dict) -> None:
    """Called by Dramatiq when a delivery ran out of retries: count it and keep a note."""
    reason = (message.get("options", {}).get("traceback") or "").strip().rsplit("\n", 1)[-1]
    reason = reason.rsplit("push answered ", 1)[-1] if "push answered " in reason else "error"
    args = message.get("args") or [None, None]
    what = f"b{args[1].get('id')}" if isinstance(args[1], dict) else f"n{args[1]}"
    stats.record_give_up(_redis(), reason, subscription=args[0], push=what, attempts=retries.get("retries", 0) + 1)
    log.warning("push %s to subscription %s given up after %s attempts (%s)", what, args[0],
                retries.get("retries", 0) + 1, reason)


def enqueue_notifications(pairs: list[tuple[int, int]]) -> None:
    """After the notify step's commit: one ``push.deliver`` per (subscription, notification)."""
    for subscription_id, notification_id in pairs:
        deliver.send(subscription_id, notification_id)
