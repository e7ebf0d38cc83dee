"""Announce new notifications: a live event to the recipient's sockets and the push deliveries.

Ingest (or an app action) creates notifications in its transaction and hands their ids, after
the commit, to the ``notify`` queue; :func:`fan_out` reads them back (a notification deleted
or read meanwhile is not announced), renders each as the REST API shows it to its recipient,
and returns the realtime events to publish and the (subscription, notification) pairs to
push. It never writes to the database; :func:`first_time` remembers in Redis which
notifications were announced live, so a retried message does not announce them twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from services.push import subscriptions
from services.realtime import notification_event

from . import queries


@dataclass
class Announcement:
    events: list[dict] = field(default_factory=list)
    notification_ids: list[int] = field(default_factory=list)   # of the events, in order
    pushes: list[tuple[int, int]] = field(default_factory=list)


def fan_out(session: Session, notification_ids: list[int], avatar_cdn: str) -> Announcement:
    """The live events and push deliveries of these notifications (those still there and unread)."""
    out = Announcement()
    if not notification_ids:
        return out
    views = queries.unread_views(session, notification_ids, avatar_cdn)
    out.events = [notification_event(recipient, view) for recipient, view in views]
    out.notification_ids = [view["id"] for _, view in views]
    out.pushes = subscriptions.fan_out(session, [view["id"] for _, view in views])
    return out


#: How long a notification's live announcement is remembered (far beyond any retry).
ANNOUNCED_TTL_SECONDS = 24 * 3600


def first_time(redis, announcement: Announcement) -> list[dict]:
    """The live events of notifications not announced before, marking them announced (one
    round trip). Delivery is at-least-once: a retried ``notify`` message publishes nothing twice."""
    if not announcement.events:
        return []
    pipe = redis.pipeline(transaction=False)
    for notification_id in announcement.notification_ids:
        pipe.set(f"cannect:notify:announced:{notification_id}", 1, nx=True, ex=ANNOUNCED_TTL_SECONDS)
    return [event for event, fresh in zip(announcement.events, pipe.execute()) if fresh]
