"""One attempt of one webhook delivery: claim it, sign it, POST it, settle what the answer means.

The ``webhooks.deliver`` actor calls :func:`attempt`; nothing here holds a database connection
while the receiver answers (claim and settle are two short transactions).

- Claim: one UPDATE takes a delivery that is pending or failed, due (``next_attempt_at`` <=
  now) and whose endpoint is enabled, counts the attempt and pushes ``next_attempt_at`` a lease
  ahead (the time an attempt may take, plus a margin). Two copies of a message therefore send
  once: the second finds nothing due. A worker that dies mid-attempt leaves the delivery due
  again when the lease ends; the sweep finds it.
- Send: the body is the stored payload as JSON, signed with the endpoint's secret (and the
  previous one during a rotation), POSTed through the guarded client of
  ``services/outbound.py``: https and public addresses only (checked again at connect time),
  redirects never followed, ``WEBHOOK_TIMEOUT_SECONDS``, at most
  ``WEBHOOK_MAX_RESPONSE_BYTES`` of the answer read.
- Settle: 2xx is delivered, and clears the endpoint's ``failing_since``. 410 Gone means the
  receiver wants no more: the endpoint is disabled at once (its reason says so). Anything else
  (3xx, 4xx, 5xx, timeout, network, a refused address) is a failure: the next attempt is due
  after ``WEBHOOK_RETRY_SCHEDULE[attempts - 1]`` seconds, and after the last one the delivery is
  given up. An endpoint whose attempts have all failed since ``failing_since`` for longer than
  ``WEBHOOK_DISABLE_AFTER_SECONDS`` is disabled with that reason, and its queued deliveries are
  given up (re-enabling it lets new events through).
"""

from __future__ import annotations

import json
import logging
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable

from sqlalchemy import text
from sqlalchemy.orm import Session

from services.crypto import UnreadableToken, cipher_for
from services.outbound import GuardedClient, RefusedDestination, TimedOut, Unreachable

from . import signing
from .endpoints import disable

log = logging.getLogger(__name__)

Sessions = Callable[[], AbstractContextManager[Session]]
USER_AGENT = "Cannect-Webhooks/1.0"
#: Added to the request timeouts to make the claim's lease.
LEASE_MARGIN_SECONDS = 30
#: A message that arrives at most this early for its delivery is sent again for the due time.
EARLY_TOLERANCE_SECONDS = 10
#: Characters of an error or an answer kept in the delivery log.
ERROR_CHARS = 300


@dataclass(frozen=True)
class Outcome:
    """``delivered``, ``retry`` (due again in ``retry_in`` s), ``given_up``, ``disabled`` (the
    endpoint was disabled by this attempt), ``skipped`` (nothing due: done, not ours, gone) or
    ``early`` (due in ``retry_in`` s: send the message again then)."""

    result: str
    status_code: int | None = None
    error: str | None = None
    retry_in: float | None = None


@dataclass(frozen=True)
class Claimed:
    delivery_id: int
    endpoint_id: int
    event_id: str
    url: str
    body: bytes
    secrets: tuple[str, ...]
    attempts: int


_CLAIM = text("""
    UPDATE webhook_deliveries d
    SET attempts = d.attempts + 1, last_attempt_at = now(), next_attempt_at = now() + make_interval(secs => :lease)
    FROM webhook_endpoints e
    WHERE d.id = :id AND e.id = d.endpoint_id AND e.enabled AND d.status IN ('pending', 'failed')
      AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= now())
    RETURNING d.id, d.endpoint_id, d.event_id, d.payload, d.attempts, e.url, e.secret_encrypted,
              CASE WHEN e.previous_secret_expires_at > now() THEN e.previous_secret_encrypted END AS previous""")
_DUE_IN = text("""
    SELECT extract(epoch FROM d.next_attempt_at - now()) AS due_in FROM webhook_deliveries d
    JOIN webhook_endpoints e ON e.id = d.endpoint_id
    WHERE d.id = :id AND e.enabled AND d.status IN ('pending', 'failed')""")


def claim(session: Session, settings, delivery_id: int) -> Claimed | Outcome:
    lease = 2 * settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS
    row = session.execute(_CLAIM, {"id": delivery_id, "lease": lease}).first()
    if row is None:
        due_in = session.execute(_DUE_IN, {"id": delivery_id}).scalar()
        if due_in is not None and 0 < due_in <= EARLY_TOLERANCE_SECONDS:
            return Outcome("early", retry_in=float(due_in))
        return Outcome("skipped")
    cipher = cipher_for(settings)
    secrets = tuple(cipher.decrypt(blob) for blob in (row.secret_encrypted, row.previous) if blob is not None)
    return Claimed(row.id, row.endpoint_id, row.event_id, row.url, json.dumps(row.payload).encode(), secrets,
                   row.attempts)


