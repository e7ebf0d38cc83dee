"""A Jetstream v1 compatible replay server for captured event files.

Why: the ingest listener is built against Jetstream's ``/subscribe`` WebSocket API, and tests,
benchmarks and local development need that API without the public network: with a known
input, at a chosen speed, with bad input mixed in, and as many times as needed.

The server loads a JSON Lines capture (one Jetstream event per line) once and serves it on
``ws://host:port/subscribe`` with the query parameters of Jetstream v1:

- ``cursor`` (unix microseconds): only lines with ``time_us >= cursor`` are sent. Unlike
  real Jetstream, where a missing (or future) cursor means "live tail from now", a missing
  cursor here means "from the first line of the file": replaying the file is the point.
  A future cursor simply sends nothing until such lines are appended.
- ``wantedCollections`` (repeatable, at most 100; exact NSID or prefix form such as
  ``app.bsky.graph.*``): filters commits only. Identity and account events are always sent,
  as Jetstream does.
- ``wantedDids`` (repeatable, at most 10,000): filters every kind of event by ``did``.
- ``maxMessageSizeBytes``: events larger than this are silently dropped (0 = no limit).
- ``requireHello=true``: nothing is sent until the client's first ``options_update``.
- ``compress=true`` is refused (HTTP 400): this server only sends plain JSON text frames.

Invalid values get an HTTP 400 before the WebSocket upgrade, any path other than
``/subscribe`` an HTTP 404, except plain HTTP GETs that play the identity services for
the capture's accounts (``cannect/directory.py``), so that handles verify offline: ``/<did>``
answers a PLC directory document and ``/xrpc/com.atproto.identity.resolveHandle?handle=``
the DID a handle names; and ``/xrpc/app.bsky.feed.getAuthorFeed`` answers an empty feed (the
replayed network has no history before its capture), so backfills find nothing to add. Each line is sent exactly as it is in the file (never
re-serialized), so what the client parses is byte for byte what Jetstream sent when the
capture was recorded.

Lines that are not a JSON object with an integer ``time_us`` (malformed input) are sent
as they are, in file order, whatever the filters say; for the cursor they take the position
of the previous valid line. Tests rely on this to prove the listener survives bad input.
Blank lines are skipped. A malformed line that is not valid UTF-8 is sent with the bad
bytes replaced, because a WebSocket text frame must be UTF-8.

Lines are sent in file order, not sorted: real captures are not strictly ordered by
``time_us`` (the public samples are not), and the listener must cope with that anyway.

After the last line the connection stays open like a live tail: the server keeps pinging
and follows the file, sending newly appended complete lines under the same filters.
A client may replace its filters at any time with
``{"type": "options_update", "payload": {"wantedCollections": [...], "wantedDids": [...]}}``;
other client messages are ignored, an ``options_update`` with invalid values closes the
connection with code 1008 (as Jetstream terminates such a subscriber).

``speed`` 0 sends as fast as the client reads (each send waits for the socket buffer, so a
slow reader slows its own stream and nothing else); ``speed`` X > 0 replays X times real
time from the ``time_us`` differences between events.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import http
import logging
import os
import re
import signal
import sys
import time
from dataclasses import dataclass
from typing import Callable
from urllib.parse import parse_qs, unquote, urlsplit

import orjson
import websockets.http11
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed

from services.atproto_syntax import is_did, is_nsid

from .directory import Directory

log = logging.getLogger(__name__)

ENDPOINT = "/subscribe"
RESOLVE_HANDLE = "/xrpc/com.atproto.identity.resolveHandle"
AUTHOR_FEED = "/xrpc/app.bsky.feed.getAuthorFeed"
MAX_COLLECTIONS = 100
MAX_DIDS = 10_000
POLL_INTERVAL_S = 0.2
#: Jetstream pings every 30 s; the generous timeout tolerates a client busy with a backlog.
PING_INTERVAL_S = 30.0
PING_TIMEOUT_S = 60.0
#: How many lines a sender handles before yielding to the event loop, so that one client
#: streaming from a fast socket (or skipping a long filtered-out stretch) never starves
#: the others, its own options_update reader or the file follower.
YIELD_EVERY = 512
#: Large enough for an options_update naming 10,000 DIDs.
MAX_CLIENT_MESSAGE = 4 * 2**20
#: Position of lines before the first valid one: sent only when no cursor is given.
NO_CURSOR = -(2**63)

_NSID_PREFIX = re.compile(r"^[a-zA-Z0-9-]+(\.[a-zA-Z0-9-]+)*\.\*$")
_INTEGER = re.compile(r"^-?[0-9]{1,19}$")  # what Go's ParseInt takes (int() also takes "1_0")


# --------------------------------------------------------------------------- capture


class Capture:
    """The capture file in memory: the raw lines and, per line, what the filters need.

    ``frames[i]`` is line i as bytes (sent unchanged); ``keys[i]`` is the small tuple
    ``(time_us, did, collection)`` checked per client, so that filtering never parses JSON.
    ``did`` is None for a malformed line or one without a ``did`` (always sent);
    ``collection`` is "" for identity and account events (never filtered by collection).
    The lists only grow, so every client keeps its own position as a plain index.
    """

    def __init__(self, path: str):
        self.path = path
        self.directory = Directory.for_capture(path)
        self.frames: list[bytes] = []
        self.keys: list[tuple[int, str | None, str]] = []
        self._offset = 0  # bytes of the file consumed so far (complete lines only)
        self._last_time = NO_CURSOR
        self._grown = asyncio.Event()
        self._warned_shrink = False

    @classmethod
    def load(cls, path: str) -> "Capture":
        """Read the whole file; a last line without newline counts (the file is done).

        Line by line, so that the peak memory is the kept lines, not twice the file.
        """
        capture = cls(path)
        with open(path, "rb") as f:
            for line in f:
                capture._offset += len(line)
                capture._add_line(line)
        return capture

    def __len__(self) -> int:
        return len(self.frames)

    def refresh(self) -> bool:
        """Take in complete lines appended since the last look; True when some arrived.

        A trailing line without its newline is left for a later look: the writer may be
        in the middle of it.
        """
        try:
            size = os.stat(self.path).st_size
        except OSError:
            return False
        if size < self._offset:
            if not self._warned_shrink:
                log.warning("replay: %s shrank; only appended lines are followed", self.path)
                self._warned_shrink = True
            return False
        if size == self._offset:
            return False
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read(size - self._offset)
        end = data.rfind(b"\n")
        if end < 0:
            return False
        self._offset += end + 1
        before = len(self.frames)
        for line in data[:end].split(b"\n"):
            self._add_line(line)
        if len(self.frames) == before:
            return False
        self._grown.set()
        self._grown = asyncio.Event()
        return True

    async def wait_beyond(self, count: int) -> None:
        """Return once the capture holds more than ``count`` lines."""
        while len(self.frames) <= count:
            await self._grown.wait()

    def _add_line(self, line: bytes) -> None:
        line = line.rstrip(b"\r\n")
        if line.strip():
            key, frame = self._describe(line)
            self.frames.append(frame)
            self.keys.append(key)

    def _describe(self, line: bytes) -> tuple[tuple[int, str | None, str], bytes]:
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            return (self._last_time, None, ""), _as_utf8(line)
        time_us = event.get("time_us") if isinstance(event, dict) else None
        if type(time_us) is not int:
            return (self._last_time, None, ""), line
        self._last_time = time_us
        self.directory.observe(event)
        did = event.get("did")
        did = sys.intern(did) if isinstance(did, str) else None
        return (time_us, did, sys.intern(_collection_of(event))), line


def _collection_of(event: dict) -> str:
    if event.get("kind") != "commit":
        return ""
    commit = event.get("commit")
    collection = commit.get("collection") if isinstance(commit, dict) else None
    return collection if isinstance(collection, str) else ""


def _as_utf8(line: bytes) -> bytes:
    try:
        line.decode("utf-8")
        return line
    except UnicodeDecodeError:
        return line.decode("utf-8", "replace").encode("utf-8")


# --------------------------------------------------------------------------- filters


@dataclass(frozen=True)
class Filter:
    """One client's event filter, replaced as a whole by ``options_update``.

    ``collections`` None means every collection; ``dids`` None means every DID.
    """

    collections: frozenset[str] | None = None
    prefixes: tuple[str, ...] = ()
    dids: frozenset[str] | None = None
    max_size: int = 0

    def accepts(self, did: str, collection: str, size: int) -> bool:
        if self.dids is not None and did not in self.dids:
            return False
        if self.max_size and size > self.max_size:
            return False
        if self.collections is None or not collection:
            return True
        return collection in self.collections or collection.startswith(self.prefixes)


def build_filter(collections: list[str], dids: list[str], max_size: int = 0) -> Filter:
    """Validate the wanted collections and DIDs like Jetstream; ValueError when invalid."""
    exact: set[str] = set()
    prefixes: set[str] = set()
    for name in collections:
        if not isinstance(name, str):
            raise ValueError("invalid collection")
        if _NSID_PREFIX.match(name):
            prefixes.add(name[:-1])  # keep the dot: "app.bsky.graph.*" -> "app.bsky.graph."
        elif is_nsid(name):
            exact.add(name)
        else:
            raise ValueError(f"invalid collection: {name[:80]}")
    if len(exact) + len(prefixes) > MAX_COLLECTIONS:
        raise ValueError("too many wanted collections")
    for did in dids:
        if not is_did(did):
            raise ValueError(f"invalid DID: {str(did)[:80]}")
    wanted_dids = frozenset(dids)
    if len(wanted_dids) > MAX_DIDS:
        raise ValueError("too many wanted DIDs")
    return Filter(
        collections=frozenset(exact) if exact or prefixes else None,
        prefixes=tuple(sorted(prefixes, key=len)),
        dids=wanted_dids or None,
        max_size=max(0, max_size),
    )


def _lenient_size(value) -> int:
    """Jetstream reads maxMessageSizeBytes leniently: anything invalid means no limit."""
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


@dataclass(frozen=True)
class SubscribeParams:
    """What a client asked for in its ``/subscribe`` URL."""

    cursor: int
    filter: Filter
    require_hello: bool


def parse_params(path: str, headers: Headers | None = None) -> SubscribeParams:
    """Read the ``/subscribe`` query string; ValueError (-> HTTP 400) when invalid."""
    query = parse_qs(urlsplit(path).query, keep_blank_values=True)

    def first(name: str) -> str:
        return query.get(name, [""])[0]

    encoding = headers.get("Socket-Encoding", "") if headers is not None else ""
    if first("compress") == "true" or "zstd" in encoding:
        raise ValueError("compression is not supported by the replay server")
    cursor = NO_CURSOR
    if first("cursor"):  # blank means absent, as in Jetstream
        if not _INTEGER.match(first("cursor")):
            raise ValueError(f"invalid cursor: {first('cursor')[:40]}")
        cursor = int(first("cursor"))
    return SubscribeParams(
        cursor=cursor,
        filter=build_filter(
            query.get("wantedCollections", []),
            query.get("wantedDids", []),
            _lenient_size(first("maxMessageSizeBytes")),
        ),
        require_hello=first("requireHello") == "true",
    )


def _request_checker(directory: Directory):
    def check(connection: ServerConnection, request: websockets.http11.Request) -> websockets.http11.Response | None:
        """Answer identity lookups; refuse wrong paths (404) and invalid parameters (400)."""
        path = urlsplit(request.path).path
        if path != ENDPOINT:
            return _identity_response(directory, request.path) or connection.respond(404, "not found\n")
        try:
            parse_params(request.path, request.headers)
        except ValueError as exc:
            return connection.respond(400, f"{exc}\n")
        return None

    return check


def _identity_response(directory: Directory, target: str) -> websockets.http11.Response | None:
    """The PLC directory's and resolveHandle's answers for the capture's accounts, else None."""
    parts = urlsplit(target)
    if parts.path == RESOLVE_HANDLE:
        handle = parse_qs(parts.query).get("handle", [""])[0]
        did = directory.did_of(handle) if handle else None
        if did is None:
            return _json(400, {"error": "InvalidRequest", "message": "Unable to resolve handle"})
        return _json(200, {"did": did})
    if parts.path == AUTHOR_FEED:
        # The replayed network has no past: everything it knows is in the capture, which the
        # listener reads anyway. So a backfill (BACKFILL_APPVIEW_URL pointed here) finds nothing
        # to add, as it would for a brand-new account.
        actor = parse_qs(parts.query).get("actor", [""])[0]
        if not actor:
            return _json(400, {"error": "InvalidRequest", "message": "Error: Params must have the property \"actor\""})
        return _json(200, {"feed": []})
    if parts.path.startswith("/did:"):
        document = directory.document(unquote(parts.path[1:]))
        return _json(200, document) if document else _json(404, {"message": "DID not registered"})
    return None


