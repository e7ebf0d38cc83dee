"""Who is calling and may they: the API-key check and the limits, for one request.

``Gate.check`` answers with a :class:`Decision`. The web process keeps one gate, holding a
small per-process cache of client rows keyed by key id. A cached row is only trusted
together with the client's version in Redis, which the limiter script compares in the same
round trip as it counts (``limits.py``): a revoked, rotated or re-planned client is reloaded
from PostgreSQL at its next request in every process. The cache also expires after
``CACHE_SECONDS`` in case Redis lost the versions (a restart without persistence).

**Leases.** A client calling often gets its calls admitted a few at a time: the script admits
the call and up to ``LEASE_MAX`` more (never more than a quarter of what the minute and month
still allow: ``limits.py``), and the process hands the extras to the client's next requests
without a round trip, within ``LEASE_SECONDS``. The size adapts per client and process: none
for the first call, doubling while leases run out before they expire, shrinking to what was
used when they do not. One request per client and process talks to Redis at a time (the
lease's lock), so within a process the limit edge is exact, as before; across processes a
refusal can come early by the extras other processes hold (at most a quarter of the allowance
left when they took them, returned to the month when unused), never late. Leased calls are
only used while this process listens to ``limits.invalidate``'s messages (``Changes``): a
revoked, rotated or re-planned client's lease is dropped before the next request, and without
a listener (Redis lost, reconnecting) every call is one script again.

Every refusal of a key (missing, malformed, bad checksum, unknown, wrong secret, revoked,
expired) is the same ``unauthorized`` answer, and counts against the caller's IP: past
``auth_failures_per_minute`` it is ``auth_throttled`` (429), so unknown-key floods cannot
keep the database busy.
"""

from __future__ import annotations

import atexit
import collections
import logging
import select
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
#: Extra calls a lease may hold at most, and how long (s) after its admission a leased call may be used.
LEASE_MAX = 128
LEASE_SECONDS = 1.0
#: After a failed attempt to listen for client changes, the next one waits this long (s).
LISTEN_RETRY_SECONDS = 1.0

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


class Changes:
    """This process's subscription to ``limits.invalidate``'s channel, read without waiting.

    ``poll()`` runs before a leased call is used: whatever is in the socket by then (a change
    published before this request arrived) is applied first. ``listening`` is true only while the
    subscription is confirmed and its connection has not failed since; ``on_change(client_id)``
    and ``on_lost()`` are the gate's.
    """

    def __init__(self, redis, on_change: Callable[[int], None], on_lost: Callable[[], None]):
        self.redis = redis
        self.channel = limits.changes_channel(redis)
        self.on_change, self.on_lost = on_change, on_lost
        self.listening = False
        self._pubsub = None
        self._lock = threading.Lock()
        self._next_try = 0.0
        self._drained = False  # nothing left in the parser's buffer since the last full read
        self._quiet = _QuietCheck()

    def start(self) -> bool:
        """Subscribe if not listening (at most every ``LISTEN_RETRY_SECONDS``); whether listening."""
        if self.listening or time.monotonic() < self._next_try:
            return self.listening
        with self._lock:
            if self.listening:
                return True
            self._next_try = time.monotonic() + LISTEN_RETRY_SECONDS
            pubsub = self.redis.pubsub()
            try:
                pubsub.subscribe(self.channel)
                confirmed = pubsub.get_message(timeout=1.0)  # the subscription is live once confirmed
            except Exception:
                pubsub.close()
                log.warning("B2B: cannot listen for client changes; every call asks Redis", exc_info=True)
                return False
            if not confirmed or confirmed.get("type") != "subscribe":
                pubsub.close()
                return False
            self._pubsub, self.listening, self._drained = pubsub, True, False
            return True

    def poll(self) -> bool:
        """Apply every change already received; whether leased calls may be used now."""
        if not self.listening:
            return False
        with self._lock:
            pubsub = self._pubsub
            try:
                if self._drained and self._quiet(pubsub.connection):
                    return self.listening
                self._drained = False
                while pubsub.connection is not None and pubsub.connection.can_read(timeout=0):
                    message = pubsub.get_message(timeout=0)
                    if message is not None and message.get("type") == "message":
                        try:
                            self.on_change(int(message["data"]))
                        except ValueError:
                            pass
                self._drained = True
                return self.listening
            except Exception:
                log.warning("B2B: lost the client-change subscription; leases dropped", exc_info=True)
                self.listening = False
                self._pubsub = None
                try:
                    pubsub.close()
                except Exception:
                    pass
        self.on_lost()
        return False


