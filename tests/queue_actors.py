"""An actor for tests/test_queues.py: fails until Redis says its cause is fixed.

The worker imports it next to ``tasks`` (``dramatiq tasks queue_actors``), on the same broker.
"""

import dramatiq
import redis as redis_lib

from cannect.config import get_settings

#: While this key is absent, every call fails (and, its retries spent, is dead-lettered).
FIXED_KEY = "test:queues:fixed"
QUEUE = "opsqueue"


class NotFixedYet(RuntimeError):
    pass


@dramatiq.actor(queue_name=QUEUE, actor_name="test.flaky", max_retries=1, min_backoff=100, max_backoff=200)
def flaky(name: str, batch: dict) -> None:
    redis = redis_lib.Redis.from_url(get_settings().redis_url)
    if not redis.exists(FIXED_KEY):
        raise NotFixedYet(f"{name}: the cause is not fixed yet")
    redis.incr(f"test:queues:ran:{name}")
