"""Web push: subscription endpoints, delivery through a real local push service, the address
guard, the ``push`` worker end to end, counters, and ``cannect vapid generate``.

The push service is tests/fakes/push.py: it verifies each request's VAPID JWT (PyJWT, with
the key the request names and the app's public key) and decrypts each payload with the
subscriber's private key (http_ece, aes128gcm), as a browser vendor and a browser would.
PostgreSQL and Redis are real; the worker tests run ``dramatiq tasks --queues push``.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
import redis as redis_lib
from click.testing import CliRunner
from sqlalchemy import text

from cannect.config import ConfigError, get_settings, load_settings
from fakes.push import FakePushService, b64url
from harness import System
from services.db import make_engine, session_scope
from services.outbound import GuardedClient, Policy, RefusedDestination, check_url, is_public_address
from services.push import delivery, stats, subscriptions
from services.push.keys import check_vapid_pair, generate_vapid_keys
from test_auth import PASSWORD, assert_problem, bearer, login

ADMIN_TOKEN = "admin-token-" + "z" * 32
CDN = "https://cdn.bsky.app/img"


@pytest.fixture(scope="module")
def vapid():
    return generate_vapid_keys()


@pytest.fixture
def push_service(vapid):
    with FakePushService(vapid_public_key=vapid[0]) as service:
        yield service


@pytest.fixture
def accounts(fake_pds):
    return {name: fake_pds.add_account(f"{name}.test", PASSWORD) for name in ("alice", "bob", "admin")}


@pytest.fixture
def push_environ(vapid, push_service, accounts):
    return {"VAPID_PUBLIC_KEY": vapid[0], "VAPID_PRIVATE_KEY": vapid[1], "VAPID_EMAIL": "mailto:ops@cannect.space",
            "PUSH_INSECURE_TEST_ORIGINS": push_service.origin, "ADMIN_DIDS": accounts["admin"].did,
            "ADMIN_TOKEN": ADMIN_TOKEN, "PUSH_TIMEOUT_SECONDS": "2"}


@pytest.fixture
def api(make_api, push_environ):
    return make_api(**push_environ)


@pytest.fixture
def tokens(api, accounts):
    """Bearer headers of each account (signing in makes it a member)."""
    return {name: bearer(login(api, f"{name}.test").json["accessToken"]) for name in accounts}


@pytest.fixture
def redis(redis_url):
    return redis_lib.Redis.from_url(redis_url)


def subscribe(api, headers, subscriber, **extra):
    return api.post("/api/push/subscribe", json={**subscriber.as_json(), **extra}, headers=headers)


def rows(query: str, **params) -> list:
    with session_scope() as session:
        result = session.execute(text(query), params)
        return result.all() if result.returns_rows else []


def notify(recipient: str, actor: str, type_: str = "like", subject_uri: str | None = None,
           reason_uri: str | None = None, age: float = 0.0, read: bool = False) -> int:
    """A notification row, as the notify step will write it."""
    created = datetime.now(timezone.utc) - timedelta(seconds=age)
    return rows("INSERT INTO notifications (recipient_did, type, actor_did, subject_uri, reason_uri, read, created_at) "
                "VALUES (:r, :t, :a, :s, :reason, :read, :c) RETURNING id", r=recipient, t=type_, a=actor,
                s=subject_uri, reason=reason_uri, read=read, c=created)[0][0]


def add_post(author: str, rkey: str, body: str) -> str:
    uri = f"at://{author}/app.bsky.feed.post/{rkey}"
    now = datetime.now(timezone.utc)
    rows("INSERT INTO posts (uri, cid, author_did, text, created_at, sort_at, indexed_time_us) "
         "VALUES (:u, 'bafyrei' || :k, :a, :t, :n, :n, 1)", u=uri, k=rkey, a=author, t=body, n=now)
    return uri


@pytest.fixture
def send_push(api, db_url, redis):
    """Deliver one (subscription, notification) as the push actor does, and return the outcome."""
    engine = make_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1), pool_size=2,
                         isolation_level="AUTOCOMMIT")
    settings = get_settings()
    http = GuardedClient(subscriptions.endpoint_policy(settings))

    def send_all(pairs: list[tuple[int, int]]) -> list[delivery.Outcome]:
        return delivery.deliver(engine.connect, redis, http, settings,
                                lambda connection, now: delivery.prepare_notifications(connection, settings, pairs, now))

    def send(subscription_id: int, notification_id: int) -> delivery.Outcome:
        [outcome] = send_all([(subscription_id, notification_id)])
        return outcome

    send.all = send_all
    yield send
    engine.dispose()


@pytest.fixture
def alice_subscribed(api, tokens, push_service, accounts):
    """Alice's browser, subscribed; bob has a profile with a name and an avatar."""
    subscriber = push_service.subscriber()
    response = subscribe(api, tokens["alice"], subscriber)
    assert response.status_code == 201, response.json
    rows("UPDATE profiles SET display_name = 'Bob Grows', avatar_cid = 'bafkreiavatar' WHERE did = :d",
         d=accounts["bob"].did)
    return subscriber, response.json["id"]