def _unpatched_poll():
    """``select.poll`` as the OS has it: under gevent the patched one goes through the hub (a
    poll of the subscription per request was ~7% of a cached answer's time)."""
    try:
        from gevent import monkey
    except ImportError:
        return select.poll
    return monkey.get_original("select", "poll")


_poll = _unpatched_poll()


class _QuietCheck:
    """Whether the subscription's socket has nothing to read (nor an error or hang-up to report),
    asked without waiting. Only meaningful while the parser holds nothing (``Changes._drained``):
    then a quiet socket means no message arrived. One poller, registered again only when the
    socket's descriptor changes (poll reads the descriptor's current socket at each call)."""

    def __init__(self):
        self._poller = _poll()
        self._fd = -1

    def __call__(self, connection) -> bool:
        sock = getattr(connection, "_sock", None) if connection is not None else None
        if sock is None:
            return False
        pending = getattr(type(sock), "pending", None)  # TLS: bytes decrypted but not read yet
        if pending is not None and pending(sock):  # (on the type: gevent's sockets answer a
            return False                           # missing attribute through a slow fallback)
        fd = sock.fileno()
        if fd != self._fd:
            if self._fd >= 0:
                self._poller.unregister(self._fd)
            self._poller.register(fd, select.POLLIN | select.POLLPRI)
            self._fd = fd
        return not self._poller.poll(0)


