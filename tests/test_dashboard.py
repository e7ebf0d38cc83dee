"""The client dashboard (/dashboard, app/dashboard) through the Flask test client, on real
PostgreSQL and Redis with the B2B endpoints' seeded dataset (tests/test_b2b_endpoints.py):
sign-in and sign-out, CSRF, the session ending at once when the key is revoked or rotated past
its overlap, plans, a foreign client's data never shown, and every CSV equal to its table and
to the service's numbers."""

from __future__ import annotations

import csv
import io
import re

import pytest

from services.b2b import clients, limits
from services.db import session_scope
from test_b2b_endpoints import data, new_key  # noqa: F401  (fixture)

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
def web(make_api):
    return make_api(B2B_CACHE_CHECK_SECONDS="0", DASHBOARD_SIGNIN_PER_MINUTE="1000",
                    WEBHOOK_INSECURE_TEST_ORIGINS="http://127.0.0.1:9")


def csrf_of(html: str) -> str:
    return CSRF.search(html).group(1)


def sign_in(web, key: str, next_path: str | None = None):
    form = web.get("/dashboard/sign-in")
    assert form.status_code == 200
    body = {"csrf": csrf_of(form.get_data(as_text=True)), "api_key": key}
    if next_path:
        body["next"] = next_path
    return web.post("/dashboard/sign-in", data=body)


def signed_in(web, key: str):
    answer = sign_in(web, key)
    assert answer.status_code == 303, answer.get_data(as_text=True)
    return answer


def client_id_of(key: str) -> int:
    with session_scope() as session:
        return clients.credentials(session, key[len("cnk_live_"):len("cnk_live_") + 12]).client_id


def flush_usage(web) -> None:
    """The API calls made so far, into ``api_usage`` (as the b2b worker does)."""
    import redis

    from cannect.config import get_settings
    from services.b2b import usage

    web.application.extensions["b2b_gate"].push_usage()
    usage.flush(redis.Redis.from_url(get_settings().redis_url), session_scope)


def rows_of(csv_text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(csv_text)))


