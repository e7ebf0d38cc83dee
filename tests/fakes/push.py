"""A fake web push service: a real HTTP server on 127.0.0.1 that checks every push as a browser
vendor's service and the browser together would.

It serves plain HTTP (tests let the app reach it through ``PUSH_INSECURE_TEST_ORIGINS``;
the https and public-address rules are tested on their own). For each ``POST /push/<token>``:

- the ``Authorization: vapid t=<JWT>, k=<public key>`` header (RFC 8292): the ES256 JWT is
  verified with ``k`` by PyJWT (not by the library the app signs with), ``aud`` must be this
  service's origin, ``exp`` in the future and at most 24 h away, ``sub`` a mailto: or https:
  contact; ``k`` must be the app's VAPID public key when the test gave it;
- ``TTL`` (required), ``Urgency`` (RFC 8030 values) and ``Content-Encoding: aes128gcm``;
- the body is decrypted with ``http_ece`` using the subscription's private key and auth
  secret, which :meth:`FakePushService.subscriber` creates as a browser does, and must be JSON.

A push that passes is recorded in ``received`` with what was answered: 201 unless the test
scripted another answer for that subscriber (:meth:`FakePushService.answer`: any status,
``Retry-After``, a redirect, a stall, an oversized body). One that fails a check is answered
400/401/403/413 and its reason recorded in ``errors``. Unknown tokens get 404.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

import http_ece
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .server import LocalHttpServer

MAX_BODY = 4096
URGENCIES = ("very-low", "low", "normal", "high")
_VAPID = re.compile(r"^vapid\s+(.*)$", re.IGNORECASE)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


@dataclass
class Subscriber:
    """A browser's side of one subscription: its key pair, auth secret and endpoint."""

    token: str
    endpoint: str
    private_key: ec.EllipticCurvePrivateKey
    auth_secret: bytes

    @property
    def p256dh(self) -> str:
        return b64url(self.private_key.public_key().public_bytes(serialization.Encoding.X962,
                                                                 serialization.PublicFormat.UncompressedPoint))

    @property
    def auth(self) -> str:
        return b64url(self.auth_secret)

    def as_json(self) -> dict:
        """What ``PushSubscription.toJSON()`` gives the app."""
        return {"endpoint": self.endpoint, "expirationTime": None, "keys": {"p256dh": self.p256dh, "auth": self.auth}}


@dataclass
class Received:
    """A push that passed every check, and what the service answered."""

    token: str
    payload: dict
    ttl: int
    urgency: str | None
    topic: str | None
    claims: dict
    status: int
    at: float


@dataclass
class Answer:
    """A scripted answer for the next ``count`` pushes to a subscriber (None: all of them)."""

    status: int
    count: int | None = 1
    retry_after: str | None = None
    location: str | None = None
    body_bytes: int = 0
    stall: float = 0.0


@dataclass
class _State:
    subscribers: dict[str, Subscriber] = field(default_factory=dict)
    answers: dict[str, list[Answer]] = field(default_factory=dict)