@dataclass
class _Lease:
    """Calls of one client admitted in Redis and not handed out yet, in this process."""

    lock: threading.Lock
    tokens: int = 0
    expires: float = 0.0
    verdict: limits.Verdict | None = None
    version: str = ""
    counter: str = ""  # the month's counter they were counted in (refunds go there)
    size: int = 0  # extras asked for at the next script
    generation: int = 0  # bumped by every change heard: a lease granted across one is not kept

    def take(self, now: float, version: str) -> limits.Verdict | None:
        """One leased call, as a verdict with what the client has left counting the lease."""
        if self.tokens <= 0 or now >= self.expires or version != self.version:
            return None
        self.tokens -= 1
        return self.shown()

    def shown(self) -> limits.Verdict:
        """The lease's verdict as one call's: what is held here still counts as left."""
        verdict = self.verdict
        return limits.Verdict("ok", verdict.limit, verdict.remaining + self.tokens, verdict.reset_seconds, 0,
                              verdict.quota, verdict.quota_used - self.tokens, verdict.quota_reset_seconds,
                              granted=1)

    def next_size(self, now: float) -> int:
        """Extras to ask for: double while leases run out in time, else what the last one served."""
        if self.verdict is None:
            return 0
        if self.tokens <= 0 and now < self.expires:
            return min(LEASE_MAX, max(1, 2 * self.size))
        if self.tokens > 0:
            return max(0, self.size - self.tokens)
        return self.size


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
        self.lease_max = LEASE_MAX  # 0: one script per call (benchmarks compare)
        self._leases: dict[int, _Lease] = {}
        self._leases_lock = threading.Lock()
        self._refunds: dict[str, int] = {}  # month counter -> leased calls to give back
        self.changes = Changes(redis, self._changed, self._lost)

    def log_usage(self, client_id: int, endpoint: str, method: str, status: int, latency_ms: int) -> None:
        """Queue one finished call for the usage buffer in Redis (serialized when it is sent)."""
        if len(self._pending) >= PENDING_MAX:
            self._pending.popleft()
            log.warning("B2B usage entry dropped: %d waiting for Redis", PENDING_MAX)
        self._pending.append((client_id, endpoint, method, status, latency_ms, time.time()))
        if self._pusher is None:
            self._start_pusher()

    def push_usage(self) -> int:
        """Push every waiting entry now (one RPUSH per batch); how many were pushed. Also gives
        back leased calls that expired unused."""
        self._expire_leases()
        self.refund()
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

    # -- leases ---------------------------------------------------------------------------

    def _lease(self, client_id: int) -> _Lease:
        lease = self._leases.get(client_id)
        if lease is None:
            with self._leases_lock:
                lease = self._leases.setdefault(client_id, _Lease(threading.Lock()))
        return lease

    def _drop(self, lease: _Lease) -> None:
        """Forget the lease's calls (they go back to the month at the next refund)."""
        if lease.tokens > 0:
            self._refunds[lease.counter] = self._refunds.get(lease.counter, 0) + lease.tokens
        lease.tokens = 0

    def _changed(self, client_id: int) -> None:
        lease = self._leases.get(client_id)
        if lease is not None:
            lease.generation += 1
            self._drop(lease)
            lease.verdict, lease.size = None, 0

    def _lost(self) -> None:
        for lease in list(self._leases.values()):
            lease.generation += 1
            self._drop(lease)

    def _expire_leases(self) -> None:
        now = time.monotonic()
        for lease in list(self._leases.values()):
            if lease.tokens > 0 and now >= lease.expires and lease.lock.acquire(blocking=False):
                try:
                    if now >= lease.expires:
                        self._drop(lease)
                finally:
                    lease.lock.release()

    def refund(self) -> int:
        """Give the calls of dropped and expired leases back to their months now."""
        given = 0
        while self._refunds:
            counter, calls = self._refunds.popitem()
            try:
                given += self.limiter.refund(counter, calls)
            except Exception:  # Redis away: kept for the next push (until then the month shows them used)
                self._refunds[counter] = self._refunds.get(counter, 0) + calls
                raise
        return given

    def held(self, client_id: int) -> int:
        """Calls of the client this process leased and has not used yet (counted in the month)."""
        lease = self._leases.get(client_id)
        return lease.tokens if lease is not None and time.monotonic() < lease.expires else 0

    # -- the check ------------------------------------------------------------------------

    def check(self, raw_key: str | None, endpoint: str, ip: str | Callable[[], str]) -> Decision:
        """The decision for one request; ``ip`` (or a function giving it, called only for a refused
        key) is what failed keys are limited by."""
        presented = keys.parse(raw_key)
        if presented is None:
            return self._refuse(endpoint, ip)
        leasing = self.lease_max > 0 and self.changes.poll()  # changes published so far applied first
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
            if consume:
                decision, entry = self._admit(presented.key_id, entry, credentials, endpoint, leasing)
                if decision is not None:
                    return decision
                continue
            verdict = self._script(credentials, entry.version, consume=False)
            if verdict.status == "stale":
                entry = self._load(presented.key_id, credentials.client_id, verdict.version)
            elif verdict.status == "seed":
                self._seed(credentials.client_id)
            else:
                return Decision("forbidden", endpoint, credentials, verdict)
        raise RuntimeError("the client changed four times during one request")

    def _admit(self, key_id: str, entry: _Cached, credentials: clients.Credentials, endpoint: str, leasing: bool
               ) -> tuple[Decision | None, _Cached]:
        """A counted call: from the client's lease, else one script (asking for the next lease).
        No decision when the client row or the month's counter had to be reloaded: check again
        (with the entry returned)."""
        lease = self._lease(credentials.client_id)
        with lease.lock:  # one script per client and process at a time: exact within the process
            now = time.monotonic()
            if not leasing and self.lease_max > 0:  # not listening when the request came: maybe now
                leasing = self.changes.start() and self.changes.poll()
            if leasing:
                verdict = lease.take(now, entry.version)
                if verdict is not None:
                    return Decision("ok", endpoint, credentials, verdict), entry
            size = min(self.lease_max, lease.next_size(now)) if leasing else 0  # (before the drop: it
            self._drop(lease)  # counts what is left) expired or stale: its calls go back to the month
            counter, generation = self.limiter.month_counter(credentials.client_id), lease.generation
            verdict = self._script(credentials, entry.version, extra=size)
            if verdict.status == "stale":
                lease.verdict, lease.size = None, 0
                return None, self._load(key_id, credentials.client_id, verdict.version)
            if verdict.status == "seed":
                self._seed(credentials.client_id)
                return None, entry
            if verdict.status == "ok":
                lease.tokens, lease.expires, lease.size = verdict.granted - 1, now + LEASE_SECONDS, size
                lease.verdict, lease.version = verdict, entry.version
                lease.counter = counter
                verdict = lease.shown()
                if lease.generation != generation:  # the client changed while the script ran: this
                    self._drop(lease)                # call was admitted before; its extras are not kept
            return Decision(verdict.status, endpoint, credentials, verdict), entry

    def _script(self, credentials: clients.Credentials, version: str, consume: bool = True, extra: int = 0
                ) -> limits.Verdict:
        """The limiter script, carrying the usage entries waiting in the process."""
        riders = self._take()
        try:
            return self.limiter.admit(credentials.client_id, version, credentials.rate_limit_per_min,
                                      credentials.monthly_quota, consume=consume, usage_entries=riders, extra=extra)
        except Exception:
            self._give_back(riders)
            raise

    def _seed(self, client_id: int) -> None:
        with self.sessions() as session:
            limits.seed_quota(self.redis, session, client_id)

    def _refuse(self, endpoint: str, ip: str | Callable[[], str]) -> Decision:
        ip = ip() if callable(ip) else ip
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