# -- the endpoints ---------------------------------------------------------------------------------

def test_vapid_public_key_is_served_only_when_push_is_configured(make_api, push_environ, vapid):
    assert make_api(**push_environ).get("/api/push/vapid-public-key").json == {"publicKey": vapid[0]}
    unconfigured = make_api(VAPID_PUBLIC_KEY="", VAPID_PRIVATE_KEY="", VAPID_EMAIL="")
    assert_problem(unconfigured.get("/api/push/vapid-public-key"), 404)


def test_subscribe_stores_it_and_resubscribing_the_endpoint_updates_it(api, tokens, push_service, accounts):
    subscriber = push_service.subscriber()
    assert_problem(subscribe(api, {}, subscriber), 401)
    first = subscribe(api, {**tokens["alice"], "User-Agent": "Firefox/140"}, subscriber)
    assert first.status_code == 201 and first.json["created"] is True
    [stored] = rows("SELECT id, user_did, endpoint, p256dh, auth, user_agent FROM push_subscriptions")
    assert (stored.user_did, stored.endpoint, stored.p256dh, stored.auth, stored.user_agent) == (
        accounts["alice"].did, subscriber.endpoint, subscriber.p256dh, subscriber.auth, "Firefox/140")

    renewed = push_service.subscriber()  # the browser rotated its keys on the same endpoint
    body = {**subscriber.as_json(), "keys": renewed.as_json()["keys"], "userAgent": "Firefox/141"}
    again = api.post("/api/push/subscribe", json=body, headers=tokens["alice"])
    assert again.status_code == 200 and again.json == {"id": stored.id, "endpoint": subscriber.endpoint,
                                                       "created": False}
    [updated] = rows("SELECT id, p256dh, auth, user_agent FROM push_subscriptions")
    assert (updated.id, updated.p256dh, updated.auth, updated.user_agent) == (
        stored.id, renewed.p256dh, renewed.auth, "Firefox/141")

    # Another account signs in on that browser: the endpoint is theirs now.
    assert subscribe(api, tokens["bob"], subscriber).status_code == 200
    assert rows("SELECT user_did FROM push_subscriptions")[0].user_did == accounts["bob"].did


def _bad_point() -> str:
    return b64url(b"\x04" + b"\x01" * 64)  # the right length and prefix, not on the curve


@pytest.mark.parametrize("change, detail", [
    ({"keys": {"p256dh": b64url(b"\x04" + b"\x02" * 63), "auth": b64url(b"a" * 16)}}, None),
    ({"keys": {"p256dh": "_bad_point", "auth": b64url(b"a" * 16)}}, "not a point on the P-256 curve"),
    ({"keys": {"p256dh": "_valid", "auth": b64url(b"a" * 15)}}, None),
    ({"keys": {"p256dh": "_valid", "auth": b64url(b"a" * 17)}}, "16 bytes"),
    ({"keys": {"p256dh": "_valid", "auth": "!!!!!!!!!!!!!!!!!!!!!!"}}, None),
    ({"endpoint": "https://127.0.0.1/push/x"}, "non-public address"),
    ({"endpoint": "https://localhost:8443/push/x"}, "non-public address"),
    ({"endpoint": "https://10.1.2.3/push/x"}, "non-public address"),
    ({"endpoint": "https://169.254.169.254/latest/meta-data"}, "non-public address"),
    ({"endpoint": "https://[::1]/push"}, "non-public address"),
    ({"endpoint": "http://push.example.org/x"}, "must use https"),
    ({"endpoint": "https://user:pw@push.example.org/x"}, "user name or password"),
    ({"endpoint": "https://no-such-host.invalid/x"}, "does not resolve"),
    ({"endpoint": "https://push.example.org/" + "x" * 2100}, None),
    ({"endpoint": "ftp://push.example.org/x"}, None),
    ({"surprise": 1}, None),
])
def test_subscribe_refuses_bad_keys_and_endpoints(api, tokens, push_service, change, detail):
    body = push_service.subscriber().as_json()
    if "keys" in change:
        keys = dict(change["keys"])
        keys["p256dh"] = {"_valid": body["keys"]["p256dh"], "_bad_point": _bad_point()}.get(keys["p256dh"],
                                                                                          keys["p256dh"])
        change = {"keys": keys}
    response = api.post("/api/push/subscribe", json={**body, **change}, headers=tokens["alice"])
    assert_problem(response, 422)
    if detail:
        assert detail in response.json["detail"]
    assert rows("SELECT count(*) FROM push_subscriptions")[0][0] == 0


