"""What one client may cost ``/ws``: limits per socket, and per client IP in this web process.

Per IP the count is kept in the process, not in Redis: what a limit protects is the process's
memory and file descriptors, and an in-process count is exact and dies with the process
(a shared count in Redis would need leases to survive crashed processes). Across the
deployment one IP holds at most ``WEB_CONCURRENCY`` times the limit.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

#: Sweep the per-IP table for idle entries once every this many sockets opened.
SWEEP_EVERY = 256


@dataclass(frozen=True)
class SocketLimits:
    messages_per_second: float
    message_burst: int
    max_subscriptions: int
    replays_per_minute: int
    replay_max_events: int

    @classmethod
    def from_settings(cls, settings) -> "SocketLimits":
        return cls(settings.ws_messages_per_second, settings.ws_message_burst, settings.ws_max_subscriptions,
                   settings.ws_replays_per_minute, settings.ws_replay_max_events)


class TokenBucket:
    """``rate`` tokens a second, holding at most ``burst``."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float):
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = float(burst), time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self) -> bool:
        """Take a token if one is there."""
        self._refill()
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    def spend(self) -> float:
        """Take a token even when none is there (a debt the refill repays): the balance after.

        Below zero the caller is over its rate; the further below, the longer it has kept on.
        """
        self._refill()
        self.tokens -= 1
        return self.tokens

    def full(self) -> bool:
        self._refill()
        return self.tokens >= self.burst


class IpLedger:
    """Open sockets and the history-replay budget of each client IP, in this process."""

    def __init__(self, max_connections: int, replays_per_minute: int):
        self.max_connections = max_connections
        self.replays_per_minute = replays_per_minute
        self._lock = threading.Lock()
        self._sockets: dict[str, int] = {}
        # Kept while an IP's sockets come and go, so that reconnecting does not refill it.
        self._replays: dict[str, TokenBucket] = {}
        self._opened = 0

    def open(self, ip: str) -> bool:
        """Count a new socket of this IP; False (nothing counted) when it has too many."""
        with self._lock:
            count = self._sockets.get(ip, 0)
            if count >= self.max_connections:
                return False
            self._sockets[ip] = count + 1
            self._opened += 1
            if self._opened % SWEEP_EVERY == 0:
                self._sweep()
            return True

    def close(self, ip: str) -> None:
        with self._lock:
            count = self._sockets.get(ip, 0) - 1
            if count > 0:
                self._sockets[ip] = count
            else:
                self._sockets.pop(ip, None)

    def take_replay(self, ip: str) -> bool:
        """One history replay for this IP, if its budget has one."""
        with self._lock:
            bucket = self._replays.get(ip)
            if bucket is None:
                bucket = self._replays[ip] = TokenBucket(self.replays_per_minute / 60, self.replays_per_minute)
            return bucket.take()

    def _sweep(self) -> None:
        """Forget the budgets of IPs without sockets whose budget is whole again."""
        for ip in [ip for ip, bucket in self._replays.items() if ip not in self._sockets and bucket.full()]:
            del self._replays[ip]
