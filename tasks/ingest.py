"""Queue ``ingest``: apply one listener batch of Jetstream events to the index.

- Enqueued by: the listener (``tasks/listener.py``), one message per micro-batch.
- Latency: a 1,000-event batch applies in tens of milliseconds; batches are serialized by
  a row lock, so extra threads on this queue add availability, not throughput.
- Idempotency: ``(conn, seq)`` of the batch and the ``time_us`` of each event, both checked
  in the same transaction as the writes (see ``services/ingest``).
- Retries: a batch must never be dropped (later batches would wait for it), so transient
  failures retry for hours with backoff capped at a minute. An event that fails on its own
  data does not fail the batch: it is left out into ``ingest_dead_letters`` (logged with its
  DID, collection, rkey, time_us and reason) and the rest is applied.
- Logs name the batch (``conn/seq``) and event counts, never the events (``tasks/broker.py``
  keeps Dramatiq from printing message arguments).
- Identity: after the commit, the accounts a batch gave a profile and those whose identity
  event it saw are queued for handle resolution (``tasks/identity.py``, once per DID). A
  failed enqueue is logged: the scheduler's identity sweep finds those profiles anyway.
- Notifications: created in the batch's transaction (``docs/notification-rules.md``); after
  the commit the ids of those it inserted go in one message to ``notify`` (``tasks/notify.py``),
  which publishes them live and fans out their pushes. A failed enqueue is logged: they stay
  listed in the app, only their announcement is lost.
- Classification: the ids of the posts a batch newly indexed are read in its transaction and
  queued to ``classify`` after the commit (``tasks/classify.py``). A failed enqueue is logged:
  the scheduler's classify sweep finds unclassified posts anyway.
- Backfill: after the commit, each account a member's follow made covered for the first
  time gets a backfill of its recent posts (``tasks/backfill.py``). A failed enqueue is
  logged: that account's feed then fills in from the stream only.
- Realtime: the events of what a batch changed are read inside its transaction and published
  to the realtime stream after the commit (never for a rollback). A publish that fails is
  logged, not retried: the batch is committed, a retry would find it a duplicate, and clients
  catch up by refetching.
"""

import logging
import threading

import dramatiq
import redis

from cannect.config import get_settings
from services.backfill import request_account_backfill
from services.classify.pipeline import post_ids_of
from services.db import session_scope
from services.ingest import drain_parked, ingest_batch
from services.realtime import collect_events, read_changed_events, try_publish

from . import backfill, classify, identity, notify
from .broker import app_redis

log = logging.getLogger(__name__)

#: Commit and publish as one step per process, so the stream gets this process's batches in
#: commit order (post_updated carries absolute counts: an older one published last would win).
#: Batches are serialized by a row lock anyway, so this costs no throughput.
_commit_then_publish = threading.Lock()


@dramatiq.actor(queue_name="ingest", actor_name="ingest.apply_batch", max_retries=500,
                min_backoff=250, max_backoff=60_000, time_limit=10 * 60_000)
def apply_batch(batch: dict) -> None:
    outcome = _apply_then_announce(lambda session, settings: ingest_batch(
        session, batch, frozenset(settings.cannabis_tags), settings.ingest_gap_timeout_seconds))
    level = logging.WARNING if outcome.dead_lettered else logging.DEBUG if outcome.verdict == "apply" else logging.INFO
    log.log(level,
            "ingest %s/%s: %s (%d batches, %d events, %d duplicates, %d dead-lettered, %d posts indexed)",
            batch["conn"], batch["seq"], outcome.verdict, outcome.batches, outcome.events,
            outcome.duplicates, outcome.dead_lettered, len(outcome.indexed_posts))


@dramatiq.actor(queue_name="ingest", actor_name="ingest.drain_parked", max_retries=3, time_limit=10 * 60_000)
def drain() -> None:
    """Scheduled: apply parked batches whose predecessor is overdue while the stream is quiet."""
    outcome = _apply_then_announce(lambda session, settings: drain_parked(
        session, frozenset(settings.cannabis_tags), settings.ingest_gap_timeout_seconds))
    if outcome.batches:
        log.warning("ingest: drained %d parked batches (%d events, %d dead-lettered)",
                    outcome.batches, outcome.events, outcome.dead_lettered)


def _apply_then_announce(apply):
    """Run ``apply(session, settings)`` in one transaction; after the commit, publish its live
    events, then queue its notifications' announcement and its identity checks."""
    settings = get_settings()
    with _commit_then_publish:
        with session_scope() as session:
            outcome = apply(session, settings)
            events = collect_events(session, outcome.changes, settings.avatar_cdn)
            events += read_changed_events(outcome.changes)
            new_posts = post_ids_of(session, outcome.indexed_posts)
        try_publish(app_redis(), events)
    _announce(outcome.changes)
    _request_identity(outcome.changes)
    _request_classification(new_posts)
    _request_backfills(outcome.changes)
    return outcome


def _request_backfills(changes_list) -> None:
    """After the commit: the recent posts of accounts a member newly covers (``tasks/backfill.py``)."""
    covered = {account: member for changes in changes_list for account, member in changes.newly_covered.items()}
    if not covered:
        return
    try:
        with session_scope() as session:
            jobs = [request_account_backfill(session, account, member) for account, member in sorted(covered.items())]
        backfill.start_jobs([job for job in jobs if job is not None])
    except Exception:  # the batch is committed; those accounts fill in from the stream only
        log.warning("ingest: could not queue the backfill of %d newly followed accounts", len(covered), exc_info=True)


def _announce(changes_list) -> None:
    """After the commit: publish the new notifications and send their pushes (``tasks/notify.py``)."""
    try:
        notify.request([nid for changes in changes_list for nid in changes.notification_ids])
    except redis.RedisError:
        log.error("ingest: could not queue the announcement of new notifications", exc_info=True)


def _request_classification(post_ids: list[int]) -> None:
    """After the commit: classify the newly indexed posts (``tasks/classify.py``)."""
    try:
        classify.request(post_ids)
    except redis.RedisError:
        log.warning("ingest: could not queue the classification of %d new posts (the sweep will)",
                    len(post_ids), exc_info=True)


def _request_identity(changes_list) -> None:
    """After the commit: resolve the handles of new profiles and of accounts with an identity event."""
    try:
        identity.request({did for changes in changes_list for did in changes.new_profiles})
        identity.request({did for changes in changes_list for did in changes.identity_refresh}, refresh=True)
    except redis.RedisError:
        log.warning("ingest: could not queue identity resolution (the sweep will)", exc_info=True)
