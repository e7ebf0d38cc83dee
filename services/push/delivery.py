"""Sending one push: read what it needs, decide whether it is still wanted, send, settle.

:func:`deliver` is the whole of one delivery (the ``push`` actors only turn its outcome into
a Dramatiq retry). It reads the subscription and the notification (or takes the broadcast)
in a short transaction, re-checks at send time that the notification still exists, is
younger than ``PUSH_TTL_SECONDS`` and is still wanted (:func:`unwanted`), encrypts it with
pywebpush (aes128gcm), signs it with py_vapid, POSTs it with TTL and Urgency headers through
the guarded client of ``services/outbound.py`` (``PUSH_TIMEOUT_SECONDS``), and then deletes a
subscription the push service refused or notes that it works. No database connection is held
while the push service answers.

What an answer means (RFC 8030, and what push services do):

- 2xx (201 Created, 202 Accepted): delivered.
- 404, 410 and every other 4xx except 408 and 429: the subscription is dead or not ours
  (unsubscribed, expired, made for another VAPID key): it is deleted. So is one whose
  endpoint redirects (3xx, never followed) or no longer passes the address checks.
- 408, 429 (with ``Retry-After`` honoured), 5xx and network errors: retried with backoff
  by the actor, then given up and recorded (``stats.record_give_up``).

A push already delivered is remembered (in Redis, for its TTL), so a message delivered
twice by the queue is sent once.
"""

from __future__ import annotations

import email.utils
import logging
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Callable, Sequence

from pywebpush import WebPusher, WebPushException
from sqlalchemy.engine import Connection

from services.notifications.preferences import PUSH_BLOCK_SQL
from services.outbound import GuardedClient, RefusedDestination, TimedOut, Unreachable, audience_of

from . import payload as payloads
from . import stats, subscriptions
from .keys import vapid_headers

log = logging.getLogger(__name__)

#: RFC 8030 Urgency per notification type: conversation wakes a phone, applause can wait.
URGENCY = {"reply": "normal", "mention": "normal", "quote": "normal", "like": "low", "repost": "low",
           "follow": "low", "broadcast": "normal"}
#: How long our VAPID signature is valid (RFC 8292 allows at most 24 hours).
VAPID_VALIDITY_SECONDS = 12 * 3600
#: last_used_at is refreshed at most this often per subscription.
TOUCH_EVERY_SECONDS = 3600

# Plain driver SQL (psycopg prepares it after a few runs): this read is most of a delivery's
# database time, and SQLAlchemy's statement handling would double it. One statement reads a
# whole batch: ``unnest ... WITH ORDINALITY`` keeps the callers' order and their duplicates.
_NOTIFICATION_PUSHES = f"""
    SELECT j.ord, j.subscription_id AS wanted_subscription, j.notification_id AS wanted_notification,
           s.id AS subscription_id, s.user_did, s.endpoint, s.p256dh, s.auth, s.last_used_at,
           n.id AS notification_id, n.recipient_did, n.type, n.actor_did, n.subject_uri, n.reason_uri,
           n.read, n.created_at, a.handle, a.display_name, a.avatar_cid,
           coalesce(r.is_cannect_user, false) AS recipient_is_member,
           {PUSH_BLOCK_SQL} AS blocked,
           coalesce((SELECT p.text FROM posts p WHERE p.uri = CASE WHEN n.type IN ('reply', 'mention', 'quote')
                                                          THEN n.reason_uri ELSE n.subject_uri END),
                    CASE WHEN n.type IN ('reply', 'mention', 'quote') THEN n.reason_record->>'text' END) AS post_text
    FROM unnest(%(subscription_ids)s::bigint[], %(notification_ids)s::bigint[])
         WITH ORDINALITY AS j(subscription_id, notification_id, ord)
    LEFT JOIN push_subscriptions s ON s.id = j.subscription_id
    LEFT JOIN notifications n ON n.id = j.notification_id
    LEFT JOIN profiles a ON a.did = n.actor_did
    LEFT JOIN profiles r ON r.did = n.recipient_did
    LEFT JOIN notification_preferences np ON np.did = n.recipient_did
    ORDER BY j.ord
"""
_SUBSCRIPTIONS = """
    SELECT s.id, s.endpoint, s.p256dh, s.auth, s.last_used_at
    FROM unnest(%(ids)s::bigint[]) WITH ORDINALITY AS j(id, ord)
    LEFT JOIN push_subscriptions s ON s.id = j.id
    ORDER BY j.ord
"""


