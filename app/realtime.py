"""The per-process realtime hub: one stream reader fanning events out to this process's sockets.

Each web process reads the realtime stream (``services/realtime.py``) once, with one
background thread (a greenlet under gevent) blocked in ``XREAD``, and hands every event to the
sockets listening to its routing key: a post URI's subscribers, or a member's own sockets. No
database query per event, and the event's JSON is built once per process, not per socket.

The hub never waits on a socket: it offers the event (framed once) to the socket's connection
(``app/ws.py``), which writes it at once when the socket is idle and the kernel takes it
whole, and otherwise queues it in a bounded outbox that the socket's own handler drains. A
slow or dead socket therefore holds up nobody but itself, and one whose outbox overflows is
dropped (its client reconnects and resumes from the last event id it saw).

A ``session_ended`` event is not passed on: the sockets signed in with that session are
closed instead (logout, refresh-token reuse and account purges reach every web process so).
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import time
from typing import Iterable, Protocol

import redis

from services import realtime
from services.realtime import Delivery

from .metrics import WS_CONNECTIONS, WS_DELIVERIES, WS_EVENTS

log = logging.getLogger(__name__)

#: How long one XREAD waits for new events before it is issued again.
BLOCK_MS = 5_000
#: Events taken from the stream per read.
READ_COUNT = 1_000
#: Redis connections for history replays, per process.
REPLAY_CONNECTIONS = 20


class Listener(Protocol):
    """What the hub needs of a socket's connection."""

    did: str | None  # the signed-in member, if any

    def offer(self, delivery: Delivery, frame: bytes) -> None: ...  # must not block
    def resync(self, reason: str) -> None: ...       # events were lost: the client must refetch
    def session_ended(self) -> None: ...             # its session was signed out: close it
    def shutdown(self, code: int, reason: str) -> None: ...


