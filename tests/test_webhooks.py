"""B2B webhooks: Standard Webhooks signatures, endpoint URL guards, delivery with retries and
give-up, disabling and re-enabling, idempotency, client isolation, event producers, and the
``webhooks`` worker end to end.

The receiver is tests/fakes/webhooks.py: a real local HTTP server that verifies every request's
signature with the ``standardwebhooks`` reference library and fails on demand. PostgreSQL and
Redis are real; the worker test runs ``cannect worker --queues webhooks``.
"""

from __future__ import annotations

import base64
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from itertools import count

import pytest
import redis as redis_lib
from sqlalchemy import text
from sqlalchemy.orm import Session
from standardwebhooks.webhooks import Webhook

from cannect.config import ConfigError, get_settings, load_settings
from conftest import JWT_SECRET
from fakes.webhooks import WebhookReceiver
from harness import System
from services import db
from services.outbound import GuardedClient, Policy
from services.status import queue_depths
from services.webhooks import delivery, endpoints, events, signing
from services.webhooks.endpoints import EndpointNotFound, InvalidEndpoint

_serial = count(1)


@pytest.fixture
def receiver():
    with WebhookReceiver() as server:
        yield server


@pytest.fixture
def webhook_environ(receiver):
    return {"WEBHOOK_INSECURE_TEST_ORIGINS": receiver.origin, "WEBHOOK_RETRY_SCHEDULE": "0.2,0.2",
            "WEBHOOK_TIMEOUT_SECONDS": "2", "WEBHOOK_MAX_RESPONSE_BYTES": "4096"}


@pytest.fixture
def settings(monkeypatch, db_url, redis_url, webhook_environ):
    """The process settings (as a worker reads them), with the receiver allowed."""
    for name, value in {"DATABASE_URL": db_url, "REDIS_URL": redis_url, "JWT_SECRET": JWT_SECRET,
                        **webhook_environ}.items():
        monkeypatch.setenv(name, value)
    for cached in (get_settings, db.get_engine, db._session_factory):
        cached.cache_clear()
    yield get_settings()
    db.get_engine().dispose()
    for cached in (get_settings, db.get_engine, db._session_factory):
        cached.cache_clear()


@pytest.fixture
def sessions(engine):
    @contextmanager
    def scope():
        with Session(engine, expire_on_commit=False) as session, session.begin():
            yield session
    return scope


@pytest.fixture
def http(settings):
    client = GuardedClient(endpoints.policy(settings))
    yield client
    client.close()


def add_client(sessions, name: str) -> int:
    from services.b2b import clients

    with sessions() as session:
        return clients.create(session, f"{name}-{next(_serial)}", "growth")[0]["id"]


def add_endpoint(sessions, settings, receiver, client_id: int, event_types=("high_intent_post",), **options):
    url = options.pop("url", None) or receiver.url()
    with sessions() as session:
        view, secret = endpoints.create(session, client_id, settings, url, list(event_types), **options)
    receiver.trust(url, secret)
    return view, secret


def add_post(sessions, intent: int | None = 80, brand: str | None = None, cannabis: bool = True) -> int:
    n = next(_serial)
    now = datetime.now(timezone.utc)
    with sessions() as session:
        post_id = session.execute(text(
            "INSERT INTO posts (uri, cid, author_did, text, created_at, sort_at, indexed_time_us) "
            "VALUES (:u, :c, 'did:plc:author', :t, :n, :n, 1) RETURNING id"),
            {"u": f"at://did:plc:author/app.bsky.feed.post/{n}", "c": f"cid{n}", "t": f"where to buy {n}",
             "n": now}).scalar()
        session.execute(text(
            "INSERT INTO post_classifications (post_id, model_version, purchase_intent, brand_mentioned, "
            "cannabis_related, product_category, region_hint) VALUES (:p, 'test-1', :i, :b, :c, 'flower', 'CA')"),
            {"p": post_id, "i": intent, "b": brand, "c": cannabis})
    return post_id


def emit_test_event(sessions, client_id: int, endpoint_id: int) -> int:
    with sessions() as session:
        return events.send_test(session, client_id, endpoint_id)[0]


def delivery_row(sessions, delivery_id: int):
    with sessions() as session:
        return session.execute(text("SELECT * FROM webhook_deliveries WHERE id = :i"), {"i": delivery_id}).one()


def endpoint_row(sessions, endpoint_id: int):
    with sessions() as session:
        return session.execute(text("SELECT * FROM webhook_endpoints WHERE id = :i"), {"i": endpoint_id}).one()


def make_due(sessions, delivery_id: int) -> None:
    """The next attempt's time has come (instead of waiting for it)."""
    with sessions() as session:
        session.execute(text("UPDATE webhook_deliveries SET next_attempt_at = now() - interval '1 second' "
                             "WHERE id = :i"), {"i": delivery_id})


# -- signatures ------------------------------------------------------------------------------------

