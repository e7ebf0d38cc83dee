"""Admin backfill jobs: create, run chunk by chunk, cancel, resume, list and show.

An admin job is a ``backfill_jobs`` row with ``subject_did`` NULL and ``kind`` one of
:data:`~services.backfill.kinds.KINDS`. Its messages (``backfill.admin_chunk``, queue
``backfill``) name the job and the chunk they run, the job's ``chunks_done`` when sent: a
message for a chunk already committed (a redelivery after a crash, a second ``resume``) is a
no-op, so the kind's work for a chunk is counted once. One chunk is three steps, each in its
own transaction: claim (the job is open, the chunk is the next one), the kind's work (its own
transactions, idempotent), record (cursor, ``done``, report; compare-and-set on
``chunks_done``). The next message is sent after the record commits. A worker that dies (or
finds Redis away) between that commit and that send would leave the job ``running`` with no
message: so the redelivery of the chunk committed last names the next chunk again
(``Step.recovering``), and the worker sends it unless it knows it sent it already.

Cancel marks the job ``cancelled`` at once: a chunk in flight still records what it did, and
no further chunk runs. A chunk that keeps failing is retried by the actor; when its retries
are spent the job is ``failed`` and :func:`resume` continues it from the stored cursor.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import BackfillJob
from models.backfill import OPEN_STATUSES, STATUSES

from . import jobs
from .kinds import CLASSIFY_KEY, KINDS, REALTIME_KEY, AdminKind, Busy, ChunkResult, InvalidParams, SessionFactory

#: Longest error message stored on a job.
MAX_ERROR = 1000
#: Largest page of :func:`list_jobs`.
MAX_LIST = 100


def load_kinds() -> dict[str, AdminKind]:
    """Import the kinds' modules (each registers itself) and return the registry."""
    from . import legacy, reclassify, recompute, window  # noqa: F401
    return KINDS


class JobNotFound(LookupError):
    """No admin job has this id."""


class Conflict(ValueError):
    """The job is not in a state where this action makes sense (e.g. resuming a finished job)."""


@dataclass(frozen=True)
class Step:
    """What to send after a chunk: the chunk to run next (None: the job is over), after
    ``delay_seconds``; the posts the chunk newly indexed, to classify; the realtime events to publish."""

    chunk: int | None
    delay_seconds: float = 0.0
    classify_post_ids: tuple[int, ...] = ()
    realtime_events: tuple[dict, ...] = ()
    #: This message's chunk was committed already (a redelivery): ``chunk`` is its successor,
    #: whose message may never have been sent.
    recovering: bool = False


def _now() -> datetime:
    return datetime.now(timezone.utc)


def kind_of(name: str) -> AdminKind:
    kinds = load_kinds()
    if name not in kinds:
        raise InvalidParams(f"unknown kind {name!r}; known: {', '.join(sorted(kinds))}")
    return kinds[name]


def create(session: Session, kind_name: str, params: dict | None, requested_by: str | None) -> int:
    """A new ``queued`` job with its params validated and its total planned; the caller commits,
    then sends chunk 0 (``tasks.backfill.send_admin_chunk``)."""
    kind = kind_of(kind_name)
    if params is not None and not isinstance(params, dict):
        raise InvalidParams("params must be an object")
    normalized = kind.validate(dict(params or {}))
    job = BackfillJob(kind=kind.name, subject_did=None, params=normalized, status="queued",
                      total=kind.plan(session, normalized), requested_by=requested_by)
    session.add(job)
    session.flush()
    return job.id


def _admin_job(session: Session, job_id: int, lock: bool = False) -> BackfillJob:
    job = session.get(BackfillJob, job_id, with_for_update=lock)
    if job is None or job.subject_did is not None:
        raise JobNotFound(f"no admin backfill job {job_id}")
    return job


@dataclass(frozen=True)
class _Claim:
    kind: AdminKind
    params: dict
    cursor: dict | None


def _claim(session: Session, job_id: int, chunk: int) -> _Claim | None:
    job = session.get(BackfillJob, job_id, with_for_update=True)
    if job is None or job.subject_did is not None or job.status not in OPEN_STATUSES or job.chunks_done != chunk:
        return None  # gone, cancelled, finished, or this chunk is already committed
    now = _now()
    if job.status == "queued":
        job.status, job.started_at = "running", job.started_at or now
    job.updated_at = now
    return _Claim(kind_of(job.kind), dict(job.params or {}), job.cursor)


def _record(session: Session, job_id: int, chunk: int, result: ChunkResult) -> bool:
    """Store the chunk's outcome once; whether to send the next chunk."""
    job = session.get(BackfillJob, job_id, with_for_update=True)
    if job is None or job.chunks_done != chunk:
        return False  # another delivery of this chunk recorded it first
    job.chunks_done, job.cursor, job.error = chunk + 1, result.cursor, None
    job.done += max(int(result.processed), 0)
    job.report = merge_report(job.report or {}, result.report or {})
    job.updated_at = _now()
    if job.total is not None and job.done > job.total:
        job.total = job.done  # the plan was an estimate
    if job.status != "running":
        return False  # cancelled meanwhile: this chunk counts, no other runs
    if result.cursor is None:
        job.status, job.finished_at, job.total = "done", job.updated_at, job.done
        return False
    return True


