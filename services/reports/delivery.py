"""Sending a report once per client, frequency and period, and the delivery log.

The row (``report_deliveries``, unique per client, frequency and period) is the unit of work:

- Schedule (:func:`schedule`, the scheduler's ``reports.schedule`` every few minutes and once at
  start): for each active client with reports on, the latest period due (periods.latest_due) is
  inserted ``ON CONFLICT DO NOTHING`` and queued only when it was really inserted, so however
  often the job runs, a period is queued once. The same job queues again rows whose message
  was lost (pending or retry, due for over ``REQUEUE_GRACE_SECONDS``) and settles attempts
  that died (``sending`` past their lease, see below).
- Claim: one UPDATE takes a ``pending`` or ``retry`` row to ``sending`` with a fresh claim
  token and a lease (``LEASE_SECONDS``); a second copy of the message finds nothing to claim.
- Send: the report is built, then sent (services/reports/mailer.py). Just before the message
  itself goes to the server, ``data_started_at`` is set, guarded by the claim token (an attempt
  whose lease was taken away stops here, before sending).
- Settle: accepted -> ``sent`` with the server's answer; refused or not reached -> ``retry``
  after ``RETRY_SCHEDULE[attempts - 1]`` s (the actor sends itself delayed; the schedule job
  catches lost messages), ``failed`` after the last; client revoked or without an address ->
  ``cancelled``.

A crash (worker killed, database away) between the server's "250" and the ``sent`` commit
leaves a ``sending`` row with ``data_started_at`` set. When its lease ends it becomes
``unknown`` and is NOT sent again: the report was most likely delivered, and the rule is "never
twice". The same happens when the connection drops during the hand-over without an answer.
So sending is at most once in those two windows (a message the server never got stays unsent
until someone runs ``cannect reports send --force``; the log shows it), and exactly once
otherwise: a ``sending`` row that died *before* the hand-over (``data_started_at`` NULL) is
safely retried. Every attempt carries the same deterministic Message-ID, so even a forced
resend of a report that did arrive is recognisable as the same message by mail clients.
"""

from __future__ import annotations

import logging
import uuid
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import parseaddr
from typing import Callable

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from cannect.config import parse_smtp_url
from models import ApiClient, ReportDelivery

from . import mailer
from .periods import FREQUENCIES, Period, latest_due

log = logging.getLogger(__name__)

Sessions = Callable[[], AbstractContextManager[Session]]
#: Seconds before attempts 2, 3, ...; the report is given up after the last.
RETRY_SCHEDULE = (60, 300, 1800, 7200, 21600)
#: An attempt owns its row this long (building the report and the SMTP exchange take far less).
LEASE_SECONDS = 600
#: A pending or retry row due this long without being claimed has lost its message: queued again.
REQUEUE_GRACE_SECONDS = 120
ERROR_CHARS = 500


class ReportError(ValueError):
    """A report that cannot be made or sent as asked; the message says why."""


@dataclass(frozen=True)
class Outcome:
    """``sent``, ``retry`` (due again in ``retry_in`` s), ``failed``, ``unknown``, ``cancelled``,
    or ``skipped`` (nothing to claim: sent, being sent, given up, or gone)."""

    result: str
    retry_in: float | None = None
    detail: str | None = None


def _now() -> datetime:
    return datetime.now(timezone.utc)


def sender_domain(sender: str) -> str:
    return parseaddr(sender)[1].rpartition("@")[2].lower() or "cannect.space"


def message_id(client_id: int, period: Period, sender: str) -> str:
    """The same for every attempt at this client's report of this period."""
    return f"<report.{client_id}.{period.frequency}.{period.start:%Y%m%d}@{sender_domain(sender)}>"


_INSERT = text("""
    INSERT INTO report_deliveries (client_id, frequency, period_start, period_end, message_id, next_attempt_at)
    SELECT c.id, :frequency, :start, :end,
           '<report.' || c.id || '.' || :frequency || '.' || :stamp || '@' || :domain || '>', now()
    FROM api_clients c
    WHERE c.is_active AND c.report_frequency = :frequency AND cardinality(c.report_emails) >= 1
      AND c.created_at < :end AND (CAST(:client_id AS int) IS NULL OR c.id = CAST(:client_id AS int))
    ON CONFLICT (client_id, period_start, frequency) DO NOTHING
    RETURNING id""")

#: What a ``reports.send`` message names: (client id, frequency, period start as ISO 8601).
Key = tuple[int, str, str]


