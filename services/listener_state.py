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


def read_stats(redis) -> dict[str, int]:
    return {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in redis.hgetall(STATS_KEY).items()}
