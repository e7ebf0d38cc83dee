"""The system's state at a glance, for ``cannect status`` and the health endpoints."""

from __future__ import annotations

import time

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import BackfillJob, IngestPending
from models.backfill import OPEN_STATUSES

from . import listener_state, queues as dramatiq_queues
from .backfill import jobs as backfill_jobs
from .intelligence import runs as intelligence_runs
from .ingest import deadletters, read_state
from .classify import stats as classify_stats
from .push import stats as push_stats

#: Dead-lettered events listed (newest first) in the status.
LATEST_DEAD_LETTERS = 5
#: Open backfill jobs listed (oldest first) in the status.
OPEN_BACKFILLS = 20
#: Queues every deployment has; others are discovered from Redis.
KNOWN_QUEUES = ("backfill", "classify", "identity", "ingest", "notify", "push", "reports", "views", "webhooks")
_NAMESPACE = "dramatiq"


def queue_depths(redis) -> dict[str, dict[str, int]]:
    """Per queue: messages waiting or in flight (including delayed retries) and dead letters."""
    names = set(KNOWN_QUEUES)
    for key in redis.scan_iter(match=f"{_NAMESPACE}:*.msgs", count=1000):
        name = (key.decode() if isinstance(key, bytes) else key)[len(_NAMESPACE) + 1:-len(".msgs")]
        names.add(name.removesuffix(".DQ").removesuffix(".XQ"))
    depths = {}
    for name in sorted(names):
        base = f"{_NAMESPACE}:{name}"
        pipe = redis.pipeline(transaction=False)
        pipe.hlen(f"{base}.msgs")
        pipe.hlen(f"{base}.DQ.msgs")
        pipe.hlen(f"{base}.XQ.msgs")
        ready, delayed, dead = pipe.execute()
        depths[name] = {"pending": ready + delayed, "dead_letters": dead}
    return depths


def gather(redis, session: Session | None, classification: bool = True,
           heartbeat_timeout_ms: int = 20_000) -> dict:
    """The status; ``classification=False`` leaves out the per-state post counts (a scan of
    ``posts``), for health checks polled every few seconds."""
    saved = listener_state.load(redis)
    stats = listener_state.read_stats(redis)
    cursor = saved.cursor if saved else None
    queues = queue_depths(redis)
    status = {
        "cursor": cursor,
        "lag_seconds": round(time.time() - cursor / 1_000_000, 3) if cursor else None,
        "listener_saved_at": saved.saved_at if saved else None,
        "events": {"seen": stats.get("seen", 0), "kept": stats.get("kept", 0),
                   "rejected": stats.get("rejected", 0), "ignored": stats.get("ignored", 0),
                   "reasons": {k: v for k, v in sorted(stats.items()) if ":" in k}},
        "queues": {name: depth["pending"] for name, depth in queues.items()},
        "dead_letters": {name: depth["dead_letters"] for name, depth in queues.items()},
        "push": push_stats.summary(redis),
        "workers": _workers(redis, heartbeat_timeout_ms),
    }
    if session is not None:
        state = read_state(session)
        status["ingest"] = {
            "applied_time_us": state.applied_time_us if state else None,
            "applied_lag_seconds": round(time.time() - state.applied_time_us / 1_000_000, 3)
            if state and state.applied_time_us else None,
            "batches_applied": state.batches_applied if state else 0,
            "events_applied": state.events_applied if state else 0,
            "duplicates_skipped": state.duplicates_skipped if state else 0,
            "gaps_accepted": state.gaps_accepted if state else 0,
            "batches_waiting": session.scalar(select(func.count()).select_from(IngestPending)),
        }
        # Events left out of their batch (services/ingest/deadletters.py); not Dramatiq's queues.
        status["ingest_dead_letters"] = {
            "held": deadletters.count(session),
            "total": state.events_dead_lettered if state else 0,
            "latest": [{key: view[key] for key in ("id", "time_us", "did", "collection", "rkey", "reason")}
                       for view in map(deadletters.as_dict, deadletters.latest(session, LATEST_DEAD_LETTERS))],
        }
        # Last run of each aggregate, view and trend job (services/intelligence/runs.py).
        status["intelligence"] = intelligence_runs.summary(session)
        # Posts classified / waiting / failed, and LLM spend (services/classify/stats.py).
        if classification:
            status["classification"] = classify_stats.summary(session)
        status["backfills"] = open_backfills(session)
    return status


def _workers(redis, heartbeat_timeout_ms: int) -> dict:
    """Broker processes alive / dead by their Dramatiq heartbeat (services/queues.py)."""
    listed = dramatiq_queues.workers(redis, heartbeat_timeout_ms)
    return {"alive": sum(w["alive"] for w in listed), "dead": sum(not w["alive"] for w in listed)}


def open_backfills(session: Session) -> list[dict]:
    """Queued and running backfill jobs with their progress, rate and ETA (in the job's unit)."""
    jobs = session.scalars(select(BackfillJob).where(BackfillJob.status.in_(OPEN_STATUSES))
                           .order_by(BackfillJob.id).limit(OPEN_BACKFILLS))
    listed = []
    for job in jobs:
        progress = backfill_jobs.progress(job)
        listed.append({"id": job.id, "kind": job.kind, "subject": job.subject_did, "status": job.status,
                       "done": job.done, "total": job.total, "rate_per_second": progress["ratePerSecond"],
                       "eta_seconds": progress["etaSeconds"], "started_at": progress["startedAt"]})
    return listed
