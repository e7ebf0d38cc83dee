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
from typing import Callable

from pywebpush import WebPusher, WebPushException
from sqlalchemy.engine import Connection

from services.notifications.preferences import push_blocked
from services.outbound import GuardedClient, RefusedDestination, TimedOut, Unreachable, audience_of

from . import payload as payloads
from . import stats, subscriptions
from .keys import vapid_signer

log = logging.getLogger(__name__)

#: RFC 8030 Urgency per notification type: conversation wakes a phone, applause can wait.
URGENCY = {"reply": "normal", "mention": "normal", "quote": "normal", "like": "low", "repost": "low",
           "follow": "low", "broadcast": "normal"}
#: How long our VAPID signature is valid (RFC 8292 allows at most 24 hours).
VAPID_VALIDITY_SECONDS = 12 * 3600
#: last_used_at is refreshed at most this often per subscription.
TOUCH_EVERY_SECONDS = 3600

# Plain driver SQL (psycopg prepares it after a few runs): this read is most of a delivery's
# database time, and SQLAlchemy's statement handling would double it.
_NOTIFICATION_PUSH = """
    SELECT s.id AS subscription_id, s.user_did, s.endpoint, s.p256dh, s.auth, s.last_used_at,
           n.id AS notification_id, n.recipient_did, n.type, n.actor_did, n.subject_uri, n.reason_uri,
           n.read, n.created_at, a.handle, a.display_name, a.avatar_cid,
           coalesce(r.is_cannect_user, false) AS recipient_is_member,
           coalesce((SELECT p.text FROM posts p WHERE p.uri = CASE WHEN n.type IN ('reply', 'mention', 'quote')
                                                          THEN n.reason_uri ELSE n.subject_uri END),
                    CASE WHEN n.type IN ('reply', 'mention', 'quote') THEN n.reason_record->>'text' END) AS post_text
    FROM push_subscriptions s
    LEFT JOIN notifications n ON n.id = %(notification_id)s
    LEFT JOIN profiles a ON a.did = n.actor_did
    LEFT JOIN profiles r ON r.did = n.recipient_did
    WHERE s.id = %(subscription_id)s
"""
_SUBSCRIPTION = "SELECT id, endpoint, p256dh, auth, last_used_at FROM push_subscriptions WHERE id = %(id)s"


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


def unwanted(connection: Connection, row) -> str | None:
    """Why the subscriber should not get this notification now; None: send it.

    The single place that decides whether a member still wants a push, checked at send time,
    with the member's preferences (``services/notifications/preferences.py``): muted until a
    time, or a reason they do not want pushed. The in-app list still shows those.
    """
    if row.user_did != row.recipient_did:
        return "not_recipient"   # the endpoint now belongs to another account
    if row.read:
        return "read"            # already seen in the app
    if not row.recipient_is_member:
        return "not_member"
    return push_blocked(connection, row.recipient_did, row.type)   # muted | reason_off | None


def _age(created_at, now: float) -> float:
    return now - created_at.timestamp()


def prepare_notification(connection: Connection, settings, subscription_id: int, notification_id: int,
                         now: float) -> Push | Outcome:
    row = connection.exec_driver_sql(_NOTIFICATION_PUSH, {"subscription_id": subscription_id,
                                                          "notification_id": notification_id}).first()
    if row is None:
        return Outcome("skipped", "no_subscription")
    if row.notification_id is None:
        return Outcome("skipped", "deleted")
    reason = unwanted(connection, row)
    if reason:
        return Outcome("skipped", reason)
    ttl = int(settings.push_ttl_seconds - _age(row.created_at, now))
    if ttl <= 0:
        return Outcome("skipped", "expired")
    return Push(row.subscription_id, row.endpoint, row.p256dh, row.auth,
                payloads.notification_payload(row, settings.avatar_cdn), ttl, URGENCY.get(row.type, "normal"),
                topic=f"n{notification_id}", event_at=row.created_at.timestamp(),
                done_key=f"cannect:push:done:n{notification_id}:{subscription_id}", touch=_stale(row.last_used_at, now))


def prepare_broadcast(connection: Connection, settings, subscription_id: int, broadcast: dict,
                      now: float) -> Push | Outcome:
    row = connection.exec_driver_sql(_SUBSCRIPTION, {"id": subscription_id}).first()
    if row is None:
        return Outcome("skipped", "no_subscription")
    ttl = int(broadcast.get("ttl") or settings.push_ttl_seconds) - int(now - broadcast["sentAt"])
    if ttl <= 0:
        return Outcome("skipped", "expired")
    return Push(row.id, row.endpoint, row.p256dh, row.auth, payloads.broadcast_payload(broadcast), ttl,
                URGENCY["broadcast"], topic=None, event_at=broadcast["sentAt"],
                done_key=f"cannect:push:done:b{broadcast['id']}:{row.id}", touch=_stale(row.last_used_at, now))


def _stale(last_used_at, now: float) -> bool:
    return last_used_at is None or _age(last_used_at, now) > TOUCH_EVERY_SECONDS


def send(http: GuardedClient, settings, push: Push) -> Outcome:
    """Encrypt (pywebpush, aes128gcm), sign (py_vapid), POST; what the answer means for the push."""
    # A fresh claims dict every time: the libraries fill in and keep what they are given.
    claims = {"sub": settings.vapid_email, "aud": audience_of(push.endpoint),
              "exp": int(time.time()) + VAPID_VALIDITY_SECONDS}
    try:
        headers = vapid_signer(settings.vapid_private_key).sign(claims)
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


def deliver(connections: Connections, redis, http: GuardedClient, settings,
            prepare: Callable[[Connection, float], Push | Outcome]) -> Outcome:
    """One delivery from start to finish, counted in ``stats``; a ``retry`` outcome is for the caller."""
    with connections() as connection:
        push = prepare(connection, time.time())
    if isinstance(push, Outcome):
        stats.record(redis, push.result, push.reason)
        return push
    if redis.exists(push.done_key):
        outcome = Outcome("skipped", "duplicate")
        stats.record(redis, outcome.result, outcome.reason)
        return outcome
    outcome = send(http, settings, push)
    if outcome.result == "sent":
        pipe = redis.pipeline(transaction=False)
        pipe.set(push.done_key, 1, ex=max(push.ttl, 60))
        stats.add(pipe, "sent", latency=time.time() - push.event_at)
        pipe.execute()
        if push.touch:
            with connections() as connection:
                subscriptions.touch(connection, push.subscription_id)
    elif outcome.result == "removed":
        with connections() as connection:
            subscriptions.remove(connection, push.subscription_id, push.endpoint)
        stats.record(redis, "removed", outcome.reason)
    elif outcome.retry_after is not None and outcome.retry_after >= push.ttl:
        # Allowed again only once it is stale: give up now.
        stats.record_give_up(redis, f"{outcome.reason}_beyond_ttl", subscription=push.subscription_id,
                             push=push.done_key.rsplit(":", 2)[-2])
        outcome = Outcome("failed", f"{outcome.reason}_beyond_ttl", status=outcome.status)
    else:
        stats.record(redis, "retried", outcome.reason)
    return outcome
