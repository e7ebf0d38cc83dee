"""Queue ``reports``: scheduled email reports to B2B clients (``services/reports``).

- Enqueued by: the scheduler's ``reports.schedule`` (every 5 minutes and once at start), which
  creates the delivery row of each client's latest due period (daily after ``REPORTS_HOUR_UTC``,
  weekly on Mondays after it) and queues ``reports.send`` for rows it really created, for rows
  whose message was lost and for attempts that died before sending; and each failed attempt,
  for its next one (delayed). A message names (client id, frequency, period start): the key
  of the delivery row.
- Latency: building one report (a few cached B2B queries and four charts, about a second) and
  one SMTP exchange (``SMTP_URL``'s timeout per step), between short transactions.
- Idempotency: the delivery row, unique per (client, period start, frequency). An attempt
  claims it (pending or retry -> sending) in one UPDATE, so a message run twice sends once;
  an attempt that died while handing the message over is never resent by itself (``unknown``).
- Retries: not Dramatiq's. A refused or unreachable server makes the row ``retry`` after
  60 s, 5 min, 30 min, 2 h, 6 h, then ``failed``; this actor sends itself with that delay.
  Dramatiq retries only errors of our own (database away), a few times.
"""

from __future__ import annotations

import logging
from datetime import datetime

import dramatiq

from cannect.config import get_settings
from services.db import session_scope
from services.reports import delivery

from .broker import app_redis

log = logging.getLogger(__name__)


@dramatiq.actor(queue_name="reports", actor_name="reports.send", max_retries=3, min_backoff=10_000,
                max_backoff=300_000, time_limit=10 * 60_000)
def send(client_id: int, frequency: str, period_start: str) -> None:
    """One attempt at a client's report of the period starting at ``period_start`` (ISO 8601);
    the next attempt is this message again, delayed. A period without a row is done."""
    with session_scope() as session:
        delivery_id = delivery.find(session, client_id, frequency, datetime.fromisoformat(period_start))
    if delivery_id is None:
        return
    outcome = delivery.attempt(session_scope, app_redis(), get_settings(), delivery_id)
    if outcome.result == "retry" and outcome.retry_in is not None:
        send.send_with_options(args=(client_id, frequency, period_start), delay=int(outcome.retry_in * 1000))


@dramatiq.actor(queue_name="reports", actor_name="reports.schedule", max_retries=0, time_limit=60_000)
def schedule() -> None:
    """Scheduled: create and queue the reports now due (idempotent: once per client and period)."""
    settings = get_settings()
    if not settings.smtp_url:
        return
    with session_scope() as session:
        keys = delivery.schedule(session, settings.reports_from, settings.reports_hour_utc)
    for key in keys:
        send.send(*key)
    if keys:
        log.info("reports schedule: %d deliveries queued", len(keys))


#: (actor, seconds between runs) for tasks/scheduler.py.
SCHEDULE = [(schedule, 300)]
