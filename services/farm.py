"""Everything the admin farm page shows, in one dict: the status (services/status.py), each
broker process, Dramatiq's dead letters, queue rates (services/queue_history.py) and webhook
deliveries (services/webhooks/stats.py). The page renders it; no figure is computed twice."""

from __future__ import annotations

from sqlalchemy.orm import Session

from . import queue_history, queues, status
from .webhooks import stats as webhook_stats

#: Dead letters listed on the page (newest first); the CLI shows more.
DEAD_LETTERS_LISTED = 50


def overview(redis, session: Session, heartbeat_timeout_ms: int) -> dict:
    figures = status.gather(redis, session, classification=True, heartbeat_timeout_ms=heartbeat_timeout_ms)
    queue_history.sample(redis, figures["queues"])
    samples = queue_history.history(redis)
    rates = queue_history.rates(samples)
    push = figures["push"]
    settled = push["sent"] + push["failed"]
    return {
        **figures,
        "queue_rows": [{"name": name, "pending": pending, "dead_letters": figures["dead_letters"].get(name, 0),
                        "change_per_minute": rates.get(name)} for name, pending in figures["queues"].items()],
        "queue_history": samples,
        "worker_list": queues.workers(redis, heartbeat_timeout_ms),
        "dramatiq_dead_letters": queues.dead_letters(redis, limit=DEAD_LETTERS_LISTED),
        "push_delivered_ratio": round(push["sent"] / settled, 4) if settled else None,
        "webhooks": webhook_stats.summary(session),
    }