@dataclass(frozen=True)
class Push:
    """One push ready to go: where, what, and for how long it is worth delivering."""

    subscription_id: int
    endpoint: str
    p256dh: str
    auth: str
    payload: bytes
    ttl: int               # seconds left before it is not worth delivering
    urgency: str
    topic: str | None      # push services replace an undelivered message of the same topic
    event_at: float        # unix time of the notification / broadcast (for latency)
    done_key: str          # Redis key remembering it was delivered
    touch: bool            # last_used_at is stale


@dataclass(frozen=True)
class Outcome:
    result: str                       # sent | removed | retry | skipped | failed
    reason: str = ""
    retry_after: float | None = None  # seconds the push service asked us to wait
    status: int | None = None

    @property
    def retry(self) -> bool:
        return self.result == "retry"


#: Opens an autocommit connection: a delivery runs single statements, each its own transaction.
Connections = Callable[[], AbstractContextManager[Connection]]
#: Reads a batch of pushes: one Push (to send) or Outcome (not to send) per item, in order.
Prepare = Callable[[Connection, float], list["Push | Outcome"]]


def unwanted(row) -> str | None:
    """Why the subscriber should not get this notification now; None: send it.

    The single place that decides whether a member still wants a push, checked at send time,
    with the member's preferences (``services/notifications/preferences.py``, read in the same
    statement as the notification): muted until a time, or a reason they do not want pushed.
    The in-app list still shows those.
    """
    if row.user_did != row.recipient_did:
        return "not_recipient"   # the endpoint now belongs to another account
    if row.read:
        return "read"            # already seen in the app
    if not row.recipient_is_member:
        return "not_member"
    return row.blocked           # muted | reason_off | None


def _age(created_at, now: float) -> float:
    return now - created_at.timestamp()


def prepare_notifications(connection: Connection, settings, pairs: Sequence[tuple[int, int]],
                          now: float) -> list[Push | Outcome]:
    """What to do with each ``(subscription_id, notification_id)``, read in one statement."""
    rows = connection.exec_driver_sql(_NOTIFICATION_PUSHES, {
        "subscription_ids": [s for s, _ in pairs], "notification_ids": [n for _, n in pairs]}).all()
    return [_notification_push(row, settings, now) for row in rows]


def _notification_push(row, settings, now: float) -> Push | Outcome:
    if row.subscription_id is None:
        return Outcome("skipped", "no_subscription")
    if row.notification_id is None:
        return Outcome("skipped", "deleted")
    reason = unwanted(row)
    if reason:
        return Outcome("skipped", reason)
    ttl = int(settings.push_ttl_seconds - _age(row.created_at, now))
    if ttl <= 0:
        return Outcome("skipped", "expired")
    return Push(row.subscription_id, row.endpoint, row.p256dh, row.auth,
                payloads.notification_payload(row, settings.avatar_cdn), ttl, URGENCY.get(row.type, "normal"),
                topic=f"n{row.notification_id}", event_at=row.created_at.timestamp(),
                done_key=f"cannect:push:done:n{row.notification_id}:{row.subscription_id}",
                touch=_stale(row.last_used_at, now))


def prepare_broadcasts(connection: Connection, settings, subscription_ids: Sequence[int], broadcast: dict,
                       now: float) -> list[Push | Outcome]:
    """What to do with an admin's broadcast for each of these subscriptions, read in one statement."""
    rows = connection.exec_driver_sql(_SUBSCRIPTIONS, {"ids": list(subscription_ids)}).all()
    ttl = int(broadcast.get("ttl") or settings.push_ttl_seconds) - int(now - broadcast["sentAt"])
    body = payloads.broadcast_payload(broadcast)
    return [Outcome("skipped", "no_subscription") if row.id is None
            else Outcome("skipped", "expired") if ttl <= 0
            else Push(row.id, row.endpoint, row.p256dh, row.auth, body, ttl, URGENCY["broadcast"], topic=None,
                      event_at=broadcast["sentAt"], done_key=f"cannect:push:done:b{broadcast['id']}:{row.id}",
                      touch=_stale(row.last_used_at, now))
            for row in rows]


def _stale(last_used_at, now: float) -> bool:
    return last_used_at is None or _age(last_used_at, now) > TOUCH_EVERY_SECONDS


