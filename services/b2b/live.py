"""The dashboard's live high-intent feed: ``high_intent_post`` realtime events.

The classification step, after its commit, publishes one event per post classified with
purchase intent at or above the threshold, next to the webhook events of the same posts
(``tasks/webhooks.after_classification``). They travel the realtime stream under one routing
key, ``realtime.HIGH_INTENT_KEY``, which only signed-in dashboard sockets listen to
(``app/dashboard/live.py``). The rows are read with the webhook producer's own query: the
feed shows what the webhooks send.
"""

from __future__ import annotations

from typing import Iterable

from redis import Redis
from sqlalchemy.orm import Session

from services import realtime
from services.webhooks.events import _CLASSIFIED, _post

EVENT = "high_intent_post"


def high_intent_events(session: Session, post_ids: Iterable[int], threshold: int) -> list[dict]:
    ids = sorted({int(i) for i in post_ids})
    if not ids:
        return []
    return [{"type": EVENT, "post": {**_post(row), "created_at": row.created_at.isoformat()},
             "purchase_intent": row.purchase_intent, "purchase_stage": row.purchase_stage,
             "product_category": row.product_category, "brand": row.brand_mentioned, "region": row.region_hint,
             "sentiment": row.sentiment}
            for row in session.execute(_CLASSIFIED, {"ids": ids, "threshold": threshold})
            if row.purchase_intent is not None and row.purchase_intent >= threshold]


def publish(redis: Redis, session: Session, post_ids: Iterable[int], threshold: int) -> int:
    """After the commit: publish the posts' high-intent events (a Redis failure is logged, not raised)."""
    found = high_intent_events(session, post_ids, threshold)
    realtime.try_publish(redis, found)
    return len(found)