def table_rows(html: str, table_id: str) -> list[list[str]]:
    """The cells of an HTML table, as text (header row first)."""
    found = re.search(rf'<table id="{table_id}".*?</table>', html, re.S).group(0)
    rows = []
    for tr in re.findall(r"<tr>(.*?)</tr>", found, re.S):
        rows.append([re.sub(r"<[^>]+>", "", cell).replace("&amp;", "&").replace("&#39;", "'").strip()
                     for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", tr, re.S)])
    return rows


PAGES = ["/dashboard/", "/dashboard/trends", "/dashboard/segments", "/dashboard/time", "/dashboard/brands-strains",
         "/dashboard/opportunities", "/dashboard/live", "/dashboard/usage", "/dashboard/webhooks"]


def test_every_page_needs_a_session_and_renders_once_signed_in(web, data):
    key = new_key()
    for path in PAGES:
        answer = web.get(path)
        assert answer.status_code == 302 and "/dashboard/sign-in" in answer.headers["Location"], path
    answer = signed_in(web, key)
    assert answer.headers["Location"].endswith("/dashboard/")
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/dashboard" in cookie
    assert key not in cookie
    for path in PAGES:
        page = web.get(path)
        assert page.status_code == 200, (path, page.get_data(as_text=True)[:2000])
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        assert page.headers["Cache-Control"] == "no-store"
        assert key not in page.get_data(as_text=True)


def test_pages_are_not_in_the_openapi_document(web):
    paths = web.get("/api/openapi.json").get_json()["paths"]
    assert not [p for p in paths if p.startswith("/dashboard")]


def test_a_wrong_key_is_refused_and_sign_in_is_rate_limited(make_api, data):
    web = make_api(DASHBOARD_SIGNIN_PER_MINUTE="3")
    key = new_key()
    wrong = key[:-8] + ("A" if key[-8] != "A" else "B") + key[-7:]
    answers = [sign_in(web, wrong).status_code for _ in range(3)]
    assert answers == [401, 401, 401]
    throttled = sign_in(web, key)
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) > 0


def test_sign_in_needs_the_form_token(web, data):
    key = new_key()
    web.get("/dashboard/sign-in")
    assert web.post("/dashboard/sign-in", data={"csrf": "forged", "api_key": key}).status_code == 403
    assert web.get("/dashboard/").status_code == 302


def test_sign_in_goes_back_to_the_page_asked_for_but_never_off_site(web, data):
    key = new_key()
    assert sign_in(web, key, "/dashboard/usage?range=30d").headers["Location"].endswith("/dashboard/usage?range=30d")
    assert sign_in(web, key, "https://evil.example/x").headers["Location"].endswith("/dashboard/")
    assert sign_in(web, key, "//evil.example/x").headers["Location"].endswith("/dashboard/")


def test_sign_out_ends_the_session_and_needs_csrf(web, data):
    key = new_key()
    signed_in(web, key)
    token = csrf_of(web.get("/dashboard/usage").get_data(as_text=True))
    assert web.post("/dashboard/sign-out", data={}).status_code == 403
    assert web.post("/dashboard/sign-out", data={"csrf": "x" * 43}).status_code == 403
    cookie = web.get_cookie("cannect_dashboard", path="/dashboard").value
    assert web.get("/dashboard/usage").status_code == 200
    assert web.post("/dashboard/sign-out", data={"csrf": token}).status_code == 303
    assert web.get("/dashboard/usage").status_code == 302
    web.set_cookie("cannect_dashboard", cookie, path="/dashboard")  # a copy of the old cookie is dead too
    assert web.get("/dashboard/usage").status_code == 302


def test_revoking_the_key_ends_the_session_at_once(web, data, redis_url):
    import redis

    key = new_key()
    signed_in(web, key)
    assert web.get("/dashboard/usage").status_code == 200
    with session_scope() as session:
        clients.revoke(session, client_id_of(key))
    limits.invalidate(redis.Redis.from_url(redis_url), client_id_of(key))
    assert web.get("/dashboard/usage").status_code == 302
    assert web.post("/dashboard/sign-out", data={"csrf": "x"}).status_code == 401


def test_rotation_ends_the_session_when_the_overlap_ends(web, data):
    key = new_key()
    signed_in(web, key)
    with session_scope() as session:
        clients.rotate(session, client_id_of(key), overlap_seconds=3600)
    assert web.get("/dashboard/usage").status_code == 200  # the old key still works during the overlap
    with session_scope() as session:
        clients.rotate(session, client_id_of(key), overlap_seconds=0)  # the old key's overlap ends
    assert web.get("/dashboard/usage").status_code == 302


def test_pages_outside_the_plan_say_so(web, data):
    key = new_key("starter")
    signed_in(web, key)
    for path in ("/dashboard/opportunities", "/dashboard/live", "/dashboard/webhooks", "/dashboard/time"):
        page = web.get(path)
        assert page.status_code == 403 and "not-in-plan" in page.get_data(as_text=True), path
    assert web.get("/dashboard/trends").status_code == 200
    nav = web.get("/dashboard/trends").get_data(as_text=True)
    assert "Opportunities <span class=\"visually-hidden\">(not in your plan)</span>" in nav


def test_a_foreign_clients_data_never_appears(web, data):
    mine, theirs = new_key(), new_key()
    for _ in range(5):
        web.get("/api/v1/trends", headers={"Authorization": f"Bearer {theirs}"})
    web.get("/api/v1/segments", headers={"Authorization": f"Bearer {mine}"})
    flush_usage(web)
    my_endpoint = _create_endpoint(mine, "http://127.0.0.1:9/mine-hook")
    their_endpoint = _create_endpoint(theirs, "http://127.0.0.1:9/theirs-hook")
    signed_in(web, theirs)
    their_csrf = csrf_of(web.get("/dashboard/webhooks").get_data(as_text=True))
    web.post(f"/dashboard/webhooks/{their_endpoint}/test", data={"csrf": their_csrf})
    web.get("/dashboard/usage")
    signed_in(web, mine)
    page = web.get("/dashboard/webhooks").get_data(as_text=True)
    assert "mine-hook" in page and "theirs-hook" not in page
    token = csrf_of(page)
    assert web.post(f"/dashboard/webhooks/{their_endpoint}/test", data={"csrf": token}).status_code == 404
    sent = web.post(f"/dashboard/webhooks/{my_endpoint}/test", data={"csrf": token})
    assert sent.status_code == 303
    page = web.get(sent.headers["Location"]).get_data(as_text=True)
    assert "webhook.test" in page and 'id="test-sent"' in page
    assert len(table_rows(page, f"deliveries-{my_endpoint}")) == 2  # header and the one test event
    assert web.get(f"/dashboard/webhooks?csv=deliveries-{their_endpoint}").status_code == 404
    usage_rows = rows_of(web.get("/dashboard/usage?csv=usage-endpoints").get_data(as_text=True))
    assert [(r[1], r[2]) for r in usage_rows[1:]] == [("/segments", "1")]  # not the other client's 5 /trends
    assert 'id="quota-used">1<' in web.get("/dashboard/usage").get_data(as_text=True)


def _create_endpoint(key: str, url: str) -> int:
    from cannect.config import get_settings
    from services.webhooks import endpoints

    with session_scope() as session:
        view, _ = endpoints.create(session, client_id_of(key), get_settings(), url, ["high_intent_post"], None, None)
    return view["id"]


@pytest.mark.parametrize("path, table_id", [
    ("/dashboard/?range=7d", "activity"), ("/dashboard/?range=7d", "movers"),
    ("/dashboard/trends?range=7d", "trends-effect"),
    ("/dashboard/segments", "segments"), ("/dashboard/time?range=30d", "heatmap"),
    ("/dashboard/time?range=30d", "weekend-vs-weekday-by-weekday"), ("/dashboard/brands-strains?range=30d", "brands"),
    ("/dashboard/brands-strains?range=30d", "strains"), ("/dashboard/opportunities", "opportunities-product"),
    ("/dashboard/live", "intents-by-product"), ("/dashboard/usage?range=30d", "usage-days"),
])
def test_every_csv_equals_its_table(web, data, path, table_id):
    key = new_key()
    if table_id == "usage-days":
        for _ in range(3):
            web.get("/api/v1/segments", headers={"Authorization": f"Bearer {key}"})
        flush_usage(web)
    signed_in(web, key)
    html = web.get(path).get_data(as_text=True)
    shown = table_rows(html, table_id)
    assert len(shown) > 1, f"{table_id} is empty"
    separator = "&" if "?" in path else "?"
    download = web.get(f"{path}{separator}csv={table_id}")
    assert download.status_code == 200 and download.mimetype == "text/csv"
    assert rows_of(download.get_data(as_text=True)) == shown


def test_numbers_are_the_services_and_filters_change_them(web, data):
    key = new_key()
    signed_in(web, key)
    segments = rows_of(web.get("/dashboard/segments?csv=segments").get_data(as_text=True))
    api = web.get("/api/v1/segments", headers={"Authorization": f"Bearer {key}"}).get_json()["segments"]
    assert [(r[0], int(r[2])) for r in segments[1:]] == [
        (f"{s['consumer_type']} / {s['experience_level']}", s["post_count"]) for s in api]
    day = rows_of(web.get("/dashboard/?range=24h&csv=activity").get_data(as_text=True))
    week = rows_of(web.get("/dashboard/?range=7d&csv=activity").get_data(as_text=True))
    assert sum(int(r[1]) for r in day[1:]) == 4  # P1, P2, P3, P7: cannabis posts of the last 24 hours
    assert sum(int(r[1]) for r in week[1:]) == 6  # and P4 (3 days), P5 (30 hours)
    everywhere = rows_of(web.get("/dashboard/live?csv=intents-by-product").get_data(as_text=True))
    oregon = rows_of(web.get("/dashboard/live?region=Oregon&csv=intents-by-product").get_data(as_text=True))
    assert sum(int(r[1]) for r in everywhere[1:]) == 3 and oregon[1:] == [["flower", "1"]]


def test_a_formula_in_data_is_quoted_in_the_csv():
    from app.dashboard.tables import Column, Table, to_csv

    table = Table("t", "T", [Column("name", "Name"), Column("n", "N", True)], [{"name": "=HYPERLINK(1)", "n": -2.5}])
    assert rows_of(to_csv(table)) == [["Name", "N"], ["'=HYPERLINK(1)", "-2.5"]]


def test_feed_tickets_name_the_session_only_while_genuine_and_fresh():
    from services.b2b import dashboard_sessions as sessions

    secret = "s" * 40
    ticket = sessions.feed_ticket(secret, "session-id", now=1000)
    assert sessions.read_ticket(secret, ticket, now=1000) == sessions.feed_session_id("session-id")
    assert "session-id" not in ticket  # the cookie's value never reaches the page
    assert sessions.read_ticket(secret, ticket, now=1000 + sessions.TICKET_SECONDS + 1) is None
    assert sessions.read_ticket("t" * 40, ticket, now=1000) is None
    expires, feed_id, mac = ticket.split(".")
    assert sessions.read_ticket(secret, f"{int(expires) + 9999}.{feed_id}.{mac}", now=1000) is None
    assert sessions.read_ticket(secret, "garbage", now=1000) is None