def send(http: GuardedClient, settings, push: Push) -> Outcome:
    """Encrypt (pywebpush, aes128gcm), sign (py_vapid), POST; what the answer means for the push."""
    try:
        headers = vapid_headers(settings.vapid_private_key, settings.vapid_email, audience_of(push.endpoint),
                                VAPID_VALIDITY_SECONDS)
        body = WebPusher({"endpoint": push.endpoint, "keys": {"p256dh": push.p256dh, "auth": push.auth}}
                         ).encode(push.payload, "aes128gcm")["body"]
    except (WebPushException, ValueError) as exc:  # keys or endpoint the libraries cannot use
        log.info("push subscription %s unusable: %s", push.subscription_id, type(exc).__name__)
        return Outcome("removed", "unusable")
    headers.update({"TTL": str(push.ttl), "Urgency": push.urgency, "Content-Encoding": "aes128gcm",
                    "Content-Type": "application/octet-stream"})
    if push.topic:
        headers["Topic"] = push.topic
    try:
        answer = http.post(push.endpoint, body, headers)
    except RefusedDestination as exc:
        log.info("push subscription %s refused: %s", push.subscription_id, exc)
        return Outcome("removed", "refused")
    except TimedOut:
        return Outcome("retry", "timeout")
    except Unreachable as exc:
        log.info("push to subscription %s failed: %s", push.subscription_id, exc)
        return Outcome("retry", "network")
    return classify(answer.status, answer.headers.get("Retry-After"))


def classify(status: int, retry_after: str | None = None) -> Outcome:
    if 200 <= status < 300:
        return Outcome("sent", str(status), status=status)
    if 300 <= status < 400:
        return Outcome("removed", "redirect", status=status)
    if status in (408, 429) or status >= 500:
        return Outcome("retry", str(status), parse_retry_after(retry_after), status)
    if 400 <= status < 500:
        return Outcome("removed", str(status), status=status)
    return Outcome("retry", "unexpected", status=status)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or an HTTP date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(min(int(value[:9]), 10**8))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def deliver(connections: Connections, redis, http: GuardedClient, settings, prepare: Prepare,
            send_all: SendAll | None = None) -> list[Outcome]:
    """A batch of deliveries from start to finish, each counted in ``stats``; one outcome per item.

    One statement reads the batch, one Redis round trip finds those already delivered, the
    rest are sent (``send_all`` may send them concurrently: a push service takes 50-300 ms),
    and one Redis round trip and at most two statements settle them. ``retry`` outcomes are
    for the caller to schedule.
    """
    with connections() as connection:
        prepared = prepare(connection, time.time())
    outcomes: list[Outcome | None] = [item if isinstance(item, Outcome) else None for item in prepared]
    pushes = [(i, item) for i, item in enumerate(prepared) if isinstance(item, Push)]
    if pushes:
        delivered = redis.mget([push.done_key for _, push in pushes])
        seen: set[str] = set()
        for (i, push), done in zip(pushes, delivered):
            if done is not None or push.done_key in seen:   # sent before, or twice in this batch
                outcomes[i] = Outcome("skipped", "duplicate")
            seen.add(push.done_key)
        pushes = [(i, push) for i, push in pushes if outcomes[i] is None]
    sent = (send_all or _send_each)(http, settings, [push for _, push in pushes])
    for (i, _), outcome in zip(pushes, sent):
        outcomes[i] = outcome
    return _settle(connections, redis, dict(pushes), outcomes)


#: Sends a list of pushes, returning their outcomes in order (a thread pool may do it concurrently).
SendAll = Callable[[GuardedClient, object, list[Push]], list[Outcome]]


def _send_each(http: GuardedClient, settings, pushes: list[Push]) -> list[Outcome]:
    return [send(http, settings, push) for push in pushes]


def _settle(connections: Connections, redis, pushes: dict[int, Push], outcomes: list[Outcome]) -> list[Outcome]:
    """Count every outcome, remember what was delivered, drop refused subscriptions, touch used ones."""
    pipe = redis.pipeline(transaction=False)
    removed, touched, given_up = [], [], []
    now = time.time()
    for i, outcome in enumerate(outcomes):
        push = pushes.get(i)
        if push is None or outcome.result == "skipped":
            stats.add(pipe, outcome.result, outcome.reason)
        elif outcome.result == "sent":
            pipe.set(push.done_key, 1, ex=max(push.ttl, 60))
            stats.add(pipe, "sent", latency=now - push.event_at)
            if push.touch:
                touched.append(push.subscription_id)
        elif outcome.result == "removed":
            removed.append((push.subscription_id, push.endpoint))
            stats.add(pipe, "removed", outcome.reason)
        elif outcome.retry_after is not None and outcome.retry_after >= push.ttl:
            # Allowed again only once it is stale: give up now.
            outcomes[i] = Outcome("failed", f"{outcome.reason}_beyond_ttl", status=outcome.status)
            given_up.append((outcomes[i].reason, push))
        else:
            stats.add(pipe, "retried", outcome.reason)
    pipe.execute()
    for reason, push in given_up:
        stats.record_give_up(redis, reason, subscription=push.subscription_id, push=push.done_key.rsplit(":", 2)[-2])
    if removed or touched:
        with connections() as connection:
            for subscription_id, endpoint in removed:
                subscriptions.remove(connection, subscription_id, endpoint)
            subscriptions.touch(connection, touched)
    return outcomes