class FakePushService:
    """The push service. Use as a context manager, or ``start()`` / ``stop()``."""

    def __init__(self, vapid_public_key: str | None = None):
        self.vapid_public_key = vapid_public_key
        self.received: list[Received] = []
        self.errors: list[str] = []
        #: Bytes of scripted oversized bodies actually written before the client hung up.
        self.body_bytes_written: list[int] = []
        self.requests = 0
        self._state = _State()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._server = LocalHttpServer(_handler_for(self), "fake-push", backlog=128)

    @property
    def origin(self) -> str:
        return self._server.url

    def start(self) -> "FakePushService":
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut open connections: the service is down."""
        self._server.stop()

    def __enter__(self) -> "FakePushService":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- configuration by tests ------------------------------------------------------------

    def subscriber(self) -> Subscriber:
        """A new subscription, as the browser creates it (P-256 key pair, 16-byte secret)."""
        token = secrets.token_urlsafe(16)
        sub = Subscriber(token, f"{self.origin}/push/{token}", ec.generate_private_key(ec.SECP256R1()),
                         secrets.token_bytes(16))
        with self._lock:
            self._state.subscribers[token] = sub
        return sub

    def answer(self, subscriber: Subscriber, status: int, count: int | None = 1, **options) -> None:
        """Answer the next ``count`` pushes to ``subscriber`` with ``status`` (None: every one)."""
        with self._lock:
            self._state.answers.setdefault(subscriber.token, []).append(Answer(status, count, **options))

    def forget(self, subscriber: Subscriber) -> None:
        """The browser unsubscribed: its endpoint answers 404 from now on."""
        with self._lock:
            self._state.subscribers.pop(subscriber.token, None)

    def delivered(self, subscriber: Subscriber | None = None) -> list[Received]:
        """Pushes answered 2xx (to ``subscriber`` only, if given)."""
        with self._lock:
            return [r for r in self.received if 200 <= r.status < 300
                    and (subscriber is None or r.token == subscriber.token)]

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        """Block until ``count`` pushes were delivered (2xx); AssertionError after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while sum(1 for r in self.received if 200 <= r.status < 300) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{count} pushes expected, {len(self.received)} received, "
                                         f"errors: {self.errors[-3:]}")
                self._arrived.wait(left)
            return [r for r in self.received if 200 <= r.status < 300]

    # -- one push ---------------------------------------------------------------------------

    def handle(self, token: str, headers, body: bytes) -> tuple[int, dict, Answer | None]:
        """(status, headers, scripted answer) for one push; records it."""
        with self._lock:
            self.requests += 1
            sub = self._state.subscribers.get(token)
        if sub is None:
            return 404, {}, None
        try:
            ttl, urgency = self._check_headers(headers)
            claims = self._check_vapid(headers.get("Authorization", ""))
            payload = json.loads(http_ece.decrypt(body, private_key=sub.private_key, auth_secret=sub.auth_secret,
                                                  version="aes128gcm"))
        except _Refused as refused:
            with self._lock:
                self.errors.append(f"{token}: {refused.reason}")
            return refused.status, {}, None
        except Exception as exc:  # undecryptable or not JSON: the browser would drop it
            with self._lock:
                self.errors.append(f"{token}: cannot decrypt: {type(exc).__name__}: {exc}")
            return 400, {}, None
        with self._arrived:
            answer = self._take_answer(token)
            status = answer.status if answer else 201
            self.received.append(Received(token, payload, ttl, urgency, headers.get("Topic"), claims, status,
                                          time.time()))
            self._arrived.notify_all()
        extra = {"Location": f"{self.origin}/message/{secrets.token_hex(8)}"} if 200 <= status < 300 else {}
        return status, extra, answer

    def _take_answer(self, token: str) -> Answer | None:
        queue = self._state.answers.get(token) or []
        if not queue:
            return None
        answer = queue[0]
        if answer.count is not None:
            answer.count -= 1
            if answer.count <= 0:
                queue.pop(0)
        return answer

    def _check_headers(self, headers) -> tuple[int, str | None]:
        ttl = headers.get("TTL")
        if ttl is None or not ttl.isdigit():
            raise _Refused(400, f"TTL header missing or invalid: {ttl!r}")
        urgency = headers.get("Urgency")
        if urgency is not None and urgency not in URGENCIES:
            raise _Refused(400, f"bad Urgency {urgency!r}")
        if (headers.get("Content-Encoding") or "").lower() != "aes128gcm":
            raise _Refused(400, f"Content-Encoding is {headers.get('Content-Encoding')!r}, not aes128gcm")
        return int(ttl), urgency

    def _check_vapid(self, authorization: str) -> dict:
        match = _VAPID.match(authorization.strip())
        if not match:
            raise _Refused(401, f"no vapid Authorization: {authorization[:40]!r}")
        params = dict(part.strip().split("=", 1) for part in match.group(1).split(",") if "=" in part)
        token, key = params.get("t"), params.get("k")
        if not token or not key:
            raise _Refused(401, "vapid Authorization without t= or k=")
        if self.vapid_public_key and key.rstrip("=") != self.vapid_public_key.rstrip("="):
            raise _Refused(403, "signed with another VAPID key than the subscription's")
        try:
            public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(key))
            claims = jwt.decode(token, public, algorithms=["ES256"], audience=self.origin,
                                options={"require": ["exp", "aud", "sub"]})
        except (ValueError, jwt.PyJWTError) as exc:
            raise _Refused(403, f"VAPID JWT rejected: {type(exc).__name__}: {exc}") from None
        if claims["exp"] > time.time() + 86400:
            raise _Refused(403, "VAPID exp more than 24 hours away")
        if not re.match(r"^(mailto:[^@\s]+@[^@\s]+|https://\S+)$", str(claims["sub"])):
            raise _Refused(403, f"VAPID sub is not a contact: {claims['sub']!r}")
        return claims


class _Refused(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason



def _handler_for(service: FakePushService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as push services and their clients do

        def do_POST(self):
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit():
                return self._reply(411, {})
            if int(length) > MAX_BODY:
                self.rfile.read(int(length))
                with service._lock:
                    service.errors.append(f"body of {length} bytes")
                return self._reply(413, {})
            body = self.rfile.read(int(length))
            if not self.path.startswith("/push/"):
                return self._reply(404, {})
            status, headers, answer = service.handle(self.path[len("/push/"):], self.headers, body)
            if answer is not None:
                if answer.stall:
                    time.sleep(answer.stall)
                if answer.retry_after is not None:
                    headers["Retry-After"] = answer.retry_after
                if answer.location:
                    headers["Location"] = answer.location
                if answer.body_bytes:
                    return self._reply_big(status, headers, answer.body_bytes)
            self._reply(status, headers)

        def _reply(self, status: int, headers: dict):
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _reply_big(self, status: int, headers: dict, size: int):
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            written, chunk = 0, b"x" * 65536
            try:
                while written < size:
                    self.wfile.write(chunk[: size - written])
                    written += min(len(chunk), size - written)
            except OSError:
                self.close_connection = True
            with service._lock:
                service.body_bytes_written.append(written)

        def log_message(self, *args):
            pass

    return Handler
