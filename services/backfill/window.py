"""Admin kind ``jetstream_replay``: replay a past Jetstream time window through the ingest rules.

For a gap the index missed (the listener down, its cursor lost, batches lost with the
broker's data). Each chunk connects with ``?cursor=`` and the listener's
``wantedCollections``, reads frames until one is more than ``PAST_END_US`` beyond the window
(the stream is nearly, not strictly, time-ordered), ``max_events`` are read, or the stream is
idle for ``idle_seconds``, checks each exactly as the listener does (``parse_event``), then
applies the window's events in stream order under the ingest lock with the ingest's own
``apply_events``, as a backfill page is applied. Never as a batch on the ``ingest`` queue:
its (conn, seq) chain belongs to the live listener, and a batch from elsewhere would
supersede it.

``url`` is admin input the server connects to, so it gets the guards of every URL someone
hands us (services/outbound.py): the configured ``JETSTREAM_URL``'s origin is trusted (the
operator chose it, it may be a local relay); any other must be ``wss://`` and its host must
resolve to public addresses only, checked when the job is asked and again at each connect,
which goes to an address that was checked (DNS cannot answer one thing to the check and another
to the connection). Redirects are never followed and no proxy variable is read.

Creates are applied as backfilled records (docs/indexing-rules.md, "Backfilled records"), so
a replay over an index that has moved on since cannot undo it: a record stored already is
left as it is, one deleted on the stream since stays deleted, and replayed posts and follows
notify nobody (a replayed like or repost of a member's post notifies once: a notification is
unique per cause). Deletes, updates, identity and account events are applied as the stream
applies them (a delete of what is not stored changes nothing). So replaying a window twice
changes nothing.
"""

from __future__ import annotations

import socket
import ssl
from collections import Counter
from datetime import datetime, timezone
from urllib.parse import urlencode, urlsplit

import certifi
import websocket
from websocket import ABNF

from cannect.config import WANTED_COLLECTIONS, get_settings
from services.classify.pipeline import post_ids_of
from services.ingest import lock_index
from services.jetstream import Skip, encodes, parse_event
from services.outbound import Policy, RefusedDestination, make_origin, resolve_checked
from services.realtime import read_changed_events

from .kinds import (CLASSIFY_KEY, REALTIME_KEY, ChunkResult, InvalidParams, register, require_known,
                    yield_to_live_ingest)
from .pages import LOCKED_SLICE, apply_isolated

#: Events up to this far beyond the window's end are read (not applied) before it ends.
PAST_END_US = 1_000_000
#: Bytes of frames one chunk holds at most (then it ends like ``max_events``, the next goes on).
MAX_CHUNK_BYTES = 64 * 1024 * 1024
_MAX_TIME_US = 2**63 - 1
_DEFAULT_PORTS = {"ws": 80, "wss": 443}
#: Addresses an admin-given URL may reach (services/outbound.py's rules; its timeouts are not used here).
_POLICY = Policy(schemes=("wss",))


