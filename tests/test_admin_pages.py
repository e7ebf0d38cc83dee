"""The admin pages (/admin, app/admin_pages): ADMIN_TOKEN sign-in, sessions, CSRF, the farm page
with dead letters, and the B2B clients pages, through the Flask test client on real
PostgreSQL and Redis."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone

import orjson
import pytest
import redis as redis_lib

from models.b2b import ApiUsage
from models.webhooks import WebhookDelivery, WebhookEndpoint
from services import queue_history
from services.b2b import clients as b2b_clients
from services.b2b import keys as b2b_keys
from services.b2b import limits

TOKEN = "admin-token-" + "a" * 32


@pytest.fixture
def redis(redis_url):
    return redis_lib.Redis.from_url(redis_url)


@pytest.fixture
def web(make_api):
    return make_api(ADMIN_TOKEN=TOKEN, ADMIN_SIGNIN_FAILURES="3")


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def sign_in(client, token: str = TOKEN):
    form = client.get("/admin/sign-in")
    return client.post("/admin/sign-in", data={"csrf_token": csrf_of(form.text), "token": token})


@pytest.fixture
def admin(web):
    """A test client signed in; ``admin.csrf`` is the session's form token."""
    answer = sign_in(web)
    assert answer.status_code == 303, answer.text
    web.csrf = csrf_of(web.get("/admin/").text)
    return web


def assert_forms_carry_csrf(html: str, token: str) -> int:
    """Every POST form of the page has the session's CSRF token; returns how many there are."""
    forms = re.findall(r'<form[^>]*method="post".*?</form>', html, re.S)
    assert forms and all(f'name="csrf_token" value="{token}"' in form for form in forms), forms
    return len(forms)


def dead_letter(redis, queue: str = "views", actor: str = "views.refresh", args=(7,), error="boom") -> str:
    """A dead letter as Dramatiq's Redis broker leaves it (XQ sorted set + message hash)."""
    message_id = f"00000000-0000-4000-8000-{int(time.time_ns()) % 10**12:012d}"
    message = {"queue_name": queue, "actor_name": actor, "args": list(args), "kwargs": {},
               "options": {"retries": 3, "traceback": f"Traceback (most recent call last):\nRuntimeError: {error}",
                           "redis_message_id": message_id},
               "message_id": message_id, "message_timestamp": int(time.time() * 1000)}
    redis.zadd(f"dramatiq:{queue}.XQ", {message_id: time.time() * 1000})
    redis.hset(f"dramatiq:{queue}.XQ.msgs", message_id, orjson.dumps(message))
    return message_id


# --- sign-in, sessions, CSRF ---------------------------------------------------------------

def test_pages_need_sign_in(web):
    answer = web.get("/admin/")
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/admin/sign-in")
    assert web.get("/admin/clients").status_code == 302
    assert web.post("/admin/clients", data={"name": "x", "tier": "starter"}).status_code == 403
    assert web.post("/admin/dead-letters/abc/drop").status_code == 403


def test_wrong_token_is_refused_and_right_one_signs_in(web, redis):
    page = web.get("/admin/sign-in")
    assert page.status_code == 200 and 'type="password"' in page.text
    assert page.headers["Cache-Control"] == "no-store"
    assert "'unsafe-inline'" not in page.headers["Content-Security-Policy"]
    wrong = sign_in(web, "x" * 40)
    assert wrong.status_code == 401 and "not the admin token" in wrong.text
    assert web.get_cookie("cannect_admin", path="/admin") is None
    right = sign_in(web)
    assert right.status_code == 303 and right.headers["Location"].endswith("/admin/")
    cookie = right.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/admin" in cookie
    session_id = web.get_cookie("cannect_admin", path="/admin").value
    assert TOKEN not in session_id
    farm = web.get("/admin/")
    assert farm.status_code == 200 and "Farm" in farm.text and TOKEN not in farm.text
    # Redis holds the session under a hash of its id, and never the token.
    keys = [k.decode() for k in redis.scan_iter("cannect:admin:session:*")]
    assert len(keys) == 1 and session_id not in keys[0]
    assert TOKEN.encode() not in redis.get(keys[0])


def test_sign_in_needs_its_form_token(web):
    web.get("/admin/sign-in")
    answer = web.post("/admin/sign-in", data={"token": TOKEN})
    assert answer.status_code == 403
    assert web.get_cookie("cannect_admin", path="/admin") is None
    forged = web.post("/admin/sign-in", data={"token": TOKEN, "csrf_token": "0" * 64})
    assert forged.status_code == 403


def test_wrong_tokens_are_rate_limited_per_ip(web):
    for _ in range(3):
        assert sign_in(web, "y" * 40).status_code == 401
    blocked = sign_in(web)  # even the right token, until the window ends
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 0
    assert web.get_cookie("cannect_admin", path="/admin") is None


def test_admin_pages_off_without_admin_token(make_api):
    web = make_api()
    assert "ADMIN_TOKEN" in web.get("/admin/sign-in").text
    assert sign_in(web, "z" * 40).status_code == 401