def test_signature_matches_the_standard_webhooks_test_vector():
    # The reference library's sign test (standard-webhooks/standard-webhooks, libraries/python).
    assert signing.sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
                        b'{"test": 2432232314}') == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_signed_headers_verify_with_the_reference_library_and_our_verifier():
    secret, old = signing.generate_secret(), signing.generate_secret()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 24
    body = b'{"type":"high_intent_post","data":{"x":1}}'
    headers = signing.headers([secret, old], "msg_abc", body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for key in (secret, old):   # during a rotation, either secret verifies
        assert Webhook(key).verify(body, headers)["data"] == {"x": 1}
        signing.verify(key, headers, body)
    with pytest.raises(signing.InvalidSignature):
        signing.verify(signing.generate_secret(), headers, body)
    with pytest.raises(signing.InvalidSignature):
        signing.verify(secret, headers, body + b" ")
    with pytest.raises(signing.InvalidSignature, match="too far"):
        signing.verify(secret, signing.headers([secret], "msg_abc", body, timestamp=int(time.time()) - 3600), body)
    with pytest.raises(signing.InvalidSecret):
        signing.sign("whsec_not base64!", "msg", 1, b"")


def test_secrets_are_shown_once_and_stored_encrypted(sessions, settings, receiver):
    client = add_client(sessions, "acme")
    view, secret = add_endpoint(sessions, settings, receiver, client)
    row = endpoint_row(sessions, view["id"])
    assert secret.encode() not in bytes(row.secret_encrypted) and secret[6:].encode() not in bytes(row.secret_encrypted)
    assert "secret" not in str(sorted(view))
    with sessions() as session:
        assert "whsec_" not in repr(endpoints.get(session, client, view["id"]))


# -- endpoint URLs ---------------------------------------------------------------------------------

@pytest.mark.parametrize("url, reason", [
    ("http://example.com/hook", "https"),
    ("https://user:pass@example.com/hook", "user name or password"),
    ("https://127.0.0.1/hook", "non-public"),
    ("https://[::1]/hook", "non-public"),
    ("https://10.1.2.3/hook", "non-public"),
    ("https://192.168.0.10/hook", "non-public"),
    ("https://172.16.5.4/hook", "non-public"),
    ("https://169.254.169.254/latest/meta-data/", "non-public"),
    ("https://100.64.0.1/hook", "non-public"),
    ("https://[::ffff:10.0.0.1]/hook", "non-public"),
    ("https://localhost/hook", "non-public"),          # a name resolving to loopback
    ("https://example.com/hook#frag", "fragment"),
    ("https://exa mple.com/hook", "spaces"),
    ("ftp://example.com/hook", "https"),
])
def test_endpoint_urls_must_be_https_to_public_addresses(sessions, settings, url, reason):
    client = add_client(sessions, "acme")
    with sessions() as session, pytest.raises(InvalidEndpoint, match=reason):
        endpoints.create(session, client, settings, url, ["high_intent_post"])
    with sessions() as session:
        assert session.execute(text("SELECT count(*) FROM webhook_endpoints")).scalar() == 0


def test_event_types_and_brands_are_validated(sessions, settings, receiver):
    client = add_client(sessions, "acme")
    for bad in ([], ["high_intent_post", "everything"], None):
        with sessions() as session, pytest.raises(InvalidEndpoint, match="event_types"):
            endpoints.create(session, client, settings, receiver.url(), bad)
    with sessions() as session, pytest.raises(InvalidEndpoint, match="brands"):
        endpoints.create(session, client, settings, receiver.url(), ["brand_mention"], brands=["x" * 101])
    view, _ = add_endpoint(sessions, settings, receiver, client, ["brand_mention"], brands=[" Cookies ", "cookies", "Stiiizy"])
    assert view["brands"] == ["cookies", "stiiizy"]


def test_a_name_that_resolves_to_a_private_address_at_delivery_is_refused(sessions, settings, receiver):
    """DNS may answer differently after registration: the guarded client checks again at connect."""
    client = add_client(sessions, "acme")
    view, _ = add_endpoint(sessions, settings, receiver, client)
    with sessions() as session:
        session.execute(text("UPDATE webhook_endpoints SET url = 'https://hooks.acme.example/in' WHERE id = :i"),
                        {"i": view["id"]})
    rebinding = GuardedClient(Policy(resolve=lambda host, port: [("10.0.0.7", port)], connect_timeout=1,
                                     read_timeout=1))
    delivery_id = emit_test_event(sessions, client, view["id"])
    outcome = delivery.attempt(sessions, rebinding, settings, delivery_id)
    assert outcome.result == "retry" and "non-public" in outcome.error
    assert delivery_row(sessions, delivery_id).status == "failed"
    assert receiver.requests == []


def test_redirects_are_not_followed(sessions, settings, receiver, http):
    client = add_client(sessions, "acme")
    view, secret = add_endpoint(sessions, settings, receiver, client)
    target = receiver.url("target")
    receiver.trust(target, secret)
    receiver.answer(view["url"], 302, location=target)
    delivery_id = emit_test_event(sessions, client, view["id"])
    outcome = delivery.attempt(sessions, http, settings, delivery_id)
    assert outcome.result == "retry" and outcome.status_code == 302
    assert "not followed" in delivery_row(sessions, delivery_id).last_error
    assert receiver.requests == ["/hooks/" + view["url"].rsplit("/", 1)[-1]]


def test_slow_answers_time_out_and_huge_answers_are_capped(sessions, settings, receiver):
    client = add_client(sessions, "acme")
    slow, _ = add_endpoint(sessions, settings, receiver, client)
    chatty, _ = add_endpoint(sessions, settings, receiver, client)
    receiver.answer(slow["url"], 200, stall=4)
    receiver.answer(chatty["url"], 200, body_bytes=20 * 1024 * 1024)
    quick = GuardedClient(endpoints.policy(load_settings(**{**settings.model_dump(), "webhook_timeout_seconds": 1})))
    timed_out = delivery.attempt(sessions, quick, settings, emit_test_event(sessions, client, slow["id"]))
    assert timed_out.result == "retry" and timed_out.error == "timeout"
    capped = delivery.attempt(sessions, quick, settings, emit_test_event(sessions, client, chatty["id"]))
    assert capped.result == "delivered"
    deadline = time.monotonic() + 10
    while not receiver.body_bytes_written and time.monotonic() < deadline:
        time.sleep(0.05)
    assert receiver.body_bytes_written and receiver.body_bytes_written[0] < 20 * 1024 * 1024


# -- delivery, retries, give-up, disabling ---------------------------------------------------------

def test_a_delivery_is_signed_and_carries_the_event(sessions, settings, receiver, http):
    client = add_client(sessions, "acme")
    view, _ = add_endpoint(sessions, settings, receiver, client, ["high_intent_post", "brand_mention"])
    post = add_post(sessions, intent=85, brand="Cookies")
    with sessions() as session:
        ids = events.events_for_classifications(session, [post])
    assert len(ids) == 2
    assert [delivery.attempt(sessions, http, settings, i).result for i in ids] == ["delivered", "delivered"]
    got = {r.payload["type"]: r for r in receiver.at(view["url"])}
    assert set(got) == {"high_intent_post", "brand_mention"}
    intent = got["high_intent_post"].payload
    assert intent["data"]["purchase_intent"] == 85 and intent["data"]["brand"] == "Cookies"
    assert intent["data"]["post"]["uri"].startswith("at://did:plc:author/") and intent["timestamp"].endswith("Z")
    row = delivery_row(sessions, ids[0])
    assert row.status == "delivered" and row.attempts == 1 and row.last_status_code == 204
    assert got[row.event_type].message_id == row.event_id and row.event_id.startswith("msg_")


def test_only_matching_events_reach_each_endpoint(sessions, settings, receiver):
    acme = add_client(sessions, "acme")
    intent_only, _ = add_endpoint(sessions, settings, receiver, acme, ["high_intent_post"])
    cookies_only, _ = add_endpoint(sessions, settings, receiver, acme, ["brand_mention"], brands=["cookies"])
    any_brand, _ = add_endpoint(sessions, settings, receiver, acme, ["brand_mention"])
    posts = [add_post(sessions, intent=90), add_post(sessions, intent=69, brand="COOKIES"),
             add_post(sessions, intent=None, brand="Stiiizy"), add_post(sessions, intent=99, cannabis=False)]
    with sessions() as session:
        events.events_for_classifications(session, posts)
        per_endpoint = dict(session.execute(text(
            "SELECT endpoint_id, array_agg(event_type ORDER BY id) FROM webhook_deliveries GROUP BY 1")).all())
    assert per_endpoint == {intent_only["id"]: ["high_intent_post"], cookies_only["id"]: ["brand_mention"],
                            any_brand["id"]: ["brand_mention", "brand_mention"]}


def test_an_event_emitted_twice_is_queued_once_per_endpoint(sessions, settings, receiver):
    client = add_client(sessions, "acme")
    first, _ = add_endpoint(sessions, settings, receiver, client)
    second, _ = add_endpoint(sessions, settings, receiver, client)
    post = add_post(sessions, intent=95)
    with sessions() as session:
        assert len(events.events_for_classifications(session, [post])) == 2
    with sessions() as session:
        assert events.events_for_classifications(session, [post, post]) == []
        assert events.emit(session, None, "trend_spike", {"name": "x"}) == []  # nobody subscribed
        assert session.execute(text("SELECT count(*) FROM webhook_deliveries")).scalar() == 2


def test_a_delivery_run_twice_is_sent_once(sessions, settings, receiver, http):
    client = add_client(sessions, "acme")
    view, _ = add_endpoint(sessions, settings, receiver, client)
    delivery_id = emit_test_event(sessions, client, view["id"])
    assert delivery.attempt(sessions, http, settings, delivery_id).result == "delivered"
    assert delivery.attempt(sessions, http, settings, delivery_id).result == "skipped"
    assert delivery.attempt(sessions, http, settings, 10**9).result == "skipped"   # gone: done, not retried
    assert len(receiver.at(view["url"])) == 1 and delivery_row(sessions, delivery_id).attempts == 1


def test_a_claimed_delivery_is_not_claimed_again(sessions, settings, receiver):
    """Two copies of a message racing: the second finds nothing due while the first sends."""
    client = add_client(sessions, "acme")
    view, _ = add_endpoint(sessions, settings, receiver, client)
    delivery_id = emit_test_event(sessions, client, view["id"])
    with sessions() as session:
        assert isinstance(delivery.claim(session, settings, delivery_id), delivery.Claimed)
    with sessions() as session:
        assert delivery.claim(session, settings, delivery_id) == delivery.Outcome("skipped")


def test_failures_follow_the_retry_schedule_then_give_up(sessions, settings, receiver, http):
    settings = load_settings(**{**settings.model_dump(), "webhook_retry_schedule": "5,300"})
    client = add_client(sessions, "acme")
    view, _ = add_endpoint(sessions, settings, receiver, client)
    receiver.answer(view["url"], 500, count=None)
    delivery_id = emit_test_event(sessions, client, view["id"])
    now = datetime.now(timezone.utc)
    for attempt, (delay, result) in enumerate([(5, "retry"), (300, "retry"), (None, "given_up")], start=1):
        make_due(sessions, delivery_id)
        with sessions() as session:
            claimed = delivery.claim(session, settings, delivery_id)
        outcome = delivery.send(http, claimed)
        assert outcome.result == "retry" and outcome.status_code == 500
        with sessions() as session:
            settled = delivery.settle(session, settings, claimed, outcome, now)
        row = delivery_row(sessions, delivery_id)
        assert settled.result == result and row.attempts == attempt
        assert row.status == ("failed" if delay else "given_up") and row.last_status_code == 500
        assert row.next_attempt_at == (now + timedelta(seconds=delay) if delay else None)
    assert len(receiver.at(view["url"], delivered_only=False)) == 3
    make_due(sessions, delivery_id)
    assert delivery.attempt(sessions, http, settings, delivery_id).result == "skipped"
    assert endpoint_row(sessions, view["id"]).enabled   # failing for seconds, not days


def test_an_endpoint_failing_for_too_long_is_disabled_with_a_visible_reason(sessions, settings, receiver, http):
    client = add_client(sessions, "acme")
    view, _ = add_endpoint(sessions, settings, receiver, client)
    receiver.answer(view["url"], 503, count=None)
    first = emit_test_event(sessions, client, view["id"])
    assert delivery.attempt(sessions, http, settings, first).result == "retry"
    since = endpoint_row(sessions, view["id"]).failing_since
    assert since is not None
    queued = emit_test_event(sessions, client, view["id"])
    with sessions() as session:   # as if it had been failing for four days
        session.execute(text("UPDATE webhook_endpoints SET failing_since = failing_since - interval '4 days' "
                             "WHERE id = :i"), {"i": view["id"]})
    make_due(sessions, first)
    assert delivery.attempt(sessions, http, settings, first).result == "disabled"
    with sessions() as session:
        seen = endpoints.get(session, client, view["id"])
    assert not seen["enabled"] and seen["disabled_at"] is not None
    assert "Every delivery attempt failed" in seen["disabled_reason"] and "3 days" in seen["disabled_reason"]
    assert "HTTP 503" in seen["disabled_reason"]
    assert delivery_row(sessions, queued).status == "given_up"
    assert delivery.attempt(sessions, http, settings, queued).result == "skipped"
    with sessions() as session:
        assert events.emit(session, None, "high_intent_post", {"post": 1}) == []
        with pytest.raises(InvalidEndpoint, match="disabled"):
            events.send_test(session, client, view["id"])

    receiver.recover(view["url"])
    with sessions() as session:
        again = endpoints.enable(session, client, view["id"])
    assert again["enabled"] and again["disabled_reason"] is None and again["failing_since"] is None
    with sessions() as session:
        [new] = events.emit(session, None, "high_intent_post", {"post": 2})
    assert delivery.attempt(sessions, http, settings, new).result == "delivered"
    assert endpoint_row(sessions, view["id"]).last_success_at is not None


def test_a_success_clears_failing_since(sessions, settings, receiver, http):
    client = add_client(sessions, "acme")
    view, _ = add_endpoint(sessions, settings, receiver, client)
    receiver.answer(view["url"], 500)
    delivery_id = emit_test_event(sessions, client, view["id"])
    assert delivery.attempt(sessions, http, settings, delivery_id).result == "retry"
    assert endpoint_row(sessions, view["id"]).failing_since is not None
    make_due(sessions, delivery_id)
    assert delivery.attempt(sessions, http, settings, delivery_id).result == "delivered"
    assert endpoint_row(sessions, view["id"]).failing_since is None


def test_410_gone_disables_the_endpoint_at_once(sessions, settings, receiver, http):
    client = add_client(sessions, "acme")
    view, _ = add_endpoint(sessions, settings, receiver, client)
    receiver.answer(view["url"], 410)
    delivery_id = emit_test_event(sessions, client, view["id"])
    assert delivery.attempt(sessions, http, settings, delivery_id).result == "disabled"
    row = endpoint_row(sessions, view["id"])
    assert not row.enabled and "410 Gone" in row.disabled_reason
    assert delivery_row(sessions, delivery_id).status == "given_up"


def test_a_rotated_secret_signs_alongside_the_old_one_for_the_overlap(sessions, settings, receiver, http):
    client = add_client(sessions, "acme")
    view, old = add_endpoint(sessions, settings, receiver, client)
    with sessions() as session:
        _, new, until = endpoints.rotate_secret(session, client, view["id"], settings)
    assert new != old and until is not None
    for trusted in (old, new):   # a receiver that has not switched yet, and one that has
        receiver.trust(view["url"], trusted)
        assert delivery.attempt(sessions, http, settings, emit_test_event(sessions, client, view["id"])).result \
            == "delivered"
    with sessions() as session:
        session.execute(text("UPDATE webhook_endpoints SET previous_secret_expires_at = now() - interval '1 s'"))
    receiver.trust(view["url"], old)
    assert delivery.attempt(sessions, http, settings, emit_test_event(sessions, client, view["id"])).status_code == 401
    assert len(receiver.at(view["url"])[-1].signature.split(" ")) == 2


# -- isolation and the delivery log -----------------------------------------------------------------

def test_one_client_never_sees_or_touches_another_clients_endpoints(sessions, settings, receiver, http):
    acme, rival = add_client(sessions, "acme"), add_client(sessions, "rival")
    view, _ = add_endpoint(sessions, settings, receiver, acme)
    assert delivery.attempt(sessions, http, settings, emit_test_event(sessions, acme, view["id"])).result == "delivered"
    calls = [lambda s: endpoints.get(s, rival, view["id"]),
             lambda s: endpoints.update_endpoint(s, rival, view["id"], settings, description="mine"),
             lambda s: endpoints.delete(s, rival, view["id"]),
             lambda s: endpoints.rotate_secret(s, rival, view["id"], settings),
             lambda s: endpoints.enable(s, rival, view["id"]),
             lambda s: endpoints.deliveries(s, rival, view["id"]),
             lambda s: events.send_test(s, rival, view["id"])]
    for call in calls:
        with sessions() as session, pytest.raises(EndpointNotFound):
            call(session)
    with sessions() as session:
        assert endpoints.list_for(session, rival) == []
        assert [e["id"] for e in endpoints.list_for(session, acme)] == [view["id"]]
        assert endpoints.get(session, acme, view["id"])["description"] is None
        [logged] = endpoints.deliveries(session, acme, view["id"])
        assert logged["status"] == "delivered" and logged["event_type"] == events.TEST_EVENT
        # a client-scoped event reaches only that client's endpoints
        rival_view, _ = add_endpoint(sessions, settings, receiver, rival)
        assert events.emit(session, rival, "high_intent_post", {"post": "r"}) != []
        assert session.execute(text("SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = :e "
                                    "AND event_type = 'high_intent_post'"), {"e": view["id"]}).scalar() == 0


def test_the_delivery_log_pages_newest_first_and_filters(sessions, settings, receiver, http):
    client = add_client(sessions, "acme")
    view, _ = add_endpoint(sessions, settings, receiver, client)
    receiver.answer(view["url"], 500)
    ids = [emit_test_event(sessions, client, view["id"]) for _ in range(3)]
    for delivery_id in ids:
        delivery.attempt(sessions, http, settings, delivery_id)
    with sessions() as session:
        page = endpoints.deliveries(session, client, view["id"], limit=2)
        rest = endpoints.deliveries(session, client, view["id"], before_id=page[-1]["id"], limit=2)
        failed = endpoints.deliveries(session, client, view["id"], status="failed")
        with pytest.raises(InvalidEndpoint):
            endpoints.deliveries(session, client, view["id"], status="bogus")
    assert [d["id"] for d in page + rest] == sorted(ids, reverse=True)
    assert [d["id"] for d in failed] == [ids[0]] and failed[0]["last_error"].startswith("HTTP 500")


def test_deleting_an_endpoint_deletes_its_log(sessions, settings, receiver):
    client = add_client(sessions, "acme")
    view, _ = add_endpoint(sessions, settings, receiver, client)
    emit_test_event(sessions, client, view["id"])
    with sessions() as session:
        endpoints.delete(session, client, view["id"])
    with sessions() as session:
        assert session.execute(text("SELECT count(*) FROM webhook_deliveries")).scalar() == 0


# -- trend_spike and sentiment_shift ---------------------------------------------------------------

def test_trend_spikes_are_emitted_once_per_trend_and_day(sessions, settings, receiver):
    client = add_client(sessions, "acme")
    view, _ = add_endpoint(sessions, settings, receiver, client, ["trend_spike"])
    post = add_post(sessions)
    with sessions() as session:
        session.execute(text("""INSERT INTO trends (kind, name, "window", current_count, previous_count, velocity)
            VALUES ('strain', 'Blue Dream', '24h', 40, 10, 2.0), ('hashtag', 'weed', '24h', 12, 11, 0.05),
                   ('brand', 'cookies', '7d', 50, 5, 4.0), ('effect', 'sleepy', '24h', 4, 0, 1.0)"""))
        session.execute(text("INSERT INTO trend_sources (trend_id, post_id, relevance_score) "
                             "SELECT id, :p, 1 FROM trends WHERE name = 'Blue Dream'"), {"p": post})
        created = events.detect_trend_spikes(session, settings)
    with sessions() as session:
        assert events.detect_trend_spikes(session, settings) == []
        [payload] = session.execute(text("SELECT payload FROM webhook_deliveries WHERE id = ANY(:i)"),
                                    {"i": created}).scalars()
    assert payload["type"] == "trend_spike"
    assert {k: payload["data"][k] for k in ("kind", "name", "window", "current_count", "previous_count")} == \
        {"kind": "strain", "name": "Blue Dream", "window": "24h", "current_count": 40, "previous_count": 10}
    assert payload["data"]["sample_posts"][0].startswith("at://")


def test_a_sentiment_shift_is_emitted_from_the_hourly_aggregates(sessions, settings, receiver):
    client = add_client(sessions, "acme")
    add_endpoint(sessions, settings, receiver, client, ["sentiment_shift"])
    now = datetime(2026, 11, 30, 12, 30, tzinfo=timezone.utc)
    hour = now.replace(minute=0)

    def aggregate(hours_ago: int, posts: int, score: float) -> dict:
        start = hour - timedelta(hours=hours_ago)
        return {"s": start, "e": start + timedelta(hours=1), "n": posts, "a": score}

    rows = [aggregate(h, 10, 20.0) for h in range(25, 24 * 8)] + [aggregate(h, 10, -5.0) for h in range(1, 25)]
    with sessions() as session:
        session.execute(text("INSERT INTO time_series_aggregates (period_type, period_start, period_end, total_posts, "
                             "avg_sentiment_score) VALUES ('hour', :s, :e, :n, :a)"), rows)
        [created] = events.detect_sentiment_shift(session, settings, now)
        assert events.detect_sentiment_shift(session, settings, now + timedelta(minutes=20)) == []
        small = load_settings(**{**settings.model_dump(), "webhook_sentiment_shift_points": 30})
        assert events.detect_sentiment_shift(session, small, now + timedelta(days=1)) == []
        payload = session.execute(text("SELECT payload FROM webhook_deliveries WHERE id = :i"), {"i": created}).scalar()
    data = payload["data"]
    assert data["direction"] == "down" and data["delta"] == -25.0 and data["current_posts"] == 240
    assert data["baseline_avg_sentiment"] == 20.0 and data["current_window"]["to"] == "2026-11-30T12:00:00Z"


# -- settings ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides, variable", [
    ({"webhook_retry_schedule": "5,soon"}, "WEBHOOK_RETRY_SCHEDULE"),
    ({"webhook_retry_schedule": "5,-1"}, "WEBHOOK_RETRY_SCHEDULE"),
    ({"webhook_insecure_test_origins": "not a url"}, "WEBHOOK_INSECURE_TEST_ORIGINS"),
    ({"webhook_timeout_seconds": "0"}, "WEBHOOK_TIMEOUT_SECONDS"),
])
def test_bad_webhook_settings_name_the_variable(overrides, variable):
    with pytest.raises(ConfigError) as error:
        load_settings(database_url="postgresql://x/y", redis_url="redis://x", **overrides)
    assert variable in str(error.value)


