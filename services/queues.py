"""Dramatiq's dead letters and worker heartbeats, read and acted on straight in Redis.

Dramatiq's Redis broker (its ``dispatch.lua``) keeps, under the ``dramatiq`` namespace:

- ``<queue>.XQ`` a sorted set of dead-lettered Redis message ids, scored by when they died (ms),
  and ``<queue>.XQ.msgs`` the hash of those ids to the encoded message (orjson, see
  tasks/broker.py); Dramatiq's maintenance deletes them after ``dead_message_ttl`` (7 days);
- ``__heartbeats__`` a sorted set of broker ids to their last heartbeat (ms). Every process
  that talks to the broker (a worker, but also the listener or a CLI that enqueues) beats;
  workers beat every few seconds (tasks/broker.py ``Heartbeat``), and maintenance removes a
  dead one once its unacknowledged messages are requeued.

The ids shown are the Redis message ids (the hash keys), unique per enqueue, so a retried or
replayed message never shares an id with its dead copy. These functions take a redis client
and, for :func:`replay`, an ``enqueue`` callable (the broker's own), so services stay free of
Dramatiq.
"""

from __future__ import annotations

import time
from typing import Callable

import orjson

from . import status  # status imports this module too: names are looked up at call time

#: Message options that belong to one delivery, not to the message: left out on replay.
_DELIVERY_OPTIONS = ("redis_message_id", "retries", "traceback", "requeue_timestamp", "eta")
#: Longest summary of one argument (payloads can be a thousand events).
ARG_SUMMARY_CHARS = 80


class UnknownMessage(LookupError):
    """No dead letter has this id (never did, already replayed or dropped)."""


class Unreplayable(ValueError):
    """The dead letter is not a Dramatiq message this broker can enqueue (it stays; drop it)."""


def _xq(queue: str) -> str:
    return f"{status._NAMESPACE}:{queue}.XQ"


def dead_letter_queues(redis) -> list[str]:
    """Queues holding at least one dead letter."""
    return [name for name, depth in status.queue_depths(redis).items() if depth["dead_letters"]]


def summarize_arg(arg) -> str:
    """One argument in a line: an ingest batch as conn/seq and its event count, others capped."""
    if isinstance(arg, dict) and "conn" in arg and "seq" in arg:
        events = arg.get("events")
        return f"batch {arg['conn']}/{arg['seq']} ({len(events) if isinstance(events, list) else '?'} events)"
    if isinstance(arg, (list, tuple)) and len(arg) > 5:
        return f"[{len(arg)} items]"
    text = orjson.dumps(arg, default=str).decode()
    return text if len(text) <= ARG_SUMMARY_CHARS else text[:ARG_SUMMARY_CHARS - 1] + "…"


def _last_error_line(traceback: str | None) -> str | None:
    lines = [line for line in (traceback or "").splitlines() if line.strip()]
    return lines[-1].strip()[:300] if lines else None


def _decode(raw: bytes) -> dict:
    """The message, or a stand-in naming the problem: one bad entry must not hide the others."""
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return {"options": {"traceback": f"undecodable message ({len(raw)} bytes): {exc}"}}
    return message if isinstance(message, dict) else {"options": {"traceback": "not a Dramatiq message"}}


def _view(queue: str, message_id: str, raw: bytes, died_ms: float | None) -> dict:
    message = _decode(raw)
    options = message.get("options") or {}
    args = [summarize_arg(arg) for arg in message.get("args") or []]
    args += [f"{key}={summarize_arg(value)}" for key, value in (message.get("kwargs") or {}).items()]
    return {"queue": queue, "id": message_id, "message_id": message.get("message_id"),
            "actor": message.get("actor_name"), "args": args,
            "failed_at": round(died_ms / 1000, 3) if died_ms is not None else None,
            "retries": options.get("retries", 0), "error": _last_error_line(options.get("traceback"))}


def dead_letters(redis, queue: str | None = None, limit: int = 50) -> list[dict]:
    """Newest dead letters first (of one queue, or all), summarized: never whole payloads."""
    queues = [queue] if queue else dead_letter_queues(redis)
    listed = []
    for name in queues:
        newest = redis.zrevrange(_xq(name), 0, limit - 1, withscores=True)
        if not newest:
            continue
        raws = redis.hmget(f"{_xq(name)}.msgs", [member for member, _ in newest])
        listed += [_view(name, _text(member), raw, score) for (member, score), raw in zip(newest, raws) if raw]
    listed.sort(key=lambda view: view["failed_at"] or 0, reverse=True)
    return listed[:limit]


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _find(redis, message_id: str) -> str:
    for name in dead_letter_queues(redis):
        if redis.hexists(f"{_xq(name)}.msgs", message_id):
            return name
    raise UnknownMessage(f"no dead letter {message_id}")


