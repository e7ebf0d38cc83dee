"""Rate-limit storage that answers the ``X-RateLimit-*`` headers from the counting round trip.

flask-limiter counts a request with one script call (``INCRBY`` + ``EXPIRE``) and then, for
the headers of the same response, reads the counter again with ``GET`` and ``TTL``: three
Redis round trips per limit and request, more than half of a cached read's time (profile in
docs/performance.md). Here the script returns the count and the window's TTL together, and the
same request's ``get`` / ``get_expiry`` of that key are answered from them: one round trip.

Registered with ``limits`` as the ``cannect+redis://`` scheme (``app/extensions.py``). Outside
a request (or for a key this request did not count) it reads Redis as the stock storage does.

The strategy :class:`LeasedFixedWindow` (``cannect-leased-fixed-window``) goes further: a
process takes a few hits of a key's window at once and spends them locally, so most requests
make no rate-limit round trip at all (the same idea as the B2B leases, services/b2b/limits.py):

- a take never grants more than a quarter of what the window still allows (at most
  :data:`MAX_EXTRA` extras), so near the limit every hit is one script, exact;
- a process never admits past the limit: extras are counted in Redis when taken. Another
  process's unused extras can make a refusal come early, never late;
- the headers show the window as if no extras were held: Redis's count minus this process's
  unused extras (exact within one process).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from flask import g, has_request_context
from limits.storage import RedisStorage
from limits.strategies import STRATEGIES, FixedWindowRateLimiter

_INCR_EXPIRE_TTL = """
local current = redis.call("incrby", KEYS[1], tonumber(ARGV[2]))
if tonumber(current) == tonumber(ARGV[2]) then
    redis.call("expire", KEYS[1], ARGV[1])
end
return {current, redis.call("ttl", KEYS[1])}
"""

#: Counts ``cost`` plus up to a quarter of the room left after it (at most ARGV[4]); returns the
#: count after, the window's TTL and the extras granted. A refused hit is counted, as above.
_TAKE = """
local cost = tonumber(ARGV[3])
local room = tonumber(ARGV[2]) - tonumber(redis.call("get", KEYS[1]) or "0") - cost
local extra = 0
if room > 0 then
    extra = math.min(tonumber(ARGV[4]), math.floor(room / 4))
end
local current = redis.call("incrby", KEYS[1], cost + extra)
if tonumber(current) == cost + extra then
    redis.call("expire", KEYS[1], ARGV[1])
end
return {current, redis.call("ttl", KEYS[1]), extra}
"""

#: Extras one take may grant: one rate-limit script per 17 requests of a busy client.
MAX_EXTRA = 16


class CountingRedisStorage(RedisStorage):
    STORAGE_SCHEME = ["cannect+redis", "cannect+rediss", "cannect+redis+unix"]

    def __init__(self, uri: str, **options):
        super().__init__(uri.removeprefix("cannect+"), **options)

    def initialize_storage(self, uri: str) -> None:
        super().initialize_storage(uri)
        self.lua_incr_expire_ttl = self.get_connection().register_script(_INCR_EXPIRE_TTL)
        self.lua_take = self.get_connection().register_script(_TAKE)

    @staticmethod
    def _seen() -> dict | None:
        if not has_request_context():
            return None
        if "ratelimit_counts" not in g:
            g.ratelimit_counts = {}
        return g.ratelimit_counts

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        current, ttl = self.lua_incr_expire_ttl([self.prefixed_key(key)], [expiry, amount])
        self.note(key, int(current), max(int(ttl), 0) + time.time())
        return int(current)

    def take(self, key: str, expiry: int, limit: int, cost: int, max_extra: int) -> tuple[int, float, int]:
        """Count ``cost`` hits and take up to ``max_extra`` more: (count after, reset time, extras)."""
        current, ttl, extra = self.lua_take([self.prefixed_key(key)], [expiry, limit, cost, max_extra])
        return int(current), max(int(ttl), 0) + time.time(), int(extra)

    def note(self, key: str, count: int, reset_at: float) -> None:
        """What this request's headers show for ``key`` (read back by ``get`` and ``get_expiry``)."""
        seen = self._seen()
        if seen is not None:
            seen[key] = (count, reset_at)

    def get(self, key: str) -> int:
        seen = self._seen()
        if seen is not None and key in seen:
            return seen[key][0]
        return super().get(key)

    def get_expiry(self, key: str) -> float:
        seen = self._seen()
        if seen is not None and key in seen:
            return seen[key][1]
        return super().get_expiry(key)


@dataclass
class _Lease:
    left: int         # extras taken and not yet spent by this process
    count: float      # the window's count in Redis at the last take
    reset_at: float   # when the window (and so the lease) ends


class LeasedFixedWindow(FixedWindowRateLimiter):
    """Fixed windows counted in Redis, spent from per-process leases (see the module's doc)."""

    #: Leases kept before the ended ones are swept (one per client address or member seen).
    SWEEP_AT = 10_000

    def __init__(self, storage: CountingRedisStorage):
        super().__init__(storage)
        self._lock = threading.Lock()
        self._leases: dict[str, _Lease] = {}

    def hit(self, item, *identifiers: str, cost: int = 1) -> bool:
        key = item.key_for(*identifiers)
        with self._lock:
            lease = self._leases.get(key)
            if lease is not None and lease.left >= cost and lease.reset_at > time.time():
                lease.left -= cost
                self.storage.note(key, lease.count - lease.left, lease.reset_at)
                return True
        count, reset_at, extra = self.storage.take(key, item.get_expiry(), item.amount, cost, MAX_EXTRA)
        with self._lock:
            lease = self._leases.get(key)
            if lease is not None and lease.reset_at > time.time():
                # A concurrent take of the same window: keep both grants.
                lease.left, lease.count = lease.left + extra, max(lease.count, count)
            elif extra:
                self._sweep()
                lease = self._leases[key] = _Lease(extra, count, reset_at)
            left = lease.left if lease is not None else 0
        self.storage.note(key, count - left, reset_at)
        return count - extra <= item.amount

    def _sweep(self) -> None:
        if len(self._leases) >= self.SWEEP_AT:
            now = time.time()
            self._leases = {key: lease for key, lease in self._leases.items() if lease.reset_at > now}


STRATEGIES["cannect-leased-fixed-window"] = LeasedFixedWindow
