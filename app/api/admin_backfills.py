"""``/api/admin/backfills``: admin jobs over stored data (services/backfill/admin.py), for admins
(``ADMIN_TOKEN`` or an admin member): start, list, show, cancel, resume.

A job is committed, then its first chunk is sent to the ``backfill`` queue; when Redis cannot
take it the job stays ``queued`` (``started: false``) and ``resume`` starts it.
"""

from __future__ import annotations

from typing import Any, Literal

from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, ConfigDict, Field

from services.backfill import admin
from services.backfill.kinds import InvalidParams
from services.db import session_scope

from ..admin import ADMIN, require_admin
from ..errors import ApiError
from ..schemas import BODY_ERRORS, ERRORS, Problem, QueryModel

api = APIBlueprint("admin_backfills", __name__, url_prefix="/api/admin/backfills",
                   abp_tags=[Tag(name="admin: backfills", description="Resumable jobs over stored data, with progress")])

ADMIN_ERRORS = {403: Problem, 404: Problem, 409: Problem, **ERRORS}
ADMIN_BODY_ERRORS = {403: Problem, **BODY_ERRORS}
Status = Literal["queued", "running", "done", "failed", "cancelled"]

_EXAMPLE_JOB = {
    "jobId": 42, "kind": "reclassify", "status": "running", "done": 1500, "total": 4000, "records": 0,
    "error": None, "startedAt": "2026-12-01T06:00:00+00:00", "finishedAt": None, "ratePerSecond": 250.0,
    "etaSeconds": 10.0, "unit": "posts", "params": {"below_version": 1, "since": None, "until": None, "limit": None,
                                                     "mode": "queue", "chunk_size": 500},
    "report": {"queued": 1500}, "cursor": {"after_id": 1873, "taken": 1500}, "chunksDone": 3,
    "requestedBy": "token", "createdAt": "2026-12-01T05:59:59+00:00", "updatedAt": "2026-12-01T06:00:06+00:00"}


class StartBody(BaseModel):
    model_config = ConfigDict(extra="forbid", openapi_extra={"examples": {
        "reclassify": {"value": {"kind": "reclassify", "params": {"below_version": 1, "since": "2026-11-01",
                                                                  "limit": 10000}}},
        "recompute": {"value": {"kind": "recompute", "params": {"what": "profiles"}}},
        "jetstream_replay": {"value": {"kind": "jetstream_replay", "params": {
            "cursor_from_us": "2026-11-30T10:00:00Z", "cursor_to_us": "2026-11-30T10:30:00Z"}}},
        "legacy_import": {"value": {"kind": "legacy_import", "params": {"path": "posts.db", "chunk_size": 500}}}}})

    kind: str = Field(min_length=1, max_length=64, description=(
        "reclassify (below_version, since, until, limit, mode=queue|inline, chunk_size); "
        "recompute (what=profiles|aggregates|views|all, since, until); jetstream_replay (cursor_from_us, "
        "cursor_to_us: unix µs or ISO 8601; url: JETSTREAM_URL's server, or another wss:// one on public "
        "addresses; max_events, idle_seconds); legacy_import (path: a file inside LEGACY_IMPORT_DIR; table, "
        "chunk_size, min_score)"))
    params: dict[str, Any] = Field(default_factory=dict, description="The kind's params (see kind)")


class JobPath(BaseModel):
    job_id: int = Field(ge=1, le=2**63 - 1)


class ListQuery(QueryModel):
    model_config = ConfigDict(extra="forbid")

    status: Status | None = None
    kind: str | None = Field(None, max_length=64)
    limit: int = Field(20, ge=1, le=admin.MAX_LIST)
    cursor: str | None = Field(None, pattern=r"^[0-9]{1,19}$", description="From the previous page")


class JobView(BaseModel):
    model_config = ConfigDict(openapi_extra={"examples": {"running": {"value": _EXAMPLE_JOB}}})

    jobId: int
    kind: str
    status: Status
    done: int = Field(description="Units done (see unit)")
    total: int | None = Field(description="Units planned (an estimate until the job is done)")
    records: int
    error: str | None
    startedAt: str | None
    finishedAt: str | None
    ratePerSecond: float | None
    etaSeconds: float | None
    unit: str | None
    params: dict[str, Any]
    report: dict[str, Any] = Field(description="The kind's counters, summed over chunks")
    cursor: dict[str, Any] | None = Field(description="Where the next chunk starts")
    chunksDone: int
    requestedBy: str | None
    createdAt: str | None
    updatedAt: str | None


class StartResponse(BaseModel):
    model_config = ConfigDict(openapi_extra={"examples": {"started": {"value": {"job": {
        **_EXAMPLE_JOB, "status": "queued", "done": 0, "startedAt": None, "ratePerSecond": None,
        "etaSeconds": None, "report": {}, "cursor": None, "chunksDone": 0}, "started": True}}}})

    job: JobView
    started: bool = Field(description="False: saved but not sent (Redis away); resume it")


class JobList(BaseModel):
    jobs: list[JobView]
    cursor: str | None


def _call(work):
    try:
        with session_scope() as session:
            return work(session)
    except admin.JobNotFound as exc:
        raise ApiError(404, "Not Found", str(exc))
    except admin.Conflict as exc:
        raise ApiError(409, "Conflict", str(exc))
    except InvalidParams as exc:
        raise ApiError(422, "Invalid request", str(exc))


def _send(job_id: int, chunk: int) -> bool:
    from tasks.backfill import send_admin_chunk  # the broker lives with the actors

    return send_admin_chunk(job_id, chunk)


@api.post("", security=ADMIN, responses={201: StartResponse, **ADMIN_BODY_ERRORS})
def start_backfill(body: StartBody):
    """Start a job: its params are checked and its total planned; its first chunk is queued."""
    requester = require_admin()
    job_id = _call(lambda session: admin.create(session, body.kind, body.params, requester))
    started = _send(job_id, 0)
    return {"job": _call(lambda session: admin.show(session, job_id)), "started": started}, 201


@api.get("", security=ADMIN, responses={200: JobList, **ADMIN_ERRORS})
def list_backfills(query: ListQuery):
    """Admin jobs, newest first, with their progress."""
    before = int(query.cursor) if query.cursor else None
    jobs, following = _call(lambda session: admin.list_jobs(session, query.status, query.kind, query.limit, before))
    return {"jobs": jobs, "cursor": str(following) if following else None}


@api.get("/<int:job_id>", security=ADMIN, responses={200: JobView, **ADMIN_ERRORS})
def show_backfill(path: JobPath):
    """One job: params, progress (done/total, rate, ETA), cursor, report, error."""
    return _call(lambda session: admin.show(session, path.job_id))


@api.post("/<int:job_id>/cancel", security=ADMIN, responses={200: JobView, **ADMIN_ERRORS})
def cancel_backfill(path: JobPath):
    """Stop the job before its next chunk (a chunk in flight finishes and is counted)."""
    return _call(lambda session: admin.cancel(session, path.job_id))


@api.post("/<int:job_id>/resume", security=ADMIN, responses={200: StartResponse, **ADMIN_ERRORS})
def resume_backfill(path: JobPath):
    """Continue a failed job from its cursor, or send again the next chunk of a queued or running one."""
    chunk, _ = _call(lambda session: admin.resume(session, path.job_id))
    started = _send(path.job_id, chunk)
    return {"job": _call(lambda session: admin.show(session, path.job_id)), "started": started}