def send(http: GuardedClient, claimed: Claimed, timestamp: int | None = None) -> Outcome:
    """POST the signed body; what the answer (or its absence) means."""
    headers = {**signing.headers(claimed.secrets, claimed.event_id, claimed.body, timestamp),
               "Content-Type": "application/json", "User-Agent": USER_AGENT}
    try:
        answer = http.post(claimed.url, claimed.body, headers)
    except RefusedDestination as exc:
        return Outcome("retry", error=f"refused: {exc}")
    except TimedOut:
        return Outcome("retry", error="timeout")
    except Unreachable as exc:
        return Outcome("retry", error=f"network: {exc}")
    if 200 <= answer.status < 300:
        return Outcome("delivered", answer.status)
    if answer.status == 410:
        return Outcome("disabled", 410, "410 Gone")
    excerpt = answer.body[:ERROR_CHARS].decode("utf-8", "replace")
    if 300 <= answer.status < 400:
        error = f"redirect to {answer.headers.get('Location', '?')[:200]} not followed"
    else:
        error = f"HTTP {answer.status}" + (f": {excerpt}" if excerpt.strip() else "")
    return Outcome("retry", answer.status, error)


def settle(session: Session, settings, claimed: Claimed, outcome: Outcome, now: datetime | None = None) -> Outcome:
    """Record the attempt on the delivery and the endpoint; the final outcome (retry may become
    given_up or disabled)."""
    now = now or datetime.now(timezone.utc)
    error = outcome.error[:ERROR_CHARS] if outcome.error else None
    if outcome.result == "delivered":
        session.execute(text("UPDATE webhook_deliveries SET status = 'delivered', delivered_at = :now, "
                             "next_attempt_at = NULL, last_status_code = :code, last_error = NULL WHERE id = :id"),
                        {"now": now, "code": outcome.status_code, "id": claimed.delivery_id})
        session.execute(text("UPDATE webhook_endpoints SET failing_since = NULL, last_success_at = :now WHERE id = :e"),
                        {"now": now, "e": claimed.endpoint_id})
        return outcome
    schedule = settings.webhook_retry_schedule
    retry_in = schedule[claimed.attempts - 1] if claimed.attempts <= len(schedule) else None
    status = "failed" if retry_in is not None and outcome.result == "retry" else "given_up"
    session.execute(text("UPDATE webhook_deliveries SET status = :status, last_status_code = :code, last_error = :error, "
                         "next_attempt_at = :next WHERE id = :id"),
                    {"status": status, "code": outcome.status_code, "error": error, "id": claimed.delivery_id,
                     "next": now + timedelta(seconds=retry_in) if status == "failed" else None})
    failing_since = session.execute(text(
        "UPDATE webhook_endpoints SET failing_since = coalesce(failing_since, :now) WHERE id = :e RETURNING failing_since"),
        {"now": now, "e": claimed.endpoint_id}).scalar()
    if outcome.result == "disabled":
        disable(session, claimed.endpoint_id, f"The endpoint answered 410 Gone on {_stamp(now)}: "
                                              "410 asks the sender to stop. Re-enable it to receive events again.", now)
        return outcome
    limit = timedelta(seconds=settings.webhook_disable_after_seconds)
    if failing_since is not None and now - failing_since >= limit:
        disable(session, claimed.endpoint_id,
                f"Every delivery attempt failed from {_stamp(failing_since)} to {_stamp(now)} (more than "
                f"{_duration(limit)}); the last one: {error or 'error'}. Fix the endpoint, then re-enable it.", now)
        return Outcome("disabled", outcome.status_code, outcome.error)
    if status == "given_up":
        return Outcome("given_up", outcome.status_code, outcome.error)
    return Outcome("retry", outcome.status_code, outcome.error, retry_in)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    if seconds >= 86400 and seconds % 86400 == 0:
        return f"{seconds // 86400} days"
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds // 3600} hours"
    return f"{seconds} seconds"


def attempt(sessions: Sessions, http: GuardedClient, settings, delivery_id: int) -> Outcome:
    """The whole of one attempt of a delivery (claim, send, settle), in two short transactions."""
    with sessions() as session:
        try:
            claimed = claim(session, settings, delivery_id)
        except UnreadableToken:
            log.error("webhook delivery %s: the endpoint's secret cannot be decrypted with the current key",
                      delivery_id)
            raise
    if isinstance(claimed, Outcome):
        return claimed
    outcome = send(http, claimed)
    with sessions() as session:
        outcome = settle(session, settings, claimed, outcome)
    if outcome.result != "delivered":
        log.info("webhook delivery %s (attempt %s) to endpoint %s: %s %s", delivery_id, claimed.attempts,
                 claimed.endpoint_id, outcome.result, outcome.error)
    return outcome


_OVERDUE = text("""
    SELECT id FROM webhook_deliveries
    WHERE status IN ('pending', 'failed') AND next_attempt_at <= now() - make_interval(secs => :grace)
    ORDER BY next_attempt_at LIMIT :limit""")


_PRUNE = text("""
    DELETE FROM webhook_deliveries WHERE id IN (
        SELECT id FROM webhook_deliveries
        WHERE created_at < now() - make_interval(days => :days) AND status IN ('delivered', 'given_up')
        ORDER BY created_at LIMIT :limit)""")


def prune(session: Session, retention_days: int, limit: int) -> int:
    """Delete up to ``limit`` finished deliveries older than the retention (the log's oldest first)."""
    return session.execute(_PRUNE, {"days": retention_days, "limit": limit}).rowcount


def overdue(session: Session, grace_seconds: float, limit: int) -> list[int]:
    """Deliveries due for longer than ``grace_seconds`` (their message was lost or is late)."""
    return list(session.execute(_OVERDUE, {"grace": grace_seconds, "limit": limit}).scalars())
