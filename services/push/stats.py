"""Push counters kept in Redis, so every worker process adds to one set of figures that the
web's ``/metrics`` and ``cannect status`` read.

One hash: ``sent``; ``failed:<reason>`` (gave up after the retries); ``removed:<reason>``
(subscription deleted: the push service's status code, ``redirect`` or ``refused``);
``retried:<reason>``; ``skipped:<reason>`` (expired, deleted, unwanted, duplicate, ...); and a
delivery-latency histogram (``latency:<le>`` per bucket and ``latency_sum``),
latency being the time from the event (notification or broadcast) to the push service's 201.
The last give-ups are kept in a short list for an operator to read.
"""

from __future__ import annotations

import time

import orjson

STATS_KEY = "cannect:push:stats"
FAILURES_KEY = "cannect:push:failures"
FAILURES_KEPT = 100
#: Upper bounds (seconds) of the latency buckets.
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
OUTCOMES = ("sent", "failed", "removed", "retried", "skipped")


def _bucket(seconds: float) -> str:
    return next((f"{le:g}" for le in BUCKETS if seconds <= le), "+Inf")


def record(redis, outcome: str, reason: str | None = None, latency: float | None = None) -> None:
    """Count one outcome (``sent`` with its latency)."""
    pipe = redis.pipeline(transaction=False)
    add(pipe, outcome, reason, latency)
    pipe.execute()


def add(pipe, outcome: str, reason: str | None = None, latency: float | None = None) -> None:
    """:func:`record` as part of the caller's pipeline."""
    pipe.hincrby(STATS_KEY, outcome if reason is None else f"{outcome}:{reason}", 1)
    if latency is not None:
        latency = max(0.0, latency)
        pipe.hincrby(STATS_KEY, f"latency:{_bucket(latency)}", 1)
        pipe.hincrbyfloat(STATS_KEY, "latency_sum", latency)


def record_give_up(redis, reason: str, **details) -> None:
    """Count a push given up after its retries, and keep it in the list of recent give-ups."""
    entry = orjson.dumps({"at": round(time.time(), 3), "reason": reason, **details})
    pipe = redis.pipeline(transaction=False)
    pipe.hincrby(STATS_KEY, f"failed:{reason}", 1)
    pipe.lpush(FAILURES_KEY, entry)
    pipe.ltrim(FAILURES_KEY, 0, FAILURES_KEPT - 1)
    pipe.execute()


def read(redis) -> dict:
    """``{outcome: {reason: n}}`` (``sent`` is a plain number) and ``latency {count, sum, buckets}``."""
    raw = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
           for k, v in redis.hgetall(STATS_KEY).items()}
    stats: dict = {"sent": int(raw.pop("sent", 0)), **{name: {} for name in OUTCOMES[1:]}}
    total = float(raw.pop("latency_sum", 0.0))
    per_bucket = {}
    for key, value in raw.items():
        name, _, reason = key.partition(":")
        if name == "latency":
            per_bucket[reason] = int(value)
        elif name in stats and name != "sent":
            stats[name][reason] = int(value)
    cumulative, buckets = 0, {}
    for le in [f"{b:g}" for b in BUCKETS] + ["+Inf"]:
        cumulative += per_bucket.get(le, 0)
        buckets[le] = cumulative
    stats["latency"] = {"count": cumulative, "sum": total, "buckets": buckets}
    return stats


def recent_failures(redis, limit: int = 10) -> list[dict]:
    return [orjson.loads(item) for item in redis.lrange(FAILURES_KEY, 0, limit - 1)]


def quantile(latency: dict, q: float) -> float | None:
    """The upper bound of the bucket holding the q-quantile (None without data)."""
    count = latency["count"]
    if not count:
        return None
    for le, cumulative in latency["buckets"].items():
        if cumulative >= q * count:
            return float(le)
    return None


def summary(redis) -> dict:
    """The figures ``cannect status`` shows."""
    stats = read(redis)
    latency = stats["latency"]
    return {
        "sent": stats["sent"],
        **{name: sum(stats[name].values()) for name in OUTCOMES[1:]},
        "reasons": {f"{name}:{reason}": n for name in OUTCOMES[1:] for reason, n in sorted(stats[name].items())},
        "latency_seconds": {"mean": round(latency["sum"] / latency["count"], 3) if latency["count"] else None,
                            "p50_le": quantile(latency, 0.5), "p95_le": quantile(latency, 0.95)},
        "recent_failures": recent_failures(redis, 5),
    }
