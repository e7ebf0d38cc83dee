"""A test kind of admin backfill job, and the in-process Dramatiq worker that runs the jobs.

``test_items`` processes items 0..n-1 in chunks of ``size``: each item is added to a Redis set
(so a chunk done twice leaves the set as it was) and every run of a chunk is counted. Redis
switches make a chunk fail (``fail_at``: the chunk starting there fails while the key lives),
crash after its work (``crash_once``: the work is done, then it raises once) or wait in flight
until the test releases it (``hold_at``).
"""

from __future__ import annotations

import contextlib
import time

import dramatiq
import redis as redis_lib
from sqlalchemy import text
from sqlalchemy.orm import Session

from cannect.config import get_settings
from services import db
from services.backfill.kinds import ChunkResult, InvalidParams, register

ITEMS, RUNS, FAIL, CRASH, HOLD, HELD, RELEASE = (f"test:admin:{name}" for name in
                                                 ("items", "runs", "fail", "crash", "hold", "held", "release"))


def _redis() -> redis_lib.Redis:
    return redis_lib.Redis.from_url(get_settings().redis_url)


class Items:
    name = "test_items"
    unit = "items"

    def validate(self, params: dict) -> dict:
        n, size = params.get("n", 10), params.get("size", 3)
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in (n, size)):
            raise InvalidParams("n and size must be positive integers")
        return {"n": n, "size": size}

    def plan(self, session: Session, params: dict) -> int | None:
        return params["n"]

    def run_chunk(self, sessions, params: dict, cursor: dict | None) -> ChunkResult:
        redis = _redis()
        start = (cursor or {}).get("next", 0)
        redis.rpush(RUNS, start)
        if redis.get(HOLD) == str(start).encode():
            redis.rpush(HELD, start)
            redis.blpop([RELEASE], timeout=60)
        if redis.get(FAIL) == str(start).encode():
            raise RuntimeError(f"chunk at {start} fails on purpose")
        end = min(start + params["size"], params["n"])
        with sessions() as session:  # the kind's own transaction, as real kinds have
            session.execute(text("SELECT 1"))
        redis.sadd(ITEMS, *range(start, end))
        if redis.get(CRASH) == str(start).encode():
            redis.delete(CRASH)
            raise RuntimeError(f"crashed after the work of chunk {start}")
        return ChunkResult(end - start, {"next": end} if end < params["n"] else None, {"items": end - start})


register(Items())


class Jobs:
    """The app's actors on the test's database and Redis, with a worker on the given queues."""

    def __init__(self, monkeypatch, db_url: str, redis_url: str, jwt_secret: str):
        for name, value in dict(DATABASE_URL=db_url, REDIS_URL=redis_url, JWT_SECRET=jwt_secret,
                                CLASSIFIER="offline").items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
        self.clear()
        import tasks

        self.broker = tasks.broker
        assert self.broker.client.connection_pool.connection_kwargs["db"] == \
            redis_lib.Redis.from_url(redis_url).connection_pool.connection_kwargs["db"]
        self.redis = redis_lib.Redis.from_url(redis_url)
        from tasks import backfill

        self.actors = backfill
        # Quick retries for the tests (the actor's options, read when a message fails).
        for name, value in dict(max_retries=1, min_backoff=20, max_backoff=40).items():
            monkeypatch.setitem(backfill.admin_chunk.options, name, value)

    @staticmethod
    def clear() -> None:
        from tasks import classify
        from tasks.broker import app_redis

        for cached in (get_settings, db.get_engine, db._session_factory, app_redis, classify._build_classifier):
            cached.cache_clear()

    def close(self) -> None:
        db.get_engine().dispose()
        self.clear()

    @contextlib.contextmanager
    def worker(self, queues=("backfill",), threads: int = 2):
        worker = dramatiq.Worker(self.broker, queues=set(queues), worker_threads=threads, worker_timeout=50)
        worker.start()
        try:
            yield worker
        finally:
            worker.stop()

    def drain(self, queues=("backfill",)) -> None:
        """Until these queues (and their delay queues) are empty: every chunk sent has run."""
        from dramatiq.common import dq_name

        for _ in range(3):
            for queue in queues:
                self.broker.join(queue, timeout=60_000)
                self.broker.join(dq_name(queue), timeout=60_000)
                self.broker.join(queue, timeout=60_000)

    def wait_for(self, predicate, what: str, timeout: float = 60) -> None:
        """Poll until ``predicate()`` (a condition on state, not a timing assertion)."""
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"not {what} within {timeout}s"
            time.sleep(0.05)

    def runs(self) -> list[int]:
        return [int(x) for x in self.redis.lrange(RUNS, 0, -1)]

    def items(self) -> set[int]:
        return {int(x) for x in self.redis.smembers(ITEMS)}
