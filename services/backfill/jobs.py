"""Backfill jobs and their chunks in PostgreSQL: creating, starting, progress, resuming.

A job is created in the transaction that causes it (a sign-in, ``cannect members add``, a
member's follow of an account nobody covered) and its first message is sent after the
commit. At most one job per kind and subject is open (``queued`` or ``running``): a second
request while one runs is the same job. The messages of a job name a chunk and the page
number they are to fetch; a chunk's committed page count makes a repeated or stale message
a no-op, and :func:`pending_pages` lists what to send to pick a job up again after any loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from models import BackfillChunk, BackfillJob
from models.backfill import OPEN_STATUSES

MEMBER, ACCOUNT = "member", "account"
FOLLOWS, POSTS = "follows", "posts"


@dataclass(frozen=True)
class PageRequest:
    """One message of the ``backfill`` queue: fetch page ``page`` of a chunk."""

    job_id: int
    account: str
    source: str
    page: int

    def args(self) -> tuple:
        return (self.job_id, self.account, self.source, self.page)


def request_job(session: Session, kind: str, subject_did: str, params: dict | None = None) -> int | None:
    """Create a job unless one of this kind and subject is open; the new job's id, or None."""
    statement = insert(BackfillJob).values(kind=kind, subject_did=subject_did, params=params or {})
    # The partial index's predicate as literal SQL: PostgreSQL cannot match bound parameters
    # against it when inferring the conflict target.
    open_statuses = ", ".join(f"'{status}'" for status in OPEN_STATUSES)
    statement = statement.on_conflict_do_nothing(index_elements=[BackfillJob.kind, BackfillJob.subject_did],
                                                 index_where=text(f"status IN ({open_statuses})"))
    return session.execute(statement.returning(BackfillJob.id)).scalar()


def start_job(session: Session, job_id: int) -> list[PageRequest]:
    """Lay out a queued job's chunks and mark it running; the pages to send (none if not open)."""
    job = session.get(BackfillJob, job_id, with_for_update=True)
    if job is None or job.status not in OPEN_STATUSES:
        return []
    if job.status == "queued":
        chunks = [(job.subject_did, FOLLOWS), (job.subject_did, POSTS)] if job.kind == MEMBER \
            else [(job.subject_did, POSTS)]
        session.execute(insert(BackfillChunk).values([{"job_id": job_id, "account_did": did, "source": source}
                                                      for did, source in chunks]).on_conflict_do_nothing())
        now = datetime.now(timezone.utc)
        job.status, job.started_at, job.updated_at, job.total = "running", now, now, len(chunks)
    return pending_pages(session, job_id)


def is_open(session: Session, job_id: int) -> bool:
    return session.scalar(select(BackfillJob.status).where(BackfillJob.id == job_id)) in OPEN_STATUSES


def pending_pages(session: Session, job_id: int) -> list[PageRequest]:
    """The next page of every unfinished chunk of the job: sending them resumes it."""
    rows = session.execute(select(BackfillChunk.account_did, BackfillChunk.source, BackfillChunk.pages)
                           .where(BackfillChunk.job_id == job_id, BackfillChunk.status == "pending")
                           .order_by(BackfillChunk.source, BackfillChunk.account_did)).all()
    return [PageRequest(job_id, did, source, pages + 1) for did, source, pages in rows]


def add_chunks(session: Session, job_id: int, accounts: list[str], source: str) -> list[PageRequest]:
    """New chunks for accounts the job did not have yet; their first pages."""
    if not accounts:
        return []
    added = session.execute(insert(BackfillChunk).values(
        [{"job_id": job_id, "account_did": did, "source": source} for did in sorted(set(accounts))])
        .on_conflict_do_nothing().returning(BackfillChunk.account_did)).scalars().all()
    if added:
        session.execute(update(BackfillJob).where(BackfillJob.id == job_id)
                        .values(total=BackfillJob.total + len(added)))
    return [PageRequest(job_id, did, source, 1) for did in sorted(added)]


def finish_chunk(session: Session, job: BackfillJob, chunk: BackfillChunk, status: str = "done",
                 error: str | None = None) -> None:
    """The chunk is over (finished, or failed for good); the job ends with its last chunk."""
    chunk.status, chunk.error = status, error
    job.done += 1
    if job.total is not None and job.done >= job.total:
        failed = session.scalar(text("SELECT count(*) FROM backfill_chunks WHERE job_id = :id AND status = 'failed'"),
                                {"id": job.id})
        job.status = "done"
        job.finished_at = datetime.now(timezone.utc)
        if failed:
            job.error = f"{failed} of {job.total} parts could not be fetched"


def fail_job(session: Session, job_id: int, error: str) -> None:
    session.execute(update(BackfillJob).where(BackfillJob.id == job_id, BackfillJob.status.in_(OPEN_STATUSES))
                    .values(status="failed", error=error[:1000], finished_at=datetime.now(timezone.utc),
                            updated_at=datetime.now(timezone.utc)))


def member_of(job: BackfillJob) -> str | None:
    """The member who sees this job's progress."""
    return job.subject_did if job.kind == MEMBER else (job.params or {}).get("member")


def progress(job: BackfillJob | None) -> dict | None:
    """What the member is shown: ``{jobId, kind, status, done, total, records, startedAt, finishedAt,
    ratePerSecond, etaSeconds}`` (rate and ETA in chunks, once it runs)."""
    if job is None:
        return None
    rate = eta = None
    if job.started_at is not None and job.done:
        elapsed = max(((job.finished_at or datetime.now(timezone.utc)) - job.started_at).total_seconds(), 1e-3)
        rate = round(job.done / elapsed, 3)
        if job.total is not None and job.status in OPEN_STATUSES:
            eta = round(max(job.total - job.done, 0) / rate, 1)
    return {"jobId": job.id, "kind": job.kind, "status": job.status, "done": job.done, "total": job.total,
            "records": job.records, "error": job.error,
            "startedAt": job.started_at.isoformat() if job.started_at else None,
            "finishedAt": job.finished_at.isoformat() if job.finished_at else None,
            "ratePerSecond": rate, "etaSeconds": eta}


def member_progress(session: Session, did: str) -> dict | None:
    """The member's latest onboarding job (their own backfill), for their profile answer."""
    job = session.scalar(select(BackfillJob).where(BackfillJob.kind == MEMBER, BackfillJob.subject_did == did)
                         .order_by(BackfillJob.id.desc()).limit(1))
    return progress(job)


def progress_event(job: BackfillJob) -> dict | None:
    """The ``backfill_progress`` realtime event for the job's member's own sockets."""
    member = member_of(job)
    return {"type": "backfill_progress", "member": member, "backfill": progress(job)} if member else None