def test_the_test_origin_setting_is_what_lets_a_local_endpoint_in(make_api, push_environ, tokens, push_service):
    strict = make_api(**{**push_environ, "PUSH_INSECURE_TEST_ORIGINS": ""})
    response = subscribe(strict, tokens["alice"], push_service.subscriber())
    assert_problem(response, 422)
    assert "must use https" in response.json["detail"]


def test_unsubscribe_removes_only_the_members_own(api, tokens, push_service):
    mine, theirs = push_service.subscriber(), push_service.subscriber()
    assert subscribe(api, tokens["alice"], mine).status_code == 201
    assert subscribe(api, tokens["bob"], theirs).status_code == 201
    assert_problem(api.delete("/api/push/subscribe", json={"endpoint": mine.endpoint}), 401)
    assert api.delete("/api/push/subscribe", json={"endpoint": theirs.endpoint},
                      headers=tokens["alice"]).json == {"deleted": False}
    assert api.delete("/api/push/subscribe", json={"endpoint": mine.endpoint},
                      headers=tokens["alice"]).json == {"deleted": True}
    assert [r.endpoint for r in rows("SELECT endpoint FROM push_subscriptions")] == [theirs.endpoint]


def test_a_member_keeps_only_their_newest_subscriptions(make_api, push_environ, push_service):
    api = make_api(**push_environ, PUSH_MAX_SUBSCRIPTIONS_PER_USER="2")
    headers = bearer(login(api, "alice.test").json["accessToken"])
    browsers = [push_service.subscriber() for _ in range(3)]
    for browser in browsers:
        assert subscribe(api, headers, browser).status_code == 201
    assert subscribe(api, headers, browsers[0]).status_code == 201  # was dropped: it is new again
    assert {r.endpoint for r in rows("SELECT endpoint FROM push_subscriptions")} == {
        browsers[2].endpoint, browsers[0].endpoint}


def test_broadcast_is_for_admins_only(api, tokens):
    body = {"title": "Cannect news", "body": "420 meetup tonight"}
    assert_problem(api.post("/api/push/broadcast", json=body), 401)
    assert_problem(api.post("/api/push/broadcast", json=body, headers=tokens["alice"]), 403)
    assert_problem(api.post("/api/push/broadcast", json=body, headers={"X-Admin-Token": "x" * 40}), 403)
    assert_problem(api.post("/api/push/broadcast", json=body,
                            headers={**tokens["alice"], "X-Admin-Token": ADMIN_TOKEN[:-1]}), 403)
    by_member = api.post("/api/push/broadcast", json=body, headers=tokens["admin"])
    by_token = api.post("/api/push/broadcast", json={**body, "url": "/events"}, headers={"X-Admin-Token": ADMIN_TOKEN})
    assert by_member.status_code == by_token.status_code == 202
    assert by_member.json["subscriptions"] == 0 and by_member.json["id"] != by_token.json["id"]
    assert_problem(api.post("/api/push/broadcast", json={**body, "url": "//evil.example"},
                            headers={"X-Admin-Token": ADMIN_TOKEN}), 422)


