"""Where the listener is: its cursor, its last enqueued batch and its event counters, in Redis.

The cursor lives next to the queue it describes: a batch is in Redis before the cursor
that covers it is, so whatever survives a crash, the cursor never runs ahead of the queue.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Mapping

STATE_KEY = "cannect:listener:state"
STATS_KEY = "cannect:listener:stats"


@dataclass(frozen=True)
class SavedState:
    cursor: int | None              # highest Jetstream time_us enqueued (or skipped)
    last_batch: tuple | None        # (conn, seq) of the last batch enqueued
    saved_at: float | None = None   # unix time of the save


def load(redis) -> SavedState | None:
    raw = redis.hgetall(STATE_KEY)
    if not raw:
        return None
    get = lambda k: raw.get(k.encode()) or raw.get(k)  # noqa: E731  (bytes or str clients)
    conn, seq = get("conn"), get("seq")
    return SavedState(cursor=int(get("cursor")) if get("cursor") else None,
                      last_batch=(int(conn), int(seq)) if conn and seq else None,
                      saved_at=float(get("saved_at")) if get("saved_at") else None)


def save(redis, cursor: int | None, last_batch: tuple | None, stats: Mapping[str, int]) -> None:
    state = {"saved_at": time.time()}
    if cursor:
        state["cursor"] = cursor
    if last_batch:
        state["conn"], state["seq"] = last_batch
    pipe = redis.pipeline(transaction=True)
    pipe.hset(STATE_KEY, mapping=state)
    for name, value in stats.items():
        pipe.hincrby(STATS_KEY, name, value)
    pipe.execute()


#: What happens to each event the listener reads: ``seen`` = ``kept`` + ``ignored`` + ``rejected``.
OUTCOMES = ("seen", "kept", "ignored", "rejected")


@dataclass(frozen=True)
class Counters:
    totals: dict[str, int]                # outcome -> events
    reasons: dict[tuple[str, str], int]   # (outcome, reason) -> events


def read_stats(redis) -> dict[str, int]:
    """The raw counters: ``seen``, ``kept``, ``ignored``, ``rejected`` and ``<outcome>:<reason>``."""
    return {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in redis.hgetall(STATS_KEY).items()}


def counters(redis) -> Counters:
    """The counters split into totals per outcome and skipped events per (outcome, reason)."""
    totals, reasons = {}, {}
    for name, value in read_stats(redis).items():
        outcome, _, reason = name.partition(":")
        if reason:
            reasons[(outcome, reason)] = value
        else:
            totals[name] = value
    return Counters(totals, reasons)
