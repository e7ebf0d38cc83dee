"""Drive an admin backfill kind chunk by chunk, as the runner (services/backfill/admin.py) does,
without its queue: for tests of one kind's validate / plan / run_chunk."""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager

from sqlalchemy.orm import Session

from services.backfill import kinds
from services.backfill.kinds import CLASSIFY_KEY, REALTIME_KEY


def session_factory(engine):
    """The kinds' ``sessions``: one committed transaction per use."""
    @contextmanager
    def scope():
        with Session(engine) as session, session.begin():
            yield session

    return scope


def run_job(kind, scope, params: dict, max_chunks: int = 1000):
    """(planned total, done, report, ids to classify, chunks): the report's counters summed, nested
    ones as ``(key, reason)``, with ``realtime_new_posts`` the new posts its read_changed events
    name; every chunk must move the cursor on."""
    kinds.LIVE.ingest_waiting = None  # no live ingest queue here (a worker module imported earlier may have wired one)
    params = kind.validate(params)
    with scope() as session:
        total = kind.plan(session, params)
    cursor, done, report, ids, chunks = None, 0, Counter(), [], 0
    while True:
        result = kind.run_chunk(scope, params, cursor)
        chunks += 1
        done += result.processed
        ids += result.report.pop(CLASSIFY_KEY, [])
        # read_changed events: counted as the new posts they name (for the web processes' read caches)
        report["realtime_new_posts"] += sum(len(e["newPosts"]) for e in result.report.pop(REALTIME_KEY, []))
        for key, value in result.report.items():
            for reason, n in (value.items() if isinstance(value, dict) else [(None, value)]):
                report[(key, reason) if reason else key] += n
        if result.cursor is None:
            return total, done, report, ids, chunks
        assert result.cursor != cursor and chunks < max_chunks
        cursor = result.cursor
