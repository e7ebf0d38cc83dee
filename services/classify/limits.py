"""Limits every worker shares through Redis: LLM requests in flight, and dollars spent today.

Both must hold across processes (a dozen Dramatiq threads in several workers classify at
once), so neither can live in a process's memory.
"""

from __future__ import annotations

import logging
import secrets
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from decimal import Decimal
from typing import Callable, Iterator

from redis import Redis

log = logging.getLogger(__name__)

# Takes a slot if fewer than ARGV[1] unexpired leases exist. Redis's own clock decides expiry,
# so workers with skewed clocks agree; a crashed worker's lease simply runs out.
_ACQUIRE = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], ms + tonumber(ARGV[2]), ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""


class SlotsBusy(Exception):
    """No slot freed up within the wait."""


class RedisSemaphore:
    """At most ``limit`` holders across all processes; a lease expires after ``lease_seconds``
    so a worker killed mid-request gives its slot back by itself."""

    def __init__(self, redis: Redis, key: str, limit: int, lease_seconds: float, poll_seconds: float = 0.02):
        self.redis, self.key, self.limit = redis, key, limit
        self.lease_ms = max(1000, int(lease_seconds * 1000))
        self.poll_seconds = poll_seconds
        self._acquire = redis.register_script(_ACQUIRE)

    def try_acquire(self) -> str | None:
        token = secrets.token_hex(8)
        return token if self._acquire(keys=[self.key], args=[self.limit, self.lease_ms, token]) else None

    def release(self, token: str) -> None:
        self.redis.zrem(self.key, token)

    def holders(self) -> int:
        """Unexpired leases (for status and tests)."""
        return self.redis.zcount(self.key, int(time.time() * 1000), "+inf")

    @contextmanager
    def slot(self, wait_seconds: float) -> Iterator[None]:
        """Hold a slot for the block; :class:`SlotsBusy` if none frees up within the wait."""
        deadline = time.monotonic() + wait_seconds
        delay = self.poll_seconds
        while (token := self.try_acquire()) is None:
            if time.monotonic() >= deadline:
                raise SlotsBusy(f"all {self.limit} LLM request slots stayed busy for {wait_seconds:.0f} s")
            time.sleep(delay * (0.5 + secrets.randbelow(1000) / 1000))
            delay = min(delay * 1.5, 0.25)
        try:
            yield
        finally:
            try:
                self.release(token)
            except Exception as exc:  # the lease runs out by itself; the answer must not be lost
                log.warning("could not release LLM slot %s: %s", token, exc)


class DailySpend:
    """Dollars spent on LLM calls this UTC day, as a Redis counter of micro-dollars.

    The counter is seeded from the database (``seed``, e.g. the sum of today's ``llm_calls``)
    when it is missing, so a Redis restart or flush does not reset the budget. Checking and
    spending are not one atomic step: at most the calls already in flight (the concurrency
    limit) can overshoot the cap, which is what a cap on a metered API can promise anyway.
    """

    def __init__(self, redis: Redis, prefix: str, budget_usd: Decimal, seed: Callable[[], Decimal] | None = None):
        self.redis, self.prefix, self.budget = redis, prefix, Decimal(budget_usd)
        self.seed = seed

    def _key(self) -> str:
        return f"{self.prefix}:{datetime.now(timezone.utc):%Y-%m-%d}"

    def spent(self) -> Decimal:
        key = self._key()
        value = self.redis.get(key)
        if value is None:
            seeded = int(Decimal(self.seed() if self.seed else 0) * 1_000_000)
            self.redis.set(key, seeded, nx=True, ex=2 * 86400)
            value = self.redis.get(key) or seeded
        return Decimal(int(value)) / 1_000_000

    def exhausted(self) -> bool:
        return self.spent() >= self.budget

    def add(self, cost_usd: Decimal) -> None:
        if cost_usd <= 0:
            return
        self.spent()  # seeds today's counter first, so the database's figure is not lost
        key = self._key()
        pipe = self.redis.pipeline()
        pipe.incrby(key, int(cost_usd * 1_000_000))
        pipe.expire(key, 2 * 86400)
        pipe.execute()
