"""Dramatiq actors, the Jetstream listener and the scheduler.

``dramatiq tasks --queues ...`` imports this package: it configures the broker from the
environment and registers every actor. One module per queue.
"""

from cannect.config import get_settings
from cannect.logs import configure_logging

from .broker import setup_broker

configure_logging()
broker = setup_broker(get_settings())

from . import b2b, backfill, classify, identity, ingest, notify, push, views, webhooks  # noqa: E402  (actors need the broker above)
from . import reports  # noqa: E402,F401  (scheduled email reports)

__all__ = ["b2b", "backfill", "broker", "classify", "identity", "ingest", "notify", "push", "reports", "views", "webhooks"]
