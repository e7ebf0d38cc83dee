"""Queue ``notify``: announce the notifications a committed ingest batch or app action created.

- Enqueued by: ``tasks/ingest.py`` and the app's actions, after their commit, one message with
  the ids of the notifications that commit inserted (none for a replay: rows are unique per
  recipient, type and cause, and only really inserted ones report an id).
- Latency: one read of the notifications with their actors and posts, one Redis publish and
  one enqueue per push subscription: milliseconds.
- Idempotency: nothing is written to the database; a notification's live event is published
  once (Redis remembers it for a day, ``fanout.first_time``), and a message run twice enqueues
  the same deliveries, which ``push`` sends once (``services/push/delivery``). A notification
  deleted or read meanwhile is skipped.
- Retries: a few, quickly (a live event is worth little late); a publish that fails is logged
  and not retried, as in ``tasks/ingest.py``, so the pushes still go out.
"""

import logging

import dramatiq

from cannect.config import get_settings
from services.db import session_scope
from services.notifications import fanout
from services.realtime import try_publish

from . import push
from .broker import app_redis

log = logging.getLogger(__name__)


@dramatiq.actor(queue_name="notify", actor_name="notify.fan_out", max_retries=5, min_backoff=500,
                max_backoff=10_000, time_limit=60_000)
def fan_out(notification_ids: list[int]) -> None:
    with session_scope() as session:
        announcement = fanout.fan_out(session, notification_ids, get_settings().avatar_cdn)
    try_publish(app_redis(), fanout.first_time(app_redis(), announcement))
    push.enqueue_notifications(announcement.pushes)
    log.debug("notify: %d notifications, %d live events, %d pushes", len(notification_ids),
              len(announcement.events), len(announcement.pushes))


def request(notification_ids: list[int]) -> None:
    """After a commit: announce these new notifications (nothing to send for none)."""
    if notification_ids:
        fan_out.send(sorted(notification_ids))
