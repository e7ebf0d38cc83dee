"""The client dashboard in real Chromium (tests/browser.py) against the real app in gunicorn,
on the B2B endpoints' seeded dataset: sign in, every page renders with data and its charts
draw, filters change the numbers, a chart and its CSV show the table's numbers, the live feed
receives a high-intent post over /ws, sign-out ends the session, no console errors anywhere.
Screenshots of every page land in test-artifacts/screenshots/."""

from __future__ import annotations

import csv
import io

import pytest
import redis

from browser import browser, browser_required, live_web, page, shot  # noqa: F401  (fixtures)
from services.b2b import clients
from test_b2b_endpoints import data  # noqa: F401  (fixture)

pytestmark = browser_required

PAGES = {"overview": "/dashboard/", "trends": "/dashboard/trends", "segments": "/dashboard/segments",
         "time": "/dashboard/time?range=30d", "brands-strains": "/dashboard/brands-strains?range=30d",
         "opportunities": "/dashboard/opportunities", "live": "/dashboard/live", "usage": "/dashboard/usage",
         "webhooks": "/dashboard/webhooks"}

#: Every drawn canvas of the page has pixels that are not transparent.
CANVASES_DRAWN = """() => [...document.querySelectorAll('canvas')].map(c => {
    const pixels = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let painted = 0;
    for (let i = 3; i < pixels.length; i += 4) { if (pixels[i] !== 0) { painted++; } }
    return {id: c.id || c.dataset.spark, drawn: c.dataset.drawn === '1', painted: painted, width: c.width};
})"""
TABLE = """(id) => [...document.getElementById(id).rows].map(r => [...r.cells].map(c => c.textContent.trim()))"""
CHART = """(id) => { const chart = Chart.getChart(document.querySelector(`canvas[data-chart-for="${id}"]`));
    return {labels: chart.data.labels, series: chart.data.datasets.map(d => d.data)}; }"""


@pytest.fixture
def key(session):
    _, key = clients.create(session, "Browser Test Co", "enterprise")
    session.commit()
    return key


@pytest.fixture
def web(live_web, data):
    return live_web(B2B_CACHE_CHECK_SECONDS="0", WEBHOOK_INSECURE_TEST_ORIGINS="http://127.0.0.1:9")


@pytest.fixture
def history(web, key, session, engine, db_url, redis_url):
    """Some API calls of the client (in api_usage, as the b2b worker moves them) and a webhook endpoint."""
    import time
    from contextlib import contextmanager

    import httpx
    from sqlalchemy.orm import Session

    from cannect.config import Settings
    from services.b2b import usage
    from services.webhooks import endpoints

    for path in ("/api/v1/segments", "/api/v1/trends", "/api/v1/trends"):
        assert httpx.get(web.http + path, headers={"Authorization": f"Bearer {key}"}).status_code == 200
    rdb = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + 10
    while rdb.llen(usage.BUFFER) < 3 and time.monotonic() < deadline:  # the web process pushes within 0.5 s
        time.sleep(0.1)

    @contextmanager
    def scope():
        with Session(engine) as s, s.begin():
            yield s

    assert usage.flush(rdb, scope)["inserted"] == 3
    client_id = clients.credentials(session, key[9:21]).client_id
    settings = Settings(database_url=db_url, redis_url=redis_url, jwt_secret=web.env["JWT_SECRET"],
                        webhook_insecure_test_origins=("http://127.0.0.1:9",))
    view, _ = endpoints.create(session, client_id, settings, "http://127.0.0.1:9/hook", ["high_intent_post"])
    session.commit()
    return view["id"]


def sign_in(page, web, key):
    page.goto(web.http + "/dashboard/")
    assert "/dashboard/sign-in" in page.url
    page.fill("#api-key", key)
    page.click("#sign-in")
    page.wait_for_url(web.http + "/dashboard/")
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["cannect_dashboard"]
    assert session["httpOnly"] and session["sameSite"] == "Strict" and key not in session["value"]
    assert key not in page.content()