def test_posts_need_the_session_csrf_token(admin, redis):
    letter = dead_letter(redis)
    assert admin.post(f"/admin/dead-letters/{letter}/drop").status_code == 403
    assert admin.post(f"/admin/dead-letters/{letter}/drop", data={"csrf_token": "x" * 43}).status_code == 403
    other_site = admin.post(f"/admin/dead-letters/{letter}/drop", data={"csrf_token": admin.csrf},
                            headers={"Origin": "https://evil.example"})
    assert other_site.status_code == 403
    assert redis.hexists("dramatiq:views.XQ.msgs", letter)
    assert admin.post("/admin/sign-out").status_code == 403  # sign-out too


def test_sign_out_ends_the_session(admin, redis):
    cookie = admin.get_cookie("cannect_admin", path="/admin").value
    answer = admin.post("/admin/sign-out", data={"csrf_token": admin.csrf})
    assert answer.status_code == 303 and "notice=signed_out" in answer.headers["Location"]
    assert list(redis.scan_iter("cannect:admin:session:*")) == []
    admin.set_cookie("cannect_admin", cookie, path="/admin")  # a copy of the old cookie is worthless
    assert admin.get("/admin/").status_code == 302


def test_idle_session_expires(admin, redis):
    (key,) = redis.scan_iter("cannect:admin:session:*")
    assert 0 < redis.ttl(key) <= 1800
    redis.delete(key)  # what the idle timeout does
    answer = admin.get("/admin/")
    assert answer.status_code == 302 and "notice=expired" in answer.headers["Location"]


def test_a_new_admin_token_ends_every_session(admin, make_api):
    cookie = admin.get_cookie("cannect_admin", path="/admin").value
    same = make_api(ADMIN_TOKEN=TOKEN)  # another web process with the same token: the session holds
    same.set_cookie("cannect_admin", cookie, path="/admin")
    assert same.get("/admin/").status_code == 200
    restarted = make_api(ADMIN_TOKEN="new-token-" + "n" * 32)  # the web process, started with a new token
    restarted.set_cookie("cannect_admin", cookie, path="/admin")
    assert restarted.get("/admin/").status_code == 302


def test_html_routes_are_not_in_the_openapi_document(web):
    paths = web.get("/api/openapi.json").json["paths"]
    assert not [path for path in paths if path.startswith("/admin")]


# --- farm ------------------------------------------------------------------------------------

def test_farm_shows_seeded_figures(admin, redis, session):
    letter = dead_letter(redis, error="database went away")
    redis.hset("dramatiq:classify.msgs", mapping={"m1": b"{}", "m2": b"{}"})
    redis.zadd("dramatiq:__heartbeats__", {"worker-alive": time.time() * 1000,
                                          "worker-dead": (time.time() - 600) * 1000})
    redis.delete(queue_history.HISTORY_KEY, queue_history.HISTORY_KEY + ":last")  # the fixture's look
    queue_history.sample(redis, {"classify": 0}, now=time.time() - 400)
    redis.delete(queue_history.HISTORY_KEY + ":last")
    client, _ = b2b_clients.create(session, "Hooks Inc", "growth")
    endpoint = WebhookEndpoint(client_id=client["id"], url="https://hooks.example/x", secret_encrypted=b"x",
                               event_types=["trend_spike"])
    session.add(endpoint)
    session.flush()
    session.add_all([WebhookDelivery(endpoint_id=endpoint.id, event_id=f"msg_{i}", event_type="webhook.test",
                                     payload={}, status=status)
                     for i, status in enumerate(["delivered", "delivered", "delivered", "given_up"])])
    session.commit()

    page = admin.get("/admin/")
    assert page.status_code == 200
    html = page.text
    assert letter in html and "database went away" in html and "views.refresh" in html
    assert "worker-alive" in html and "worker-dead" in html
    assert re.search(r"<th scope=\"row\">classify</th><td class=\"num\">2</td>", html)
    assert "+0.3" in html  # 0 -> 2 messages over 400 s: 0.3 per minute
    assert "75.0 %" in html  # webhooks delivered: 3 of 4 settled
    for chart in ("chart-queues", "chart-webhooks", "chart-classification"):
        assert f'data-chart="{chart}-data"' in html and f'id="{chart}-data"' in html
    assert "<script>" not in html  # no inline script under the CSP
    assert assert_forms_carry_csrf(html, admin.csrf) == 3  # sign-out, replay, drop


