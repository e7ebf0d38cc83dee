"""Admin kind ``reclassify``: classify stored posts again, in chunks of post ids in id order.

Which posts: those below classification version ``below_version``, and/or created in
[``since``, ``until``); with only a time range, every post in it (forced: classified again
even at the current version); with neither, those below the current version. ``limit`` caps
the job. ``mode`` ``queue`` (default) sends the ids to the ``classify`` queue, but only while
that queue holds at most :data:`QUEUE_CEILING` messages, so fresh posts' classification never
waits behind a whole backfill; ``inline`` classifies in the backfill worker itself.

A chunk run twice sends or classifies the same posts again: classification upserts one row
per post, so nothing doubles. The worker wires :data:`HOOKS` (services stay free of Dramatiq).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import Post
from services.classify import CLASSIFICATION_VERSION

from .kinds import Busy, ChunkResult, InvalidParams, SessionFactory, register, require_known, yield_to_live_ingest

#: The job waits while the classify queue holds more messages than this.
QUEUE_CEILING = 50
#: Posts classified inline between two looks at live ingest's backlog.
INLINE_SLICE = 100
#: Seconds before a chunk that found the classify queue full tries again.
BUSY_SECONDS = 2.0
DEFAULT_CHUNK, MAX_CHUNK = 500, 5000
MODES = ("queue", "inline")
_KEYS = {"below_version", "since", "until", "limit", "mode", "chunk_size"}


@dataclass
class Hooks:
    """Set by the worker (tasks/backfill.py): queue classification of ids (``force``), the classify
    queue's depth, and classify ids here (returning services.classify.pipeline.Report)."""

    enqueue: Callable[[list[int], bool], object] | None = None
    waiting: Callable[[], int] | None = None
    inline: Callable[[list[int], bool], object] | None = None


HOOKS = Hooks()


def _int(params: dict, key: str, low: int, high: int | None = None) -> int | None:
    value = params.get(key)
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
        raise InvalidParams(f"{key} must be an integer from {low}" + (f" to {high}" if high is not None else ""))
    return value


def parse_time(key: str, value) -> datetime | None:
    """An ISO date or date/time (UTC unless it says), or :class:`InvalidParams` naming ``key``."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) and len(value) <= 64 else None
    except ValueError:
        moment = None
    if moment is None:
        raise InvalidParams(f"{key} must be an ISO date or date/time, e.g. 2026-01-31 or 2026-01-31T12:00:00Z")
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


class Reclassify:
    name = "reclassify"
    unit = "posts"

    def validate(self, params: dict) -> dict:
        require_known(params, _KEYS)
        below = _int(params, "below_version", 1, CLASSIFICATION_VERSION)
        since, until = parse_time("since", params.get("since")), parse_time("until", params.get("until"))
        if since and until and since >= until:
            raise InvalidParams("since must be before until")
        mode = params.get("mode", "queue")
        if mode not in MODES:
            raise InvalidParams(f"mode must be one of {', '.join(MODES)}")
        if below is None and since is None and until is None:
            below = CLASSIFICATION_VERSION
        return {"below_version": below, "since": since.isoformat() if since else None,
                "until": until.isoformat() if until else None, "limit": _int(params, "limit", 1, 10**9),
                "mode": mode, "chunk_size": _int(params, "chunk_size", 1, MAX_CHUNK) or DEFAULT_CHUNK}

    def _query(self, query, params: dict):
        if params["below_version"] is not None:
            query = query.where(Post.classification_version < params["below_version"])
        if params["since"]:
            query = query.where(Post.created_at >= datetime.fromisoformat(params["since"]))
        if params["until"]:
            query = query.where(Post.created_at < datetime.fromisoformat(params["until"]))
        return query

    def plan(self, session: Session, params: dict) -> int | None:
        total = session.scalar(self._query(select(func.count()).select_from(Post), params))
        return min(total, params["limit"]) if params["limit"] else total

    def run_chunk(self, sessions: SessionFactory, params: dict, cursor: dict | None) -> ChunkResult:
        after, taken = (cursor or {}).get("after_id", 0), (cursor or {}).get("taken", 0)
        size = params["chunk_size"] if not params["limit"] else min(params["chunk_size"], params["limit"] - taken)
        force = params["below_version"] is None
        if params["mode"] == "queue" and HOOKS.waiting is not None and HOOKS.waiting() > QUEUE_CEILING:
            raise Busy(BUSY_SECONDS, "the classify queue is full")
        with sessions() as session:
            ids = list(session.scalars(self._query(select(Post.id).where(Post.id > after), params)
                                       .order_by(Post.id).limit(size))) if size > 0 else []
        if not ids:
            return ChunkResult(0, None)
        report = self._classify(ids, params["mode"], force)
        taken += len(ids)
        finished = len(ids) < size or (params["limit"] is not None and taken >= params["limit"])
        return ChunkResult(len(ids), None if finished else {"after_id": ids[-1], "taken": taken}, report)

    @staticmethod
    def _classify(ids: list[int], mode: str, force: bool) -> dict:
        hook = HOOKS.enqueue if mode == "queue" else HOOKS.inline
        if hook is None:
            raise RuntimeError(f"reclassify ({mode}) runs in a backfill worker (tasks/backfill.py wires it)")
        if mode == "queue":
            hook(ids, force)
            return {"queued": len(ids)}
        totals = dict.fromkeys(("classified", "failed", "retry_later", "skipped", "gone"), 0)
        for at in range(0, len(ids), INLINE_SLICE):  # classified here: the cores go back to live ingest between
            yield_to_live_ingest()
            outcome = hook(ids[at:at + INLINE_SLICE], force)
            for key in totals:
                totals[key] += getattr(outcome, key)
        return totals


KIND = register(Reclassify())
