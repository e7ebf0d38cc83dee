"""Health endpoints of the seed: the API, the database, the indexer."""

from __future__ import annotations

from flask import current_app, jsonify
from flask_openapi3 import APIBlueprint, Tag

from services.db import session_scope
from services.status import gather

from .errors import problem
from .extensions import get_redis, settings

api = APIBlueprint("health", __name__, url_prefix="/health", abp_tags=[Tag(name="health")])

#: The indexer is unhealthy when its cursor is this far behind real time.
MAX_INDEXER_LAG_SECONDS = 300


@api.get("")
def health():
    return jsonify(status="ok")


@api.get("/db")
def health_db():
    try:
        with session_scope() as session:
            session.connection().exec_driver_sql("SELECT 1")
    except Exception as exc:  # the check's purpose is to report this
        return problem(503, "Database unavailable", type(exc).__name__)
    return jsonify(status="ok")


@api.get("/indexer")
def health_indexer():
    """Listener lag, last event age, counters and queue depths; 503 when it has fallen behind."""
    try:
        with session_scope() as session:
            report = gather(get_redis(), session, classification=False,
                            heartbeat_timeout_ms=settings().worker_heartbeat_timeout_ms)
    except Exception as exc:
        return problem(503, "Indexer status unavailable", type(exc).__name__)
    lag = report["lag_seconds"]
    healthy = lag is not None and lag < MAX_INDEXER_LAG_SECONDS
    report["status"] = "ok" if healthy else "lagging" if lag is not None else "not started"
    return jsonify(report), 200 if healthy else 503


@api.get("/ws")
def health_ws():
    """This process's sockets and its realtime stream reader."""
    return jsonify(current_app.extensions["realtime"].stats())
