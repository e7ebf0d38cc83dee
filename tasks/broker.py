"""The Dramatiq broker every process shares: Redis, orjson messages, prompt recovery.

Dramatiq's Redis broker requeues a dead worker's unacknowledged messages only during
"maintenance", which runs on about 0.1% of broker calls, and it only learns that a worker
is alive when that worker fetches. So a crashed worker's messages could sit for many
minutes, and a worker busy on long messages could be taken for dead. Each worker process
here runs a small heartbeat thread that, every few seconds, refreshes its heartbeat and
forces maintenance on its queues: a killed worker's messages run again within
``WORKER_HEARTBEAT_TIMEOUT_MS`` plus one beat.

Dramatiq's worker logs a failed message with all its arguments: for an ingest batch, a
thousand events on every retry. :class:`ConciseMessages` makes those lines name the message
instead (actor, message id, batch ``conn/seq`` and event count).
"""

from __future__ import annotations

import functools
import logging
import threading

import dramatiq
import orjson
import redis
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Middleware

from cannect.config import Settings, get_settings

log = logging.getLogger(__name__)


class OrjsonEncoder(dramatiq.Encoder):
    """Messages carry batches of events: orjson is several times faster than json."""

    def encode(self, data):
        return orjson.dumps(data)

    def decode(self, data):
        return orjson.loads(data)


class CannectRedisBroker(RedisBroker):
    """A Redis broker that can refresh its heartbeat and run maintenance on demand."""

    _forced = threading.local()

    def _should_do_maintenance(self, command: str) -> int:
        return 1 if getattr(self._forced, "on", False) else super()._should_do_maintenance(command)

    def beat(self) -> None:
        """Refresh this process's heartbeat and requeue messages held by dead workers."""
        self._forced.on = True
        try:
            for queue in sorted(self.get_declared_queues() | self.get_declared_delay_queues()):
                self.do_qsize(queue)
        finally:
            self._forced.on = False


class Heartbeat(Middleware):
    """Starts the heartbeat thread in each worker process."""

    def __init__(self, interval: float):
        self.interval = interval
        self._stop = threading.Event()

    def after_worker_boot(self, broker, worker):
        self._stop.clear()
        threading.Thread(target=self._run, args=(broker,), name="cannect-heartbeat", daemon=True).start()

    def before_worker_shutdown(self, broker, worker):
        self._stop.set()

    def _run(self, broker: CannectRedisBroker) -> None:
        while not self._stop.wait(self.interval):
            try:
                broker.beat()
            except Exception:  # Redis briefly away: the next beat tries again
                log.warning("broker heartbeat failed", exc_info=True)


def describe_message(message: dramatiq.Message | MessageProxy) -> str:
    """Actor, message id and, for an ingest batch, its place in the stream and size: no events."""
    parts = [f"{message.actor_name}[{message.message_id}]"]
    for arg in message.args:
        if isinstance(arg, dict) and "conn" in arg and "seq" in arg:
            events = arg.get("events")
            size = len(events) if isinstance(events, list) else "?"
            parts.append(f"batch {arg['conn']}/{arg['seq']} ({size} events)")
        else:
            parts.append(f"<{type(arg).__name__}>")
    return " ".join(parts)


class ConciseMessages(logging.Filter):
    """Replaces every message among a log record's arguments by :func:`describe_message`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, (dramatiq.Message, MessageProxy)) for a in record.args):
            record.args = tuple(describe_message(a) if isinstance(a, (dramatiq.Message, MessageProxy)) else a
                                for a in record.args)
        return True


#: The loggers that print whole messages (``Failed to process message %s ...``).
MESSAGE_LOGGERS = ("dramatiq.worker.WorkerThread",)


def install_concise_message_logs() -> None:
    """Put :class:`ConciseMessages` on Dramatiq's loggers (once)."""
    for name in MESSAGE_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, ConciseMessages) for f in logger.filters):
            logger.addFilter(ConciseMessages())


def setup_broker(settings: Settings) -> CannectRedisBroker:
    """Build the broker and make it (and the orjson encoder) Dramatiq's global default."""
    broker = CannectRedisBroker(url=settings.redis_url, heartbeat_timeout=settings.worker_heartbeat_timeout_ms)
    broker.add_middleware(Heartbeat(interval=max(1.0, settings.worker_heartbeat_timeout_ms / 4000)))
    dramatiq.set_encoder(OrjsonEncoder())
    install_concise_message_logs()
    dramatiq.set_broker(broker)
    return broker


@functools.lru_cache(maxsize=1)
def app_redis() -> redis.Redis:
    """The one Redis client of a worker process for the actors' own keys (live stream,
    counters, delivered marks, limits), apart from the broker's connection."""
    return redis.Redis.from_url(get_settings().redis_url, socket_timeout=5)