def schedule(session: Session, sender: str, hour: int, now: datetime | None = None) -> list[Key]:
    """The scheduler's job: the deliveries to queue now (see the module doc); idempotent."""
    now = now or _now()
    queue: list[int] = []
    for frequency in FREQUENCIES:
        period = latest_due(frequency, now, hour)
        queue += session.execute(_INSERT, {"frequency": frequency, "start": period.start, "end": period.end,
                                           "stamp": f"{period.start:%Y%m%d}", "domain": sender_domain(sender),
                                           "client_id": None}).scalars()
    died = session.execute(text("""
        UPDATE report_deliveries SET updated_at = now(),
            status = CASE WHEN data_started_at IS NULL THEN 'retry' ELSE 'unknown' END,
            next_attempt_at = CASE WHEN data_started_at IS NULL THEN now() END,
            last_error = CASE WHEN data_started_at IS NULL
                THEN 'the attempt died before sending; sent again'
                ELSE 'the attempt died while handing the message to the SMTP server: it may have arrived, '
                     'so it is not sent again (cannect reports send --force resends it)' END
        WHERE status = 'sending' AND next_attempt_at < :now
        RETURNING id, status"""), {"now": now}).all()
    for row in died:
        (log.warning if row.status == "unknown" else log.info)("report delivery %s: attempt died, now %s",
                                                               row.id, row.status)
    queue += [row.id for row in died if row.status == "retry"]
    queue += session.execute(text("""
        UPDATE report_deliveries SET next_attempt_at = :now, updated_at = now()
        WHERE status IN ('pending', 'retry') AND next_attempt_at < :stale AND id <> ALL(CAST(:fresh AS bigint[]))
        RETURNING id"""), {"now": now, "stale": now - timedelta(seconds=REQUEUE_GRACE_SECONDS),
                           "fresh": queue}).scalars()
    rows = session.execute(text("SELECT client_id, frequency, period_start FROM report_deliveries "
                                "WHERE id = ANY(CAST(:ids AS bigint[])) ORDER BY id"), {"ids": sorted(set(queue))})
    return [(row.client_id, row.frequency, row.period_start.isoformat()) for row in rows]


def find(session: Session, client_id: int, frequency: str, period_start: datetime) -> int | None:
    """The id of a client's delivery row for the period starting then (None: there is none)."""
    return session.scalar(select(ReportDelivery.id).where(
        ReportDelivery.client_id == client_id, ReportDelivery.frequency == frequency,
        ReportDelivery.period_start == period_start))


def ensure(session: Session, client_id: int, period: Period, sender: str, force: bool = False) -> ReportDelivery:
    """The client's delivery row for this period, created when missing (for a send by hand);
    ``force`` makes a sent, failed, unknown or cancelled one due again (same Message-ID)."""
    session.execute(text("""
        INSERT INTO report_deliveries (client_id, frequency, period_start, period_end, message_id, next_attempt_at)
        VALUES (:client_id, :frequency, :start, :end, :message_id, now())
        ON CONFLICT (client_id, period_start, frequency) DO NOTHING"""),
        {"client_id": client_id, "frequency": period.frequency, "start": period.start, "end": period.end,
         "message_id": message_id(client_id, period, sender)})
    row = session.scalars(select(ReportDelivery).where(
        ReportDelivery.client_id == client_id, ReportDelivery.frequency == period.frequency,
        ReportDelivery.period_start == period.start).with_for_update()).one()
    if force and row.status in ("sent", "failed", "unknown", "cancelled"):
        row.status, row.next_attempt_at, row.updated_at = "retry", _now(), _now()
        row.last_error = f"sent again by hand (was {row.status})"
        session.flush()
    return row


_CLAIM = text("""
    UPDATE report_deliveries SET status = 'sending', attempts = attempts + 1, claim_token = :token,
        claimed_at = now(), data_started_at = NULL, next_attempt_at = now() + make_interval(secs => :lease),
        updated_at = now()
    WHERE id = :id AND status IN ('pending', 'retry')
    RETURNING id, client_id, frequency, period_start, period_end, message_id, attempts""")
_HANDING_OVER = text("""
    UPDATE report_deliveries SET data_started_at = now(), recipients = :recipients, updated_at = now()
    WHERE id = :id AND claim_token = :token AND status = 'sending' AND next_attempt_at > now()""")
_SETTLE = text("""
    UPDATE report_deliveries SET status = :status, last_error = :error, smtp_response = coalesce(:answer, smtp_response),
        next_attempt_at = :next_at, sent_at = CASE WHEN :status = 'sent' THEN now() ELSE sent_at END,
        recipients = coalesce(CAST(:recipients AS text[]), recipients), updated_at = now()
    WHERE id = :id AND claim_token = :token AND status IN ('sending', 'unknown')""")