def test_admin_settings_are_validated():
    with pytest.raises(ConfigError, match="ADMIN_DIDS"):
        load_settings(database_url="postgresql://x/y", redis_url="redis://x", admin_dids="alice.test")
    with pytest.raises(ConfigError, match="ADMIN_TOKEN"):
        load_settings(database_url="postgresql://x/y", redis_url="redis://x", admin_token="short")


# -- delivery --------------------------------------------------------------------------------------

def test_a_like_is_pushed_encrypted_signed_and_ready_to_show(alice_subscribed, accounts, push_service, redis,
                                                             send_push):
    subscriber, subscription_id = alice_subscribed
    alice, bob = accounts["alice"].did, accounts["bob"].did
    post = add_post(alice, "3kpost1", "First harvest of the season #cannabis " + "🌿" * 200)
    notification = notify(alice, bob, "like", subject_uri=post, reason_uri=f"at://{bob}/app.bsky.feed.like/3kl")

    assert send_push(subscription_id, notification).result == "sent"
    [push] = push_service.delivered()
    assert push_service.errors == []
    assert push.claims["aud"] == push_service.origin and push.claims["sub"] == "mailto:ops@cannect.space"
    assert 0 < push.ttl <= 86400 and push.urgency == "low" and push.topic == f"n{notification}"
    payload = push.payload
    assert payload["v"] == 1 and payload["type"] == "like" and payload["id"] == str(notification)
    assert payload["title"] == "Bob Grows liked your post"
    assert payload["body"].startswith("First harvest of the season #cannabis 🌿") and payload["body"].endswith("…")
    assert len(payload["body"]) <= 140
    assert payload["url"] == f"/profile/{alice}/post/3kpost1" and payload["subject"] == post
    assert payload["actor"] == {"did": bob, "handle": "bob.test", "displayName": "Bob Grows",
                                "avatar": f"{CDN}/avatar/plain/{bob}/bafkreiavatar@jpeg"}
    assert rows("SELECT last_used_at FROM push_subscriptions")[0].last_used_at is not None
    figures = stats.read(redis)
    assert figures["sent"] == 1 and figures["latency"]["count"] == 1


def test_a_reply_push_carries_the_reply_and_wakes_the_device(alice_subscribed, accounts, push_service, send_push):
    _, subscription_id = alice_subscribed
    alice, bob = accounts["alice"].did, accounts["bob"].did
    parent = add_post(alice, "3kparent", "What nutrients do you use?")
    reply = add_post(bob, "3kreply", "Compost tea, every week")
    notification = notify(alice, bob, "reply", subject_uri=parent, reason_uri=reply)
    assert send_push(subscription_id, notification).result == "sent"
    [push] = push_service.delivered()
    assert push.urgency == "normal"
    assert (push.payload["title"], push.payload["body"], push.payload["url"]) == (
        "Bob Grows replied to you", "Compost tea, every week", f"/profile/{bob}/post/3kreply")


@pytest.mark.parametrize("status", [404, 410, 400, 401, 403, 413])
def test_dead_subscriptions_are_deleted(alice_subscribed, accounts, push_service, redis, status, send_push):
    subscriber, subscription_id = alice_subscribed
    push_service.answer(subscriber, status)
    outcome = send_push(subscription_id, notify(accounts["alice"].did, accounts["bob"].did))
    assert (outcome.result, outcome.reason) == ("removed", str(status))
    assert rows("SELECT count(*) FROM push_subscriptions")[0][0] == 0
    assert stats.read(redis)["removed"] == {str(status): 1}


def test_an_unsubscribed_browser_is_deleted_on_its_404(alice_subscribed, accounts, push_service, send_push):
    subscriber, subscription_id = alice_subscribed
    push_service.forget(subscriber)
    outcome = send_push(subscription_id, notify(accounts["alice"].did, accounts["bob"].did))
    assert (outcome.result, outcome.reason) == ("removed", "404")


