"""Members' push subscriptions: subscribe (validated), unsubscribe, and who gets what.

A subscription is the browser's ``PushSubscription``: an endpoint URL on the browser vendor's
push service and the two keys payloads are encrypted to. The endpoint is a URL the server
will call, chosen by the client, so it must be ``https`` on a public host (checked here and
again at every send, see ``services/outbound.py``). The endpoint identifies the
subscription: subscribing it again updates its keys and owner (the browser re-subscribed,
or another account signed in on it).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import delete, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from models import Notification, PushSubscription
from services.outbound import Policy, RefusedDestination, check_url

from .keys import InvalidKey, check_subscription_keys

MAX_USER_AGENT = 512


class InvalidSubscription(ValueError):
    """The subscription cannot be used: its endpoint or keys are unacceptable."""


@dataclass(frozen=True)
class Subscribed:
    id: int
    created: bool


def endpoint_policy(settings) -> Policy:
    """Where pushes may go: ``https`` public hosts, plus the test origins a test allows."""
    return Policy(exempt_origins=frozenset(settings.push_insecure_test_origins),
                  connect_timeout=settings.push_timeout_seconds, read_timeout=settings.push_timeout_seconds,
                  max_response_bytes=64 * 1024, max_url_length=2048)


def validate(endpoint: str, p256dh: str, auth: str, policy: Policy) -> None:
    """Refuse keys of the wrong form and endpoints the server must not call (resolving the host)."""
    try:
        check_subscription_keys(p256dh, auth)
    except InvalidKey as exc:
        raise InvalidSubscription(str(exc)) from None
    try:
        check_url(endpoint, policy)
    except RefusedDestination as exc:
        raise InvalidSubscription(f"endpoint refused: {exc}") from None


def subscribe(session: Session, did: str, endpoint: str, p256dh: str, auth: str, user_agent: str | None,
              policy: Policy, max_per_member: int) -> Subscribed:
    """Add or update the subscription of ``endpoint`` for ``did``; keep the member's newest ones."""
    validate(endpoint, p256dh, auth, policy)
    user_agent = "".join(ch for ch in (user_agent or "")[:MAX_USER_AGENT] if ch.isprintable()) or None
    values = {"user_did": did, "p256dh": p256dh, "auth": auth, "user_agent": user_agent}
    row = session.execute(
        insert(PushSubscription).values(endpoint=endpoint, **values)
        .on_conflict_do_update(index_elements=[PushSubscription.endpoint], set_=values)
        .returning(PushSubscription.id, text("xmax = 0"))).one()
    session.execute(delete(PushSubscription).where(
        PushSubscription.user_did == did, PushSubscription.id != row[0],
        PushSubscription.id.not_in(
            select(PushSubscription.id).where(PushSubscription.user_did == did, PushSubscription.id != row[0])
            .order_by(func.coalesce(PushSubscription.last_used_at, PushSubscription.created_at).desc(),
                      PushSubscription.id.desc())
            .limit(max_per_member - 1).scalar_subquery())))
    return Subscribed(row[0], bool(row[1]))


def unsubscribe(session: Session, did: str, endpoint: str) -> bool:
    """Remove the member's subscription of ``endpoint``; False when they had none."""
    return session.execute(delete(PushSubscription).where(
        PushSubscription.user_did == did, PushSubscription.endpoint == endpoint)).rowcount > 0


def remove(session: Session | Connection, subscription_id: int, endpoint: str) -> bool:
    """Drop a subscription the push service refused (unless it was re-subscribed meanwhile)."""
    return session.execute(delete(PushSubscription).where(
        PushSubscription.id == subscription_id, PushSubscription.endpoint == endpoint)).rowcount > 0


def touch(session: Session | Connection, subscription_ids: list[int]) -> None:
    """Note that these subscriptions work (``last_used_at``: the least recently used go first)."""
    if subscription_ids:
        session.execute(PushSubscription.__table__.update().where(PushSubscription.id.in_(subscription_ids))
                        .values(last_used_at=datetime.now(timezone.utc)))


def fan_out(session: Session, notification_ids: list[int]) -> list[tuple[int, int]]:
    """``(subscription_id, notification_id)`` for every subscription of each unread notification's
    recipient: one ``push.deliver`` message each, to enqueue after the commit."""
    if not notification_ids:
        return []
    rows = session.execute(
        select(PushSubscription.id, Notification.id)
        .join(Notification, Notification.recipient_did == PushSubscription.user_did)
        .where(Notification.id.in_(notification_ids), Notification.read.is_(False))
        .order_by(Notification.id, PushSubscription.id))
    return [(subscription_id, notification_id) for subscription_id, notification_id in rows]


def new_broadcast(session: Session, title: str, body: str, url: str | None, now: float) -> tuple[dict, int]:
    """A broadcast to every subscription that exists now, and how many that is."""
    last_id, count = session.execute(select(func.coalesce(func.max(PushSubscription.id), 0),
                                            func.count(PushSubscription.id))).one()
    return {"id": uuid.uuid4().hex, "title": title, "body": body, "url": url, "sentAt": now, "lastId": last_id}, count


def broadcast_page(session: Session, broadcast: dict, after_id: int, limit: int) -> list[int]:
    """The next ``limit`` subscription ids of a broadcast, in id order."""
    return list(session.scalars(
        select(PushSubscription.id)
        .where(PushSubscription.id > after_id, PushSubscription.id <= broadcast["lastId"])
        .order_by(PushSubscription.id).limit(limit)))
