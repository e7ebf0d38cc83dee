"""A warning when ``PROXY_COUNT`` does not fit the requests the web process actually sees.

Rate limits per IP (and logs) use the client address ProxyFix takes from the last
``PROXY_COUNT`` entries of X-Forwarded-For. Two mistakes show in the requests themselves:

- ``PROXY_COUNT`` > 0, but a request carries fewer X-Forwarded-For addresses than that: it did
  not pass that many proxies. Either fewer stand in front (the address used is then one the
  client wrote), or clients reach the process directly and choose their address by sending
  the header. Every request is looked at (a header count) until this is seen once.
- ``PROXY_COUNT`` = 0, but the first ``SAMPLE`` requests all come from private or loopback
  addresses and carry X-Forwarded-For: a proxy is in front and not trusted, so every client
  has the proxy's address and all share one rate limit. Decided on those requests, then off.

Health checks and ``/metrics`` are not looked at: probes reach the process directly by design.
Each process warns once in its log and sets ``cannect_proxy_misconfigured{reason}`` to 1.
"""

from __future__ import annotations

import ipaddress
import logging
import threading

from flask import Flask, request
from prometheus_client import Gauge

log = logging.getLogger(__name__)

#: Requests a process with PROXY_COUNT=0 looks at before deciding.
SAMPLE = 20
EXEMPT_PREFIXES = ("/health", "/metrics")

PROXY_MISCONFIGURED = Gauge("cannect_proxy_misconfigured",
                            "1 when this process's requests suggest PROXY_COUNT is wrong", ["reason"])


def is_local(address: str | None) -> bool:
    """Private, loopback or link-local, or no address at all (a Unix socket: a local proxy)."""
    if not address:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_private or ip.is_loopback or ip.is_link_local


def forwarded_hops(header: str | None) -> int:
    return sum(1 for part in (header or "").split(",") if part.strip())


class ProxyCheck:
    """The per-process state of the check; ``observe`` is called with each request's raw peer."""

    def __init__(self, proxy_count: int):
        self.proxy_count = proxy_count
        self.done = False
        self.seen = 0
        self.peers: set[str] = set()
        self._lock = threading.Lock()

    def observe(self, peer: str | None, forwarded_for: str | None) -> None:
        if self.done:
            return
        hops = forwarded_hops(forwarded_for)
        if self.proxy_count:
            if hops < self.proxy_count:
                self._warn("fewer_forwarded_hops",
                           "PROXY_COUNT=%d but a request from %s carried %d X-Forwarded-For address(es): it did "
                           "not pass %d proxies. Either fewer proxies stand in front of the app (set PROXY_COUNT "
                           "to their number) or clients reach it directly and can pick the address they are "
                           "rate-limited as (let only the proxy reach the web port).",
                           self.proxy_count, peer or "a Unix socket", hops, self.proxy_count)
            return
        if hops == 0 or not is_local(peer):
            self.done = True  # a request straight from a client: no untrusted proxy in front
            return
        with self._lock:
            self.seen += 1
            self.peers.add(peer or "a Unix socket")
            if self.seen < SAMPLE:
                return
        self._warn("proxy_not_trusted",
                   "PROXY_COUNT=0 but the first %d requests all came from %s with X-Forwarded-For: a reverse "
                   "proxy is in front of the app and not trusted, so every client has the proxy's address and "
                   "all share one rate limit. Set PROXY_COUNT to the number of proxies.",
                   SAMPLE, ", ".join(sorted(self.peers)))

    def _warn(self, reason: str, message: str, *args) -> None:
        with self._lock:
            if self.done:
                return
            self.done = True
        PROXY_MISCONFIGURED.labels(reason).set(1)
        log.warning(message, *args)


def init_app(app: Flask, proxy_count: int) -> None:
    """Register the check; before the rate limiter, so requests it refuses are seen too."""
    check = app.extensions["proxy_check"] = ProxyCheck(proxy_count)

    @app.before_request
    def _observe_proxy_headers():
        if check.done or request.path.startswith(EXEMPT_PREFIXES):
            return
        original = request.environ.get("werkzeug.proxy_fix.orig")  # ProxyFix keeps the peer's own values
        peer = original["REMOTE_ADDR"] if original else request.environ.get("REMOTE_ADDR")
        check.observe(peer, request.headers.get("X-Forwarded-For"))