class Hub:
    def __init__(self, redis_url: str):
        self.redis_url = redis_url
        #: Short commands (history replays) share this client; the reader has its own. Under
        #: gevent any number of sockets may replay at once (a reconnect storm): they wait for
        #: one of a bounded set of connections rather than fail past redis-py's 100.
        self.redis = redis.Redis(connection_pool=redis.BlockingConnectionPool.from_url(
            redis_url, max_connections=REPLAY_CONNECTIONS, timeout=10, socket_timeout=5))
        self._lock = threading.Lock()
        self._by_key: dict[str, set[Listener]] = {}
        self._listeners: dict[Listener, set[str]] = {}  # socket -> the keys it listens to
        self._reader: threading.Thread | None = None
        self._pid = os.getpid()
        self.last_id: tuple[int, int] | None = None
        self.read_errors = 0
        self.healthy = True
        #: This process's read cache (services/read_cache.py), set by app/read_cache.py: every
        #: event is applied to it before the event counts as read.
        self.cache = None

    # -- sockets -------------------------------------------------------------------------

    def attach(self, listener: Listener) -> None:
        """A socket opened: start the reader on first use (in the worker, never before a fork)."""
        self._ensure_reader()
        with self._lock:
            self._listeners[listener] = set()
        WS_CONNECTIONS.inc()

    def detach(self, listener: Listener) -> None:
        with self._lock:
            keys = self._listeners.pop(listener, None)
            for key in keys or ():
                self._forget(listener, key)
        if keys is not None:
            WS_CONNECTIONS.dec()

    def listen(self, listener: Listener, keys: Iterable[str]) -> None:
        with self._lock:
            own = self._listeners.get(listener)
            if own is None:
                return
            for key in keys:
                own.add(key)
                self._by_key.setdefault(key, set()).add(listener)

    def ignore(self, listener: Listener, keys: Iterable[str]) -> None:
        with self._lock:
            own = self._listeners.get(listener, set())
            for key in keys:
                own.discard(key)
                self._forget(listener, key)

    def _forget(self, listener: Listener, key: str) -> None:
        members = self._by_key.get(key)
        if members is not None:
            members.discard(listener)
            if not members:
                del self._by_key[key]

    def shutdown_all(self, code: int, reason: str) -> None:
        """Close every socket (the worker is stopping): clients reconnect elsewhere and resume."""
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener.shutdown(code, reason)

    def stats(self) -> dict:
        with self._lock:
            connections = len(self._listeners)
            signed_in = sum(1 for listener in self._listeners if listener.did)
            keys = len(self._by_key)
        return {"connections": connections, "signed_in": signed_in, "listened_keys": keys,
                "reader": {"running": bool(self._reader and self._reader.is_alive()), "healthy": self.healthy,
                           "last_id": realtime.format_id(self.last_id) if self.last_id else None,
                           "read_errors": self.read_errors},
                "read_cache": self.cache.stats() if self.cache is not None else None,
                "pid": os.getpid()}

    # -- the reader ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the reader now (the read cache needs it before any socket opens)."""
        self._ensure_reader()

    def _ensure_reader(self) -> None:
        if self._reader is not None and self._reader.is_alive() and self._pid == os.getpid():
            return
        with self._lock:
            if self._reader is not None and self._reader.is_alive() and self._pid == os.getpid():
                return
            self._pid = os.getpid()
            # Start from the stream's end as it is now, before any socket listens: a socket that
            # registers next cannot miss an event added after this point.
            self.last_id = realtime.last_id(self.redis)
            if self.cache is not None:
                self.cache.enable()
            self._reader = threading.Thread(target=self._run, name="cannect-realtime-reader", daemon=True)
            self._reader.start()

    def _run(self) -> None:
        client = redis.Redis.from_url(self.redis_url, socket_timeout=BLOCK_MS / 1000 + 10,
                                      socket_keepalive=True)
        backoff = 0.5
        while True:
            try:
                deliveries = realtime.read_new(client, self.last_id, BLOCK_MS, READ_COUNT)
                if not self.healthy:
                    self._recover(client)
                elif self.cache is not None and len(deliveries) == READ_COUNT:
                    self._check_trimmed(client)
                for delivery in deliveries:
                    self._invalidate(delivery)
                    self._fan_out(delivery)
                    self.last_id = delivery.id
                backoff = 0.5
            except Exception:  # Redis away or the stream damaged: keep trying, never die
                self.read_errors += 1
                was_healthy, self.healthy = self.healthy, False
                if self.cache is not None:
                    self.cache.disable()  # events may be missed: no cached answer until we read again
                if was_healthy:
                    log.warning("realtime: reading the stream failed; retrying", exc_info=True)
                time.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    def _recover(self, client: redis.Redis) -> None:
        """After an outage: if the stream was trimmed past our position, events were lost."""
        oldest = realtime.oldest_id(client)
        if self.cache is not None:
            self.cache.enable()  # flushed: what happened during the outage is read from the database
        self.healthy = True
        if oldest is not None and oldest > self.last_id and self.last_id != (0, 0):
            log.warning("realtime: events were trimmed during an outage; asking clients to resync")
            with self._lock:
                listeners = list(self._listeners)
            for listener in listeners:
                listener.resync("events_lost")

    def _check_trimmed(self, client: redis.Redis) -> None:
        """Far behind: if the stream was trimmed past our position, the cache missed events."""
        oldest = realtime.oldest_id(client)
        if oldest is not None and oldest > self.last_id and self.last_id != (0, 0):
            log.warning("realtime: the reader fell behind the stream's history; flushing the read cache")
            self.cache.flush()

    def _invalidate(self, delivery: Delivery) -> None:
        if self.cache is None:
            return
        try:
            self.cache.apply(delivery.type, delivery.key, delivery.text)
        except Exception:  # an event it cannot read: forget everything rather than guess
            log.exception("read cache: event %s not understood; flushing", delivery.type)
            self.cache.flush()

    def _fan_out(self, delivery: Delivery) -> None:
        with self._lock:
            members = self._by_key.get(delivery.key)
            targets = tuple(members) if members else ()
        WS_EVENTS.labels(delivery.type).inc()
        if not targets:
            return
        if delivery.type == realtime.SESSION_ENDED:
            for listener in targets:
                listener.session_ended()
            return
        frame = text_frame(delivery.text.encode())
        for listener in targets:
            try:
                listener.offer(delivery, frame)
            except Exception:  # one broken socket must not cost the others this event
                log.exception("realtime: delivering to a socket failed")
        WS_DELIVERIES.labels(delivery.type).inc(len(targets))


def text_frame(payload: bytes) -> bytes:
    """A whole server-to-client text frame (RFC 6455 5.2: FIN, no mask, no extension).

    The same bytes go to every socket, so an event is framed once per process rather than
    once per socket; sockets negotiate no extension (``app/ws.py`` declines compression).
    """
    size = len(payload)
    if size < 126:
        header = bytes((0x81, size))
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 127, size)
    return header + payload
