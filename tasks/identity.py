"""Queue ``identity``: resolve and verify one DID's handle (``services/identity``).

- Enqueued by: the ingest actor after its commit (``tasks/ingest.py``: identity events of
  known accounts, and profiles a batch created), the scheduler's ``identity.sweep`` (profiles
  never checked or due for re-verification), and ``resolve`` itself for accounts that just
  lost their handle to another DID. Always through :func:`request`, which sends at most one
  message per DID (``services.identity.requests``).
- Latency: one DID document and one handle lookup, each bounded by
  ``IDENTITY_TIMEOUT_SECONDS``; usually well under a second, nothing when cached.
- Idempotency: storing a verdict is idempotent (it sets the handle the DID proves now).
- Retries: a resolver that cannot be reached leaves the handle as it was and retries with
  backoff (5 s doubling to 10 min, 8 times, about 20 min in all), logged as a warning, not an
  error. Given up (``identity.gave_up``), the handle still stays as it was and counts as
  checked, so the sweep asks again only when re-verification is due.
- Realtime: a member whose handle changed gets ``profile_updated`` after the commit.
"""

from __future__ import annotations

import functools
import logging
from datetime import timedelta

import dramatiq

from cannect.config import get_settings
from services.db import session_scope
from services.identity import IdentityResolver, Unreachable, requests, resolve_and_store
from services.identity.store import due_for_resolution, mark_checked
from services.realtime import try_publish

from .broker import app_redis

log = logging.getLogger(__name__)

#: Profiles the sweep queues at most per run (it runs every minute).
SWEEP_BATCH = 1000


@functools.lru_cache(maxsize=1)
def _resolver() -> IdentityResolver:
    return IdentityResolver(get_settings(), app_redis())


def request(dids, refresh: bool = False) -> int:
    """Queue resolution of ``dids`` (once each); ``refresh``: an identity event, skip caches."""
    sent = requests.claim(app_redis(), dids, refresh)
    for did in sent:
        resolve.send(did)
    return len(sent)


@dramatiq.actor(queue_name="identity", actor_name="identity.resolve", max_retries=8,
                min_backoff=5_000, max_backoff=600_000, time_limit=5 * 60_000, on_retry_exhausted="identity.gave_up")
def resolve(did: str) -> None:
    settings = get_settings()
    fresh = requests.start(app_redis(), did)
    try:
        outcome = resolve_and_store(session_scope, _resolver(), did, fresh, settings.avatar_cdn)
    except Unreachable as exc:
        if fresh:  # the next try must not trust a cache the identity event made stale
            requests.claim(app_redis(), [did], refresh=True)
        log.warning("identity %s: resolution unreachable, handle kept: %s", did, exc)
        raise dramatiq.Retry(str(exc)) from None
    try_publish(app_redis(), outcome.events)
    if outcome.verdict is not None:
        log.log(logging.INFO if outcome.change.changed else logging.DEBUG, "identity %s: %s (%s)",
                did, outcome.verdict.handle or "no verified handle", outcome.verdict.reason)
    if outcome.released:
        request(outcome.released)
    for again in requests.finish(app_redis(), did):
        resolve.send(again)


@dramatiq.actor(queue_name="identity", actor_name="identity.gave_up", max_retries=3)
def gave_up(message: dict, retry_info: dict) -> None:
    """Every retry found a resolver unreachable: keep the handle, check again when it is due."""
    did = message["args"][0]
    with session_scope() as session:
        mark_checked(session, did)
    log.warning("identity %s: still unreachable after %s retries; handle kept", did, retry_info.get("retries"))
    for again in requests.finish(app_redis(), did):
        resolve.send(again)


@dramatiq.actor(queue_name="identity", actor_name="identity.sweep", max_retries=0, time_limit=5 * 60_000)
def sweep() -> None:
    """Scheduled: queue profiles never resolved, then those due for re-verification."""
    settings = get_settings()
    with session_scope() as session:
        dids = due_for_resolution(session, SWEEP_BATCH, timedelta(hours=settings.identity_reverify_hours))
    sent = request(dids)
    if sent:
        log.info("identity sweep: %d profiles queued for resolution", sent)