def run_next(sessions: SessionFactory, job_id: int, chunk: int) -> Step | None:
    """Run chunk ``chunk`` of the job if it is the next one; what to send after (None: it was not)."""
    with sessions() as session:
        claim = _claim(session, job_id, chunk)
        if claim is None:
            return _successor_of_committed(session, job_id, chunk)
    try:
        result = claim.kind.run_chunk(sessions, claim.params, claim.cursor)
    except Busy as busy:  # shown by `show` until the chunk runs (its record clears it)
        with sessions() as session:
            note_error(session, job_id, f"waiting: {busy}")
        return Step(chunk, max(busy.seconds, 0.1))
    # Kinds that index posts (legacy_import, jetstream_replay) name them for classification.
    classify = tuple((result.report or {}).pop(CLASSIFY_KEY, None) or ())
    events = tuple((result.report or {}).pop(REALTIME_KEY, None) or ())
    with sessions() as session:
        go_on = _record(session, job_id, chunk, result)
    return Step(chunk + 1 if go_on else None, classify_post_ids=classify, realtime_events=events)


def _successor_of_committed(session: Session, job_id: int, chunk: int) -> Step | None:
    """For a message of the chunk committed last while its job runs on: the next chunk, to send
    again in case its message was lost (see the module doc); None for any other stale message."""
    job = session.get(BackfillJob, job_id)
    if job is None or job.subject_did is not None or job.status != "running" or job.chunks_done != chunk + 1:
        return None
    return Step(chunk + 1, recovering=True)


def note_error(session: Session, job_id: int, error: str) -> None:
    """The last error of a chunk being retried, for ``show`` (the job stays open)."""
    job = session.get(BackfillJob, job_id)
    if job is not None and job.subject_did is None and job.status in OPEN_STATUSES:
        job.error, job.updated_at = error[:MAX_ERROR], _now()


def fail(session: Session, job_id: int, error: str) -> None:
    """Retries spent: the job is ``failed`` with the error; :func:`resume` goes on from its cursor."""
    jobs.fail_job(session, job_id, error[:MAX_ERROR])


def cancel(session: Session, job_id: int) -> dict:
    """Stop the job before its next chunk; its view."""
    job = _admin_job(session, job_id, lock=True)
    if job.status in ("done", "cancelled"):
        raise Conflict(f"job {job_id} is already {job.status}")
    job.status = "cancelled"
    job.finished_at = job.updated_at = _now()
    return view(job)


def resume(session: Session, job_id: int) -> tuple[int, dict]:
    """Reopen a failed job (or pick up a queued or running one whose message was lost): the chunk
    to send after the commit, and the job's view."""
    job = _admin_job(session, job_id, lock=True)
    if job.status not in (*OPEN_STATUSES, "failed"):
        raise Conflict(f"job {job_id} is {job.status}: only queued, running or failed jobs can be resumed")
    if job.status == "failed":
        job.status = "running" if job.started_at else "queued"
        job.error = job.finished_at = None
    job.updated_at = _now()
    return job.chunks_done, view(job)


def show(session: Session, job_id: int) -> dict:
    return view(_admin_job(session, job_id))


def list_jobs(session: Session, status: str | None = None, kind: str | None = None, limit: int = 50,
              before: int | None = None) -> tuple[list[dict], int | None]:
    """Admin jobs, newest first; and the ``before`` of the next page (None: no more)."""
    if status is not None and status not in STATUSES:
        raise InvalidParams(f"unknown status {status!r}; known: {', '.join(STATUSES)}")
    limit = max(1, min(limit, MAX_LIST))
    query = select(BackfillJob).where(BackfillJob.subject_did.is_(None))
    if status is not None:
        query = query.where(BackfillJob.status == status)
    if kind is not None:
        query = query.where(BackfillJob.kind == kind)
    if before is not None:
        query = query.where(BackfillJob.id < before)
    rows = list(session.scalars(query.order_by(BackfillJob.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return [view(job) for job in rows], (rows[-1].id if more else None)


def view(job: BackfillJob) -> dict:
    """The job with its progress (done/total in its unit, rate per second, ETA in seconds)."""
    kind = load_kinds().get(job.kind)
    return {**jobs.progress(job), "unit": kind.unit if kind else None, "params": job.params or {},
            "report": job.report or {}, "cursor": job.cursor, "chunksDone": job.chunks_done,
            "requestedBy": job.requested_by, "createdAt": job.created_at.isoformat() if job.created_at else None,
            "updatedAt": job.updated_at.isoformat() if job.updated_at else None}


def merge_report(into: dict, more: dict) -> dict:
    """Counters summed key by key (nested dicts too); anything else the chunk says replaces."""
    merged = dict(into)
    for key, value in more.items():
        before = merged.get(key)
        if isinstance(value, dict):
            merged[key] = merge_report(before if isinstance(before, dict) else {}, value)
        elif _number(value) and (before is None or _number(before)):
            merged[key] = (before or 0) + value
        else:
            merged[key] = value
    return merged


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
