"""What every aggregate counts, in one place: the newest classification of each indexed post
that is about cannabis.

A re-classified post has several rows (one per model version); only its newest counts. Posts
a classifier found off topic (a member's dog) count nowhere. Deleted posts are gone from
``posts`` and their classifications with them (cascade), so every recompute leaves them out.
"""

from __future__ import annotations

import zlib
from datetime import date, datetime, timezone

from sqlalchemy import text
from sqlalchemy.orm import Session

#: SQL condition on ``post_classifications pc``: the row that counts for its post.
LATEST = ("pc.cannabis_related AND NOT EXISTS (SELECT 1 FROM post_classifications newer "
          "WHERE newer.post_id = pc.post_id AND newer.id > pc.id)")

#: Posts joined with the classification that counts (add conditions with AND).
CLASSIFIED = f"posts p JOIN post_classifications pc ON pc.post_id = p.id AND {LATEST}"

#: Posts created in [:lo, :hi), using the date index first (``created_date`` is the UTC date).
IN_RANGE = "p.created_date BETWEEN :lo_day AND :hi_day AND p.created_at >= :lo AND p.created_at < :hi"

#: Optional region filter (case-insensitive), true when :region is NULL.
IN_REGION = "(CAST(:region AS text) IS NULL OR lower(pc.region_hint) = lower(CAST(:region AS text)))"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def range_params(lo: datetime, hi: datetime) -> dict:
    """Bind parameters for :data:`IN_RANGE`; raises ``ValueError`` on an empty or naive range."""
    if lo.tzinfo is None or hi.tzinfo is None:
        raise ValueError("time ranges must be timezone-aware")
    if hi <= lo:
        raise ValueError(f"empty time range: {lo.isoformat()} .. {hi.isoformat()}")
    return {"lo": lo, "hi": hi, "lo_day": _utc_day(lo), "hi_day": _utc_day(hi)}


def _utc_day(moment: datetime) -> date:
    return moment.astimezone(timezone.utc).date()


def try_job_lock(session: Session, job: str) -> bool:
    """One run of a job at a time across workers: a transaction-scoped advisory lock.

    A run that finds the lock taken skips (the running one computes the same thing).
    """
    key = zlib.crc32(f"intelligence:{job}".encode()) - 2**31
    return bool(session.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": key}).scalar())




#: Memory each sort or hash of a recompute may use before spilling to disk (per job
#: transaction; the views worker runs two jobs at most at a time).
JOB_WORK_MEM = "64MB"


def roomy(session: Session) -> None:
    """Let this transaction's aggregates sort and hash in memory, without JIT (``SET LOCAL``: this job only)."""
    session.execute(text(f"SET LOCAL work_mem = '{JOB_WORK_MEM}'"))
    session.execute(text("SET LOCAL jit = off"))  # compiling costs more than it saves on these queries
