"""When each recompute job last ran, how long it took and how many rows it wrote.

``cannect status`` shows it; materialized views report their own last refresh here too.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import text
from sqlalchemy.orm import Session

_RECORD = text("""
    INSERT INTO intelligence_runs (job, finished_at, duration_ms, rows, runs)
    VALUES (:job, clock_timestamp(), :ms, :rows, 1)
    ON CONFLICT (job) DO UPDATE SET finished_at = EXCLUDED.finished_at, duration_ms = EXCLUDED.duration_ms,
        rows = EXCLUDED.rows, runs = intelligence_runs.runs + 1
""")


class Tally:
    """Rows a job wrote, set by the job inside :func:`recorded`."""

    rows: int = 0


@contextmanager
def recorded(session: Session, job: str) -> Iterator[Tally]:
    """Time the block and record the run in the same transaction (nothing if it raised)."""
    tally = Tally()
    started = time.perf_counter()
    yield tally
    session.execute(_RECORD, {"job": job, "ms": int((time.perf_counter() - started) * 1000), "rows": tally.rows})


def summary(session: Session) -> dict[str, dict]:
    """Per job: last finished time (ISO), duration, rows, number of runs."""
    rows = session.execute(text("SELECT job, finished_at, duration_ms, rows, runs FROM intelligence_runs ORDER BY job"))
    return {job: {"finished_at": finished.isoformat(), "duration_ms": ms, "rows": count, "runs": runs}
            for job, finished, ms, count, runs in rows}
