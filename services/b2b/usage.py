"""The usage log: every call of an identified client, buffered in Redis, flushed to ``api_usage``.

The web process appends one entry per call to the buffer list without a round trip of its
own: the entry waits in the process until its next limiter script, which pushes it along
(``access.Gate``), or for at most ``access.PUSH_INTERVAL`` when no request comes. A call
never waits for PostgreSQL, and the log costs no extra Redis round trip. (A web process
killed with SIGKILL loses the entries of its last half second; quotas and limits are
counted in the script itself and lose nothing.) ``flush`` (the ``b2b.flush_usage`` actor, every few seconds)
moves entries into ``api_usage`` in batches, exactly once:

- one flusher at a time (a lock with a token, renewed per batch, released by compare-and-delete);
- a batch is *claimed* atomically: moved from the buffer to a processing list in one script,
  so an entry is either still buffered or claimed, never in neither;
- the batch is inserted with ``ON CONFLICT (request_id) DO NOTHING`` and committed, and only
  then is the processing list cleared. A flusher that dies between the commit and the clear
  leaves the batch claimed; the next one inserts it again, and the unique ``request_id``
  drops every row already there. Replays never count twice; crashes never lose a call.

Entries that cannot be read (never written by this code) go to ``b2b:usage:rejected`` for a
person to look at, not into the table and not away.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
import uuid
from contextlib import AbstractContextManager
from datetime import datetime, timedelta, timezone
from typing import Callable

import orjson
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from models import ApiUsage

from . import limits
from .clients import touch_last_used

log = logging.getLogger(__name__)

BUFFER = limits.USAGE_BUFFER
PROCESSING = "b2b:usage:processing"
REJECTED = "b2b:usage:rejected"
LOCK = "b2b:usage:flush-lock"
LOCK_MS = 120_000
MAX_BATCH = 5000  # Lua's unpack() takes at most about 8,000 values

CLAIM = """
local claimed = redis.call('LRANGE', KEYS[2], 0, -1)
if #claimed > 0 then return claimed end
local items = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
if #items > 0 then
  redis.call('LTRIM', KEYS[1], #items, -1)
  redis.call('RPUSH', KEYS[2], unpack(items))
end
return items
"""
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

INSERT = text("""
INSERT INTO api_usage (request_id, client_id, endpoint, method, status_code, response_time_ms, called_at)
SELECT u.request_id, u.client_id, u.endpoint, u.method, u.status_code, u.response_time_ms, u.called_at
FROM unnest(CAST(:request_ids AS uuid[]), CAST(:client_ids AS integer[]), CAST(:endpoints AS text[]),
            CAST(:methods AS text[]), CAST(:statuses AS smallint[]), CAST(:latencies AS integer[]),
            CAST(:called_ats AS timestamptz[]))
     AS u(request_id, client_id, endpoint, method, status_code, response_time_ms, called_at)
WHERE EXISTS (SELECT 1 FROM api_clients AS c WHERE c.id = u.client_id)
ON CONFLICT (request_id) DO NOTHING
""")


class _RequestIds:
    """Unique ids for calls, shaped as version-4 UUIDs: 72 random bits drawn once per process (again
    after a fork) and a counter. ``uuid4()`` per call was 2.2 us of the 2.6 an entry took."""

    def __init__(self):
        self.reseed()
        os.register_at_fork(after_in_child=self.reseed)

    def reseed(self) -> None:
        bits = os.urandom(9).hex()
        variant = "89ab"[int(bits[15], 16) & 3]
        self.prefix = f"{bits[:8]}-{bits[8:12]}-4{bits[12:15]}-{variant}{bits[15:18]}-"
        self.counter = itertools.count()

    def next(self) -> str:
        return f"{self.prefix}{next(self.counter) & 0xFFFFFFFFFFFF:012x}"


_request_ids = _RequestIds()


def entry(client_id: int, endpoint: str, method: str, status: int, latency_ms: int,
          called_at: float | None = None, request_id: str | None = None) -> bytes:
    """One call, as the buffer holds it (``called_at``: Unix time, default now)."""
    at = called_at if called_at is not None else time.time()
    return orjson.dumps([request_id or _request_ids.next(), client_id, endpoint[:200], method[:16], status,
                         latency_ms, round(at * 1000)])


def record(redis, item: bytes) -> None:
    redis.rpush(BUFFER, item)


def _parse(raw: bytes) -> tuple | None:
    try:
        request_id, client_id, endpoint, method, status, latency, at_ms = orjson.loads(raw)
        return (str(uuid.UUID(request_id)), int(client_id), str(endpoint), str(method), int(status),
                int(latency), datetime.fromtimestamp(at_ms / 1000, timezone.utc))
    except (ValueError, TypeError, orjson.JSONDecodeError, OverflowError):
        return None


def _insert(session: Session, rows: list[tuple]) -> int:
    if not rows:
        return 0
    columns = list(zip(*rows))
    result = session.execute(INSERT, dict(request_ids=list(columns[0]), client_ids=list(columns[1]),
                                          endpoints=list(columns[2]), methods=list(columns[3]),
                                          statuses=list(columns[4]), latencies=list(columns[5]),
                                          called_ats=list(columns[6])))
    last_used: dict[int, datetime] = {}
    for row in rows:
        last_used[row[1]] = max(row[6], last_used.get(row[1], row[6]))
    touch_last_used(session, last_used)
    return result.rowcount


def flush(redis, sessions: Callable[[], AbstractContextManager[Session]], batch_size: int = MAX_BATCH,
          max_batches: int = 50) -> dict:
    """Move buffered calls into ``api_usage``: ``{"inserted", "duplicates", "rejected", "skipped"}``.

    ``sessions()`` opens a transaction (``services.db.session_scope``); each batch is one.
    ``skipped`` is true when another flusher holds the lock.
    """
    batch_size = max(1, min(batch_size, MAX_BATCH))
    token = uuid.uuid4().hex
    totals = {"inserted": 0, "duplicates": 0, "rejected": 0, "skipped": False}
    if not redis.set(LOCK, token, nx=True, px=LOCK_MS):
        totals["skipped"] = True
        return totals
    claim, renew, release = (redis.register_script(s) for s in (CLAIM, RENEW, RELEASE))
    try:
        for _ in range(max_batches):
            if not renew(keys=[LOCK], args=[token, LOCK_MS]):
                log.warning("usage flush lost its lock; stopping (the claimed batch stays for the next flush)")
                break
            items = claim(keys=[BUFFER, PROCESSING], args=[batch_size])
            if not items:
                break
            rows, bad = [], []
            for raw in items:
                row = _parse(raw)
                (rows if row is not None else bad).append(row if row is not None else raw)
            with sessions() as session:
                inserted = _insert(session, rows)
            if bad:
                redis.rpush(REJECTED, *bad)
                log.error("usage flush: %d unreadable entries kept in %s", len(bad), REJECTED)
            redis.delete(PROCESSING)
            totals["inserted"] += inserted
            totals["duplicates"] += len(rows) - inserted
            totals["rejected"] += len(bad)
            if len(items) < batch_size:
                break
    finally:
        release(keys=[LOCK], args=[token])
    return totals


def pending(redis) -> int:
    """Calls buffered or claimed but not yet in ``api_usage``."""
    return int(redis.llen(BUFFER)) + int(redis.llen(PROCESSING))


def report(session: Session, redis, client_id: int, monthly_quota: int | None, rate_limit_per_min: int,
           start: datetime | None = None, end: datetime | None = None, held: int = 0) -> dict:
    """One client's usage: calls per UTC day and endpoint in ``[start, end)`` (default: this
    month) from ``api_usage``, and this month's quota as the limiter counts it (live), less
    ``held``: calls the asking process leased and has not used (``access.Gate.held``)."""
    now = datetime.now(timezone.utc)
    start = start or limits.month_start(now)
    end = end or now + timedelta(seconds=1)
    day = func.date_trunc("day", func.timezone("UTC", ApiUsage.called_at)).label("day")
    rows = session.execute(
        select(day, ApiUsage.endpoint, func.count().label("calls"),
               func.count().filter(ApiUsage.status_code >= 400).label("errors"),
               func.avg(ApiUsage.response_time_ms).label("avg_ms"))
        .where(ApiUsage.client_id == client_id, ApiUsage.called_at >= start, ApiUsage.called_at < end)
        .group_by(day, ApiUsage.endpoint).order_by(day, ApiUsage.endpoint)).all()
    used = limits.quota_used(redis, client_id, now)
    if used is None:
        used = limits.seed_quota(redis, session, client_id, now)
    used = max(0, used - held)
    return {
        "from": start.isoformat(), "to": end.isoformat(),
        "days": [{"day": row.day.date().isoformat(), "endpoint": row.endpoint, "calls": row.calls,
                  "errors": row.errors, "avgResponseMs": round(float(row.avg_ms), 1) if row.avg_ms is not None else None}
                 for row in rows],
        "totalCalls": sum(row.calls for row in rows),
        "quota": {"month": now.strftime("%Y-%m"), "limit": monthly_quota, "used": used,
                  "remaining": None if monthly_quota is None else max(0, monthly_quota - used),
                  "resetsAt": limits.next_month_start(now).isoformat()},
        "rateLimitPerMinute": rate_limit_per_min,
    }