class JetstreamReplay:
    """``{"cursor_from_us", "cursor_to_us": int µs or ISO datetime, "url"?: ws(s) URL,
    "max_events"?: int (5000), "idle_seconds"?: number (5)}``."""

    name = "jetstream_replay"
    unit = "events"

    def __init__(self, settings=get_settings):
        self.settings = settings

    def validate(self, params: dict) -> dict:
        if not isinstance(params, dict):
            raise InvalidParams("params: must be an object")
        require_known(params, {"cursor_from_us", "cursor_to_us", "url", "max_events", "idle_seconds"})
        start, end = _time_us(params, "cursor_from_us"), _time_us(params, "cursor_to_us")
        if start > end:
            raise InvalidParams("cursor_to_us: the window ends before it starts")
        configured = self.settings().jetstream_url
        url = params.get("url") or configured
        _check_url(url, trusted=_origin(configured))
        max_events, idle = params.get("max_events", 5000), params.get("idle_seconds", 5)
        if type(max_events) is not int or not 1 <= max_events <= 100_000:
            raise InvalidParams("max_events: must be an integer from 1 to 100000")
        if type(idle) not in (int, float) or not 0.1 <= idle <= 300:
            raise InvalidParams("idle_seconds: must be a number from 0.1 to 300")
        return {"cursor_from_us": start, "cursor_to_us": end, "url": url, "max_events": max_events,
                "idle_seconds": idle}

    def plan(self, session, params: dict) -> int | None:
        return None  # how many events a window holds is known only once it is read

    def run_chunk(self, sessions, params: dict, cursor: dict | None) -> ChunkResult:
        settings = self.settings()
        start, stop = cursor["time_us"] if cursor else params["cursor_from_us"], params["cursor_to_us"]
        frames, why = _read(params, start, trusted=_origin(settings.jetstream_url))
        counts, outside, events, last = Counter(), Counter(), [], None
        for frame in frames:
            event = parse_event(frame, settings.max_event_bytes)
            if not isinstance(event, Skip) and not encodes(event):
                event = Skip("rejected", "unencodable", event["t"])
            time_us = event.time_us if isinstance(event, Skip) else event["t"]
            if time_us is not None:
                last = max(last or time_us, time_us)
                if not start <= time_us <= stop:
                    outside["before" if time_us < start else "after"] += 1
                    continue
            if isinstance(event, Skip):
                counts[event.outcome, event.reason] += 1
                continue
            if event["k"] == "commit" and event["op"] == "c":
                event["bf"] = {"as_of": event["t"], "counts": None}
            events.append(event)
        new_ids, failed, changed = self._apply(sessions, events, frozenset(settings.cannabis_tags))
        report = {"read": len(frames), "applied": len(events) - failed, "db_refused": failed,
                  "posts_indexed": len(new_ids), "outside_window": dict(outside), CLASSIFY_KEY: new_ids,
                  REALTIME_KEY: changed}
        for outcome in ("ignored", "rejected"):
            report[outcome] = {reason: n for (kind, reason), n in counts.items() if kind == outcome}
        report = {k: v for k, v in report.items() if v}
        # Done past the window's end, or once the stream has nothing more from this cursor.
        done = why == "past_end" or last is None or (why == "idle" and last < start)
        return ChunkResult(len(frames) - sum(outside.values()), None if done else {"time_us": last + 1}, report)

    @staticmethod
    def _apply(sessions, events: list[dict], tags: frozenset[str]) -> tuple[list[int], int, list[dict]]:
        """Apply in short slices, each between two stream batches (the ingest lock), so a live
        batch never waits for more than one slice."""
        new_ids, failed, changed = [], 0, []
        for at in range(0, len(events), LOCKED_SLICE):
            yield_to_live_ingest()
            with sessions() as session:
                lock_index(session)
                changes, refused = apply_isolated(session, events[at:at + LOCKED_SLICE], tags)
                new_ids += post_ids_of(session, sorted({uri for c in changes for uri in c.indexed_posts}))
            failed += refused
            changed += read_changed_events(changes)
        return new_ids, failed, changed


def _origin(url: str) -> str:
    """``ws[s]://host:port`` with the port explicit ("" when unparsable)."""
    try:
        parts = urlsplit(url)
        return make_origin(parts.scheme, parts.hostname or "", parts.port or _DEFAULT_PORTS.get(parts.scheme, 0))
    except ValueError:
        return ""


def _check_url(url, trusted: str) -> None:
    """:class:`InvalidParams` unless ``url`` is a ws(s) URL the server may connect to (see the module doc)."""
    parts = urlsplit(url) if type(url) is str and len(url) <= _POLICY.max_url_length else None
    if parts is None or parts.scheme not in ("ws", "wss") or not parts.netloc or parts.query or parts.fragment \
            or "\x00" in url or not _origin(url):
        raise InvalidParams("url: must be a ws:// or wss:// URL without a query, such as wss://host/subscribe")
    if parts.username is not None or parts.password is not None:
        raise InvalidParams("url: must not carry a user name or password")
    if _origin(url) == trusted:
        return
    if parts.scheme != "wss":
        raise InvalidParams("url: a server other than JETSTREAM_URL's must be wss://")
    try:
        resolve_checked(parts.hostname, parts.port or 443, _POLICY)
    except RefusedDestination as exc:
        raise InvalidParams(f"url: {exc}") from None
    except socket.gaierror as exc:
        raise InvalidParams(f"url: {exc}") from None


