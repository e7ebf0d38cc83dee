"""HTTPS GETs to hosts named by hostile input (handles, did:web DIDs), with guards.

A handle or a did:web host is a name anyone can point anywhere, including at our own private
network. So every fetch here: resolves the host itself (``services.identity.dns``, so the
configured nameservers answer), refuses it when any of its addresses is private, loopback,
link-local, reserved or otherwise not global (``services.outbound.is_public_address``, the
project's one address policy), and connects to one of exactly those checked addresses
(httpcore's network backend is replaced, so no second, different resolution can happen in
between); TLS is verified against the hostname; redirects are refused, not followed; an
answer larger than its cap is refused (not truncated: a truncated answer could still parse),
and the whole exchange is capped in time.

``services.outbound`` guards user-given URLs the same way with ``requests``; this one is
separate because it resolves with our DNS settings and refuses oversized answers.
``allow_private`` exists for tests, whose fake servers live on 127.0.0.1.
"""

from __future__ import annotations

import ssl
import time
from typing import Callable

import certifi
import httpcore

from services.outbound import is_public_address

from .errors import Refused, Unreachable

USER_AGENT = b"cannect-identity/1 (+https://cannect.space)"


def check_addresses(host: str, addresses: list[str], allow_private: bool) -> list[str]:
    """The addresses to connect to; Refused when there are none or any of them is not public."""
    if not addresses:
        raise Refused(f"{host} has no address")
    if not allow_private:
        private = [a for a in addresses if not is_public_address(a)]
        if private:
            raise Refused(f"{host} resolves to a non-public address ({private[0]})")
    return addresses


class GuardedBackend(httpcore.SyncBackend):
    """Connects only to the checked addresses of the host, never to what a later lookup says."""

    def __init__(self, lookup: Callable[[str], list[str]], allow_private: bool):
        self.lookup = lookup
        self.allow_private = allow_private

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        addresses = check_addresses(host, self.lookup(host), self.allow_private)
        error: Exception | None = None
        for address in addresses:
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        raise error


class GuardedFetcher:
    """``get(host, path)`` over HTTPS to a hostile host; see the module docstring."""

    def __init__(self, lookup: Callable[[str], list[str]], *, timeout: float, allow_private: bool = False,
                 ca_bundle: str | None = None, port: int = 443):
        context = ssl.create_default_context(cafile=ca_bundle or certifi.where())
        self.pool = httpcore.ConnectionPool(ssl_context=context, network_backend=GuardedBackend(lookup, allow_private),
                                            max_connections=32, keepalive_expiry=30, retries=0)
        self.timeout, self.port = timeout, port

    def get(self, host: str, path: str, max_bytes: int, accept: bytes = b"*/*") -> tuple[int, bytes]:
        """(status, body) of ``GET https://host/path``; Refused for a redirect or an oversized body.

        Any network failure, a TLS failure or an answer that takes longer than the timeout in
        total raises Unreachable.
        """
        deadline = time.monotonic() + self.timeout
        url = httpcore.URL(scheme=b"https", host=host.encode("ascii"), port=self.port, target=path.encode("ascii"))
        headers = [(b"Host", host.encode("ascii")), (b"Accept", accept), (b"User-Agent", USER_AGENT)]
        extensions = {"timeout": {"connect": self.timeout, "read": self.timeout, "write": self.timeout,
                                  "pool": self.timeout}}
        try:
            with self.pool.stream("GET", url, headers=headers, extensions=extensions) as response:
                if 300 <= response.status < 400:
                    raise Refused(f"https://{host}{path} redirects (redirects are not followed)")
                length = _content_length(response.headers)
                if length is not None and length > max_bytes:
                    raise Refused(f"https://{host}{path} answers {length} bytes (at most {max_bytes})")
                body = bytearray()
                for chunk in response.iter_stream():
                    body += chunk
                    if len(body) > max_bytes:
                        raise Refused(f"https://{host}{path} answers more than {max_bytes} bytes")
                    if time.monotonic() > deadline:
                        raise Unreachable(f"https://{host}{path} took longer than {self.timeout}s")
                return response.status, bytes(body)
        except httpcore.TimeoutException as exc:
            raise Unreachable(f"https://{host}{path}: timed out") from exc
        except (httpcore.NetworkError, httpcore.ProtocolError, ssl.SSLError, OSError) as exc:
            raise Unreachable(f"https://{host}{path}: {exc or type(exc).__name__}") from exc

    def close(self) -> None:
        self.pool.close()


def _content_length(headers) -> int | None:
    for name, value in headers:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