@pytest.mark.parametrize("status, retry_after, expected", [
    (429, "7", 7.0), (429, None, None), (408, None, None), (500, None, None), (502, None, None),
    (503, "120", 120.0), (503, "soon", None),
])
def test_transient_answers_are_retried(alice_subscribed, accounts, push_service, redis, status, retry_after, expected,
                                       send_push):
    subscriber, subscription_id = alice_subscribed
    push_service.answer(subscriber, status, retry_after=retry_after)
    notification = notify(accounts["alice"].did, accounts["bob"].did)
    outcome = send_push(subscription_id, notification)
    assert (outcome.result, outcome.reason, outcome.retry_after) == ("retry", str(status), expected)
    assert rows("SELECT count(*) FROM push_subscriptions")[0][0] == 1
    # The next attempt goes through, once.
    assert send_push(subscription_id, notification).result == "sent"
    assert send_push(subscription_id, notification).reason == "duplicate"
    assert len(push_service.delivered()) == 1
    assert stats.read(redis)["retried"] == {str(status): 1}


def test_retry_after_as_an_http_date_is_honoured():
    later = datetime.now(timezone.utc) + timedelta(seconds=90)
    assert 80 <= delivery.parse_retry_after(format_datetime(later, usegmt=True)) <= 91
    assert delivery.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert delivery.parse_retry_after("99999999999999") == 10**8


def test_a_retry_after_beyond_the_ttl_gives_up(alice_subscribed, accounts, push_service, redis, send_push):
    subscriber, subscription_id = alice_subscribed
    push_service.answer(subscriber, 429, retry_after=str(2 * 86400))
    outcome = send_push(subscription_id, notify(accounts["alice"].did, accounts["bob"].did))
    assert (outcome.result, outcome.reason) == ("failed", "429_beyond_ttl")
    assert stats.read(redis)["failed"] == {"429_beyond_ttl": 1}
    assert stats.recent_failures(redis)[0]["subscription"] == subscription_id


def test_network_failures_and_timeouts_are_retried(alice_subscribed, accounts, push_service, send_push):
    subscriber, subscription_id = alice_subscribed
    alice, bob = accounts["alice"].did, accounts["bob"].did
    push_service.answer(subscriber, 201, stall=4)  # longer than PUSH_TIMEOUT_SECONDS=2
    assert send_push(subscription_id, notify(alice, bob)).reason == "timeout"
    push_service.stop()
    assert send_push(subscription_id, notify(alice, bob)).reason == "network"
    assert rows("SELECT count(*) FROM push_subscriptions")[0][0] == 1


def test_an_oversized_answer_is_not_read_whole(alice_subscribed, accounts, push_service, send_push):
    subscriber, subscription_id = alice_subscribed
    size = 64 * 1024 * 1024
    push_service.answer(subscriber, 500, body_bytes=size)
    outcome = send_push(subscription_id, notify(accounts["alice"].did, accounts["bob"].did))
    assert (outcome.result, outcome.reason) == ("retry", "500")
    deadline = time.monotonic() + 10
    while not push_service.body_bytes_written and time.monotonic() < deadline:
        time.sleep(0.05)
    assert push_service.body_bytes_written[0] < size


def test_redirects_are_not_followed(alice_subscribed, accounts, push_service, send_push):
    subscriber, subscription_id = alice_subscribed
    elsewhere = push_service.subscriber()
    push_service.answer(subscriber, 307, location=elsewhere.endpoint)
    outcome = send_push(subscription_id, notify(accounts["alice"].did, accounts["bob"].did))
    assert (outcome.result, outcome.reason) == ("removed", "redirect")
    assert push_service.requests == 1 and push_service.delivered(elsewhere) == []


@pytest.mark.parametrize("case", ["expired", "deleted", "read", "endpoint changed hands", "no subscription"])
def test_what_is_no_longer_wanted_is_not_sent(alice_subscribed, accounts, push_service, case, send_push):
    _, subscription_id = alice_subscribed
    alice, bob = accounts["alice"].did, accounts["bob"].did
    notification = notify(alice, bob, age=86400 + 5 if case == "expired" else 0, read=case == "read")
    if case == "deleted":
        rows("DELETE FROM notifications")
    elif case == "endpoint changed hands":
        rows("UPDATE push_subscriptions SET user_did = :d", d=bob)
    elif case == "no subscription":
        rows("DELETE FROM push_subscriptions")
    outcome = send_push(subscription_id, notification)
    assert outcome.result == "skipped"
    assert outcome.reason == {"expired": "expired", "deleted": "deleted", "read": "read",
                              "endpoint changed hands": "not_recipient", "no subscription": "no_subscription"}[case]
    assert push_service.requests == 0


