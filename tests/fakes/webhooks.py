"""A webhook receiver as a client would run it: a real HTTP server on 127.0.0.1 that checks each
request's Standard Webhooks signature with the endpoint's secret.

Signatures are verified with the ``standardwebhooks`` package (the spec's reference library),
not with the code that signs them. Each path (``/hooks/<name>``) is one endpoint of a client;
the test tells the receiver that path's secret(s) with :meth:`WebhookReceiver.trust` once the
API has shown them. A request that verifies is recorded in ``received`` and answered 204, or as
the test scripted with :meth:`WebhookReceiver.answer`: any status, a redirect (``location``), a
stall longer than the sender's timeout, a huge body. One that does not verify is answered 401
and its reason kept in ``errors``.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from .server import LocalHttpServer


@dataclass
class Received:
    path: str
    message_id: str
    timestamp: int
    signature: str
    payload: dict
    status: int
    at: float


@dataclass
class Answer:
    status: int
    count: int | None = 1   # None: every request from now on
    location: str | None = None
    body_bytes: int = 0
    stall: float = 0.0


@dataclass
class _Path:
    secrets: list[str] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)


class WebhookReceiver:
    """Use as a context manager, or ``start()`` / ``stop()``."""

    def __init__(self):
        self.received: list[Received] = []
        self.errors: list[str] = []
        self.requests: list[str] = []           # every path requested, verified or not
        self.body_bytes_written: list[int] = []
        self._paths: dict[str, _Path] = {}
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._server = LocalHttpServer(_handler_for(self), "fake-webhook-receiver", backlog=64)

    @property
    def origin(self) -> str:
        return self._server.url

    def start(self) -> "WebhookReceiver":
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> "WebhookReceiver":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- configuration by tests ------------------------------------------------------------

    def url(self, name: str | None = None) -> str:
        """A new endpoint URL on this receiver."""
        name = name or secrets.token_hex(6)
        with self._lock:
            self._paths.setdefault(f"/hooks/{name}", _Path())
        return f"{self.origin}/hooks/{name}"

    def trust(self, url: str, *secrets_: str) -> None:
        """The secret(s) requests to ``url`` must be signed with (any one of them)."""
        with self._lock:
            self._paths.setdefault(_path_of(url), _Path()).secrets = list(secrets_)

    def answer(self, url: str, status: int, count: int | None = 1, **options) -> None:
        with self._lock:
            self._paths.setdefault(_path_of(url), _Path()).answers.append(Answer(status, count, **options))

    def recover(self, url: str) -> None:
        """Forget the scripted answers of ``url``: it answers 204 again."""
        with self._lock:
            self._paths.setdefault(_path_of(url), _Path()).answers.clear()

    # -- reading what arrived --------------------------------------------------------------

    def at(self, url: str, delivered_only: bool = True) -> list[Received]:
        path = _path_of(url)
        with self._lock:
            return [r for r in self.received if r.path == path and (not delivered_only or 200 <= r.status < 300)]

    def wait_for(self, url: str, count: int, timeout: float = 30.0, delivered_only: bool = True) -> list[Received]:
        deadline = time.monotonic() + timeout
        path = _path_of(url)
        with self._arrived:
            while True:
                got = [r for r in self.received if r.path == path and (not delivered_only or 200 <= r.status < 300)]
                if len(got) >= count:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{count} requests expected at {path}, got {len(got)}; "
                                         f"errors: {self.errors[-3:]}")
                self._arrived.wait(left)

    # -- one request -----------------------------------------------------------------------

    def handle(self, path: str, headers, body: bytes) -> tuple[int, Answer | None]:
        with self._lock:
            self.requests.append(path)
            known = self._paths.get(path)
            trusted = list(known.secrets) if known else []
        if known is None:
            return 404, None
        verified, reasons = None, []
        for secret in trusted:
            try:
                verified = Webhook(secret).verify(body, {k.lower(): v for k, v in headers.items()})
                break
            except WebhookVerificationError as exc:
                reasons.append(str(exc))
        if verified is None:
            with self._lock:
                self.errors.append(f"{path}: {'; '.join(reasons) or 'no secret trusted for this path'}")
            return 401, None
        with self._arrived:
            answer = self._take_answer(known)
            status = answer.status if answer else 204
            self.received.append(Received(path, headers["webhook-id"], int(headers["webhook-timestamp"]),
                                          headers["webhook-signature"], json.loads(body), status, time.time()))
            self._arrived.notify_all()
        return status, answer

    @staticmethod
    def _take_answer(known: _Path) -> Answer | None:
        if not known.answers:
            return None
        answer = known.answers[0]
        if answer.count is not None:
            answer.count -= 1
            if answer.count <= 0:
                known.answers.pop(0)
        return answer


def _path_of(url: str) -> str:
    return "/" + url.split("://", 1)[-1].split("/", 1)[-1] if "://" in url else url


def _handler_for(receiver: WebhookReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            status, answer = receiver.handle(self.path, self.headers, body)
            if answer and answer.stall:
                time.sleep(answer.stall)
            self.send_response(status)
            if answer and answer.location:
                self.send_header("Location", answer.location)
            size = answer.body_bytes if answer else 0
            self.send_header("Content-Length", str(size))
            self.end_headers()
            written = 0
            try:
                chunk = b"x" * 65536
                while written < size:
                    piece = chunk[:min(len(chunk), size - written)]
                    self.wfile.write(piece)
                    written += len(piece)
            except OSError:  # the sender stopped reading: what a capped client does
                pass
            if size:
                with receiver._lock:
                    receiver.body_bytes_written.append(written)

        def do_GET(self) -> None:
            self.send_response(405)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler
