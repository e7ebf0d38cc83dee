"""``/api/admin/queues`` and ``/api/admin/status``: what ``cannect queues`` and ``cannect status``
show, for admins (``ADMIN_TOKEN`` or an admin member).

Queue depths and worker heartbeats; Dramatiq's dead letters (services/queues.py) listed,
shown, replayed (enqueued again as a fresh message, retries reset) or dropped; and the whole
status (listener, ingest, classification, queues, workers, open backfills: services/status.py).
"""

from __future__ import annotations

from typing import Any

from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, ConfigDict, Field
from redis import RedisError

from services import queues as dead_letters
from services.db import session_scope
from services.status import gather, queue_depths

from ..admin import ADMIN
from ..errors import ApiError
from ..extensions import get_redis, settings
from ..schemas import ERRORS, Problem, QueryModel

api = APIBlueprint("admin_ops", __name__, url_prefix="/api/admin",
                   abp_tags=[Tag(name="admin: operations", description="Queues, dead letters, workers, status")])

ADMIN_ERRORS = {403: Problem, 404: Problem, 503: Problem, **ERRORS}
QUEUE_NAME = r"^[A-Za-z0-9_.-]{1,100}$"


class DeadQuery(QueryModel):
    model_config = ConfigDict(extra="forbid")

    queue: str | None = Field(None, pattern=QUEUE_NAME, description="Only this queue")
    limit: int = Field(50, ge=1, le=500, description="Newest first")


class MessagePath(BaseModel):
    message_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="The Redis message id of the dead letter")


class QueueDepth(BaseModel):
    pending: int = Field(description="Waiting or in flight, delayed retries included")
    deadLetters: int


class Worker(BaseModel):
    id: str
    secondsSinceBeat: float
    alive: bool


class QueuesView(BaseModel):
    model_config = ConfigDict(openapi_extra={"examples": {"busy": {"value": {
        "queues": {"backfill": {"pending": 12, "deadLetters": 0}, "ingest": {"pending": 1, "deadLetters": 2}},
        "workers": [{"id": "5d1c...", "secondsSinceBeat": 1.2, "alive": True}]}}}})

    queues: dict[str, QueueDepth]
    workers: list[Worker]


class DeadLetter(BaseModel):
    model_config = ConfigDict(openapi_extra={"examples": {"ingest": {"value": {
        "queue": "ingest", "id": "0b9e6d2a-4f0e-4d59-9c55-3f1b3c2d7a10", "messageId": "c6f7...",
        "actor": "ingest.apply_batch", "args": ["batch 1/42 (1000 events)"], "failedAt": 1764568800.5,
        "retries": 12, "error": "psycopg.errors.DiskFull: could not extend file"}}}})

    queue: str
    id: str
    messageId: str | None
    actor: str | None
    args: list[str] = Field(description="Arguments summarized (never whole payloads)")
    failedAt: float | None = Field(description="Unix time")
    retries: int
    error: str | None = Field(description="Last line of the traceback")
    message: dict[str, Any] | None = Field(None, description="The whole message (show only)")


class DeadLetterList(BaseModel):
    deadLetters: list[DeadLetter]


def _redis_call(work):
    try:
        return work(get_redis())
    except dead_letters.UnknownMessage as exc:
        raise ApiError(404, "Not Found", str(exc))
    except dead_letters.Unreplayable as exc:
        raise ApiError(409, "Conflict", str(exc))
    except RedisError:
        raise ApiError(503, "Service Unavailable", "Redis is not answering", {"Retry-After": "5"})


def _camel(view: dict) -> dict:
    renamed = {"message_id": "messageId", "failed_at": "failedAt", "seconds_since_beat": "secondsSinceBeat",
               "dead_letters": "deadLetters"}
    return {renamed.get(key, key): value for key, value in view.items()}


def enqueue_message(fields: dict) -> None:
    """The broker's own enqueue (importing ``tasks`` configures it); the admin pages' too."""
    import dramatiq

    import tasks  # noqa: F401

    dramatiq.get_broker().enqueue(dramatiq.Message(**fields))


@api.get("/queues", security=ADMIN, responses={200: QueuesView, **ADMIN_ERRORS})
def list_queues():
    """Each queue's pending messages and dead letters, and every worker's last heartbeat."""
    timeout = settings().worker_heartbeat_timeout_ms
    return _redis_call(lambda redis: {
        "queues": {name: _camel(depth) for name, depth in queue_depths(redis).items()},
        "workers": [_camel(worker) for worker in dead_letters.workers(redis, timeout)]})


@api.get("/queues/dead", security=ADMIN, responses={200: DeadLetterList, **ADMIN_ERRORS})
def list_dead_letters(query: DeadQuery):
    """Dead letters (a message whose retries are spent), newest first, summarized."""
    return _redis_call(lambda redis: {"deadLetters": [
        _camel(view) for view in dead_letters.dead_letters(redis, query.queue, query.limit)]})


@api.get("/queues/dead/<message_id>", security=ADMIN, responses={200: DeadLetter, **ADMIN_ERRORS})
def show_dead_letter(path: MessagePath):
    """One dead letter with its whole message (options and traceback)."""
    return _redis_call(lambda redis: _camel(dead_letters.show(redis, path.message_id)))


@api.post("/queues/dead/<message_id>/replay", security=ADMIN,
          responses={200: DeadLetter, 409: Problem, **ADMIN_ERRORS})
def replay_dead_letter(path: MessagePath):
    """Enqueue the dead letter again as a fresh message (retries reset) and remove it."""
    return _redis_call(lambda redis: _camel(dead_letters.replay(redis, path.message_id, enqueue_message)))


@api.delete("/queues/dead/<message_id>", security=ADMIN, responses={200: DeadLetter, **ADMIN_ERRORS})
def drop_dead_letter(path: MessagePath):
    """Forget the dead letter for good."""
    return _redis_call(lambda redis: _camel(dead_letters.drop(redis, path.message_id)))


class StatusView(BaseModel):
    model_config = ConfigDict(extra="allow", openapi_extra={"examples": {"status": {"value": {
        "cursor": 1764568800000000, "lag_seconds": 0.8, "queues": {"ingest": 0, "backfill": 12},
        "dead_letters": {"ingest": 0, "backfill": 0}, "workers": {"alive": 3, "dead": 0},
        "backfills": [{"id": 42, "kind": "reclassify", "subject": None, "status": "running", "done": 1500,
                       "total": 4000, "rate_per_second": 250.0, "eta_seconds": 10.0,
                       "started_at": "2026-12-01T06:00:00+00:00"}]}}}})


@api.get("/status", security=ADMIN, responses={200: StatusView, **ADMIN_ERRORS})
def system_status():
    """What ``cannect status --json`` shows: listener, ingest, classification, queues, workers, backfills."""
    timeout = settings().worker_heartbeat_timeout_ms

    def work(redis):
        with session_scope() as session:
            return gather(redis, session, heartbeat_timeout_ms=timeout)
    return _redis_call(work)