def test_one_batch_reads_sends_and_settles_each_push_on_its_own(api, tokens, push_service, accounts, redis,
                                                                 send_push):
    alice, bob = accounts["alice"].did, accounts["bob"].did
    fine, gone, limited = (push_service.subscriber() for _ in range(3))
    ids = [subscribe(api, tokens["alice"], s).json["id"] for s in (fine, gone, limited)]
    push_service.answer(gone, 410)
    push_service.answer(limited, 429, retry_after="30")
    liked, deleted = notify(alice, bob, "like"), notify(alice, bob, "follow")
    rows("DELETE FROM notifications WHERE id = :n", n=deleted)
    pairs = [(ids[0], liked), (ids[1], liked), (ids[2], liked), (ids[0], deleted), (ids[0], liked), (10**9, liked)]

    outcomes = send_push.all(pairs)
    assert [(o.result, o.reason) for o in outcomes] == [
        ("sent", "201"), ("removed", "410"), ("retry", "429"), ("skipped", "deleted"),
        ("skipped", "duplicate"), ("skipped", "no_subscription")]
    assert outcomes[2].retry_after == 30.0
    assert [r.token for r in push_service.delivered()] == [fine.token]
    assert sorted(r.id for r in rows("SELECT id FROM push_subscriptions")) == [ids[0], ids[2]]
    figures = stats.read(redis)
    assert figures["sent"] == 1 and figures["removed"] == {"410": 1} and figures["retried"] == {"429": 1}
    assert figures["skipped"] == {"deleted": 1, "duplicate": 1, "no_subscription": 1}
    assert send_push.all(pairs[:1])[0].reason == "duplicate"   # delivered once, whatever is replayed


def test_one_vapid_signature_serves_a_push_service_until_half_its_validity(alice_subscribed, accounts,
                                                                          push_service, send_push):
    from services.push import keys

    _, subscription_id = alice_subscribed
    alice, bob = accounts["alice"].did, accounts["bob"].did
    for _ in range(3):
        assert send_push(subscription_id, notify(alice, bob)).result == "sent"
    first, second, third = push_service.delivered()
    assert first.claims == second.claims == third.claims   # one signature, verified every time
    assert first.claims["exp"] - time.time() > delivery.VAPID_VALIDITY_SECONDS / 2
    settings = get_settings()
    key = (settings.vapid_private_key, settings.vapid_email, push_service.origin)
    headers, _ = keys._signed[key]
    keys._signed[key] = (headers, time.time() + delivery.VAPID_VALIDITY_SECONDS / 2 - 1)   # half gone
    assert send_push(subscription_id, notify(alice, bob)).result == "sent"
    assert keys._signed[key][0] is not headers and len(push_service.delivered()) == 4   # signed anew, accepted


def test_the_ttl_header_is_what_is_left_of_the_notifications_life(alice_subscribed, accounts, push_service, send_push):
    _, subscription_id = alice_subscribed
    notification = notify(accounts["alice"].did, accounts["bob"].did, age=86400 - 600)
    assert send_push(subscription_id, notification).result == "sent"
    assert 590 <= push_service.delivered()[0].ttl <= 600


@pytest.mark.parametrize("endpoint", ["https://localhost:{port}/push/x", "https://127.0.0.1:{port}/push/x",
                                      "http://localhost:{port}/push/x"])
def test_send_time_checks_refuse_private_endpoints(api, accounts, push_service, endpoint, send_push):
    """A subscription that got in some other way (or whose host now resolves privately) is refused
    at send time: nothing is sent, and it is deleted."""
    subscriber = push_service.subscriber()
    port = push_service.origin.rsplit(":", 1)[1]
    [(subscription_id,)] = rows(
        "INSERT INTO push_subscriptions (user_did, endpoint, p256dh, auth) VALUES (:u, :e, :p, :a) RETURNING id",
        u=accounts["alice"].did, e=endpoint.format(port=port), p=subscriber.p256dh, a=subscriber.auth)
    login(api, "alice.test")  # a member
    outcome = send_push(subscription_id, notify(accounts["alice"].did, accounts["bob"].did))
    assert (outcome.result, outcome.reason) == ("removed", "refused")
    assert push_service.requests == 0
    assert rows("SELECT count(*) FROM push_subscriptions")[0][0] == 0


