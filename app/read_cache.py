"""The web process's read cache (``services/read_cache.py``), and when a request may use it.

The cache is fed by the process's realtime reader (``app/realtime.py``), started when the
gunicorn worker starts (``cannect/gunicorn_conf.py``). Until then, and whenever the reader is
not reading, requests go to the database: an app built without gunicorn (the test client, a
shell) never caches. ``READ_CACHE=false`` turns it off.

A request uses the cache only if the reader has applied every event on the stream when the
request starts: one ``XREAD`` after the reader's position, answered at once. So a change a
client has heard of (on its socket, through any web process) is never older in an answer.
Concurrent requests share that check (:class:`Barrier`): one ``XREAD`` sent after they arrived
answers all of them, so under load it costs far less than a round trip each.
"""

from __future__ import annotations

import logging
import threading

from flask import Flask, current_app, g
from redis import RedisError

from services import realtime
from services.read_cache import ReadCache

from .extensions import get_redis

log = logging.getLogger(__name__)


class Barrier:
    """Coalesced checks: each caller gets the answer of a check *sent after it arrived*.

    Callers that arrive while a check is in flight join the next one, which is sent as soon
    as the one in flight returns; so there is at most one check in flight, and every waiting
    caller shares it.
    """

    def __init__(self, timeout: float = 5.0):
        self._lock = threading.Lock()      # guards _next
        self._sending = threading.Lock()   # one check in flight
        self._next: list | None = None     # [done event, answer] of the check not yet sent
        self.timeout = timeout

    def check(self, run) -> bool:
        with self._lock:
            slot, leader = self._next, False
            if slot is None:
                slot = self._next = [threading.Event(), False]
                leader = True
        if not leader:
            return slot[1] if slot[0].wait(self.timeout) else False
        with self._sending:
            with self._lock:
                self._next = None  # later arrivals wait for a check sent after them
            try:
                slot[1] = bool(run())
            except Exception:
                slot[1] = False
                raise
            finally:
                slot[0].set()
        return slot[1]


def init_app(app: Flask, settings) -> None:
    if settings.read_cache:
        app.extensions["read_cache"] = ReadCache(settings.avatar_cdn, settings.read_cache_max_entries,
                                                 settings.read_cache_max_age_seconds)
        app.extensions["read_cache_barrier"] = Barrier()


def start(app: Flask) -> None:
    """In the serving process (after any fork): connect the cache to the realtime reader and
    start the reader now rather than at the first socket."""
    cache, hub = app.extensions.get("read_cache"), app.extensions.get("realtime")
    if cache is not None and hub is not None:
        hub.cache = cache
        try:
            hub.start()
        except Exception:  # Redis away: no cache until the first socket starts the reader
            log.warning("read cache: the realtime reader did not start", exc_info=True)


def read_cache() -> ReadCache | None:
    """The cache, if this request may use it; None means: read the database."""
    if "read_cache" not in g:
        g.read_cache = _usable()
    return g.read_cache


def _usable() -> ReadCache | None:
    cache = current_app.extensions.get("read_cache")
    hub = current_app.extensions.get("realtime")
    if cache is None or hub is None or hub.cache is not cache or not cache.enabled or not hub.healthy:
        return None
    redis = get_redis()

    def caught_up() -> bool:
        seen = hub.last_id  # read before asking: the reader applied everything up to it
        return seen is not None and not redis.xread({realtime.STREAM: realtime.format_id(seen)}, count=1)
    try:
        return cache if current_app.extensions["read_cache_barrier"].check(caught_up) else None
    except RedisError:
        log.warning("read cache: the stream position could not be checked", exc_info=True)
        return None
