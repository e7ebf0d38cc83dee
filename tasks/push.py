"""Queue ``push``: web pushes, in batches of (subscription, notification or broadcast).

- Enqueued by: the notify step, after its commit, with the pairs of
  ``services.push.subscriptions.fan_out`` (:func:`enqueue_notifications`: one
  :data:`deliver_many` message per ``PUSH_DELIVERY_BATCH`` pairs); and
  ``POST /api/push/broadcast``, one :data:`broadcast` message that pages through the
  subscriptions ``PUSH_BROADCAST_BATCH_SIZE`` at a time, each page enqueuing its deliveries
  and the next page.
- Latency: one statement reads a batch, its pushes go out together (up to
  ``PUSH_SEND_CONCURRENCY`` at once per process; each one HTTPS request to the browser
  vendor's push service, ``PUSH_TIMEOUT_SECONDS`` to connect and as much to answer), one
  Redis round trip settles them. A notification older than ``PUSH_TTL_SECONDS`` is dropped.
- Idempotency: a delivered push is remembered in Redis for its TTL, so a message run twice
  sends once; what to send is re-read at send time (``services.push.delivery``).
- Retries: a push that failed transiently (408, 429, 5xx, network) leaves its batch as a
  message of its own (:data:`deliver`, :data:`deliver_broadcast`), due after the push
  service's ``Retry-After`` or 5 s, and retried by Dramatiq with backoff up to 15 min, for
  ``PUSH_MAX_RETRIES`` retries in all; then :data:`gave_up` counts it and keeps it in the list
  of recent give-ups (``cannect status``). Dead subscriptions (404, 410, other 4xx) are
  deleted. A batch that fails as a whole (database or Redis away) is retried as a whole.
"""

from __future__ import annotations

import functools
import logging
from concurrent.futures import ThreadPoolExecutor

import dramatiq

from cannect.config import DatabaseSettings, get_settings, load_settings
from services.db import make_engine, session_scope
from services.outbound import GuardedClient
from services.push import delivery, stats, subscriptions

from .broker import app_redis

log = logging.getLogger(__name__)

RETRIES = dict(max_retries=get_settings().push_max_retries, min_backoff=5_000, max_backoff=15 * 60_000,
               on_retry_exhausted="push.gave_up", time_limit=2 * 60_000)
#: A batch's own retries are for failures of the whole batch (database, Redis).
BATCH_RETRIES = dict(max_retries=20, min_backoff=1_000, max_backoff=60_000, time_limit=10 * 60_000)
#: When a push that failed in a batch is tried again, if its push service did not say.
FIRST_RETRY_MS = 5_000


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


@functools.lru_cache(maxsize=1)
def _senders() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(get_settings().push_send_concurrency, thread_name_prefix="cannect-push")


def _send_all(http, settings, pushes):
    """A batch's pushes at once (the pool is shared by the process's worker threads)."""
    if len(pushes) < 2:
        return [delivery.send(http, settings, push) for push in pushes]
    return list(_senders().map(lambda push: delivery.send(http, settings, push), pushes))


def _deliver(prepare) -> list[delivery.Outcome] | None:
    settings = get_settings()
    if not settings.vapid_private_key:
        stats.record(app_redis(), "skipped", "push_not_configured")
        return None
    return delivery.deliver(_connection, app_redis(), _http(), settings, prepare, _send_all)


def _raise_retry(outcomes) -> None:
    """A single delivery that failed transiently: Dramatiq retries it (Retry-After as the delay)."""
    outcome = outcomes[0] if outcomes else None
    if outcome is not None and outcome.retry:
        delay = None if outcome.retry_after is None else int(outcome.retry_after * 1000)
        raise dramatiq.Retry(f"push answered {outcome.reason}", delay=delay)


def _retry_alone(actor, args, outcome: delivery.Outcome) -> None:
    """A push that failed transiently in a batch: a message of its own, its first attempt spent."""
    if RETRIES["max_retries"] < 1:
        stats.record_give_up(app_redis(), outcome.reason, subscription=args[0],
                             push=f"b{args[1]['id']}" if isinstance(args[1], dict) else f"n{args[1]}", attempts=1)
        return
    delay = FIRST_RETRY_MS if outcome.retry_after is None else int(outcome.retry_after * 1000)
    actor.send_with_options(args=args, delay=delay, retries=1)