def test_fan_out_pairs_each_unread_notification_with_its_recipients_subscriptions(api, tokens, push_service, accounts):
    alice, bob = accounts["alice"].did, accounts["bob"].did
    ids = [subscribe(api, tokens["alice"], push_service.subscriber()).json["id"] for _ in range(2)]
    bobs = subscribe(api, tokens["bob"], push_service.subscriber()).json["id"]
    to_alice, to_bob, seen = notify(alice, bob), notify(bob, alice, "follow"), notify(alice, bob, read=True)
    with session_scope() as session:
        pairs = subscriptions.fan_out(session, [to_alice, to_bob, seen])
    assert sorted(pairs) == sorted([(ids[0], to_alice), (ids[1], to_alice), (bobs, to_bob)])


# -- the address guard -----------------------------------------------------------------------------

@pytest.mark.parametrize("address, public", [
    ("8.8.8.8", True), ("2606:4700:4700::1111", True), ("127.0.0.1", False), ("10.0.0.1", False),
    ("172.16.0.1", False), ("192.168.1.1", False), ("169.254.169.254", False), ("100.64.0.1", False),
    ("0.0.0.0", False), ("224.0.0.1", False), ("255.255.255.255", False), ("::1", False), ("::", False),
    ("fe80::1", False), ("fc00::1", False), ("::ffff:127.0.0.1", False), ("2002:0a00:0001::1", False),
    ("64:ff9b::7f00:1", False), ("2001:db8::1", False), ("ff02::1", False),
])
def test_only_public_addresses_pass(address, public):
    assert is_public_address(address) is public


def test_the_guard_checks_every_address_a_name_resolves_to():
    mixed = Policy(resolve=lambda host, port: [("93.184.215.14", port), ("10.0.0.7", port)])
    with pytest.raises(RefusedDestination, match="non-public"):
        check_url("https://push.example.org/x", mixed)
    check_url("https://push.example.org/x", Policy(resolve=lambda host, port: [("93.184.215.14", port)]))


def test_the_guard_connects_to_the_address_it_checked(push_service):
    """A resolver that answers a public address first and a private one later (DNS rebinding)
    never gets the private one used: the session resolves once per connection and checks it."""
    answers = iter([[("93.184.215.14", 443)], [("127.0.0.1", 443)]])
    policy = Policy(resolve=lambda host, port: next(answers), connect_timeout=0.5, read_timeout=0.5)
    check_url("https://rebind.example.org/x", policy)
    with pytest.raises(RefusedDestination):
        GuardedClient(policy).post("https://rebind.example.org/x", b"{}")
    assert push_service.requests == 0


# -- the worker ------------------------------------------------------------------------------------

@pytest.fixture
def worker_system(env, push_environ, tmp_path):
    system = System({**env, **push_environ, "PUSH_MAX_RETRIES": "2", "PUSH_BROADCAST_BATCH_SIZE": "2"}, tmp_path)
    yield system
    system.stop_all()