def _connect(url: str, timeout: float, trusted: str) -> websocket.WebSocket:
    """A WebSocket to ``url`` over a socket this module opened to a checked address (public
    ones only, unless ``url`` is on the trusted origin); redirects refused, proxies ignored."""
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or _DEFAULT_PORTS[parts.scheme]
    addresses = resolve_checked(host, port, _POLICY, exempt=_origin(url) == trusted)
    sock, error = None, None
    for address in addresses:
        try:
            sock = socket.create_connection(address[:2], timeout=timeout)
            break
        except OSError as exc:
            error = exc
    if sock is None:
        raise error or OSError(f"{host}: no address answered")
    try:
        sock.settimeout(timeout)
        if parts.scheme == "wss":
            context = ssl.create_default_context(cafile=certifi.where())
            sock = context.wrap_socket(sock, server_hostname=host)
        return websocket.create_connection(url, timeout=timeout, socket=sock, redirect_limit=0,
                                           skip_utf8_validation=True)
    except BaseException:
        sock.close()
        raise


def _read(params: dict, start: int, trusted: str) -> tuple[list[bytes], str]:
    """Frames from ``start``, and why reading stopped: ``past_end``, ``idle``, ``max_events``
    (or :data:`MAX_CHUNK_BYTES` read) or ``closed``. Nothing is parsed here beyond a glance at ``time_us``."""
    query = [("wantedCollections", c) for c in WANTED_COLLECTIONS] + [("cursor", start)]
    url = f"{params['url']}?{urlencode(query)}"
    try:
        ws = _connect(url, params["idle_seconds"], trusted)
    except RefusedDestination as exc:
        raise ConnectionError(f"jetstream replay: refused to connect to {params['url']}: {exc}") from None
    except (OSError, ssl.SSLError, websocket.WebSocketException) as exc:
        raise ConnectionError(f"jetstream replay: cannot connect to {params['url']}: {exc}") from None
    frames, end, size = [], params["cursor_to_us"] + PAST_END_US, 0
    try:
        while len(frames) < params["max_events"] and size < MAX_CHUNK_BYTES:
            try:
                opcode, data = ws.recv_data()
            except websocket.WebSocketTimeoutException:
                return frames, "idle"
            except (OSError, websocket.WebSocketException):
                opcode = ABNF.OPCODE_CLOSE
            if opcode == ABNF.OPCODE_CLOSE:
                if not frames:
                    raise ConnectionError(f"jetstream replay: {params['url']} closed the stream at once")
                return frames, "closed"  # the next chunk reconnects after the last event
            frames.append(data)
            size += len(data)
            if _glance_time(data) > end:
                return frames, "past_end"
        return frames, "max_events"
    finally:
        ws.close()


def _glance_time(frame: bytes) -> int:
    """The frame's ``time_us`` if it is where Jetstream puts it, else 0 (``parse_event`` decides)."""
    at = frame.find(b'"time_us":')
    digits = frame[at + 10:at + 30].lstrip().split(b",")[0].split(b"}")[0].strip() if at >= 0 else b""
    return int(digits) if digits.isdigit() else 0


def _time_us(params: dict, key: str) -> int:
    value = params.get(key)
    if type(value) is int:
        moment = value
    elif type(value) is str:
        try:
            parsed = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
        except ValueError:
            raise InvalidParams(f"{key}: not unix microseconds nor an ISO 8601 datetime") from None
        moment = int((parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).timestamp() * 1_000_000)
    else:
        raise InvalidParams(f"{key}: required, unix microseconds or an ISO 8601 datetime")
    if not 0 < moment <= _MAX_TIME_US:
        raise InvalidParams(f"{key}: out of range")
    return moment


KIND = register(JetstreamReplay())
