"""Announce new notifications: a live event to the recipient's sockets and the push deliveries.

Ingest (or an app action) creates notifications in its transaction and hands their ids, after
the commit, to the ``notify`` queue; :func:`fan_out` reads them back (a notification deleted
or read meanwhile is not announced), renders each as the REST API shows it to its recipient,
and returns the realtime events to publish and the (subscription, notification) pairs to
push. It never writes, so running it twice only repeats the announcement.
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
    pushes: list[tuple[int, int]] = field(default_factory=list)


def fan_out(session: Session, notification_ids: list[int], avatar_cdn: str) -> Announcement:
    """The live events and push deliveries of these notifications (those still there and unread)."""
    out = Announcement()
    if not notification_ids:
        return out
    views = queries.unread_views(session, notification_ids, avatar_cdn)
    out.events = [notification_event(recipient, view) for recipient, view in views]
    out.pushes = subscriptions.fan_out(session, [view["id"] for _, view in views])
    return out
