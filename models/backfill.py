"""Backfill jobs: work over the past, in resumable chunks, with progress in PostgreSQL.

One ``backfill_jobs`` row per job, whatever its ``kind``: ``member`` (a new member's follows
and the recent posts of them and of the accounts they follow), ``account`` (the recent posts
of one account a member just followed), and the admin kinds of issue 10 (re-classify,
recompute, replay, legacy import) that reuse the same row: ``params`` holds what the job was
asked, ``done``/``total`` its progress in the job's own unit, and ``started_at`` with
``done`` give its rate and ETA. ``backfill_chunks`` keeps where each chunk of a job stands
(for a member job: one per account and source, with the cursor of the next page), so a job
resumes after a crash from the last page it committed.

``record_tombstones`` remembers recently deleted record URIs (and purged DIDs) seen on the
stream, so that a backfilled copy fetched before the delete and applied after it is dropped:
the stream's delete wins (docs/indexing-rules.md, "Backfilled records").
"""

from datetime import datetime

from sqlalchemy import BigInteger, Identity, Index, Integer, Text
from sqlalchemy import text as sql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, created_now

#: Job statuses; the first two are "open" (at most one open job per kind and subject).
OPEN_STATUSES = ("queued", "running")
STATUSES = (*OPEN_STATUSES, "done", "failed", "cancelled")


class BackfillJob(Base):
    __tablename__ = "backfill_jobs"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    kind: Mapped[str] = mapped_column(Text)
    subject_did: Mapped[str | None] = mapped_column(Text)
    params: Mapped[dict] = mapped_column(JSONB, server_default=sql("'{}'::jsonb"))
    status: Mapped[str] = mapped_column(Text, server_default="queued")
    done: Mapped[int] = mapped_column(BigInteger, server_default="0")
    total: Mapped[int | None] = mapped_column(BigInteger)
    # Records written so far (a member job counts posts and follows stored or refreshed).
    records: Mapped[int] = mapped_column(BigInteger, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_now()
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = created_now()
    # Admin jobs (services/backfill/admin.py): where the next chunk starts (None: from the
    # start, or finished), chunks committed (a message names the chunk it runs, so a repeated
    # one is a no-op), the kinds' counters summed, and who asked ("token", an admin's DID, "cli:user").
    cursor: Mapped[dict | None] = mapped_column(JSONB)
    chunks_done: Mapped[int] = mapped_column(BigInteger, server_default="0")
    report: Mapped[dict] = mapped_column(JSONB, server_default=sql("'{}'::jsonb"))
    requested_by: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("uq_backfill_jobs_open", "kind", "subject_did", unique=True,
              postgresql_where=sql("status IN ('queued', 'running')")),
        Index("idx_backfill_jobs_subject", "subject_did", sql("id DESC")),
        Index("idx_backfill_jobs_status", "status", "id"),
        Index("idx_backfill_jobs_kind", "kind", sql("id DESC")),
    )


class BackfillChunk(Base):
    """One resumable part of a job: for a member job, one account's follows or posts."""

    __tablename__ = "backfill_chunks"

    job_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    account_did: Mapped[str] = mapped_column(Text, primary_key=True)
    source: Mapped[str] = mapped_column(Text, primary_key=True)
    status: Mapped[str] = mapped_column(Text, server_default="pending")  # pending | done | failed
    # Pages committed so far and the cursor of the next one (None: start, or nothing left).
    pages: Mapped[int] = mapped_column(Integer, server_default="0")
    cursor: Mapped[str | None] = mapped_column(Text)
    records: Mapped[int] = mapped_column(Integer, server_default="0")
    skipped: Mapped[int] = mapped_column(Integer, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)
    # Each committed page: {page, fetchedUs, streamUs, appliedUs}: when it was fetched (its
    # counts' time), the stream time_us the index had reached when it was applied (where it
    # merged in), and when it was applied.
    applied: Mapped[list] = mapped_column(JSONB, server_default=sql("'[]'::jsonb"))
    updated_at: Mapped[datetime] = created_now()


class RecordTombstone(Base):
    __tablename__ = "record_tombstones"

    # A record URI, or a DID for an account purged (deleted, taken down).
    uri: Mapped[str] = mapped_column(Text, primary_key=True)
    # Jetstream time_us of the delete; tombstones older than the window are pruned by ingest.
    time_us: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Index("idx_record_tombstones_time", "time_us"),)