def test_sign_in_every_page_charts_filters_csv_and_sign_out(page, web, key, history):
    sign_in(page, web, key)
    for name, path in PAGES.items():
        page.goto(web.http + path)
        assert page.locator("h1").count() == 1, name
        if name != "webhooks":  # (its delivery log is empty until the test event below)
            assert page.locator("[data-empty]").count() < page.locator("[data-table-section]").count(), name
        canvases = page.evaluate(CANVASES_DRAWN)
        assert all(c["drawn"] and c["painted"] > 0 and c["width"] > 0 for c in canvases), (name, canvases)
        if name not in ("webhooks", "live"):
            assert canvases, f"{name} has no chart"
        shot(page, f"dashboard-{name}")

    # The webhook test button: a delivery in the log.
    page.goto(web.http + "/dashboard/webhooks")
    page.click(f"[data-test-endpoint='{history}']")
    page.wait_for_selector("#test-sent")
    assert "webhook.test" in page.text_content(f"#deliveries-{history}")

    # Filters: kept in the URL, and they change the numbers.
    page.goto(web.http + "/dashboard/")
    page.select_option("#f-range", "24h")
    page.click("#apply-filters")
    page.wait_for_url("**/dashboard/?range=24h*")
    assert page.text_content("#stat-posts") == "4"
    page.select_option("#f-range", "7d")
    page.click("#apply-filters")
    page.wait_for_url("**range=7d*")
    assert page.text_content("#stat-posts") == "6"
    page.goto(web.http + "/dashboard/live?region=Oregon")
    assert page.input_value("#f-region") == "Oregon"
    assert page.evaluate(TABLE, "intents-by-product")[1:] == [["flower", "1"]]

    # The chart, its table and its CSV show the same numbers.
    page.goto(web.http + "/dashboard/segments")
    table = page.evaluate(TABLE, "segments")
    chart = page.evaluate(CHART, "segments")
    assert chart["labels"] == [row[0] for row in table[1:]]
    assert chart["series"][0] == [float(row[1]) for row in table[1:]]  # users
    assert chart["series"][1] == [float(row[2]) for row in table[1:]]  # posts
    href = page.get_attribute("a[data-csv-for='segments']", "href")
    download = page.request.get(web.http + href)
    assert download.ok and list(csv.reader(io.StringIO(download.text()))) == table

    # Keyboard: the skip link is the first stop and leads to the content.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"

    page.click("#sign-out")
    page.wait_for_url("**/dashboard/sign-in")
    page.goto(web.http + "/dashboard/usage")
    assert "/dashboard/sign-in" in page.url
    answer = page.request.get(web.http + "/dashboard/segments?csv=segments", max_redirects=0)
    assert answer.status == 302


def test_the_live_feed_shows_new_high_intent_posts(page, web, key, data, session, redis_url):
    from services.b2b import live

    sign_in(page, web, key)
    page.goto(web.http + "/dashboard/live")
    page.wait_for_selector("#live[data-live='1']")
    assert live.publish(redis.Redis.from_url(redis_url), session, [data["P1"], data["P4"]], 70) == 1  # P4: intent 40
    page.wait_for_selector("#live-feed li")
    assert "looking for sleepy gummies near LA" in page.text_content("#live-feed")
    assert page.locator("#live-feed li").count() == 1
    shot(page, "dashboard-live-event")
    ticket = page.get_attribute("#live", "data-ticket")
    page.click("#sign-out")  # ends the session's socket too
    page.wait_for_url("**/dashboard/sign-in")

    from harness import Client

    for stale in (ticket, ticket[:-1] + ("0" if ticket[-1] != "0" else "1")):  # signed out; forged
        socket = Client(web.url)
        try:
            socket.send({"type": "dashboard_feed", "ticket": stale})
            assert socket.expect("error")["code"] == "invalid_ticket"
        finally:
            socket.close()


def test_a_phone_sees_the_pages_without_sideways_scrolling(browser, web, key):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        phone = context.new_page()
        errors = []
        phone.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        sign_in(phone, web, key)
        for name in ("overview", "time", "usage"):
            phone.goto(web.http + PAGES[name])
            assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), name
            shot(phone, f"dashboard-phone-{name}")
        assert not errors
    finally:
        context.close()