def _settle(sessions: Sessions, claimed, token: str, outcome: Outcome, recipients: list[str] | None = None,
            answer: str | None = None) -> Outcome:
    next_at = _now() + timedelta(seconds=outcome.retry_in) if outcome.result == "retry" else None
    with sessions() as session:
        session.execute(_SETTLE, {"id": claimed.id, "token": token, "status": outcome.result,
                                  "error": (outcome.detail or "")[:ERROR_CHARS] or None, "answer": answer,
                                  "next_at": next_at, "recipients": recipients})
    return outcome


def _failure(attempts: int, detail: str) -> Outcome:
    if attempts > len(RETRY_SCHEDULE):
        return Outcome("failed", detail=f"given up after {attempts} attempts: {detail}")
    return Outcome("retry", RETRY_SCHEDULE[attempts - 1], detail)


def attempt(sessions: Sessions, redis, settings, delivery_id: int) -> Outcome:
    """One attempt at one delivery: claim, build, send, settle (see the module doc)."""
    from . import compose, content  # matplotlib and the B2B queries: loaded by the reports worker only

    token = str(uuid.uuid4())
    with sessions() as session:
        claimed = session.execute(_CLAIM, {"id": delivery_id, "token": token, "lease": LEASE_SECONDS}).one_or_none()
    if claimed is None:
        return Outcome("skipped")
    period = Period(claimed.frequency, claimed.period_start, claimed.period_end)
    early: Outcome | None = None
    try:
        with sessions() as session:
            client = session.get(ApiClient, claimed.client_id)
            recipients = list(client.report_emails or []) if client is not None else []
            if client is None or not client.is_active or not recipients:
                early = Outcome("cancelled", detail="the client is revoked or has no report address")
            elif not settings.smtp_url:
                early = _failure(claimed.attempts, "SMTP_URL is not set")
            else:
                report = content.gather(session, redis, client, period)
        if early is not None:
            return _settle(sessions, claimed, token, early)
        message = compose.build_message(report, settings.reports_from, recipients, claimed.message_id)
    except Exception as exc:  # a bug or the database away: settle as a failed attempt, retried later
        log.exception("report delivery %s: building the report failed", delivery_id)
        return _settle(sessions, claimed, token, _failure(claimed.attempts, f"building the report failed: {exc!r}"))

    def handing_over() -> None:
        with sessions() as session:
            if not session.execute(_HANDING_OVER, {"id": delivery_id, "token": token,
                                                   "recipients": recipients}).rowcount:
                raise mailer.NotSent("the attempt lost its claim (lease over) before sending")

    try:
        answer = mailer.send(parse_smtp_url(settings.smtp_url), message, settings.reports_from, recipients,
                             before_data=handing_over)
    except mailer.NotSent as exc:
        log.warning("report delivery %s: attempt %d not sent: %s", delivery_id, claimed.attempts, exc)
        return _settle(sessions, claimed, token, _failure(claimed.attempts, str(exc)), recipients)
    except mailer.Ambiguous as exc:
        log.error("report delivery %s: %s; not sent again", delivery_id, exc)
        return _settle(sessions, claimed, token, Outcome("unknown", detail=str(exc)), recipients)
    log.info("report delivery %s sent to %d recipients: %s", delivery_id, len(recipients), answer)
    return _settle(sessions, claimed, token, Outcome("sent"), recipients, answer)


def view(row: ReportDelivery) -> dict:
    iso = lambda value: value.isoformat() if value else None  # noqa: E731
    return {"id": row.id, "clientId": row.client_id, "frequency": row.frequency,
            "periodStart": iso(row.period_start), "periodEnd": iso(row.period_end), "status": row.status,
            "attempts": row.attempts, "recipients": list(row.recipients or []), "messageId": row.message_id,
            "smtpResponse": row.smtp_response, "lastError": row.last_error,
            "nextAttemptAt": iso(row.next_attempt_at), "sentAt": iso(row.sent_at), "createdAt": iso(row.created_at)}


def delivery_log(session: Session, client_id: int | None = None, limit: int = 50) -> list[dict]:
    """Deliveries newest first, of one client or of all."""
    query = select(ReportDelivery).order_by(ReportDelivery.id.desc()).limit(max(1, min(limit, 1000)))
    if client_id is not None:
        query = query.where(ReportDelivery.client_id == client_id)
    return [view(row) for row in session.scalars(query)]