def show(redis, message_id: str) -> dict:
    """One dead letter: its summary, plus the whole message (options and the full traceback)."""
    queue = _find(redis, message_id)
    raw = redis.hget(f"{_xq(queue)}.msgs", message_id)
    if raw is None:
        raise UnknownMessage(f"no dead letter {message_id}")
    view = _view(queue, message_id, raw, redis.zscore(_xq(queue), message_id))
    view["message"] = _decode(raw)
    return view


def _take(redis, queue: str, message_id: str) -> bytes | None:
    """Remove one dead letter and return it, atomically: of two takers only one gets it."""
    pipe = redis.pipeline(transaction=True)
    pipe.hget(f"{_xq(queue)}.msgs", message_id)
    pipe.zrem(_xq(queue), message_id)
    pipe.hdel(f"{_xq(queue)}.msgs", message_id)
    raw, _, removed = pipe.execute()
    return raw if removed else None


def replay(redis, message_id: str, enqueue: Callable[[dict], object]) -> dict:
    """Enqueue a dead letter again as a fresh message (retries reset) and remove it from the XQ.

    The dead copy is taken out first, atomically, so a replay run twice enqueues once; if the
    enqueue fails, it is put back. ``enqueue`` gets the message's fields (queue_name,
    actor_name, args, kwargs, options, message_id, message_timestamp) for the broker's enqueue.
    """
    queue = _find(redis, message_id)
    died_ms = redis.zscore(_xq(queue), message_id)
    raw = _take(redis, queue, message_id)
    if raw is None:
        raise UnknownMessage(f"no dead letter {message_id} (replayed or dropped meanwhile)")
    message = _decode(raw)
    if not all(isinstance(message.get(key), str) for key in ("actor_name", "queue_name", "message_id")):
        _put_back(redis, queue, message_id, raw, died_ms)
        raise Unreplayable(f"dead letter {message_id} is not a replayable message; drop it instead")
    options = {key: value for key, value in (message.get("options") or {}).items() if key not in _DELIVERY_OPTIONS}
    fields = {"queue_name": message["queue_name"], "actor_name": message["actor_name"],
              "args": tuple(message.get("args") or ()), "kwargs": message.get("kwargs") or {},
              "options": options, "message_id": message["message_id"],
              "message_timestamp": message.get("message_timestamp") or int(time.time() * 1000)}
    try:
        enqueue(fields)
    except BaseException:
        _put_back(redis, queue, message_id, raw, died_ms)
        raise
    return _view(queue, message_id, raw, died_ms)


def _put_back(redis, queue: str, message_id: str, raw: bytes, died_ms: float | None) -> None:
    pipe = redis.pipeline(transaction=True)
    pipe.hset(f"{_xq(queue)}.msgs", message_id, raw)
    pipe.zadd(_xq(queue), {message_id: died_ms or time.time() * 1000})
    pipe.execute()


def replay_all(redis, enqueue: Callable[[dict], object], queue: str | None = None) -> int:
    """Replay every dead letter (of one queue, or all) but unreplayable ones; returns how many."""
    count = 0
    for name in [queue] if queue else dead_letter_queues(redis):
        for member in redis.zrange(_xq(name), 0, -1):
            try:
                replay(redis, _text(member), enqueue)
                count += 1
            except (UnknownMessage, Unreplayable):  # gone meanwhile, or left for drop
                pass
    return count


def drop(redis, message_id: str) -> dict:
    """Delete one dead letter for good; returns its summary."""
    queue = _find(redis, message_id)
    died_ms = redis.zscore(_xq(queue), message_id)
    raw = _take(redis, queue, message_id)
    if raw is None:
        raise UnknownMessage(f"no dead letter {message_id}")
    return _view(queue, message_id, raw, died_ms)


def drop_all(redis, queue: str | None = None) -> int:
    """Delete every dead letter (of one queue, or all); returns how many."""
    count = 0
    for name in [queue] if queue else dead_letter_queues(redis):
        pipe = redis.pipeline(transaction=True)
        pipe.hlen(f"{_xq(name)}.msgs")
        pipe.delete(_xq(name), f"{_xq(name)}.msgs")
        held, _ = pipe.execute()
        count += held
    return count


def workers(redis, heartbeat_timeout_ms: int) -> list[dict]:
    """Every broker process Redis knows (newest beat first): seconds since its last beat, alive."""
    now_ms = time.time() * 1000
    beats = redis.zrevrange(f"{status._NAMESPACE}:__heartbeats__", 0, -1, withscores=True)
    return [{"id": _text(member), "seconds_since_beat": round(max(now_ms - score, 0) / 1000, 1),
             "alive": now_ms - score <= heartbeat_timeout_ms} for member, score in beats]
