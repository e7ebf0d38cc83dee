"""Resolution answers in Redis for a while, so a busy DID or handle is not fetched each time.

Only definite answers are cached: a document's claim for ``ttl`` seconds (``negative_ttl``
when there is no usable document), a handle's DID likewise (``negative_ttl`` when it names
none). "Unreachable" is never cached. A Redis error is a miss: the cache only saves work.
"""

from __future__ import annotations

import logging

import orjson
from redis import Redis, RedisError

log = logging.getLogger(__name__)

PREFIX = "cannect:identity:"


class Cache:
    def __init__(self, redis: Redis | None, ttl: int, negative_ttl: int):
        self.redis, self.ttl, self.negative_ttl = redis, ttl, negative_ttl

    def get(self, kind: str, key: str):
        """The cached value (a JSON value), or ``...`` (Ellipsis) when nothing is cached."""
        if self.redis is None:
            return ...
        try:
            raw = self.redis.get(f"{PREFIX}{kind}:{key}")
        except RedisError:
            log.warning("identity cache unavailable", exc_info=True)
            return ...
        return ... if raw is None else orjson.loads(raw)

    def put(self, kind: str, key: str, value, positive: bool) -> None:
        ttl = self.ttl if positive else self.negative_ttl
        if self.redis is None or ttl <= 0:
            return
        try:
            self.redis.set(f"{PREFIX}{kind}:{key}", orjson.dumps(value), ex=ttl)
        except RedisError:
            log.warning("identity cache unavailable", exc_info=True)
