"""Calling URLs that outsiders hand us without becoming their proxy into our own network.

Push endpoints (and any other user-supplied URL) are chosen by whoever calls our API. A
plain HTTP client would follow them to ``http://127.0.0.1:6379``, ``https://169.254.169.254``
or an internal service (server-side request forgery). :class:`GuardedClient` (on urllib3):

- accepts only the policy's schemes (``https``) and no user:password in the URL;
- resolves the host itself at connect time and refuses the destination when any address is
  not globally routable (loopback, private, link-local, CGNAT, multicast, reserved, and IPv6
  forms that embed one of those), then connects to an address it checked: DNS cannot
  answer one thing to the check and another to the connection;
- keeps the name for TLS (SNI, certificate checked against certifi's CAs) and ``Host``;
- never follows redirects (a 3xx is returned as it is), reads no proxy variables, keeps no
  cookies, retries nothing;
- reads at most ``max_response_bytes`` of an answer, within ``read_timeout`` of its start.

:func:`check_url` runs the same checks without sending anything (to validate a URL when it is
given to us). Origins listed in ``Policy.exempt_origins`` skip the scheme and address checks:
that is how a test reaches its local server, and it is empty in production.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping
from urllib.parse import urlsplit

import certifi
import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NameResolutionError, NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

#: (host, port) -> socket addresses to try, in order (``getaddrinfo`` by default).
Resolver = Callable[[str, int], list[tuple]]

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_BLANK_OR_CONTROL = re.compile(r"[\x00-\x20\x7f]")


class RefusedDestination(ValueError):
    """The URL names something the server must not call (scheme, credentials, address)."""


class Unreachable(Exception):
    """The destination could not be reached or did not answer properly (DNS, connect, reset, TLS)."""


class TimedOut(Unreachable):
    """Connecting or reading the answer took longer than the policy allows."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]  # case-insensitive
    body: bytes                 # at most max_response_bytes of it


def _system_resolver(host: str, port: int) -> list[tuple]:
    return [info[4] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


@dataclass(frozen=True)
class Policy:
    """What outbound calls may reach, and how long and how much they may read."""

    schemes: tuple[str, ...] = ("https",)
    #: Exact origins (``scheme://host:port``, lowercase) exempt from scheme and address checks.
    exempt_origins: frozenset[str] = frozenset()
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    max_response_bytes: int = 64 * 1024
    max_url_length: int = 2048
    resolve: Resolver = field(default=_system_resolver, compare=False)

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.connect_timeout, self.read_timeout)


def is_public_address(address: str) -> bool:
    """True when the address is globally routable unicast (IPv6 forms embedding IPv4 unwrapped)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if ip.version == 6:
        embedded = ip.ipv4_mapped or ip.sixtofour or (
            ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in _NAT64 else None)
        if embedded is not None and not is_public_address(str(embedded)):
            return False
        if ip.teredo or ip.is_site_local:
            return False
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified or ip.is_loopback)


def make_origin(scheme: str, host: str, port: int) -> str:
    """``scheme://host:port``, lowercase with the port explicit: how exempt origins are written."""
    host = host.lower().strip("[]")
    return f"{scheme.lower()}://{f'[{host}]' if ':' in host else host}:{port}"


def origin_of(url: str) -> str:
    """The :func:`make_origin` of a URL (``""`` when unparsable)."""
    try:
        parts = urlsplit(url)
        port = parts.port or {"https": 443, "http": 80}.get(parts.scheme.lower(), 0)
    except ValueError:
        return ""
    return make_origin(parts.scheme, parts.hostname or "", port)


def audience_of(url: str) -> str:
    """The origin as browsers write it (``https://host``, the port only when not the default)."""
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme.lower())
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    port = "" if parts.port in (None, default) else f":{parts.port}"
    return f"{parts.scheme.lower()}://{host}{port}"


