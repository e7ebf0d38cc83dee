"""Rate-limit storage that answers the ``X-RateLimit-*`` headers from the counting round trip.

flask-limiter counts a request with one script call (``INCRBY`` + ``EXPIRE``) and then, for
the headers of the same response, reads the counter again with ``GET`` and ``TTL``: three
Redis round trips per limit and request, more than half of a cached read's time (profile in
docs/performance.md). Here the script returns the count and the window's TTL together, and the
same request's ``get`` / ``get_expiry`` of that key are answered from them: one round trip.

Registered with ``limits`` as the ``cannect+redis://`` scheme (``app/extensions.py``). Outside
a request (or for a key this request did not count) it reads Redis as the stock storage does.
"""

from __future__ import annotations

import time

from flask import g, has_request_context
from limits.storage import RedisStorage

_INCR_EXPIRE_TTL = """
local current = redis.call("incrby", KEYS[1], tonumber(ARGV[2]))
if tonumber(current) == tonumber(ARGV[2]) then
    redis.call("expire", KEYS[1], ARGV[1])
end
return {current, redis.call("ttl", KEYS[1])}
"""


class CountingRedisStorage(RedisStorage):
    STORAGE_SCHEME = ["cannect+redis", "cannect+rediss", "cannect+redis+unix"]

    def __init__(self, uri: str, **options):
        super().__init__(uri.removeprefix("cannect+"), **options)

    def initialize_storage(self, uri: str) -> None:
        super().initialize_storage(uri)
        self.lua_incr_expire_ttl = self.get_connection().register_script(_INCR_EXPIRE_TTL)

    @staticmethod
    def _seen() -> dict | None:
        if not has_request_context():
            return None
        if "ratelimit_counts" not in g:
            g.ratelimit_counts = {}
        return g.ratelimit_counts

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        current, ttl = self.lua_incr_expire_ttl([self.prefixed_key(key)], [expiry, amount])
        seen = self._seen()
        if seen is not None:
            seen[key] = (int(current), max(int(ttl), 0) + time.time())
        return int(current)

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
