"""The Jetstream listener: read the stream, micro-batch it, enqueue, remember where it was.

One process. A reader thread only moves frames from the socket into a bounded queue, so the
socket is drained however slow Redis is for a moment (Jetstream drops consumers whose
outbox fills). The main thread parses, batches by count and by time, enqueues each batch to
``ingest`` and only then saves the cursor. On reconnect or restart it resumes
``LISTENER_REWIND_SECONDS`` before the saved cursor; the ingest side skips what it already
applied (see ``services/ingest``).
"""

from __future__ import annotations

import logging
import queue
import random
import signal
import threading
import time
from collections import Counter
from typing import Callable
from urllib.parse import urlencode

import websocket
from websocket import ABNF

from cannect.config import WANTED_COLLECTIONS, Settings
from services import listener_state
from services.jetstream import Skip, encodes, parse_event

log = logging.getLogger(__name__)

_DISCONNECTED = object()
_BACKOFF_MIN, _BACKOFF_MAX = 0.5, 30.0


class Listener:
    def __init__(self, settings: Settings, redis, send_batch: Callable[[dict], None],
                 resume_from_db: Callable[[], tuple | None] = lambda: None):
        self.settings = settings
        self.redis = redis
        self.send_batch = send_batch
        self.resume_from_db = resume_from_db
        self.stopping = threading.Event()
        self.stats: Counter = Counter()
        self.cursor: int | None = None        # highest time_us enqueued or skipped
        self.last_batch: tuple | None = None  # (conn, seq) of the last batch enqueued
        self._bad_logged = 0
        self._bad_window = 0.0

    # -- lifecycle -----------------------------------------------------------------------

    def run(self) -> None:
        """Listen until stopped, reconnecting with exponential backoff and jitter."""
        saved = listener_state.load(self.redis) or self._state_from_db()
        self.cursor, self.last_batch = saved.cursor, saved.last_batch
        backoff = _BACKOFF_MIN
        while not self.stopping.is_set():
            conn = max(time.time_ns() // 1000, (self.last_batch[0] + 1) if self.last_batch else 0)
            started = time.monotonic()
            try:
                self._connection(conn)
            except (OSError, websocket.WebSocketException) as exc:
                log.warning("listener: connection %s failed: %s", conn, exc)
            except Exception:
                log.exception("listener: connection %s failed", conn)
            if self.stopping.is_set():
                break
            if time.monotonic() - started > 30:
                backoff = _BACKOFF_MIN
            delay = backoff * (0.5 + random.random())
            log.warning("listener: disconnected; reconnecting in %.1fs", delay)
            self.stopping.wait(delay)
            backoff = min(backoff * 2, _BACKOFF_MAX)

    def stop(self, *_) -> None:
        self.stopping.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def _state_from_db(self) -> listener_state.SavedState:
        """Without a saved cursor (Redis was wiped), resume from what the index last applied."""
        applied = self.resume_from_db()
        return listener_state.SavedState(cursor=applied[2], last_batch=tuple(applied[:2])) if applied \
            else listener_state.SavedState(cursor=None, last_batch=None)

    # -- one connection ------------------------------------------------------------------

    def subscribe_url(self, cursor: int | None) -> str:
        params = [("wantedCollections", c) for c in WANTED_COLLECTIONS]
        if cursor is not None:
            params.append(("cursor", max(0, cursor - int(self.settings.listener_rewind_seconds * 1_000_000))))
        return f"{self.settings.jetstream_url}?{urlencode(params)}"

    def _connection(self, conn: int) -> None:
        """Stream one connection, batching and enqueuing, until it closes or we stop."""
        url = self.subscribe_url(self.cursor)
        log.info("listener: connecting to %s", url)
        ws = websocket.create_connection(url, timeout=60, enable_multithread=True, skip_utf8_validation=True)
        frames: queue.Queue = queue.Queue(maxsize=100_000)
        reader = threading.Thread(target=self._read, args=(ws, frames), name="jetstream-reader", daemon=True)
        reader.start()
        batch = _Batch(conn, self.last_batch)
        deadline = time.monotonic() + self.settings.ingest_batch_ms / 1000
        try:
            while not self.stopping.is_set():
                try:
                    frame = frames.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    frame = None
                if frame is _DISCONNECTED:
                    break
                if frame is not None:
                    self._take(frame, batch)
                if len(batch.events) >= self.settings.ingest_batch_size or time.monotonic() >= deadline:
                    self._flush(batch)
                    deadline = time.monotonic() + self.settings.ingest_batch_ms / 1000
        finally:
            ws.close()
        self._flush(batch)

    def _read(self, ws, frames: queue.Queue) -> None:
        """Frames go on as bytes, undecoded: a text frame that is not UTF-8 is then one
        rejected event (``parse_event`` checks), not a decode error that drops the connection
        and, on reconnect, meets the same frame again."""
        try:
            while not self.stopping.is_set():
                opcode, data = ws.recv_data()
                if opcode == ABNF.OPCODE_CLOSE:
                    break
                frames.put(data)
        except Exception as exc:  # closed by either side
            if not self.stopping.is_set():
                log.warning("listener: socket closed: %s", exc)
        finally:
            frames.put(_DISCONNECTED)

    def _take(self, frame, batch: "_Batch") -> None:
        self.stats["seen"] += 1
        event = parse_event(frame, self.settings.max_event_bytes)
        if not isinstance(event, Skip) and not encodes(event):
            # parse_event's output always encodes; should that ever fail, the event is
            # dropped here, alone, rather than failing its whole batch at enqueue time (and
            # again after every reconnect from the same cursor).
            event = Skip("rejected", "unencodable", event["t"], event["did"],
                         f"{event.get('col')}/{event.get('rkey')}" if event["k"] == "commit" else None)
        if isinstance(event, Skip):
            self.stats[event.outcome] += 1
            self.stats[f"{event.outcome}:{event.reason}"] += 1
            if event.outcome == "rejected":
                self._log_bad(event)
            if event.time_us:
                batch.max_time_us = max(batch.max_time_us or 0, event.time_us)
            return
        self.stats["kept"] += 1
        batch.events.append(event)
        batch.max_time_us = max(batch.max_time_us or 0, event["t"])

    def _flush(self, batch: "_Batch") -> None:
        """Enqueue the batch, then save the cursor: never the other way round."""
        if batch.events:
            self.send_batch(batch.message())
            batch.sent()
            self.last_batch = batch.last_sent
        if batch.max_time_us:
            self.cursor = max(self.cursor or 0, batch.max_time_us)
        if self.stats or self.last_batch:
            listener_state.save(self.redis, self.cursor, self.last_batch, self.stats)
            self.stats.clear()

    def _log_bad(self, skip: Skip) -> None:
        """Log rejected events, at most 20 a minute so garbage cannot flood the logs.

        The line names the event (did, time_us, collection/rkey) and what is wrong with it,
        never its content: a Skip carries only values that passed their syntax checks.
        """
        now = time.monotonic()
        if now - self._bad_window > 60:
            self._bad_window, self._bad_logged = now, 0
        self._bad_logged += 1
        if self._bad_logged <= 20:
            log.warning("listener: rejected event: %s (did=%s time_us=%s record=%s%s)", skip.reason, skip.did,
                        skip.time_us, skip.where, f"; {skip.detail}" if skip.detail else "")


class _Batch:
    """The events of the current micro-batch and the numbering of this connection's batches."""

    def __init__(self, conn: int, prev: tuple | None):
        self.conn, self.prev = conn, prev
        self.seq = 0
        self.events: list[dict] = []
        self.max_time_us: int | None = None
        self.last_sent: tuple | None = prev

    def message(self) -> dict:
        return {"conn": self.conn, "seq": self.seq + 1, "prev": list(self.prev) if self.seq == 0 and self.prev else None,
                "events": self.events}

    def sent(self) -> None:
        self.seq += 1
        self.last_sent = (self.conn, self.seq)
        self.events = []