def _json(status: int, data: dict) -> websockets.http11.Response:
    body = orjson.dumps(data)
    headers = Headers([("Date", email.utils.formatdate(usegmt=True)), ("Connection", "close"),
                       ("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return websockets.http11.Response(status, http.HTTPStatus(status).phrase, headers, body)


# --------------------------------------------------------------------------- per client


class _Pacer:
    """Holds events back so that they leave at ``speed`` times the pace of their time_us.

    The clock follows the largest time_us seen, so an out-of-order line is sent at once
    instead of rewinding the clock. ``restart`` re-anchors after the sender waited for the
    file to grow: appended lines are live and go out as they come.
    """

    def __init__(self, speed: float):
        self.scale = 1.0 / (speed * 1_000_000)
        self.restart()

    def restart(self) -> None:
        self.origin_wall: float | None = None
        self.origin_us = 0
        self.latest_us = 0

    async def wait(self, time_us: int) -> None:
        now = time.monotonic()
        if self.origin_wall is None:
            self.origin_wall, self.origin_us, self.latest_us = now, time_us, time_us
            return
        if time_us > self.latest_us:
            self.latest_us = time_us
        delay = self.origin_wall + (self.latest_us - self.origin_us) * self.scale - now
        if delay > 0.001:
            await asyncio.sleep(delay)


class _Subscriber:
    """What one connection may change while its events are being sent."""

    def __init__(self, params: SubscribeParams):
        self.cursor = params.cursor
        self.filter = params.filter
        self.hello = asyncio.Event()
        if not params.require_hello:
            self.hello.set()


async def _send_events(ws: ServerConnection, capture: Capture, sub: _Subscriber, speed: float):
    """Stream the capture to one client from its cursor, then follow the file forever."""
    frames, keys, cursor = capture.frames, capture.keys, sub.cursor
    pacer = _Pacer(speed) if speed > 0 else None
    await sub.hello.wait()
    i = 0
    while True:
        end = len(frames)
        while i < end:
            time_us, did, collection = keys[i]
            frame = frames[i]
            i += 1
            if i % YIELD_EVERY == 0:
                await asyncio.sleep(0)
            if time_us < cursor:
                continue
            if did is not None and not sub.filter.accepts(did, collection, len(frame)):
                continue
            if pacer is not None:
                await pacer.wait(time_us)
            await ws.send(frame, text=True)
        await capture.wait_beyond(i)
        if pacer is not None:
            pacer.restart()


async def _sender(ws: ServerConnection, capture: Capture, sub: _Subscriber, speed: float):
    """Run the send loop; close with 1011 on an unexpected error instead of going silent."""
    try:
        await _send_events(ws, capture, sub, speed)
    except ConnectionClosed:
        pass
    except Exception:
        log.exception("replay: sending failed for %s", ws.remote_address)
        await ws.close(1011, "internal error")


async def _on_message(ws: ServerConnection, sub: _Subscriber, message: str | bytes) -> None:
    """Apply an options_update; ignore anything else; close on invalid options."""
    try:
        data = orjson.loads(message)
    except orjson.JSONDecodeError:
        return
    if not isinstance(data, dict) or data.get("type") != "options_update":
        return
    payload = data.get("payload")
    try:
        if not isinstance(payload, dict):
            raise ValueError("payload is not an object")
        collections = payload.get("wantedCollections") or []
        dids = payload.get("wantedDids") or []
        if not isinstance(collections, list) or not isinstance(dids, list):
            raise ValueError("wantedCollections and wantedDids must be lists")
        sub.filter = build_filter(
            collections, dids, _lenient_size(payload.get("maxMessageSizeBytes", 0))
        )
    except ValueError as exc:
        await ws.close(1008, f"invalid options_update: {exc}"[:120])
        return
    sub.hello.set()


def _handler(capture: Capture, speed: float):
    async def handle(ws: ServerConnection) -> None:
        sub = _Subscriber(parse_params(ws.request.path, ws.request.headers))
        log.info("replay: client %s connected: %s", ws.remote_address, ws.request.path)
        sender = asyncio.create_task(_sender(ws, capture, sub, speed))
        try:
            async for message in ws:
                await _on_message(ws, sub, message)
        except ConnectionClosed:
            pass
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            log.info("replay: client %s disconnected", ws.remote_address)

    return handle


# --------------------------------------------------------------------------- server


async def _follow(capture: Capture) -> None:
    """Poll the file for appended lines; wakes up the clients waiting at the end."""
    while True:
        await asyncio.sleep(POLL_INTERVAL_S)
        capture.refresh()


def _install_stop_signals(stop: asyncio.Event) -> None:
    """SIGINT/SIGTERM stop the server gracefully; only possible in the main thread."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (ValueError, RuntimeError, NotImplementedError):
            pass


def _allow_long_request_lines() -> None:
    """Let a request line carry 10,000 wantedDids (~460 KB) as Jetstream allows.

    websockets refuses request lines over 8 KiB (its documented WEBSOCKETS_MAX_LINE_LENGTH
    setting, read at import time); the module constant is what the parser reads per request.
    """
    websockets.http11.MAX_LINE_LENGTH = max(websockets.http11.MAX_LINE_LENGTH, 2**20)


async def _run(capture: Capture, host: str, port: int, speed: float, ready) -> None:
    _allow_long_request_lines()
    stop = asyncio.Event()
    _install_stop_signals(stop)
    follower = asyncio.create_task(_follow(capture))
    try:
        async with ws_serve(
            _handler(capture, speed),
            host,
            port,
            process_request=_request_checker(capture.directory),
            compression=None,
            ping_interval=PING_INTERVAL_S,
            ping_timeout=PING_TIMEOUT_S,
            close_timeout=2,
            max_size=MAX_CLIENT_MESSAGE,
            write_limit=2**18,
        ) as server:
            bound = server.sockets[0].getsockname()[1]
            log.info("replay: listening on ws://%s:%s%s", host, bound, ENDPOINT)
            if ready is not None:
                ready(bound)
            await stop.wait()
            log.info("replay: shutting down")
    finally:
        follower.cancel()


def _serve_capture(
    capture: Capture, host: str, port: int, speed: float, ready: Callable[[int], None] | None
) -> None:
    if speed < 0:
        raise ValueError("speed must be >= 0")
    try:
        asyncio.run(_run(capture, host, port, speed, ready))
    except KeyboardInterrupt:
        pass


def serve(
    path: str,
    host: str = "127.0.0.1",
    port: int = 6008,
    speed: float = 0.0,
    ready: Callable[[int], None] | None = None,
) -> None:
    """Serve the capture at ``path`` until SIGINT/SIGTERM (or KeyboardInterrupt).

    ``ready`` is called with the bound port once the server listens, so ``port=0`` works
    for tests. Signals can only be caught when this runs in the main thread.
    """
    _serve_capture(Capture.load(path), host, port, speed, ready)


def main(path: str, host: str, port: int, speed: float) -> None:
    """Entry point for ``cannect replay``: load, announce, serve."""
    capture = Capture.load(path)
    url = f"ws://{host}:{port}{ENDPOINT}"
    print(f"replay: serving {path} ({len(capture)} events) on {url}", flush=True)
    _serve_capture(capture, host, port, speed, None)