def wait_for_stats(redis, done, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        figures = stats.read(redis)
        if done(figures):
            return figures
        time.sleep(0.1)
    raise AssertionError(f"push figures never got there: {stats.read(redis)}")


def test_the_worker_delivers_retries_and_gives_up(api, tokens, push_service, accounts, redis, worker_system):
    from tasks.push import enqueue_notifications

    alice, bob = accounts["alice"].did, accounts["bob"].did
    fine, limited, flaky, gone = (push_service.subscriber() for _ in range(4))
    for subscriber in (fine, limited, flaky, gone):
        assert subscribe(api, tokens["alice"], subscriber).status_code == 201
    push_service.answer(limited, 429, count=None, retry_after="1")   # always: given up after 3 attempts
    push_service.answer(flaky, 429, count=1, retry_after="1")       # once, then delivered
    push_service.answer(gone, 410)
    notification = notify(alice, bob, "follow")
    with session_scope() as session:
        pairs = subscriptions.fan_out(session, [notification])
    assert len(pairs) == 4
    enqueue_notifications(pairs)
    worker_system.start("push-worker", "worker", "--queues", "push", "--processes", "1", "--threads", "4")

    figures = wait_for_stats(redis, lambda f: f["sent"] == 2 and f["failed"] and f["removed"])
    assert figures["failed"] == {"429": 1} and figures["removed"] == {"410": 1}
    assert figures["retried"] == {"429": 4}
    assert {r.token for r in push_service.delivered()} == {fine.token, flaky.token}
    assert all(r.payload["type"] == "follow" and r.payload["url"] == f"/profile/{bob}"
               for r in push_service.delivered())
    [give_up] = stats.recent_failures(redis)
    assert give_up["reason"] == "429" and give_up["push"] == f"n{notification}" and give_up["attempts"] == 3
    assert rows("SELECT count(*) FROM push_subscriptions")[0][0] == 3

    metrics = api.get("/metrics").get_data(as_text=True)
    assert "cannect_push_sent_total 2.0" in metrics
    assert 'cannect_push_failed_total{reason="429"} 1.0' in metrics
    assert 'cannect_push_removed_total{reason="410"} 1.0' in metrics
    assert "cannect_push_delivery_seconds_count 2.0" in metrics
    from cannect.cli import main

    result = CliRunner().invoke(main, ["status", "--json"])
    assert result.exit_code == 0, result.output
    assert '"sent": 2' in result.output and '"failed": 1' in result.output
    result = CliRunner().invoke(main, ["status"])
    assert "push             sent 2  failed 1  removed 1  retried 4" in result.output, result.output


def test_a_broadcast_fans_out_in_batches_to_every_subscription(api, tokens, push_service, worker_system):
    subscribers = [push_service.subscriber() for _ in range(5)]
    for i, subscriber in enumerate(subscribers):
        assert subscribe(api, tokens["alice" if i % 2 else "bob"], subscriber).status_code == 201
    worker_system.start("push-worker", "worker", "--queues", "push", "--processes", "1", "--threads", "4")
    response = api.post("/api/push/broadcast", json={"title": "Cannect", "body": "We moved servers", "url": "/news"},
                        headers={"X-Admin-Token": ADMIN_TOKEN})
    assert response.status_code == 202 and response.json["subscriptions"] == 5
    received = push_service.wait_for(5)
    assert sorted(r.token for r in received) == sorted(s.token for s in subscribers)
    assert {(r.payload["type"], r.payload["title"], r.payload["body"], r.payload["url"], r.payload["id"])
            for r in received} == {("broadcast", "Cannect", "We moved servers", "/news", response.json["id"])}
    assert all(r.urgency == "normal" for r in received)


# -- keys and configuration ------------------------------------------------------------------------

def test_vapid_generate_prints_a_pair_the_settings_accept():
    from cannect.cli import main

    result = CliRunner().invoke(main, ["vapid", "generate"])
    assert result.exit_code == 0
    values = dict(line.split("=", 1) for line in result.output.strip().splitlines())
    assert set(values) == {"VAPID_PUBLIC_KEY", "VAPID_PRIVATE_KEY"}
    check_vapid_pair(values["VAPID_PUBLIC_KEY"], values["VAPID_PRIVATE_KEY"])
    settings = load_settings(database_url="postgresql://x/y", redis_url="redis://x",
                             vapid_public_key=values["VAPID_PUBLIC_KEY"], vapid_private_key=values["VAPID_PRIVATE_KEY"],
                             vapid_email="ops@cannect.space")
    assert settings.vapid_email == "mailto:ops@cannect.space"


@pytest.mark.parametrize("overrides, message", [
    ({"vapid_public_key": "_other"}, "does not belong"),
    ({"vapid_private_key": "not-a-key"}, "VAPID_PRIVATE_KEY"),
    ({"vapid_public_key": None}, "set both"),
    ({"vapid_private_key": None}, "set both"),
    ({"vapid_email": None}, "VAPID_EMAIL"),
    ({"vapid_email": "nobody"}, "mailto"),
    ({"push_insecure_test_origins": "not a url"}, "PUSH_INSECURE_TEST_ORIGINS"),
])
def test_bad_push_settings_stop_the_process(vapid, overrides, message):
    values = {"vapid_public_key": vapid[0], "vapid_private_key": vapid[1], "vapid_email": "mailto:ops@cannect.space"}
    values.update({k: generate_vapid_keys()[0] if v == "_other" else v for k, v in overrides.items()})
    with pytest.raises(ConfigError, match=message):
        load_settings(database_url="postgresql://x/y", redis_url="redis://x", **values)