def test_the_default_retry_schedule_is_standard_webhooks():
    settings = load_settings(database_url="postgresql://x/y", redis_url="redis://x")
    assert settings.webhook_retry_schedule == (5, 300, 1800, 7200, 18000, 36000, 36000)
    assert settings.webhook_insecure_test_origins == ()


# -- the worker end to end --------------------------------------------------------------------------

@pytest.fixture
def worker_system(env, webhook_environ, tmp_path):
    system = System({**env, **webhook_environ}, tmp_path)
    yield system
    system.stop_all()


def wait_for_status(sessions, delivery_id: int, status: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = delivery_row(sessions, delivery_id)
        if row.status == status:
            return row
        time.sleep(0.1)
    raise AssertionError(f"delivery {delivery_id} is {row.status}, not {status}: {row}")


def wait_until_drained(redis_url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if queue_depths(redis_lib.Redis.from_url(redis_url))["webhooks"]["pending"] == 0:
            return
        time.sleep(0.1)
    raise AssertionError("the webhooks queue never drained")


def test_the_worker_delivers_retries_and_gives_up(sessions, settings, receiver, worker_system):
    from tasks.webhooks import after_classification, request

    acme, rival = add_client(sessions, "acme"), add_client(sessions, "rival")
    fine, _ = add_endpoint(sessions, settings, receiver, acme, ["high_intent_post", "brand_mention"])
    flaky, _ = add_endpoint(sessions, settings, receiver, acme)
    broken, _ = add_endpoint(sessions, settings, receiver, rival)
    receiver.answer(flaky["url"], 500, count=2)          # fails twice, then delivered on the last retry
    receiver.answer(broken["url"], 503, count=None)      # given up after 1 + 2 attempts
    post = add_post(sessions, intent=88, brand="Cookies")
    worker_system.start("worker-webhooks", "worker", "--queues", "webhooks", "--processes", "1", "--threads", "4")

    assert after_classification([post]) == 4
    assert after_classification([post]) == 0             # produced twice: queued once
    with sessions() as session:
        by_endpoint = dict(session.execute(text("SELECT endpoint_id, array_agg(id) FROM webhook_deliveries "
                                                "WHERE event_type = 'high_intent_post' GROUP BY 1")).all())
    request(by_endpoint[fine["id"]])                      # a duplicate message: still sent once

    fine_got = receiver.wait_for(fine["url"], 2)
    assert {r.payload["type"] for r in fine_got} == {"high_intent_post", "brand_mention"}
    flaky_row = wait_for_status(sessions, by_endpoint[flaky["id"]][0], "delivered")
    broken_row = wait_for_status(sessions, by_endpoint[broken["id"]][0], "given_up")
    assert flaky_row.attempts == 3 and broken_row.attempts == 3 and broken_row.last_status_code == 503
    assert len(receiver.at(flaky["url"], delivered_only=False)) == 3
    assert len({r.message_id for r in receiver.at(flaky["url"], delivered_only=False)}) == 1
    wait_until_drained(settings.redis_url)   # the duplicate message has run too
    assert len(receiver.at(fine["url"])) == 2
    assert delivery_row(sessions, by_endpoint[fine["id"]][0]).attempts == 1
    assert receiver.errors == []
    assert endpoint_row(sessions, flaky["id"]).failing_since is None
    assert endpoint_row(sessions, broken["id"]).failing_since is not None


# -- the HTTP API (/api/v1/webhooks, API keys) ------------------------------------------------------

@pytest.fixture
def b2b_api(make_api, webhook_environ):
    return make_api(**webhook_environ)


def api_client(tier: str = "growth") -> tuple[int, dict]:
    """A B2B client and the headers of its key."""
    from services.b2b import clients
    from services.db import session_scope

    with session_scope() as session:
        view, key = clients.create(session, f"client-{next(_serial)}", tier)
    return view["id"], {"Authorization": f"Bearer {key}"}


ENDPOINTS = "/api/v1/webhooks/endpoints"


def test_clients_manage_their_endpoints_over_http(b2b_api, receiver, sessions):
    from cannect.config import get_settings

    _, acme = api_client()
    url = receiver.url()
    created = b2b_api.post(ENDPOINTS, json={"url": url, "eventTypes": ["high_intent_post", "brand_mention"],
                                            "brands": ["Cookies"], "description": "CRM"}, headers=acme)
    assert created.status_code == 201, created.get_json()
    endpoint, secret = created.get_json()["endpoint"], created.get_json()["secret"]
    assert secret.startswith("whsec_") and endpoint["brands"] == ["cookies"] and endpoint["enabled"]
    receiver.trust(url, secret)
    path = f"{ENDPOINTS}/{endpoint['id']}"
    assert "secret" not in b2b_api.get(path, headers=acme).get_json()
    assert [e["id"] for e in b2b_api.get(ENDPOINTS, headers=acme).get_json()["endpoints"]] == [endpoint["id"]]
    names = [e["name"] for e in b2b_api.get("/api/v1/webhooks/event-types", headers=acme).get_json()["eventTypes"]]
    assert names == ["high_intent_post", "brand_mention", "sentiment_shift", "trend_spike"]

    changed = b2b_api.patch(path, json={"eventTypes": ["trend_spike"], "brands": None}, headers=acme)
    assert changed.status_code == 200 and changed.get_json()["eventTypes"] == ["trend_spike"]
    assert changed.get_json()["brands"] is None and changed.get_json()["description"] == "CRM"

    sent = b2b_api.post(f"{path}/test", headers=acme)
    assert sent.status_code == 202
    http = GuardedClient(endpoints.policy(get_settings()))
    assert delivery.attempt(sessions, http, get_settings(), sent.get_json()["deliveryId"]).result == "delivered"
    [got] = receiver.at(url)
    assert got.payload["type"] == "webhook.test" and got.message_id == sent.get_json()["eventId"]
    log = b2b_api.get(f"{path}/deliveries", headers=acme).get_json()
    assert [(d["eventType"], d["status"], d["attempts"]) for d in log["deliveries"]] == [("webhook.test", "delivered", 1)]
    assert log["nextBefore"] is None

    rotated = b2b_api.post(f"{path}/rotate-secret", headers=acme).get_json()
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != secret
    assert rotated["previousSecretValidUntil"] is not None

    receiver.answer(url, 410)
    receiver.trust(url, rotated["secret"])
    sent = b2b_api.post(f"{path}/test", headers=acme).get_json()
    assert delivery.attempt(sessions, http, get_settings(), sent["deliveryId"]).result == "disabled"
    shown = b2b_api.get(path, headers=acme).get_json()
    assert not shown["enabled"] and "410 Gone" in shown["disabledReason"] and shown["disabledAt"]
    assert b2b_api.post(f"{path}/test", headers=acme).status_code == 422
    enabled = b2b_api.post(f"{path}/enable", headers=acme).get_json()
    assert enabled["enabled"] and enabled["disabledReason"] is None

    paused = b2b_api.patch(path, json={"enabled": False}, headers=acme).get_json()
    assert not paused["enabled"] and paused["disabledReason"] == "Disabled by the client"
    assert b2b_api.delete(path, headers=acme).status_code == 204
    assert b2b_api.get(path, headers=acme).status_code == 404


@pytest.mark.parametrize("url", ["https://127.0.0.1/hook", "https://169.254.169.254/latest/meta-data/",
                                 "https://10.0.0.1/hook", "https://localhost/hook", "http://example.com/hook",
                                 "https://user:secret@example.com/hook"])
def test_the_api_refuses_urls_the_server_must_not_call(b2b_api, url):
    _, acme = api_client()
    answer = b2b_api.post(ENDPOINTS, json={"url": url, "eventTypes": ["trend_spike"]}, headers=acme)
    assert answer.status_code == 422 and answer.content_type == "application/problem+json"
    assert answer.get_json()["detail"].startswith("url: ")
    assert b2b_api.get(ENDPOINTS, headers=acme).get_json()["endpoints"] == []


def test_bad_bodies_get_clear_errors(b2b_api, receiver):
    _, acme = api_client()
    for body in ({"url": receiver.url(), "eventTypes": ["everything"]}, {"url": receiver.url(), "eventTypes": []},
                 {"url": receiver.url()}, {"url": receiver.url(), "eventTypes": ["trend_spike"], "extra": 1}):
        answer = b2b_api.post(ENDPOINTS, json=body, headers=acme)
        assert answer.status_code == 422, body
    created = b2b_api.post(ENDPOINTS, json={"url": receiver.url(), "eventTypes": ["trend_spike"]}, headers=acme)
    path = f"{ENDPOINTS}/{created.get_json()['endpoint']['id']}"
    assert b2b_api.patch(path, json={"url": None}, headers=acme).status_code == 422
    assert b2b_api.get(f"{path}/deliveries?status=lost", headers=acme).status_code == 422
    assert b2b_api.get(f"{ENDPOINTS}/0", headers=acme).status_code in (404, 422)
    assert b2b_api.get(f"{ENDPOINTS}/1%27%20OR%201=1", headers=acme).status_code == 404


def test_a_client_never_sees_another_clients_webhooks_over_http(b2b_api, receiver):
    _, acme = api_client()
    _, rival = api_client()
    created = b2b_api.post(ENDPOINTS, json={"url": receiver.url(), "eventTypes": ["trend_spike"]}, headers=acme)
    path = f"{ENDPOINTS}/{created.get_json()['endpoint']['id']}"
    assert b2b_api.get(ENDPOINTS, headers=rival).get_json()["endpoints"] == []
    for method, suffix, body in [("get", "", None), ("patch", "", {"description": "mine"}), ("delete", "", None),
                                 ("post", "/rotate-secret", None), ("post", "/enable", None),
                                 ("get", "/deliveries", None), ("post", "/test", None)]:
        answer = getattr(b2b_api, method)(path + suffix, json=body, headers=rival)
        assert answer.status_code == 404, (method, suffix, answer.get_json())
    assert b2b_api.get(path, headers=acme).get_json()["description"] is None


def test_webhooks_need_a_key_and_a_plan_that_includes_them(b2b_api):
    _, starter = api_client("starter")
    assert b2b_api.get(ENDPOINTS).status_code == 401
    assert b2b_api.get(ENDPOINTS, headers={"Authorization": "Bearer cnk_live_nope"}).status_code == 401
    assert b2b_api.get(ENDPOINTS, headers=starter).status_code == 403


def test_old_finished_deliveries_are_pruned_and_unfinished_ones_kept(sessions, settings, receiver, http):
    client = add_client(sessions, "acme")
    view, _ = add_endpoint(sessions, settings, receiver, client)
    done, waiting, recent = (emit_test_event(sessions, client, view["id"]) for _ in range(3))
    for delivery_id in (done, recent):
        assert delivery.attempt(sessions, http, settings, delivery_id).result == "delivered"
    with sessions() as session:
        session.execute(text("UPDATE webhook_deliveries SET created_at = now() - interval '31 days' "
                             "WHERE id IN (:a, :b)"), {"a": done, "b": waiting})
        assert delivery.prune(session, 30, 100) == 1
        left = session.execute(text("SELECT id FROM webhook_deliveries ORDER BY id")).scalars().all()
    assert left == [waiting, recent]