@dramatiq.actor(queue_name="push", actor_name="push.deliver", **RETRIES)
def deliver(subscription_id: int, notification_id: int) -> None:
    """Push one notification to one of its recipient's subscriptions (a retry of a batch's push)."""
    _raise_retry(_deliver(lambda connection, now: delivery.prepare_notifications(
        connection, get_settings(), [(subscription_id, notification_id)], now)))


@dramatiq.actor(queue_name="push", actor_name="push.deliver_many", **BATCH_RETRIES)
def deliver_many(pairs: list[list[int]]) -> None:
    """Push notifications to their recipients' subscriptions: ``[[subscription_id, notification_id], ...]``."""
    pairs = [(int(s), int(n)) for s, n in pairs]
    outcomes = _deliver(lambda connection, now: delivery.prepare_notifications(
        connection, get_settings(), pairs, now)) or []
    for pair, outcome in zip(pairs, outcomes):
        if outcome.retry:
            _retry_alone(deliver, pair, outcome)


@dramatiq.actor(queue_name="push", actor_name="push.deliver_broadcast", **RETRIES)
def deliver_broadcast(subscription_id: int, message: dict) -> None:
    """Push an admin's broadcast to one subscription (a retry of a batch's push)."""
    _raise_retry(_deliver(lambda connection, now: delivery.prepare_broadcasts(
        connection, get_settings(), [subscription_id], message, now)))


@dramatiq.actor(queue_name="push", actor_name="push.deliver_broadcast_many", **BATCH_RETRIES)
def deliver_broadcast_many(subscription_ids: list[int], message: dict) -> None:
    """Push an admin's broadcast to these subscriptions."""
    outcomes = _deliver(lambda connection, now: delivery.prepare_broadcasts(
        connection, get_settings(), subscription_ids, message, now)) or []
    for subscription_id, outcome in zip(subscription_ids, outcomes):
        if outcome.retry:
            _retry_alone(deliver_broadcast, (subscription_id, message), outcome)


@dramatiq.actor(queue_name="push", actor_name="push.broadcast", max_retries=20, min_backoff=1_000,
                max_backoff=60_000)
def broadcast(message: dict, after_id: int = 0) -> None:
    """One page of a broadcast's fan-out: its deliveries in batches, then the next page."""
    settings = get_settings()
    with session_scope() as session:
        ids = subscriptions.broadcast_page(session, message, after_id, settings.push_broadcast_batch_size)
    for chunk in _chunks(ids, settings.push_delivery_batch):
        deliver_broadcast_many.send(chunk, message)
    if len(ids) == settings.push_broadcast_batch_size:
        broadcast.send(message, ids[-1])


@dramatiq.actor(queue_name="push", actor_name="push.gave_up", max_retries=5)
def gave_up(message: dict, retries: dict) -> None:
    """Called by Dramatiq when a delivery ran out of retries: count it and keep a note."""
    reason = (message.get("options", {}).get("traceback") or "").strip().rsplit("\n", 1)[-1]
    reason = reason.rsplit("push answered ", 1)[-1] if "push answered " in reason else "error"
    args = message.get("args") or [None, None]
    what = f"b{args[1].get('id')}" if isinstance(args[1], dict) else f"n{args[1]}"
    stats.record_give_up(app_redis(), reason, subscription=args[0], push=what, attempts=retries.get("retries", 0) + 1)
    log.warning("push %s to subscription %s given up after %s attempts (%s)", what, args[0],
                retries.get("retries", 0) + 1, reason)


def _chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def enqueue_notifications(pairs: list[tuple[int, int]]) -> None:
    """After the notify step's commit: one ``push.deliver_many`` per ``PUSH_DELIVERY_BATCH`` pairs."""
    for chunk in _chunks([list(pair) for pair in pairs], get_settings().push_delivery_batch):
        deliver_many.send(chunk)
