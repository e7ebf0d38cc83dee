"""Queue ``classify``: label indexed posts into ``post_classifications`` (``services/classify``).

- Enqueued by: ``tasks/ingest.py`` after its commit (the ids of the posts a batch newly
  indexed), the scheduler's ``classify.sweep`` (posts still unclassified: a lost message,
  retries exhausted, a failure for a passing reason after ``CLASSIFY_RETRY_DELAY_SECONDS``)
  and ``cannect backfill reclassify`` (posts below ``CLASSIFICATION_VERSION``). Always through
  :func:`request`: messages of ``CLASSIFY_BATCH_SIZE`` post ids (by default one LLM request's
  worth, ``LLM_BATCH_SIZE``, or 100 offline).
- Latency: offline, milliseconds per message; with the LLM, one request of the whole message
  (about a second at DeepSeek), up to ``LLM_TIMEOUT_SECONDS`` x ``LLM_MAX_ATTEMPTS`` when the
  provider misbehaves. Throughput grows with worker threads up to ``LLM_MAX_CONCURRENCY``.
- Idempotency: the post id and ``CLASSIFICATION_VERSION``: a post already classified at the
  current version is skipped, and rows are upserted on ``(post_id, model_version)``, so a
  replay, a retry or a duplicate from the sweep leaves one row per post. A post deleted
  meanwhile is skipped, not retried.
- Retries: a classifier never raises for one post; its failures are stored in
  ``posts.processing_error`` (``services/classify/pipeline.py`` says which are retried). A
  database or Redis error, or a classifier that raised, retries the message with backoff (1 s
  doubling to 5 min, 10 times); after that its posts stay unprocessed and the sweep finds them.
- Webhooks: after the commit, the classified posts' ``high_intent_post`` and ``brand_mention``
  events are queued (``tasks/webhooks.py``; idempotent per event and endpoint).
- LLM spend: every request is an ``llm_calls`` row (tokens, cost, outcome), written by the
  classifier in its own short transaction.
"""

from __future__ import annotations

import functools
import logging
import threading
from typing import Iterable

import dramatiq

from cannect.config import get_settings
from services.classify import batch_size, costs, entities, get_classifier, pipeline
from services.db import session_scope
from services.status import queue_depths

from . import webhooks
from .broker import app_redis

log = logging.getLogger(__name__)

#: Posts the sweep queues at most per run (it runs every minute).
SWEEP_BATCH = 5000
#: The sweep adds nothing while the queue already holds this many messages (a backlog drains first).
SWEEP_QUEUE_CEILING = 100
#: Posts indexed more recently than this are left to the message ingest queued for them.
SWEEP_GRACE_SECONDS = 120
#: While this key lives, the sweep does not retry failed posts (one retry round per delay).
RETRY_ROUND_KEY = "cannect:classify:retry-round"

_build_lock = threading.Lock()


def _spend_today():
    with session_scope() as session:
        return costs.spend_today(session, "classify")


@functools.lru_cache(maxsize=1)
def _build_classifier():
    """One classifier per worker process (the LLM one holds connection and thread pools), and
    the brand and strain tables seeded from the lexicon before the first classification."""
    classifier = get_classifier(get_settings(), app_redis(), costs.db_recorder(), spend_today=_spend_today)
    with session_scope() as session:
        entities.seed_from_lexicon(session)
    log.info("classify: %s", classifier.model_version)
    return classifier


def _classifier():
    with _build_lock:
        return _build_classifier()


def request(post_ids: Iterable[int], force: bool = False) -> int:
    """Queue classification of ``post_ids`` in messages of :func:`batch_size`; returns messages sent."""
    ids = sorted(set(post_ids))
    size = batch_size(get_settings())
    chunks = [ids[i:i + size] for i in range(0, len(ids), size)]
    for chunk in chunks:
        classify_posts.send(chunk, force)
    return len(chunks)


@dramatiq.actor(queue_name="classify", actor_name="classify.classify_posts", max_retries=10, min_backoff=1000,
                max_backoff=300_000, time_limit=15 * 60_000)
def classify_posts(post_ids: list[int], force: bool = False) -> None:
    report = pipeline.classify_posts(session_scope, _classifier(), post_ids, force)
    level = logging.WARNING if report.failed or report.retry_later else logging.DEBUG
    log.log(level, "classify: %d posts: %d classified, %d failed, %d to retry later, %d skipped, %d gone (%s, %d ms)",
            report.requested, report.classified, report.failed, report.retry_later, report.skipped, report.gone,
            report.model_version or "-", report.elapsed_ms)
    for post_id, error in report.failures[:5]:
        log.info("classify: post %d not classified: %s", post_id, error)
    # After the commit: B2B webhook events of these posts (high intent, brand mentions). Run
    # on every attempt, so a retry of this message still produces them; events have fixed
    # ids per endpoint, so nothing is delivered twice.
    webhooks.after_classification(post_ids)


@dramatiq.actor(queue_name="classify", actor_name="classify.sweep", max_retries=0, time_limit=5 * 60_000)
def sweep() -> None:
    """Scheduled: queue unclassified posts, oldest first; failed ones once per retry round."""
    settings = get_settings()
    waiting = queue_depths(app_redis()).get("classify", {}).get("pending", 0)
    if waiting > SWEEP_QUEUE_CEILING:
        log.debug("classify sweep: %d messages already queued, nothing added", waiting)
        return
    retry_round = bool(app_redis().set(RETRY_ROUND_KEY, "1", nx=True, ex=settings.classify_retry_delay_seconds))
    with session_scope() as session:
        post_ids = pipeline.unprocessed_post_ids(session, SWEEP_BATCH, retry_round, SWEEP_GRACE_SECONDS)
    if post_ids:
        request(post_ids)
        log.info("classify sweep: %d unclassified posts queued%s", len(post_ids),
                 " (failed ones included)" if retry_round else "")
