"""Queue ``ingest``: apply one listener batch of Jetstream events to the index.

- Enqueued by: the listener (``tasks/listener.py``), one message per micro-batch.
- Latency: a 1,000-event batch applies in tens of milliseconds; batches are serialized by
  a row lock, so extra threads on this queue add availability, not throughput.
- Idempotency: ``(conn, seq)`` of the batch and the ``time_us`` of each event, both checked
  in the same transaction as the writes (see ``services/ingest``).
- Retries: a batch must never be dropped (later batches would wait for it), so transient
  failures retry for hours with backoff capped at a minute.
- Realtime: the events of what a batch changed are read inside its transaction and published
  to the realtime stream after the commit (never for a rollback). A publish that fails is
  logged, not retried: the batch is committed, a retry would find it a duplicate, and clients
  catch up by refetching.
"""

import functools
import logging
import threading

import dramatiq
import redis

from cannect.config import get_settings
from services.db import session_scope
from services.ingest import drain_parked, ingest_batch
from services.realtime import collect_events, try_publish

log = logging.getLogger(__name__)

#: Commit and publish as one step per process, so the stream gets this process's batches in
#: commit order (post_updated carries absolute counts: an older one published last would win).
#: Batches are serialized by a row lock anyway, so this costs no throughput.
_commit_then_publish = threading.Lock()


@functools.lru_cache(maxsize=1)
def _redis() -> redis.Redis:
    return redis.Redis.from_url(get_settings().redis_url, socket_timeout=5)


@dramatiq.actor(queue_name="ingest", actor_name="ingest.apply_batch", max_retries=500,
                min_backoff=250, max_backoff=60_000, time_limit=10 * 60_000)
def apply_batch(batch: dict) -> None:
    settings = get_settings()
    with _commit_then_publish:
        with session_scope() as session:
            outcome = ingest_batch(session, batch, frozenset(settings.cannabis_tags),
                                   settings.ingest_gap_timeout_seconds)
            events = collect_events(session, outcome.changes, settings.avatar_cdn)
        try_publish(_redis(), events)
    log.log(logging.DEBUG if outcome.verdict == "apply" else logging.INFO,
            "ingest %s/%s: %s (%d batches, %d events, %d duplicates, %d posts indexed)",
            batch["conn"], batch["seq"], outcome.verdict, outcome.batches, outcome.events,
            outcome.duplicates, len(outcome.indexed_posts))


@dramatiq.actor(queue_name="ingest", actor_name="ingest.drain_parked", max_retries=3, time_limit=10 * 60_000)
def drain() -> None:
    """Scheduled: apply parked batches whose predecessor is overdue while the stream is quiet."""
    settings = get_settings()
    with _commit_then_publish:
        with session_scope() as session:
            outcome = drain_parked(session, frozenset(settings.cannabis_tags), settings.ingest_gap_timeout_seconds)
            events = collect_events(session, outcome.changes, settings.avatar_cdn)
        try_publish(_redis(), events)
    if outcome.batches:
        log.warning("ingest: drained %d parked batches (%d events)", outcome.batches, outcome.events)
