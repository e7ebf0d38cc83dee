"""Who is calling and may they: the API-key check and the limits, for one request.

``Gate.check`` answers with a :class:`Decision`. The web process keeps one gate, holding a
small per-process cache of client rows keyed by key id. A cached row is only trusted
together with the client's version in Redis, which the limiter script compares in the same
round trip as it counts (``limits.py``): a revoked, rotated or re-planned client is reloaded
from PostgreSQL at its next request in every process. The cache also expires after
``CACHE_SECONDS`` in case Redis lost the versions (a restart without persistence).

Every refusal of a key (missing, malformed, bad checksum, unknown, wrong secret, revoked,
expired) is the same ``unauthorized`` answer, and counts against the caller's IP: past
``auth_failures_per_minute`` it is ``auth_throttled`` (429), so unknown-key floods cannot
keep the database busy.
"""

from __future__ import annotations

import atexit
import collections
import logging
import threading
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from sqlalchemy.orm import Session

from . import clients, keys, limits, usage
from .tiers import ALWAYS_ALLOWED, ENDPOINTS

CACHE_SECONDS = 10.0
CACHE_MAX = 10_000
#: Usage entries waiting in the process are pushed by the next limiter script or after this long.
PUSH_INTERVAL = 0.5
PUSH_BATCH = 200  # entries per script (Lua's unpack stays far below its limit)
PENDING_MAX = 100_000  # while Redis is away; beyond, the oldest are dropped (and logged)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    """``outcome``: ok | forbidden | rate | quota | unauthorized | auth_throttled."""

    outcome: str
    endpoint: str
    client: clients.Credentials | None = None
    verdict: limits.Verdict | None = None


@dataclass
class _Cached:
    credentials: clients.Credentials | None
    version: str
    expires: float


class Gate:
    def __init__(self, redis, sessions: Callable[[], AbstractContextManager[Session]],
                 auth_failures_per_minute: int = 60):
        self.redis = redis
        self.sessions = sessions
        self.limiter = limits.Limiter(redis)
        self.auth_failures_per_minute = auth_failures_per_minute
        self._cache: dict[str, _Cached] = {}
        self._client_of_key: dict[str, int] = {}  # a key id never changes hands
        self._pending: collections.deque[tuple | bytes] = collections.deque()
        self._pusher: threading.Thread | None = None
        self._pusher_lock = threading.Lock()
        self.push_interval = PUSH_INTERVAL

    def log_usage(self, client_id: int, endpoint: str, method: str, status: int, latency_ms: int) -> None:
        """Queue one finished call for the usage buffer in Redis (serialized when it is sent)."""
        if len(self._pending) >= PENDING_MAX:
            self._pending.popleft()
            log.warning("B2B usage entry dropped: %d waiting for Redis", PENDING_MAX)
        self._pending.append((client_id, endpoint, method, status, latency_ms, time.time()))
        if self._pusher is None:
            self._start_pusher()

    def push_usage(self) -> int:
        """Push every waiting entry now (one RPUSH per batch); how many were pushed."""
        pushed = 0
        while batch := self._take():
            try:
                self.redis.rpush(limits.USAGE_BUFFER, *batch)
            except Exception:
                self._give_back(batch)
                raise
            pushed += len(batch)
        return pushed

    def _take(self) -> list[bytes]:
        """Up to ``PUSH_BATCH`` waiting calls, as buffer entries (each gets its request id here)."""
        batch = []
        try:
            while len(batch) < PUSH_BATCH:
                call = self._pending.popleft()
                batch.append(call if isinstance(call, bytes) else usage.entry(*call))
        except IndexError:
            pass
        return batch

    def _give_back(self, batch: list[bytes]) -> None:
        self._pending.extendleft(reversed(batch))  # serialized now: a retry sends the same request ids

    def _start_pusher(self) -> None:
        with self._pusher_lock:
            if self._pusher is None:
                self._pusher = threading.Thread(target=self._push_forever, name="b2b-usage-push", daemon=True)
                self._pusher.start()
                atexit.register(self._push_at_exit)

    def _push_forever(self) -> None:
        while True:
            time.sleep(self.push_interval)
            try:
                self.push_usage()
            except Exception:  # Redis away: the entries wait in the process for the next try
                log.warning("B2B usage entries not pushed yet: %d waiting", len(self._pending), exc_info=True)

    def _push_at_exit(self) -> None:
        try:
            self.push_usage()
        except Exception:
            log.error("B2B usage: %d entries lost at exit (Redis not answering)", len(self._pending))

    def check(self, raw_key: str | None, endpoint: str, ip: str) -> Decision:
        presented = keys.parse(raw_key)
        if presented is None:
            return self._refuse(endpoint, ip)
        entry = self._entry(presented.key_id)
        # Only a plan's endpoint outside this plan is refused (403, not counted); any other path
        # counts, a 404 included, as the quota's seed from api_usage assumes (limits.py).
        known = endpoint in ENDPOINTS or endpoint in ALWAYS_ALLOWED
        for _ in range(4):
            credentials = entry.credentials
            if (credentials is None or not keys.matches(presented.secret_hash, credentials.secret_hash)
                    or not credentials.usable(datetime.now(timezone.utc))):
                return self._refuse(endpoint, ip)
            consume = not known or credentials.allows(endpoint)
            riders = self._take()
            try:
                verdict = self.limiter.admit(credentials.client_id, entry.version, credentials.rate_limit_per_min,
                                             credentials.monthly_quota, consume=consume, usage_entries=riders)
            except Exception:
                self._give_back(riders)
                raise
            if verdict.status == "stale":
                entry = self._load(presented.key_id, credentials.client_id, verdict.version)
            elif verdict.status == "seed":
                with self.sessions() as session:
                    limits.seed_quota(self.redis, session, credentials.client_id)
            elif not consume:
                return Decision("forbidden", endpoint, credentials, verdict)
            else:
                return Decision(verdict.status, endpoint, credentials, verdict)
        raise RuntimeError("the client changed four times during one request")

    def _refuse(self, endpoint: str, ip: str) -> Decision:
        verdict = self.limiter.limit_key(f"b2b:authfail:{ip}", self.auth_failures_per_minute)
        return Decision("auth_throttled" if verdict.status == "rate" else "unauthorized", endpoint, None, verdict)

    def _entry(self, key_id: str) -> _Cached:
        entry = self._cache.get(key_id)
        if entry is not None and entry.expires > time.monotonic():
            return entry
        return self._load(key_id, self._client_of_key.get(key_id))

    def _load(self, key_id: str, client_id: int | None, version: str | None = None) -> _Cached:
        """Read the row *after* the version it is cached with: a change committed in between
        shows as a newer version at the next request, never as a stale row taken for current."""
        if client_id is None:
            with self.sessions() as session:
                found = clients.credentials(session, key_id)
            if found is None:
                return _Cached(None, "0", 0.0)  # unknown keys are not cached
            client_id = found.client_id
            self._client_of_key[key_id] = client_id
        if version is None:
            version = limits.current_version(self.redis, client_id)
        with self.sessions() as session:
            credentials = clients.credentials(session, key_id)
        entry = _Cached(credentials, version, time.monotonic() + CACHE_SECONDS)
        if len(self._cache) >= CACHE_MAX:
            self._cache.clear()
        self._cache[key_id] = entry
        return entry