def check_syntax(url: str, policy: Policy) -> tuple[str, int, bool]:
    """(host, port, exempt) of an acceptable URL, without resolving it; else RefusedDestination."""
    if len(url) > policy.max_url_length:
        raise RefusedDestination(f"the URL is longer than {policy.max_url_length} characters")
    if _BLANK_OR_CONTROL.search(url):
        raise RefusedDestination("the URL contains spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise RefusedDestination(f"not a valid URL ({exc})") from None
    host = parts.hostname
    if not host:
        raise RefusedDestination("the URL names no host")
    if parts.username is not None or parts.password is not None:
        raise RefusedDestination("the URL must not carry a user name or password")
    if parts.fragment:
        raise RefusedDestination("the URL must not have a #fragment")
    exempt = origin_of(url) in policy.exempt_origins
    if not exempt and parts.scheme.lower() not in policy.schemes:
        raise RefusedDestination(f"the URL must use {' or '.join(policy.schemes)}")
    if len(host) > 253:
        raise RefusedDestination("the host name is too long")
    try:
        host.encode("idna")
    except UnicodeError:
        raise RefusedDestination("the host name is not valid") from None
    return host, port or (443 if parts.scheme.lower() == "https" else 80), exempt


def resolve_checked(host: str, port: int, policy: Policy, exempt: bool = False) -> list[tuple]:
    """The socket addresses of ``host``: all of them public, or RefusedDestination."""
    try:
        addresses = policy.resolve(host, port)
    except (socket.gaierror, UnicodeError) as exc:
        raise socket.gaierror(f"{host} does not resolve ({exc})") from None
    if not addresses:
        raise socket.gaierror(f"{host} has no address")
    if not exempt:
        for address in addresses:
            if not is_public_address(address[0]):
                raise RefusedDestination(f"{host} resolves to a non-public address")
    return addresses


def check_url(url: str, policy: Policy) -> None:
    """Refuse a URL the guarded session would refuse (resolving its host now)."""
    host, port, exempt = check_syntax(url, policy)
    try:
        resolve_checked(host, port, policy, exempt)
    except socket.gaierror as exc:
        raise RefusedDestination(str(exc)) from None


def _connection_classes(policy: Policy):
    """urllib3 connection classes that connect only to checked addresses."""

    def new_conn(self) -> socket.socket:
        exempt = make_origin(self.scheme, self.host, self.port) in policy.exempt_origins
        try:
            addresses = resolve_checked(self.host, self.port, policy, exempt)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        error: OSError | None = None
        for address in addresses:
            family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                for option in self.socket_options or ():
                    sock.setsockopt(*option)
                sock.settimeout(self.timeout)
                sock.connect(address)
                return sock
            except socket.timeout as exc:
                sock.close()
                error = ConnectTimeoutError(self, f"connecting to {self.host} timed out")
                error.__cause__ = exc
            except OSError as exc:
                sock.close()
                error = exc
        if isinstance(error, ConnectTimeoutError):
            raise error
        raise NewConnectionError(self, f"Failed to establish a new connection: {error}")

    guarded_http = type("GuardedHTTPConnection", (HTTPConnection,), {"scheme": "http", "_new_conn": new_conn})
    guarded_https = type("GuardedHTTPSConnection", (HTTPSConnection,), {"scheme": "https", "_new_conn": new_conn})
    return (type("GuardedHTTPConnectionPool", (HTTPConnectionPool,), {"ConnectionCls": guarded_http}),
            type("GuardedHTTPSConnectionPool", (HTTPSConnectionPool,), {"ConnectionCls": guarded_https}))


class GuardedClient:
    """HTTP(S) requests to user-supplied URLs (see the module docstring). Thread-safe to share;
    connections are kept alive and reused per origin."""

    def __init__(self, policy: Policy, pool_maxsize: int = 32):
        self.policy = policy
        http_pool, https_pool = _connection_classes(policy)
        self._pools = urllib3.PoolManager(num_pools=256, maxsize=pool_maxsize, retries=False,
                                          timeout=urllib3.Timeout(connect=policy.connect_timeout,
                                                                  read=policy.read_timeout),
                                          ca_certs=certifi.where(), cert_reqs="CERT_REQUIRED")
        self._pools.pool_classes_by_scheme = {"http": http_pool, "https": https_pool}

    def request(self, method: str, url: str, body: bytes | None = None,
                headers: Mapping[str, str] | None = None) -> Answer:
        """Send one request; RefusedDestination, TimedOut or Unreachable instead of an answer."""
        check_syntax(url, self.policy)
        try:
            response = self._pools.urlopen(method, url, body=body, headers=dict(headers or {}), redirect=False,
                                           retries=False, preload_content=False, assert_same_host=False)
        except NewConnectionError as exc:  # urllib3 makes it a ConnectTimeoutError subclass: not a timeout
            raise Unreachable(f"{origin_of(url)}: {exc}") from None
        except Urllib3Timeout as exc:
            raise TimedOut(f"{origin_of(url)}: {exc}") from None
        except (HTTPError, OSError) as exc:
            raise Unreachable(f"{origin_of(url)}: {type(exc).__name__}: {exc}") from None
        try:
            return Answer(response.status, response.headers, self._read_capped(response))
        except Urllib3Timeout as exc:
            raise TimedOut(f"{origin_of(url)}: {exc}") from None
        except (HTTPError, OSError) as exc:
            raise Unreachable(f"{origin_of(url)}: {type(exc).__name__}: {exc}") from None

    def post(self, url: str, body: bytes, headers: Mapping[str, str] | None = None) -> Answer:
        return self.request("POST", url, body, headers)

    def _read_capped(self, response) -> bytes:
        """At most ``max_response_bytes`` of the body, within ``read_timeout``; the rest is dropped."""
        deadline, cap, chunks, size = time.monotonic() + self.policy.read_timeout, self.policy.max_response_bytes, [], 0
        try:
            while size < cap:
                if time.monotonic() > deadline:
                    raise TimedOut("the answer took too long to read")
                chunk = response.read(min(16384, cap - size), decode_content=False)
                if not chunk:
                    response.release_conn()
                    return b"".join(chunks)
                chunks.append(chunk)
                size += len(chunk)
            if response.read(1, decode_content=False):
                response.close()  # more than we read: drop the connection rather than drain it
            else:
                response.release_conn()
        except BaseException:
            response.close()
            raise
        return b"".join(chunks)

    def close(self) -> None:
        self._pools.clear()
