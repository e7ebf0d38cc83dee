"""Queue ``backfill``: a new member's past, one page per message (``services/backfill``).

- Enqueued by: :func:`start_jobs` after the commit that created the jobs (sign-in and
  ``cannect members add`` through ``services.members.add_member``; the ingest actor for a
  member's follow of an account no member followed before), and by the actors themselves:
  ``backfill.start`` sends the first page of each chunk, ``backfill.page`` the next page of
  its chunk (and, for the member's follows, the first page of each followed account).
- Latency: one XRPC request per message (``BACKFILL_TIMEOUT_SECONDS`` at most, per attempt)
  plus one short transaction under the ingest lock; a member following 500 accounts is about
  500-1,000 messages. Runs on its own queue and workers, so live ingest never waits behind it
  (only each page's commit takes the ingest lock, for milliseconds).
- Idempotency: a chunk's committed page count (``backfill_chunks.pages``) makes a repeated
  message a no-op; the records themselves are keyed by URI, and tombstones keep stream
  deletes deleted. A worker killed mid-page leaves the message unacknowledged: it runs again
  and fetches the same page from the committed cursor.
- Retries: 429/5xx/timeouts are retried in place (``services/backfill/fetch.py``); when the
  host still cannot answer, the message retries with backoff (Retry-After respected) up to
  ``MAX_RETRIES`` times, then the chunk is marked failed and the job moves on.
- Realtime: after each page's commit the member's sockets get ``backfill_progress``; the
  newly indexed posts are queued for classification and new profiles for identity.
- Admin jobs (``cannect backfill start``, ``POST /api/admin/backfills``): ``backfill.admin_chunk``
  runs one chunk of a job (services/backfill/admin.py) and sends the next after its commit; a
  message names its chunk, so a redelivered one is a no-op, except that the redelivery of the
  chunk committed last sends its successor if no message for it was sent (a Redis bitmap per
  job): a crash between the commit and the send does not stall the job. Retries with backoff, then the job
  is failed (``backfill.admin_gave_up``) and ``resume`` continues it from its cursor.
"""

from __future__ import annotations

import functools
import logging

import dramatiq
import redis

from cannect.config import get_settings
from models import BackfillChunk, BackfillJob
from services.backfill import PageRequest, PageSettings, admin, run_page, start_job
from services.backfill.fetch import FetchSettings, TryLater, XrpcFetcher
from services.backfill.jobs import finish_chunk
from services.classify.pipeline import post_ids_of
from services.db import session_scope
from services.identity import IdentityResolver
from services.realtime import try_publish

from . import classify, identity
from .broker import app_redis

log = logging.getLogger(__name__)

MAX_RETRIES = 12

@functools.lru_cache(maxsize=1)
def _fetcher() -> XrpcFetcher:
    return XrpcFetcher(FetchSettings.of(get_settings()), app_redis())


@functools.lru_cache(maxsize=1)
def _resolver() -> IdentityResolver:
    return IdentityResolver(get_settings(), app_redis())


def start_jobs(job_ids) -> None:
    """After the commit that created them: start the jobs. A failure is logged (the job stays
    queued, and ``backfill.start`` can be sent for it again)."""
    for job_id in job_ids or ():
        try:
            start.send(job_id)
        except redis.RedisError:
            log.error("backfill: could not queue job %s", job_id, exc_info=True)


@dramatiq.actor(queue_name="backfill", actor_name="backfill.start", max_retries=MAX_RETRIES,
                min_backoff=1_000, max_backoff=300_000)
def start(job_id: int) -> None:
    with session_scope() as session:
        pages = start_job(session, job_id)
    _send(pages)


@dramatiq.actor(queue_name="backfill", actor_name="backfill.page", max_retries=MAX_RETRIES,
                min_backoff=1_000, max_backoff=300_000, time_limit=10 * 60_000,
                on_retry_exhausted="backfill.page_gave_up")
def page(job_id: int, account: str, source: str, number: int) -> None:
    settings = get_settings()
    request = PageRequest(job_id, account, source, number)
    try:
        outcome = run_page(session_scope, _fetcher(), _resolver(), PageSettings.of(settings), request)
    except TryLater as exc:
        log.warning("backfill %s: %s page %d of %s later (in %.0fs): %s", job_id, source, number, account,
                    exc.seconds, exc)
        raise dramatiq.Retry(str(exc), delay=int(exc.seconds * 1000)) from None
    _announce(outcome)
    _send(outcome.send)


@dramatiq.actor(queue_name="backfill", actor_name="backfill.page_gave_up", max_retries=3)
def page_gave_up(message: dict, retry_info: dict) -> None:
    """Every retry failed: the chunk is marked failed so the job can finish without it."""
    job_id, account, source, _ = message["args"]
    with session_scope() as session:
        chunk = session.get(BackfillChunk, (job_id, account, source), with_for_update=True)
        job = session.get(BackfillJob, job_id, with_for_update=True)
        if chunk is not None and job is not None and chunk.status == "pending":
            finish_chunk(session, job, chunk, "failed", f"gave up after {retry_info.get('retries')} retries")
    log.error("backfill %s: gave up on %s of %s", job_id, source, account)


def _send(pages: list[PageRequest]) -> None:
    for request in pages:
        page.send(*request.args())


