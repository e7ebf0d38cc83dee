"""Scheduled email reports (services/reports, tasks/reports.py, cannect reports): built from the
B2B API's service functions over seeded posts and aggregates, sent to a real local SMTP server
(aiosmtpd, tests/fakes/smtp.py, with AUTH) and parsed back: HTML and text parts, inline PNG
charts that decode, a CSV whose numbers match the text; the plan decides the sections, a
foreign client's name and usage never appear; a period is sent once however often it is sent
or scheduled; a refused or unreachable server is retried later, logged, and sent once; an
attempt that died, or a connection lost, while handing the message over is not resent (a
server that hangs up after the message, tests/fakes/smtp.py); STARTTLS and implicit TLS with
the certificate checked; the due job queues once; the worker end to end; the CLI (preview,
send, log, set-report); a bad SMTP_URL is a clear configuration error.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import date, datetime, timedelta, timezone

import pytest
import redis as redis_lib
from click.testing import CliRunner
from PIL import Image
from sqlalchemy import text

from cannect.config import ConfigError, get_settings, load_settings
from conftest import JWT_SECRET
from fakes.smtp import FakeSmtp, HangUpSmtp, free_port
from services import db
from services.b2b import clients
from services.b2b.queries import cache
from services.intelligence import timeseries
from services.reports import delivery, mailer, periods
from services.reports.periods import Period
from services.status import queue_depths
from test_b2b_endpoints import add_post, run_jobs
from test_webhooks import sessions  # noqa: F401  (fixture: one transaction per scope)

UTC = timezone.utc
SENDER = "Cannect Reports <reports@cannect.test>"
HOSTILE = '<script>alert("x")</script> & <b>buy</b> now'


@pytest.fixture
def smtp():
    with FakeSmtp() as server:
        yield server


@pytest.fixture
def settings(monkeypatch, db_url, redis_url, smtp):
    """The process settings as the reports worker reads them, sending to the fake relay."""
    for name, value in {"DATABASE_URL": db_url, "REDIS_URL": redis_url, "JWT_SECRET": JWT_SECRET,
                        "SMTP_URL": smtp.url(), "REPORTS_FROM": SENDER, "B2B_CACHE_CHECK_SECONDS": "0"}.items():
        monkeypatch.setenv(name, value)
    for cached in (get_settings, db.get_engine, db._session_factory):
        cached.cache_clear()
    cache.clear()
    yield get_settings()
    db.get_engine().dispose()
    for cached in (get_settings, db.get_engine, db._session_factory):
        cached.cache_clear()
    cache.clear()


@pytest.fixture
def redis(redis_url):
    client = redis_lib.Redis.from_url(redis_url)
    yield client
    client.close()


def the_period(now: datetime) -> tuple[Period, datetime, datetime]:
    """Yesterday-or-today's UTC day holding posts that are also inside the last 24 hours
    (the trends' window): (period, earliest post time, latest post time)."""
    latest = now - timedelta(hours=1)
    period = periods.containing("daily", latest.date())
    return period, max(period.start, now - timedelta(hours=23)), latest


@pytest.fixture
def world(session, settings):
    """Two clients with report addresses (acme: enterprise, rival: starter), posts inside the
    reported day, the intelligence jobs run, and each client's own API calls in the day."""
    now = session.scalar(text("SELECT now()"))
    period, lo, hi = the_period(now)
    at = lambda k: lo + (hi - lo) * k / 8  # noqa: E731  (eight moments inside the day, oldest first)
    for did, handle in (("did:plc:alice", "alice.test"), ("did:plc:bob", "bob.test"), ("did:plc:carol", "carol.test")):
        session.execute(text("INSERT INTO profiles (did, handle) VALUES (:d, :h)"), {"d": did, "h": handle})
    posts = [
        add_post(session, "did:plc:alice", at(1), HOSTILE, product_category="edible", purchase_intent=92,
                 purchase_stage="shopping", region_hint="California", sentiment="positive", sentiment_score=60,
                 effects_mentioned=["sleepy"], brand_mentioned="Kiva", tags=["gummies"], likes=4),
        add_post(session, "did:plc:bob", at(2), "Blue Dream from Cookies is premium", product_category="flower",
                 purchase_intent=80, region_hint="Oregon", sentiment="positive", sentiment_score=80,
                 brand_mentioned="Cookies", strain_mentioned="Blue Dream", effects_mentioned=["relaxed"],
                 tags=["gummies"]),
        add_post(session, "did:plc:carol", at(3), "vape prices are crazy", product_category="vape",
                 purchase_intent=75, region_hint="California", sentiment="negative", sentiment_score=-40,
                 frustrations=["price"], tags=["gummies"]),
        add_post(session, "did:plc:alice", at(4), "sleepy gummies worked", product_category="edible",
                 purchase_intent=40, sentiment="positive", sentiment_score=50, effects_mentioned=["sleepy"]),
        add_post(session, "did:plc:bob", at(5), "just a chill evening", product_category="flower",
                 purchase_intent=10, sentiment="neutral", sentiment_score=0),
        add_post(session, "did:plc:carol", at(6), "edibles before bed", product_category="edible",
                 purchase_intent=55, sentiment="positive", sentiment_score=30, effects_mentioned=["sleepy"]),
    ]
    session.commit()
    run_jobs(session)
    timeseries.recompute_on_demand(session, "week", period.start - timedelta(days=7), period.end + timedelta(days=7))
    session.commit()
    cache.clear()
    ids = {}
    for name, tier in (("Acme Dispensaries", "enterprise"), ("Rival Corp", "starter")):
        ids[name] = clients.create(session, name, tier)[0]["id"]
    session.execute(text("UPDATE api_clients SET report_emails = ARRAY['ops@acme.test', 'ceo@acme.test'], "
                         "report_frequency = 'daily' WHERE id = :i"), {"i": ids["Acme Dispensaries"]})
    session.execute(text("UPDATE api_clients SET report_emails = ARRAY['intel@rival.test'], "
                         "report_frequency = 'weekly' WHERE id = :i"), {"i": ids["Rival Corp"]})
    calls = [(ids["Acme Dispensaries"], "/trends", 200)] * 3 + [(ids["Rival Corp"], "/segments-rival", 500)] * 7
    for client_id, endpoint, status in calls:
        session.execute(text("INSERT INTO api_usage (client_id, endpoint, method, status_code, response_time_ms, "
                             "called_at) VALUES (:c, :e, 'GET', :s, 12, :t)"),
                        {"c": client_id, "e": endpoint, "s": status, "t": at(7)})
    session.commit()
    return {"period": period, "acme": ids["Acme Dispensaries"], "rival": ids["Rival Corp"], "posts": posts}


def send_now(sessions, redis, settings, client_id: int, period: Period, force: bool = False):
    """What ``cannect reports send`` and the ``reports.send`` actor do: the row, then one attempt."""
    with sessions() as session:
        row = delivery.ensure(session, client_id, period, settings.reports_from, force=force)
    return row.id, delivery.attempt(sessions, redis, settings, row.id)


def row_of(sessions, delivery_id: int):
    with sessions() as session:
        return session.execute(text("SELECT * FROM report_deliveries WHERE id = :i"), {"i": delivery_id}).one()


def parts(message):
    """(text, html, {content-id: png bytes}, csv text) of a received report."""
    plain = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    html = message.get_body(("html",)).get_content().replace("\r\n", "\n")
    images = {part["Content-ID"].strip().strip("<>"): part.get_content() for part in message.walk()
              if part.get_content_type() == "image/png"}
    attachments = [part for part in message.iter_attachments() if part.get_content_type() == "text/csv"]
    assert len(attachments) == 1
    return plain, html, images, attachments[0].get_content()


def csv_numbers(body: str) -> dict[tuple[str, str, str], str]:
    rows = list(csv.reader(io.StringIO(body)))
    assert rows[0] == ["section", "item", "metric", "value"]
    return {(s, i, m): v for s, i, m, v in rows[1:]}


# -- the report ------------------------------------------------------------------------------------

def test_a_report_arrives_once_with_text_html_inline_charts_and_a_matching_csv(sessions, settings, redis, smtp, world):
    delivery_id, outcome = send_now(sessions, redis, settings, world["acme"], world["period"])
    assert outcome.result == "sent", outcome
    assert len(smtp.received) == 1
    mail_from, rcpt_tos, _, authenticated = smtp.received[0]
    assert mail_from == "reports@cannect.test" and rcpt_tos == ["ops@acme.test", "ceo@acme.test"] and authenticated
    message = smtp.messages()[0]
    assert message["Message-ID"] == delivery.message_id(world["acme"], world["period"], SENDER)
    assert message["Subject"] == f"Daily Cannect report, {world['period'].label}"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message.get_content_type() == "multipart/mixed"
    plain, html, images, body = parts(message)

    # charts: every PNG decodes and is referenced from the HTML by its Content-ID
    assert set(images) and len(images) == 4
    for cid, png in images.items():
        with Image.open(io.BytesIO(png)) as image:
            image.verify()
        assert f'src="cid:{cid}"' in html
    with Image.open(io.BytesIO(next(iter(images.values())))) as image:
        assert image.format == "PNG" and image.size[0] > 300

    # the numbers: seeded -> text part -> CSV
    numbers = csv_numbers(body)
    expected = {"posts": 6, "high_intent_posts": 3, "positive_posts": 4, "negative_posts": 1, "neutral_posts": 1,
                "unique_authors": 3}
    for metric, value in expected.items():
        assert numbers[("overview", "total", metric)] == str(value)
    assert f"Posts: {numbers[('overview', 'total', 'posts')]}\n" in plain
    assert f"High-intent posts: {numbers[('overview', 'total', 'high_intent_posts')]}\n" in plain
    assert (f"Sentiment: {numbers[('overview', 'total', 'positive_posts')]} positive, "
            f"{numbers[('overview', 'total', 'neutral_posts')]} neutral, "
            f"{numbers[('overview', 'total', 'negative_posts')]} negative") in plain
    hourly = [int(v) for (s, _, m), v in numbers.items() if s == "activity" and m == "posts"]
    assert len(hourly) == 24 and sum(hourly) == 6
    assert numbers[("high_intent", "total", "posts")] == "3"
    assert "HIGH-INTENT POSTS (purchase intent 70+): 3" in plain
    assert numbers[("usage", "total", "calls")] == "3" and "Calls: 3 (0 errors)" in plain
    assert numbers[("usage", "/trends", "calls")] == "3"
    trend = numbers[("trends", "hashtag:gummies", "current_count")]
    assert trend == "3" and "hashtag gummies: 3 posts" in plain
    assert ("opportunities", "edible", "score") in numbers
    score = numbers[("opportunities", "edible", "score")]
    assert f"edible: score {float(score):,.2f}" in plain

    # posts are escaped in the HTML, linked to their bsky.app page, plain in the text part
    assert "<script>" not in html and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;b&gt;buy&lt;/b&gt;" in html
    assert HOSTILE in plain
    assert re.search(r'href="https://bsky\.app/profile/did:plc:alice/post/\w+"', html)

    # the other client: never named, its calls never counted
    for part in (plain, html, body):
        assert "Rival" not in part and "segments-rival" not in part and "rival.test" not in part

    # sending again, by hand or by a duplicate message: nothing more goes out
    again_id, again = send_now(sessions, redis, settings, world["acme"], world["period"])
    assert again_id == delivery_id and again.result == "skipped"
    assert delivery.attempt(sessions, redis, settings, delivery_id).result == "skipped"
    assert len(smtp.received) == 1
    row = row_of(sessions, delivery_id)
    assert row.status == "sent" and row.attempts == 1 and row.smtp_response.startswith("250 ")
    assert "fake-1" in row.smtp_response and row.recipients == ["ops@acme.test", "ceo@acme.test"]
    with sessions() as session:
        logged = delivery.delivery_log(session, world["acme"])
    assert [(d["id"], d["status"]) for d in logged] == [(delivery_id, "sent")]


def test_the_plan_decides_the_sections_and_the_other_client_stays_out(sessions, settings, redis, smtp, world):
    week = periods.containing("weekly", world["period"].start.date())
    _, outcome = send_now(sessions, redis, settings, world["rival"], week)
    assert outcome.result == "sent"
    plain, html, images, body = parts(smtp.messages()[0])
    numbers = csv_numbers(body)
    assert {s for s, _, _ in numbers} == {"overview", "activity", "trends", "usage"}  # starter: no intents, opportunities
    assert "OPPORTUNITIES" not in plain and "HIGH-INTENT" not in plain and "High-intent posts</h2>" not in html
    assert numbers[("overview", "total", "posts")] == "6"  # the week holds the day
    assert numbers[("usage", "total", "calls")] == "7" and numbers[("usage", "total", "errors")] == "7"
    for part in (plain, html, body):
        assert "Acme" not in part and "acme.test" not in part and "/trends," not in part
    assert len(images) == 3


# -- failures and retries --------------------------------------------------------------------------

def test_a_refused_or_unreachable_server_is_retried_later_logged_and_sends_once(sessions, settings, redis, smtp,
                                                                                 world):
    period = world["period"]
    down = load_settings(SMTP_URL=f"smtp://127.0.0.1:{free_port()}?starttls=false&timeout=2", REPORTS_FROM=SENDER)
    delivery_id, outcome = send_now(sessions, redis, down, world["acme"], period)
    assert outcome.result == "retry" and outcome.retry_in == delivery.RETRY_SCHEDULE[0]
    row = row_of(sessions, delivery_id)
    assert row.status == "retry" and row.attempts == 1 and "cannot reach" in row.last_error
    assert row.next_attempt_at > datetime.now(UTC)

    smtp.refuse_data(1)  # the server takes the content, then answers 451: nothing was accepted
    outcome = delivery.attempt(sessions, redis, settings, delivery_id)
    assert outcome.result == "retry" and outcome.retry_in == delivery.RETRY_SCHEDULE[1]
    row = row_of(sessions, delivery_id)
    assert row.status == "retry" and row.attempts == 2 and row.last_error.startswith("message refused: 451")
    assert smtp.refused == 1 and smtp.received == []

    smtp.refuse_recipients(True)
    assert delivery.attempt(sessions, redis, settings, delivery_id).result == "retry"
    assert "every recipient refused" in row_of(sessions, delivery_id).last_error
    smtp.refuse_recipients(False)

    outcome = delivery.attempt(sessions, redis, settings, delivery_id)
    assert outcome.result == "sent"
    assert delivery.attempt(sessions, redis, settings, delivery_id).result == "skipped"
    assert len(smtp.received) == 1
    row = row_of(sessions, delivery_id)
    assert row.status == "sent" and row.attempts == 4 and row.sent_at is not None
    ids = {m["Message-ID"] for m in smtp.messages()}
    assert ids == {delivery.message_id(world["acme"], period, SENDER)}


def test_a_connection_lost_while_handing_over_is_unknown_and_never_resent(sessions, settings, redis, world):
    with HangUpSmtp() as server:
        hanging = load_settings(SMTP_URL=server.url(), REPORTS_FROM=SENDER)
        delivery_id, outcome = send_now(sessions, redis, hanging, world["acme"], world["period"])
        assert outcome.result == "unknown" and "connection lost" in outcome.detail
        assert server.messages_taken == 1
        assert delivery.attempt(sessions, redis, hanging, delivery_id).result == "skipped"
        with sessions() as session:
            assert delivery.schedule(session, SENDER, settings.reports_hour_utc) == []
        assert server.messages_taken == 1
    row = row_of(sessions, delivery_id)
    assert row.status == "unknown" and row.attempts == 1 and row.data_started_at is not None


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
def test_tls_relays_are_used_with_their_certificate_checked(tls):
    import ssl
    from email.message import EmailMessage

    import trustme

    from cannect.config import parse_smtp_url

    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    message = EmailMessage()
    message["Subject"], message["From"], message["To"] = "tls", SENDER, "ops@acme.test"
    message.set_content("over TLS")
    with FakeSmtp(tls=tls, server_context=server_context) as server:
        relay = parse_smtp_url(server.url())
        assert relay.tls == tls and relay.username == server.username
        answer = mailer.send(relay, message, SENDER, ["ops@acme.test"], context=client_context)
        assert answer.startswith("250 ") and server.received[0][3]  # authenticated, inside TLS
        with pytest.raises(mailer.NotSent, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            mailer.send(relay, message, SENDER, ["ops@acme.test"])  # a certificate the system does not trust
        assert len(server.received) == 1


def test_a_report_is_given_up_after_the_last_retry(sessions, settings, redis, smtp, world, monkeypatch):
    monkeypatch.setattr(delivery, "RETRY_SCHEDULE", (0, 0))
    smtp.refuse_data(10)
    delivery_id, outcome = send_now(sessions, redis, settings, world["acme"], world["period"])
    assert outcome.result == "retry"
    assert delivery.attempt(sessions, redis, settings, delivery_id).result == "retry"
    final = delivery.attempt(sessions, redis, settings, delivery_id)
    assert final.result == "failed" and "given up after 3 attempts" in final.detail
    assert delivery.attempt(sessions, redis, settings, delivery_id).result == "skipped"
    assert smtp.received == [] and row_of(sessions, delivery_id).status == "failed"


def test_an_attempt_that_died_while_handing_over_is_not_resent_one_that_died_before_is(sessions, settings, redis,
                                                                                      smtp, world):
    acme, rival = world["acme"], world["rival"]
    day = world["period"]
    with sessions() as session:
        handing = delivery.ensure(session, acme, day, SENDER).id
        before = delivery.ensure(session, rival, day, SENDER).id
        # two workers were killed mid-attempt, after their lease ran out: one after it started
        # handing the message to the server (the 250 may have come), one before
        session.execute(text("UPDATE report_deliveries SET status = 'sending', attempts = 1, claim_token = "
                             "gen_random_uuid(), next_attempt_at = now() - interval '1 second', "
                             "data_started_at = CASE WHEN id = :h THEN now() - interval '11 minutes' END "
                             "WHERE id IN (:h, :b)"), {"h": handing, "b": before})
    with sessions() as session:
        keys = delivery.schedule(session, SENDER, 0, now=datetime.now(UTC))
    assert (rival, "daily", day.start.isoformat()) in keys and (acme, "daily", day.start.isoformat()) not in keys
    assert row_of(sessions, handing).status == "unknown"
    assert "may have arrived" in row_of(sessions, handing).last_error
    assert delivery.attempt(sessions, redis, settings, handing).result == "skipped"
    assert delivery.attempt(sessions, redis, settings, before).result == "sent"
    assert [m["To"] for m in smtp.messages()] == ["intel@rival.test"]

    # an operator who checked that it never arrived sends it again: same Message-ID
    _, outcome = send_now(sessions, redis, settings, acme, day, force=True)
    assert outcome.result == "sent" and len(smtp.received) == 2
    assert smtp.messages()[1]["Message-ID"] == delivery.message_id(acme, day, SENDER)


def test_a_revoked_client_or_one_without_address_is_cancelled(sessions, settings, redis, smtp, world):
    with sessions() as session:
        delivery_id = delivery.ensure(session, world["acme"], world["period"], SENDER).id
        clients.revoke(session, world["acme"])
    assert delivery.attempt(sessions, redis, settings, delivery_id).result == "cancelled"
    assert smtp.received == [] and row_of(sessions, delivery_id).status == "cancelled"


# -- scheduling ------------------------------------------------------------------------------------

def test_periods_and_when_they_fall_due():
    monday = datetime(2026, 11, 30, tzinfo=UTC)
    assert periods.latest_due("daily", monday + timedelta(hours=5, minutes=59), 6).start == monday - timedelta(days=2)
    assert periods.latest_due("daily", monday + timedelta(hours=6), 6).start == monday - timedelta(days=1)
    assert periods.latest_due("weekly", monday + timedelta(hours=6), 6) == Period("weekly", monday - timedelta(days=7),
                                                                                   monday)
    assert periods.latest_due("weekly", monday + timedelta(hours=5), 6).start == monday - timedelta(days=14)
    assert periods.latest_due("weekly", monday + timedelta(days=6, hours=23), 6).start == monday - timedelta(days=7)
    assert periods.containing("weekly", date(2026, 12, 6)).start == monday
    assert periods.containing("daily", date(2026, 12, 6)).label == "Sun 06 Dec 2026"


def test_the_due_job_creates_and_queues_each_period_once(sessions, settings, redis, world):
    from tasks import reports as report_tasks

    with sessions() as session:
        off = clients.create(session, "Quiet Ltd", "growth")[0]["id"]
        session.execute(text("UPDATE api_clients SET report_emails = ARRAY['q@quiet.test'] WHERE id = :i"), {"i": off})
        gone = clients.create(session, "Gone Inc", "growth")[0]["id"]
        session.execute(text("UPDATE api_clients SET report_emails = ARRAY['g@gone.test'], "
                             "report_frequency = 'daily', created_at = now() - interval '30 days' WHERE id = :i"),
                        {"i": gone})
        clients.revoke(session, gone)
        # the seeded clients were created just now: the due periods ended before them
        session.execute(text("UPDATE api_clients SET created_at = now() - interval '30 days'"))
    redis.flushdb()
    report_tasks.schedule()           # the scheduler runs every job once at start ...
    report_tasks.schedule()           # ... and again at its interval
    now = datetime.now(UTC)
    with sessions() as session:
        rows = session.execute(text("SELECT client_id, frequency, period_start, status FROM report_deliveries "
                                    "ORDER BY client_id")).all()
        assert delivery.schedule(session, SENDER, settings.reports_hour_utc) == []
    assert [(r.client_id, r.frequency, r.period_start, r.status) for r in rows] == [
        (world["acme"], "daily", periods.latest_due("daily", now, settings.reports_hour_utc).start, "pending"),
        (world["rival"], "weekly", periods.latest_due("weekly", now, settings.reports_hour_utc).start, "pending")]
    assert queue_depths(redis)["reports"]["pending"] == 2


def test_the_reports_worker_sends_what_the_due_job_queued(sessions, settings, redis, smtp, world, env, tmp_path):
    import time

    from harness import System
    from tasks import reports as report_tasks

    with sessions() as session:
        session.execute(text("UPDATE api_clients SET created_at = now() - interval '30 days'"))
    report_tasks.schedule()
    system = System({**env, "SMTP_URL": smtp.url(), "REPORTS_FROM": SENDER}, tmp_path)
    system.start("worker-reports", "worker", "--queues", "reports", "--processes", "1", "--threads", "2")
    try:
        deadline = time.monotonic() + 120
        while len(smtp.received) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(smtp.received) == 2, system.log("worker-reports")
    finally:
        system.stop_all()
    assert sorted(m["To"] for m in smtp.messages()) == ["intel@rival.test", "ops@acme.test, ceo@acme.test"]
    with sessions() as session:
        assert {d["status"] for d in delivery.delivery_log(session)} == {"sent"}


# -- command line and configuration ----------------------------------------------------------------

def test_preview_writes_the_report_without_sending_and_the_cli_sets_and_logs(settings, smtp, world, tmp_path,
                                                                            sessions):
    from cannect.cli import main

    runner = CliRunner()
    out, eml = tmp_path / "report.html", tmp_path / "report.eml"
    day = world["period"].start.date().isoformat()
    result = runner.invoke(main, ["reports", "preview", "--client", str(world["acme"]), "--period", "day",
                                  "--end", day, "--out", str(out), "--eml", str(eml)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert page.count('src="data:image/png;base64,') == 4 and "cid:" not in page
    assert "&lt;script&gt;" in page and "<script>" not in page
    from email import message_from_bytes, policy

    _, _, images, body = parts(message_from_bytes(eml.read_bytes(), policy=policy.default))
    assert len(images) == 4 and csv_numbers(body)[("overview", "total", "posts")] == "6"
    assert smtp.received == []
    with sessions() as session:
        assert delivery.delivery_log(session) == []  # a preview is no delivery

    result = runner.invoke(main, ["clients", "set-report", str(world["rival"]), "--email", "a@x.test,b@x.test",
                                  "--frequency", "daily"])
    assert result.exit_code == 0 and "daily report to a@x.test, b@x.test" in result.output
    bad = runner.invoke(main, ["clients", "set-report", str(world["rival"]), "--email", "x@y.test\nBcc: z@w.test"])
    assert bad.exit_code == 2 and "not an email address" in bad.output
    none = runner.invoke(main, ["clients", "set-report", str(world["rival"]), "--email", "none"])
    assert none.exit_code == 2 and "at least one address" in none.output
    off = runner.invoke(main, ["clients", "set-report", str(world["rival"]), "--frequency", "off", "--email", "none"])
    assert off.exit_code == 0 and "off report to nobody" in off.output
    assert runner.invoke(main, ["clients", "set-report", "999999", "--frequency", "off"]).exit_code == 1

    sent = runner.invoke(main, ["reports", "send", "--client", str(world["acme"]), "--period", "day", "--end", day])
    assert sent.exit_code == 0 and ": sent" in sent.output, sent.output
    again = runner.invoke(main, ["reports", "send", "--client", str(world["acme"]), "--period", "day", "--end", day])
    assert again.exit_code == 0 and "is sent; not sent again" in again.output
    assert len(smtp.received) == 1
    logged = runner.invoke(main, ["reports", "log", "--client", str(world["acme"])])
    assert logged.exit_code == 0 and "sent" in logged.output and "250 2.0.0 Ok: queued as fake-1" in logged.output


@pytest.mark.parametrize("url, reason", [
    ("http://mail.example.com", "must be an smtp:// or smtps:// URL"),
    ("smtp://user@mail.example.com", "needs both a user and a password"),
    ("smtps://u:hunter2secret@mail.example.com?starttls=true", "starttls applies to smtp:// only"),
    ("smtp://u:hunter2secret@mail.example.com:99999", "bad port"),
    ("smtp://u:hunter2secret@mail.example.com?tls=yes", "unknown options tls"),
])
def test_a_bad_smtp_url_is_a_clear_configuration_error(monkeypatch, url, reason):
    monkeypatch.setenv("SMTP_URL", url)
    with pytest.raises(ConfigError) as caught:
        load_settings(database_url="postgresql://x/y", redis_url="redis://x")
    assert "SMTP_URL:" in str(caught.value) and reason in str(caught.value)
    assert "hunter2secret" not in str(caught.value)


def test_provider_urls_and_the_from_address_are_understood(monkeypatch):
    from cannect.config import parse_smtp_url

    resend = parse_smtp_url("smtps://resend:re_123abc@smtp.resend.com:465")
    assert (resend.host, resend.port, resend.tls, resend.username, resend.password) == \
        ("smtp.resend.com", 465, "implicit", "resend", "re_123abc")
    sendgrid = parse_smtp_url("smtp://apikey:SG.a%2Fb%40c@smtp.sendgrid.net:587")
    assert (sendgrid.tls, sendgrid.username, sendgrid.password) == ("starttls", "apikey", "SG.a/b@c")
    assert "SG.a" not in repr(sendgrid)
    with pytest.raises(ConfigError) as caught:
        load_settings(database_url="postgresql://x/y", redis_url="redis://x", reports_from="not an address")
    assert "REPORTS_FROM:" in str(caught.value)
