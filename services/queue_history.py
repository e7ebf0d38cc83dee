"""Queue depths over time, for the admin farm page's rates: Dramatiq counts nothing per queue.

The broker keeps only what is waiting now (``status.queue_depths``), so a rate must come from
two looks some time apart. Each look at the farm page (and anything else that calls
:func:`sample`) appends ``{"at", "depths"}`` to one capped Redis list, at most once per
``MIN_INTERVAL`` seconds; :func:`rates` turns the newest sample and the one about ``window``
seconds older into a change per minute. A positive rate means the queue grows (work arrives
faster than workers take it), a negative one that it drains; it is not the workers' throughput,
which nothing in Redis records.
"""

from __future__ import annotations

import time

import orjson

HISTORY_KEY = "cannect:admin:queue-depths"
#: Samples kept (at one per MIN_INTERVAL: two hours).
KEPT = 240
MIN_INTERVAL = 30.0
_LAST_KEY = HISTORY_KEY + ":last"


def sample(redis, depths: dict[str, int], now: float | None = None) -> bool:
    """Record ``{queue: pending}`` unless a sample was taken less than ``MIN_INTERVAL`` ago."""
    now = time.time() if now is None else now
    if not redis.set(_LAST_KEY, now, nx=True, px=int(MIN_INTERVAL * 1000)):
        return False
    pipe = redis.pipeline(transaction=True)
    pipe.lpush(HISTORY_KEY, orjson.dumps({"at": round(now, 3), "depths": depths}))
    pipe.ltrim(HISTORY_KEY, 0, KEPT - 1)
    pipe.execute()
    return True


def history(redis, limit: int = KEPT) -> list[dict]:
    """Samples, oldest first (unreadable entries skipped; by time, whatever order they came in)."""
    samples = []
    for raw in redis.lrange(HISTORY_KEY, 0, limit - 1):
        try:
            item = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(item, dict) and isinstance(item.get("depths"), dict) and isinstance(item.get("at"), (int, float)):
            samples.append(item)
    return sorted(samples, key=lambda item: item["at"])


def rates(samples: list[dict], window: float = 300.0) -> dict[str, float | None]:
    """Per queue, the change in depth per minute between the newest sample and the newest one
    at least ``window`` seconds older (or the oldest there is); None with fewer than two."""
    if len(samples) < 2:
        return {name: None for name in (samples[-1]["depths"] if samples else {})}
    newest = samples[-1]
    older = [s for s in samples[:-1] if newest["at"] - s["at"] >= window] or samples[:1]
    base = older[-1]
    minutes = (newest["at"] - base["at"]) / 60
    if minutes <= 0:
        return {name: None for name in newest["depths"]}
    return {name: round((depth - base["depths"].get(name, 0)) / minutes, 2)
            for name, depth in newest["depths"].items()}