def test_dead_letter_show_replay_and_drop(admin, redis):
    replayed, dropped = dead_letter(redis, "views", "views.refresh"), dead_letter(redis, "views", "views.refresh")
    shown = admin.get(f"/admin/dead-letters/{replayed}")
    assert shown.status_code == 200 and "RuntimeError: boom" in shown.text
    assert assert_forms_carry_csrf(shown.text, admin.csrf) == 3
    assert admin.get("/admin/dead-letters/not-there").status_code == 404
    assert admin.get("/admin/dead-letters/bad%20id").status_code == 404

    answer = admin.post(f"/admin/dead-letters/{replayed}/replay", data={"csrf_token": admin.csrf})
    assert answer.status_code == 303 and "notice=replayed" in answer.headers["Location"]
    assert not redis.hexists("dramatiq:views.XQ.msgs", replayed)
    waiting = [orjson.loads(raw) for raw in redis.hvals("dramatiq:views.msgs")]
    assert [(m["actor_name"], m["args"], m["options"].get("retries", 0)) for m in waiting] == \
        [("views.refresh", [7], 0)]
    again = admin.post(f"/admin/dead-letters/{replayed}/replay", data={"csrf_token": admin.csrf})
    assert again.status_code == 404  # a double click enqueues once
    assert redis.hlen("dramatiq:views.msgs") == 1

    answer = admin.post(f"/admin/dead-letters/{dropped}/drop", data={"csrf_token": admin.csrf},
                        headers={"Origin": "https://localhost"})  # its own host (TLS ended by a proxy)
    assert answer.status_code == 303
    assert not redis.hexists("dramatiq:views.XQ.msgs", dropped) and redis.hlen("dramatiq:views.msgs") == 1
    assert "Dead letter dropped." in admin.get(answer.headers["Location"]).text


# --- clients ---------------------------------------------------------------------------------

def test_create_rotate_tier_revoke_a_client(admin, session, redis):
    created = admin.post("/admin/clients", data={"csrf_token": admin.csrf, "name": "Acme <Dispensaries>",
                                                 "tier": "starter", "monthlyQuota": "", "rateLimitPerMin": "",
                                                 "expiresInDays": ""})
    assert created.status_code == 201, created.text
    key = re.search(r'value="(cnk_live_[^"]+)"', created.text).group(1)
    assert "Acme &lt;Dispensaries&gt;" in created.text
    (client,) = b2b_clients.list_clients(session)
    assert client["name"] == "Acme <Dispensaries>" and client["tier"] == "starter"
    assert b2b_keys.parse(key).key_id == client["keyId"]
    listing = admin.get("/admin/clients").text
    assert assert_forms_carry_csrf(listing, admin.csrf) == 2
    assert "Acme &lt;Dispensaries&gt;" in listing and key not in listing  # the key is shown once

    bad = admin.post("/admin/clients", data={"csrf_token": admin.csrf, "name": "x", "tier": "platinum"})
    assert bad.status_code == 422 and "tier" in bad.text

    cid = client["id"]
    version = redis.get(limits.version_key(cid))
    rotated = admin.post(f"/admin/clients/{cid}/rotate", data={"csrf_token": admin.csrf, "overlapSeconds": "0"})
    assert rotated.status_code == 200
    new_key = re.search(r'value="(cnk_live_[^"]+)"', rotated.text).group(1)
    assert new_key != key
    session.expire_all()
    shown = b2b_clients.show(session, cid)
    assert shown["keyId"] != client["keyId"] and shown["previousKeyId"] is None  # overlap 0: stopped at once

    tier = admin.post(f"/admin/clients/{cid}/tier", data={"csrf_token": admin.csrf, "tier": "enterprise",
                                                          "monthlyQuota": "5000", "rateLimitPerMin": ""})
    assert tier.status_code == 303 and "notice=tier" in tier.headers["Location"]
    session.expire_all()
    shown = b2b_clients.show(session, cid)
    assert shown["tier"] == "enterprise" and shown["monthlyQuota"] == 5000

    revoked = admin.post(f"/admin/clients/{cid}/revoke", data={"csrf_token": admin.csrf})
    assert revoked.status_code == 303
    session.expire_all()
    assert b2b_clients.show(session, cid)["active"] is False
    assert redis.get(limits.version_key(cid)) != version  # web processes were told
    page = admin.get(f"/admin/clients/{cid}")
    assert page.status_code == 200 and "revoked" in page.text and "Rotate key" not in page.text
    assert assert_forms_carry_csrf(admin.get(f"/admin/clients/{cid}").text, admin.csrf) == 1  # revoked: sign-out only
    assert admin.get("/admin/clients/999999").status_code == 404
    assert admin.post("/admin/clients/999999/revoke", data={"csrf_token": admin.csrf}).status_code == 404


def test_client_usage_page(admin, session):
    client, _ = b2b_clients.create(session, "Usage Co", "growth")
    now = datetime.now(timezone.utc)
    session.add_all([ApiUsage(client_id=client["id"], endpoint=endpoint, method="GET", status_code=status,
                              response_time_ms=12, called_at=now - timedelta(days=days))
                     for endpoint, status, days in [("trends", 200, 0), ("trends", 200, 0), ("segments", 500, 1)]])
    session.commit()
    page = admin.get(f"/admin/clients/{client['id']}")
    assert page.status_code == 200
    assert "3 in all" in page.text and 'data-chart="chart-usage-data"' in page.text
    chart = orjson.loads(re.search(r'id="chart-usage-data">(.*?)</script>', page.text, re.S).group(1))
    assert {d["label"]: sum(d["data"]) for d in chart["datasets"]} == {"segments": 1, "trends": 2}
    assert len(chart["labels"]) == 30 and chart["labels"][-1] == now.date().isoformat()  # quiet days too
