"""Queue ``b2b``: move the B2B usage buffer (Redis) into ``api_usage``.

- Enqueued by: the scheduler (``tasks/scheduler.py``) every 10 seconds.
- Latency: milliseconds per thousand calls (one set-based INSERT per batch of up to 5,000).
- Idempotency: each call carries a request id, unique in ``api_usage``; a batch is claimed
  into a processing list and cleared only after its commit, so a retried or duplicated
  message inserts nothing twice (``services/b2b/usage.py``). One flusher runs at a time
  (a Redis lock); a second message finds it held and returns.
- Retries: a few with backoff; nothing is lost meanwhile (calls wait in Redis).
"""

import logging

import dramatiq

from services.b2b import usage
from services.db import session_scope

from .broker import app_redis

log = logging.getLogger(__name__)


@dramatiq.actor(queue_name="b2b", actor_name="b2b.flush_usage", max_retries=5, min_backoff=1000,
                max_backoff=60_000, time_limit=5 * 60_000)
def flush_usage() -> None:
    totals = usage.flush(app_redis(), session_scope)
    if totals["inserted"] or totals["duplicates"] or totals["rejected"]:
        log.info("b2b: usage flushed: %(inserted)d inserted, %(duplicates)d already there, %(rejected)d rejected",
                 totals)
