"""``/ws``: one WebSocket per app client for live updates (flask-sock).

Client -> server (JSON text frames; unknown fields are ignored):

- ``{"type": "auth", "token": "<app JWT>", "since"?: "<event id>"}``: sign in; the socket then
  gets its member's ``notification``, ``profile_updated`` and ``backfill_progress`` events
  (the import of their follows and recent posts when they joined). Optional: an anonymous
  socket gets the public post events of what it subscribes to. A bad token, or one of a
  session that was signed out, gets an ``invalid_token`` error and the socket is closed with
  code 4401. When the token expires the socket gets a ``token_expired`` error and goes on
  anonymous until a new ``auth``. When its session ends (logout, a reused refresh token, the
  account deleted) the socket gets a ``session_ended`` error and is closed with 4401.
- ``{"type": "subscribe", "uris": [...], "since"?: "<event id>"}``: follow these posts
  (``post_updated``, ``reply_added``, ``post_deleted``), at most ``WS_MAX_SUBSCRIPTIONS``
  per socket; each an AT-URI of a post (``at://<did>/app.bsky.feed.post/<rkey>``) of at
  most ``MAX_URI_LENGTH`` characters.
- ``{"type": "unsubscribe", "uris": [...]}``, ``{"type": "ping"}``.
- ``{"type": "dashboard_feed", "ticket": "...", "since"?: "<event id>"}``: the client dashboard's
  live high-intent feed (``app/dashboard/live.py``).

Server -> client: ``auth_ok {did, expiresAt}``, ``subscribed {uris, total}``,
``unsubscribed {uris, total}``, ``pong``, ``error {code, message}`` (malformed messages get
one; the socket stays open), ``resync {reason, uris?|did?}`` (events were lost: refetch), and
the events of ``services/realtime.py``, each with its ``id``.

Resume: a client that reconnects passes the last event ``id`` it saw as ``since``; the server
first sends what it missed for the URIs (or the member) that message adds, from the stream's
history, then live events: in order per post and member, none twice. When ``since`` is older
than the history kept, or more than ``WS_REPLAY_MAX_EVENTS`` events ago, it gets ``resync`` instead;
also past its replay budget (``WS_REPLAYS_PER_MINUTE`` per socket, ``WS_IP_REPLAYS_PER_MINUTE``
per client IP), with reason ``replay_budget``.

Limits (``app/ws_limits.py``): ``WS_MAX_CONNECTIONS_PER_IP`` sockets per client IP in one
process (past it: a ``too_many_connections`` error, close 4429); ``WS_MESSAGES_PER_SECOND``
client messages per socket with a burst of ``WS_MESSAGE_BURST`` (a message over the rate is
answered with a ``rate_limited`` error and ignored; a client that keeps on for another burst's
worth is closed with 4429); messages up to ``WS_MAX_MESSAGE_BYTES`` (larger: close 1009).

The socket needs no cookie (the token travels in a message), so a cross-site page cannot
borrow a member's session: no Origin check is needed.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
import time
from collections import deque
from typing import Annotated, Literal, Union

import orjson
import redis
from flask import Blueprint, Flask, current_app, request
from flask_sock import Sock
from pydantic import AfterValidator, BaseModel, Field, StringConstraints, TypeAdapter, ValidationError
from simple_websocket import ConnectionClosed

from services import realtime
from services.atproto_syntax import at_uri_parts
from services.jetstream import POST
from services.realtime import Delivery, did_key, post_key, session_key
from services.tokens import InvalidToken, decode_access_token, revoked_session_key

from .dashboard.live import DashboardFeed, start_feed
from .extensions import client_ip
from .metrics import WS_DROPPED
from .realtime import Hub, text_frame
from .ws_limits import IpLedger, SocketLimits, TokenBucket

log = logging.getLogger(__name__)

#: URIs one message may list (the configured cap per socket is checked after parsing).
MAX_URIS_PER_MESSAGE = 10_000
#: A post's AT-URI: a did:plc one is about 70 characters, a did:web host at most 253; the
#: spec's 8 KiB bound for any AT-URI would let one socket's subscriptions hold megabytes.
MAX_URI_LENGTH = 1024
#: Events waiting for one socket; past this the socket is too slow and is dropped.
MAX_OUTBOX = 1_000
#: A ping every 25 s (simple-websocket closes a socket that missed the previous pong).
PING_INTERVAL = 25
CLOSE_UNAUTHORIZED = 4401
CLOSE_TOO_MANY = 4429
CLOSE_GOING_AWAY = 1001
CLOSE_UNAVAILABLE = 1011

bp = Blueprint("ws", __name__)
sock = Sock()

def _require_post_uri(value: str) -> str:
    parts = at_uri_parts(value)
    if parts is None or not parts[0].startswith("did:") or parts[1] != POST:
        raise ValueError("not the AT-URI of a post")
    return value


Uri = Annotated[str, StringConstraints(max_length=MAX_URI_LENGTH), AfterValidator(_require_post_uri)]
Uris = Annotated[list[Uri], Field(max_length=MAX_URIS_PER_MESSAGE)]
EventId = Annotated[str, StringConstraints(pattern=r"^\d{1,20}-\d{1,20}$")]


class Auth(BaseModel):
    type: Literal["auth"]
    token: Annotated[str, StringConstraints(max_length=8192)]
    since: EventId | None = None


class Subscribe(BaseModel):
    type: Literal["subscribe"]
    uris: Uris
    since: EventId | None = None


class Unsubscribe(BaseModel):
    type: Literal["unsubscribe"]
    uris: Uris


class Ping(BaseModel):
    type: Literal["ping"]


ClientMessage = TypeAdapter(Annotated[Union[Auth, Subscribe, Unsubscribe, Ping, DashboardFeed],
                                      Field(discriminator="type")])


def init_app(app: Flask, settings) -> None:
    app.config["SOCK_SERVER_OPTIONS"] = {"ping_interval": PING_INTERVAL,
                                         "max_message_size": settings.ws_max_message_bytes}
    app.extensions["realtime"] = Hub(settings.redis_url)
    app.extensions["ws_ledger"] = IpLedger(settings.ws_max_connections_per_ip, settings.ws_ip_replays_per_minute)
    app.extensions["ws_limits"] = SocketLimits.from_settings(settings)
    app.register_blueprint(bp)


@bp.before_request
def _refuse_compression():
    """Decline permessage-deflate: events are a few hundred bytes, and its per-socket zlib
    state (about 300 KiB with context takeover) would cost more memory than the sockets."""
    request.environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)


@sock.route("/ws", bp=bp)
def websocket(ws):
    # The client's address as ProxyFix derived it (PROXY_COUNT), as for the HTTP rate limits.
    Connection(ws, current_app.extensions["realtime"], current_app.config["SETTINGS"].jwt_secret,
               current_app.extensions["ws_limits"], current_app.extensions["ws_ledger"], client_ip()).serve()


class _SerialSocket:
    """The socket with one writer at a time, each write whole.

    simple-websocket writes from two places: our handler and its own reader thread (pings,
    pongs, close), with ``socket.send``, which may write part of a frame. Serializing whole
    writes here keeps frames from interleaving, whoever writes them. The hub may also write
    without waiting (:meth:`try_send`).
    """

    def __init__(self, raw):
        self._raw = raw
        # gevent's socket waits when the kernel buffer is full; the OS socket under it does not.
        self._os_socket = getattr(raw, "_sock", raw)
        # Direct writes only to a plain TCP socket without a timeout: under TLS the OS socket
        # carries ciphertext, and with a timeout Python polls before a MSG_DONTWAIT send.
        self._direct = not hasattr(raw, "getpeercert") and self._os_socket.gettimeout() in (None, 0.0)
        self.lock = threading.Lock()

    def send(self, data) -> int:
        with self.lock:
            self._raw.sendall(data)
        return len(data)

    sendall = send

    def send_locked(self, data) -> None:
        """Write while already holding the lock (the handler's batched writes)."""
        self._raw.sendall(data)

    def try_send(self, data: bytes) -> int:
        """Write what the kernel takes now, never waiting: bytes written.

        Returns -1 when another writer holds the socket. When only part of ``data`` went out
        (0 < n < len), the lock stays held: the caller must write the rest with
        :meth:`finish`, so that nothing lands inside the frame.
        """
        if not self._direct or not self.lock.acquire(blocking=False):
            return -1
        try:
            sent = self._os_socket.send(data, socket.MSG_DONTWAIT)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.lock.release()
            raise
        if sent == 0 or sent == len(data):
            self.lock.release()
        return sent

    def finish(self, rest: bytes) -> None:
        try:
            self._raw.sendall(rest)
        finally:
            self.lock.release()

    def __getattr__(self, name):
        return getattr(self._raw, name)


class _Rest(bytes):
    """The unsent end of a frame the hub began writing; the socket's lock is still held."""


class Connection:
    """One socket: its subscriptions, its member, and the outbox its handler drains."""

    def __init__(self, ws, hub: Hub, jwt_secret: str, limits: SocketLimits, ledger: IpLedger, ip: str):
        ws.sock = _SerialSocket(ws.sock)
        self.ws = ws
        self.hub = hub
        self.jwt_secret = jwt_secret
        self.limits, self.ledger, self.ip = limits, ledger, ip
        self.messages = TokenBucket(limits.messages_per_second, limits.message_burst)
        self.replays = TokenBucket(limits.replays_per_minute / 60, limits.replays_per_minute)
        self.did: str | None = None
        self.session_id: str | None = None
        self.token_expires: float | None = None
        # The routing keys of the posts followed: the very strings the hub holds, interned so
        # that sockets following one post share one (a subscription costs about 0.3 KiB).
        self.post_keys: set[str] = set()
        # Events (with their frame, built once by the hub) and control messages, in order.
        self.outbox: deque[tuple[Delivery, bytes] | str] = deque()
        self.dropped = False
        self.closing: tuple[int, str] | None = None
        # Set while the handler answers a message (acks, replays): events wait in the outbox.
        self.busy = False
        # key -> stream position its history was replayed up to: older live events are dupes.
        self.replayed: dict[str, tuple[int, int]] = {}

    # -- called by the hub (another thread or greenlet): never block ---------------------

    def offer(self, delivery: Delivery, frame: bytes) -> None:
        """Write the event now if the socket is idle and takes it; else queue it for the handler.

        Writing from the hub saves waking the handler for every event: most events go out in
        one non-blocking system call. Anything already queued goes first, so order holds.
        """
        if not (self.outbox or self.busy or self.dropped) and self.ws.connected:
            seen = self.replayed.get(delivery.key)
            if seen is not None and delivery.id <= seen:
                return
            try:
                sent = self.ws.sock.try_send(frame)
            except OSError:
                return  # gone: its reader notices and the handler ends
            if sent == len(frame):
                return
            if sent > 0:
                self._queue(_Rest(frame[sent:]))
                return
        self._queue((delivery, frame))

    def resync(self, reason: str) -> None:
        self._queue(_dumps({"type": "resync", "reason": reason}))

    def session_ended(self) -> None:
        """The session this socket signed in with was signed out: tell the client, then close."""
        self._queue(_dumps({"type": "error", "code": "session_ended",
                            "message": "this session was signed out: sign in again"}))
        self.shutdown(CLOSE_UNAUTHORIZED, "session ended")

    def _queue(self, item) -> None:
        if self.dropped:
            return
        if len(self.outbox) >= MAX_OUTBOX:
            self._drop("slow")
            return
        self.outbox.append(item)
        self.ws.event.set()

    def shutdown(self, code: int, reason: str) -> None:
        self.closing = (code, reason)
        self.ws.event.set()

    def _drop(self, reason: str) -> None:
        self.dropped = True
        while self.outbox:
            try:
                item = self.outbox.popleft()
            except IndexError:  # the handler took the last one
                break
            if isinstance(item, _Rest):  # whoever takes a frame's rest owns the socket's lock
                self.ws.sock.lock.release()
        WS_DROPPED.labels(reason).inc()
        try:  # wakes the handler and the reader, even one stuck in a write to this socket
            self.ws.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- the socket's own handler --------------------------------------------------------

    def serve(self) -> None:
        if not self.ledger.open(self.ip):
            self._error("too_many_connections", f"at most {self.ledger.max_connections} sockets per address")
            self.ws.close(CLOSE_TOO_MANY, "too many connections from this address")
            return
        try:
            self.hub.attach(self)
        except redis.RedisError:
            self.ledger.close(self.ip)
            self.ws.close(CLOSE_UNAVAILABLE, "realtime unavailable, try again")
            return
        try:
            while not self.dropped:
                self._flush()
                if self.closing:
                    self.ws.close(*self.closing)
                    return
                # simple-websocket's reader fills input_buffer and sets ws.event; so does the hub
                # (outbox). One wait covers both, and costs no timer for an anonymous socket.
                if self.ws.input_buffer or not self.ws.connected:
                    raw = self.ws.receive()  # at once; raises ConnectionClosed at the end
                    self.busy = True
                    try:
                        if self._within_rate():
                            self._handle(raw)
                    finally:
                        self.busy = False
                    continue
                if self.outbox:
                    continue
                self.ws.event.wait(self._idle_seconds())
                self.ws.event.clear()
                self._check_token()
        except (ConnectionClosed, OSError):
            pass
        except Exception:  # a bug must not turn into an HTTP 500 written onto the socket
            log.exception("websocket handler failed")
            try:
                self.ws.close(CLOSE_UNAVAILABLE, "internal error")
            except Exception:
                pass
        finally:
            self.ledger.close(self.ip)
            self.hub.detach(self)

    def _within_rate(self) -> bool:
        """Spend a message token; over the rate, answer an error (or close) instead."""
        balance = self.messages.spend()
        if balance >= 0:
            return True
        if balance < -self.limits.message_burst:
            self._error("rate_limited", "too many messages: closing")
            self.closing = (CLOSE_TOO_MANY, "too many messages")
        else:
            self._error("rate_limited", f"at most {self.limits.messages_per_second:g} messages a second: "
                                        "this one was ignored")
        return False

    def _flush(self) -> None:
        """Write everything queued in one go: one system call however many events piled up."""
        if not self.outbox:
            return
        if isinstance(self.outbox[0], _Rest):  # the hub began this frame and holds the lock
            try:
                rest = self.outbox.popleft()
            except IndexError:  # dropped meanwhile
                return
            if isinstance(rest, _Rest):
                self.ws.sock.finish(rest)
            else:
                self.outbox.appendleft(rest)
        with self.ws.sock.lock:  # the hub cannot write past the queue meanwhile
            frames = []
            while self.outbox:
                item = self.outbox.popleft()
                if isinstance(item, str):
                    frames.append(text_frame(item.encode()))
                    continue
                delivery, frame = item
                seen = self.replayed.get(delivery.key)
                if seen is None or delivery.id > seen:
                    frames.append(frame)
            if frames:
                if not self.ws.connected:
                    raise ConnectionClosed(self.ws.close_reason, self.ws.close_message)
                self.ws.sock.send_locked(b"".join(frames))

    def _send(self, message: dict) -> None:
        self.ws.send(_dumps(message))

    def _error(self, code: str, message: str) -> None:
        self._send({"type": "error", "code": code, "message": message})

    def _idle_seconds(self) -> float | None:
        """How long to wait for input or events: until the token expires, if signed in."""
        if self.token_expires is None:
            return None
        return max(0.01, self.token_expires - time.time())

    def _check_token(self) -> None:
        if self.token_expires is not None and time.time() >= self.token_expires:
            self._sign_out()
            self._error("token_expired", "send a new auth message to keep member events")

    def _sign_out(self) -> None:
        if self.did:
            self.hub.ignore(self, [did_key(self.did), session_key(self.session_id)])
            self.replayed.pop(did_key(self.did), None)
        self.did = self.session_id = self.token_expires = None

    # -- client messages -----------------------------------------------------------------

    def _handle(self, raw: str | bytes) -> None:
        if isinstance(raw, bytes):
            self._error("bad_message", "send JSON text frames")
            return
        try:
            message = ClientMessage.validate_json(raw)
        except ValidationError as exc:
            self._error(*_explain(exc))
            return
        if isinstance(message, Auth):
            self._auth(message)
        elif isinstance(message, Subscribe):
            self._subscribe(message)
        elif isinstance(message, Unsubscribe):
            self._unsubscribe(message)
        elif isinstance(message, DashboardFeed):  # the client dashboard's live feed (app/dashboard/live.py)
            start_feed(self, message, current_app.config["SETTINGS"].dashboard_session_max_seconds)
        else:
            self._send({"type": "pong"})

    def _auth(self, message: Auth) -> None:
        try:
            claims = decode_access_token(message.token, self.jwt_secret)
        except InvalidToken as exc:
            self._error("invalid_token", str(exc))
            self.ws.close(CLOSE_UNAUTHORIZED, "invalid token")
            return
        did, session_id = claims["sub"], claims["sid"]
        fresh = did != self.did
        if fresh:
            self._sign_out()
            self.hub.listen(self, [did_key(did)])
        if session_id != self.session_id:
            # Listen to the session's end before asking whether it ended: none can slip between.
            if self.session_id:
                self.hub.ignore(self, [session_key(self.session_id)])
            self.hub.listen(self, [session_key(session_id)])
        self.did, self.session_id = did, session_id
        try:
            revoked = self.hub.redis.exists(revoked_session_key(session_id))
        except redis.RedisError:
            self.ws.close(CLOSE_UNAVAILABLE, "realtime unavailable, try again")
            return
        if revoked:
            self._error("invalid_token", "this session has been signed out: sign in again")
            self.ws.close(CLOSE_UNAUTHORIZED, "session ended")
            return
        self.token_expires = float(claims["exp"])
        self._send({"type": "auth_ok", "did": did, "expiresAt": claims["exp"]})
        if fresh and message.since:
            self._replay([did_key(did)], message.since, {"did": did})

    def _subscribe(self, message: Subscribe) -> None:
        uris = list(dict.fromkeys(message.uris))
        added = {uri: key for uri in uris if (key := sys.intern(post_key(uri))) not in self.post_keys}
        cap = self.limits.max_subscriptions
        if len(self.post_keys) + len(added) > cap:
            self._error("too_many_subscriptions", f"at most {cap} posts per socket; "
                                                  "unsubscribe from posts no longer shown")
            return
        self.hub.listen(self, added.values())
        self.post_keys.update(added.values())
        self._send({"type": "subscribed", "uris": uris, "total": len(self.post_keys)})
        if added and message.since:
            self._replay(list(added.values()), message.since, {"uris": list(added)})

    def _unsubscribe(self, message: Unsubscribe) -> None:
        gone = {uri: key for uri in dict.fromkeys(message.uris) if (key := post_key(uri)) in self.post_keys}
        self.hub.ignore(self, gone.values())
        self.post_keys.difference_update(gone.values())
        for key in gone.values():
            self.replayed.pop(key, None)
        self._send({"type": "unsubscribed", "uris": list(gone), "total": len(self.post_keys)})

    def _replay(self, keys: list[str], since: str, scope: dict) -> None:
        """Send what these keys missed after ``since``; live events already queued are deduped."""
        if not (self.replays.take() and self.ledger.take_replay(self.ip)):
            self._send({"type": "resync", "reason": "replay_budget", **scope})
            return
        try:
            replay = realtime.history(self.hub.redis, realtime.parse_id(since), keys, self.limits.replay_max_events)
        except redis.RedisError:
            replay, reason = None, "history_unavailable"
        else:
            reason = "history_trimmed"
        if replay is None:
            self._send({"type": "resync", "reason": reason, **scope})
            return
        for delivery in replay.deliveries:
            self.ws.send(delivery.text)
        for key in keys:
            self.replayed[key] = replay.until


def _dumps(message: dict) -> str:
    return orjson.dumps(message).decode()


def _explain(exc: ValidationError) -> tuple[str, str]:
    first = exc.errors(include_url=False)[0]
    if first["type"] == "json_invalid":
        return "bad_json", "not valid JSON"
    if first["type"] == "union_tag_invalid":
        return "unknown_type", "type must be auth, subscribe, unsubscribe, ping or dashboard_feed"
    where = ".".join(str(part) for part in first["loc"][1:]) or "message"
    return "bad_message", f"{where}: {first['msg']}"
