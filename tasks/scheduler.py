"""The scheduler: exactly one process that enqueues periodic work and does none of it."""

from __future__ import annotations

import logging
import signal
from datetime import datetime, timezone

from apscheduler.schedulers.blocking import BlockingScheduler

from tasks import b2b, classify, identity, ingest, reports, views, webhooks

log = logging.getLogger(__name__)

#: (actor, seconds between runs). Each job only sends a message; workers do the work.
JOBS = [
    (ingest.drain, 60),
    (identity.sweep, 60),
    (classify.sweep, 60),
    (b2b.flush_usage, 10),
    *views.SCHEDULE,
    *webhooks.SCHEDULE,
    *reports.SCHEDULE,
]


def build_scheduler() -> BlockingScheduler:
    """Every job runs once at start (a fresh deployment or `make run` shows its aggregates at
    once, not an hour later), then at its interval; missed runs coalesce into one."""
    scheduler = BlockingScheduler(timezone="UTC")
    start = datetime.now(timezone.utc)
    for actor, seconds in JOBS:
        scheduler.add_job(actor.send, "interval", seconds=seconds, id=actor.actor_name, next_run_time=start,
                          max_instances=1, coalesce=True, misfire_grace_time=seconds)
    return scheduler


def run() -> None:
    scheduler = build_scheduler()
    signal.signal(signal.SIGTERM, lambda *_: scheduler.shutdown(wait=False))
    log.info("scheduler: %s", ", ".join(f"{a.actor_name} every {s}s" for a, s in JOBS))
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        pass