def _announce(outcome) -> None:
    """After the commit: progress to the member, new posts to classify, new profiles to resolve."""
    if not outcome.applied:
        return
    if outcome.progress_event:
        try_publish(app_redis(), [outcome.progress_event])
    indexed = [uri for changes in outcome.changes for uri in changes.indexed_posts]
    try:
        if indexed:
            with session_scope() as session:
                classify.request(post_ids_of(session, indexed))
        identity.request({did for changes in outcome.changes for did in changes.new_profiles})
    except redis.RedisError:
        log.warning("backfill: could not queue classification or identity (the sweeps will)", exc_info=True)


# -- admin jobs (services/backfill/admin.py): one chunk per message --------------------------------

#: A chunk that keeps failing is retried this many times (1 s doubling to 2 min), then its job fails.
ADMIN_RETRIES = 8


def _wire_admin_kinds() -> None:
    """Give the kinds the queues they feed (services stay free of Dramatiq)."""
    from services.backfill import kinds, reclassify
    from services.classify.pipeline import classify_posts
    from services.status import queue_depths

    from . import webhooks

    def classify_here(post_ids, force):
        report = classify_posts(session_scope, classify._classifier(), post_ids, force)
        webhooks.after_classification(post_ids)  # as the classify actor does after its commit
        return report

    reclassify.HOOKS.enqueue = lambda post_ids, force: classify.request(post_ids, force)
    reclassify.HOOKS.waiting = lambda: queue_depths(app_redis()).get("classify", {}).get("pending", 0)
    reclassify.HOOKS.inline = classify_here
    kinds.LIVE.ingest_waiting = lambda: queue_depths(app_redis()).get("ingest", {}).get("pending", 0)


_wire_admin_kinds()


def send_admin_chunk(job_id: int, chunk: int = 0) -> bool:
    """After the commit that created or resumed the job: send its chunk. False when Redis is
    away (the job stays as it was; ``cannect backfill resume`` sends it again)."""
    try:
        admin_chunk.send(job_id, chunk)
        _mark_sent(job_id, chunk)
        return True
    except redis.RedisError:
        log.error("backfill: could not queue admin job %s", job_id, exc_info=True)
        return False


@dramatiq.actor(queue_name="backfill", actor_name="backfill.admin_chunk", max_retries=ADMIN_RETRIES,
                min_backoff=1_000, max_backoff=120_000, time_limit=30 * 60_000,
                on_retry_exhausted="backfill.admin_gave_up")
def admin_chunk(job_id: int, chunk: int = 0) -> None:
    try:
        step = admin.run_next(session_scope, job_id, chunk)
    except Exception as exc:
        with session_scope() as session:
            admin.note_error(session, job_id, f"chunk {chunk}: {type(exc).__name__}: {exc}")
        raise
    if step is None or (step.recovering and _was_sent(job_id, step.chunk)):
        return
    if step.realtime_events:  # after the chunk's commits: the web processes' read caches drop what changed
        try_publish(app_redis(), list(step.realtime_events))
    if step.classify_post_ids:  # after the chunk's commit; a lost request is found by classify.sweep
        try:
            classify.request(list(step.classify_post_ids))
        except redis.RedisError:
            log.warning("backfill %s: could not queue classification (the sweep will)", job_id, exc_info=True)
    if step.chunk is not None:
        delay = int(step.delay_seconds * 1000) or None
        admin_chunk.send_with_options(args=(job_id, step.chunk), delay=delay)
        _mark_sent(job_id, step.chunk)


#: One bit per chunk of an admin job whose message was sent (kept a week after the last).
_SENT_KEY = "cannect:backfill:admin-sent:{}"
_SENT_TTL_SECONDS = 7 * 86400


def _mark_sent(job_id: int, chunk: int) -> None:
    """Remember that chunk's message went out, so a redelivered predecessor does not send it again
    (that would start a second chain of messages beside the job's own). Unmarked, the worst
    is one duplicate message, a no-op: a failure here is only logged."""
    try:
        pipe = app_redis().pipeline(transaction=True)
        pipe.setbit(_SENT_KEY.format(job_id), chunk, 1)
        pipe.expire(_SENT_KEY.format(job_id), _SENT_TTL_SECONDS)
        pipe.execute()
    except redis.RedisError:
        log.warning("backfill %s: could not mark chunk %s as sent", job_id, chunk, exc_info=True)


def _was_sent(job_id: int, chunk: int) -> bool:
    return bool(app_redis().getbit(_SENT_KEY.format(job_id), chunk))


@dramatiq.actor(queue_name="backfill", actor_name="backfill.admin_gave_up", max_retries=3)
def admin_gave_up(message: dict, retry_info: dict) -> None:
    """Every retry of a chunk failed: the job is failed (with the last error); resume continues it."""
    job_id, chunk = (list(message["args"]) + [0])[:2]
    with session_scope() as session:
        last = session.get(BackfillJob, job_id)
        reason = last.error if last is not None and last.error else "an error"
        admin.fail(session, job_id, f"gave up on chunk {chunk} after {retry_info.get('retries')} retries: {reason}")
    log.error("backfill %s: gave up on admin chunk %s", job_id, chunk)
