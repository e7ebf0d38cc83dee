"""``cannect reports``: preview, send by hand and the delivery log of the scheduled email reports.

``preview`` writes a report without sending it (the HTML with its charts inlined, to open in
a browser; ``--eml`` also the email exactly as it would go out). ``send`` sends now through
the same idempotent path as the scheduler: a period already sent is not sent again unless
``--force``. Bad input exits 2 with a message, an unknown client exits 1.
"""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

import click
import orjson

from .config import ConfigError, get_settings


def _fail(message: str, status: int = 2):
    click.echo(f"error: {message}", err=True)
    sys.exit(status)


def _period(client, period: str | None, end: date | None):
    from services.intelligence.base import utcnow
    from services.reports import periods

    frequency = periods.PERIOD_NAMES[period] if period else (client.report_frequency or "weekly")
    return periods.last_complete(frequency, utcnow()) if end is None else periods.containing(frequency, end)


def _client(session, client_id: int):
    from models import ApiClient

    client = session.get(ApiClient, client_id)
    if client is None:
        _fail(f"no API client {client_id}", 1)
    return client


def _redis():
    import redis

    return redis.Redis.from_url(get_settings().redis_url, socket_timeout=5)


_period_options = [
    click.option("--client", "client_id", type=int, required=True, help="The API client's id."),
    click.option("--period", type=click.Choice(["day", "week"]),
                 help="Default: the client's frequency (week when reports are off)."),
    click.option("--end", type=click.DateTime(["%Y-%m-%d"]),
                 help="A day of the period (UTC): that day, or its Monday-to-Sunday week. Default: the last one ended."),
]


def period_options(func):
    for option in reversed(_period_options):
        func = option(func)
    return func


@click.group()
def reports():
    """Scheduled email reports: preview, send, delivery log."""


@reports.command()
@period_options
@click.option("--out", type=click.Path(dir_okay=False, writable=True), required=True, help="The HTML file to write.")
@click.option("--eml", type=click.Path(dir_okay=False, writable=True), help="Also write the email (.eml) here.")
def preview(client_id, period, end, out, eml):
    """Write a client's report without sending it."""
    from services.db import session_scope
    from services.reports import charts, compose, content, delivery

    try:
        settings = get_settings()
        with session_scope() as session:
            client = _client(session, client_id)
            chosen = _period(client, period, end.date() if end else None)
            report = content.gather(session, _redis(), client, chosen)
            recipients = list(client.report_emails or []) or ["nobody@example.invalid"]
    except ConfigError as exc:
        _fail(str(exc))
    images = charts.draw(report)
    Path(out).write_text(compose.preview_html(report, images), encoding="utf-8")
    click.echo(f"wrote {out}: {compose.subject(report)}")
    if eml:
        message = compose.build_message(report, settings.reports_from, recipients,
                                        delivery.message_id(client_id, chosen, settings.reports_from), images)
        Path(eml).write_bytes(bytes(message))
        click.echo(f"wrote {eml}")


@reports.command()
@period_options
@click.option("--force", is_flag=True, help="Send again a period already sent, failed or of unknown outcome.")
def send(client_id, period, end, force):
    """Send a client's report now (once per period: see --force)."""
    from services.db import session_scope
    from services.reports import delivery

    try:
        settings = get_settings()
        if not settings.smtp_url:
            _fail("SMTP_URL is not set: reports cannot be sent")
        with session_scope() as session:
            client = _client(session, client_id)
            if not client.report_emails:
                _fail(f"client {client_id} has no report address (cannect clients set-report {client_id} --email ...)")
            chosen = _period(client, period, end.date() if end else None)
            row = delivery.ensure(session, client_id, chosen, settings.reports_from, force=force)
            delivery_id, status = row.id, row.status
        if status not in ("pending", "retry"):
            click.echo(f"delivery {delivery_id} ({chosen.frequency} {chosen.label}) is {status}; not sent again"
                       + (" (--force sends it again)" if status != "sending" else ""))
            sys.exit(0 if status == "sent" else 1)
        outcome = delivery.attempt(session_scope, _redis(), settings, delivery_id)
    except ConfigError as exc:
        _fail(str(exc))
    click.echo(f"delivery {delivery_id} ({chosen.frequency} {chosen.label}): {outcome.result}"
               + (f": {outcome.detail}" if outcome.detail else "")
               + (f"; next attempt in {int(outcome.retry_in)} s by the reports worker" if outcome.retry_in else ""))
    if outcome.result == "retry":
        from tasks.reports import send as send_actor

        send_actor.send_with_options(args=(client_id, chosen.frequency, chosen.start.isoformat()),
                                     delay=int(outcome.retry_in * 1000))
    sys.exit(0 if outcome.result in ("sent", "skipped") else 1)


@reports.command(name="log")
@click.option("--client", "client_id", type=int, help="Only this client's deliveries.")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def log_(client_id, limit, as_json):
    """Deliveries, newest first: period, status, attempts, Message-ID, the server's answer or error."""
    from services.db import session_scope
    from services.reports import delivery

    try:
        with session_scope() as session:
            rows = delivery.delivery_log(session, client_id, limit)
    except ConfigError as exc:
        _fail(str(exc))
    if as_json:
        click.echo(orjson.dumps(rows).decode())
        return
    for row in rows:
        click.echo(f"{row['id']:>6}  client {row['clientId']}  {row['frequency']:<6} {row['periodStart'][:10]}  "
                   f"{row['status']:<9} attempts {row['attempts']}  {row['sentAt'] or row['nextAttemptAt'] or ''}")
        click.echo(f"        {row['messageId']}  to {', '.join(row['recipients']) or '-'}")
        if row["smtpResponse"] or row["lastError"]:
            click.echo(f"        {row['smtpResponse'] or row['lastError']}")
    if not rows:
        click.echo("no report deliveries")
