"""The admin pages in real Chromium (tests/browser.py) against a real gunicorn web process:
sign in with ADMIN_TOKEN, every page renders, charts draw, dead-letter and client buttons
work, no console errors, sign-out ends the session. Screenshots land in
test-artifacts/screenshots/."""

from __future__ import annotations

import time

import orjson
import pytest
import redis as redis_lib
from sqlalchemy.orm import Session

from browser import browser, browser_required, live_web, page, shot  # noqa: F401  (fixtures)
from models.b2b import ApiUsage
from services import queue_history
from services.b2b import clients as b2b_clients
from services.db import make_engine

pytestmark = browser_required

TOKEN = "admin-browser-token-" + "b" * 32


@pytest.fixture
def seeded(db_url, redis_url):
    """A client with usage, a dead letter, a worker heartbeat and queue history."""
    engine = make_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1), pool_size=1)
    with Session(engine) as session:
        client, _ = b2b_clients.create(session, "Browser Buds", "growth")
        session.add_all([ApiUsage(client_id=client["id"], endpoint=name, method="GET", status_code=200,
                                  response_time_ms=9) for name in ("trends", "trends", "segments")])
        session.commit()
    engine.dispose()
    redis = redis_lib.Redis.from_url(redis_url)
    message_id = "11111111-2222-4333-8444-555555555555"
    message = {"queue_name": "views", "actor_name": "views.refresh", "args": [1], "kwargs": {},
               "options": {"retries": 2, "traceback": "RuntimeError: seeded failure"}, "message_id": message_id,
               "message_timestamp": int(time.time() * 1000)}
    redis.zadd("dramatiq:views.XQ", {message_id: time.time() * 1000})
    redis.hset("dramatiq:views.XQ.msgs", message_id, orjson.dumps(message))
    redis.zadd("dramatiq:__heartbeats__", {"worker-1": time.time() * 1000})
    for minutes_ago, depth in ((20, 5), (10, 12), (5, 3)):
        queue_history.sample(redis, {"classify": depth, "views": 1}, now=time.time() - 60 * minutes_ago)
        redis.delete(queue_history.HISTORY_KEY + ":last")
    return {"client": client, "dead_letter": message_id, "redis": redis}


def charts_drawn(tab) -> int:
    """Canvases Chart.js drew on (with a chart object and a non-blank bitmap)."""
    return tab.evaluate("""() => Array.from(document.querySelectorAll('canvas[data-chart]')).filter(c =>
        c.dataset.drawn === 'true' && c.width > 0 && c.height > 0 &&
        c.getContext('2d').getImageData(0, 0, c.width, c.height).data.some(v => v !== 0)).length""")


def test_admin_pages_in_chromium(page, live_web, seeded):
    web = live_web(ADMIN_TOKEN=TOKEN)
    page.goto(web.http + "/admin/")
    assert page.url.endswith("/admin/sign-in")  # (a wrong token's 401 is a console error: see test_admin_pages)
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(web.http + "/admin/")
    assert page.evaluate("document.cookie") == ""  # the session cookie is HttpOnly; nothing else is kept
    assert TOKEN not in page.content()
    page.wait_for_function("document.querySelectorAll('canvas[data-drawn=true]').length === 3")
    assert charts_drawn(page) == 3
    assert seeded["dead_letter"] in page.content()
    shot(page, "admin_farm")

    page.click(f"a[href$='/admin/dead-letters/{seeded['dead_letter']}']")
    assert "seeded failure" in page.content()
    shot(page, "admin_dead_letter")
    page.click("text=Replay")
    page.wait_for_url("**/admin/?notice=replayed*")
    assert "Dead letter enqueued again" in page.content()
    assert seeded["redis"].hlen("dramatiq:views.msgs") == 1

    page.click("nav >> text=Clients")
    assert "Browser Buds" in page.content()
    shot(page, "admin_clients")
    page.fill("#name", "Chromium Kush")
    page.select_option("#tier", "starter")
    page.click("text=Create client and key")
    key = page.input_value("#api-key")
    assert key.startswith("cnk_live_")
    shot(page, "admin_new_key")

    page.goto(web.http + f"/admin/clients/{seeded['client']['id']}")
    page.wait_for_function("document.querySelectorAll('canvas[data-drawn=true]').length === 1")
    assert charts_drawn(page) == 1
    assert "3 in all" in page.content()
    shot(page, "admin_client")
    page.select_option("#tier", "enterprise")
    page.click("text=Change plan")
    assert "Plan changed." in page.content()

    page.click("text=Sign out")
    page.wait_for_url("**/admin/sign-in?notice=signed_out")
    page.goto(web.http + "/admin/clients")
    assert page.url.endswith("/admin/sign-in")
    assert list(seeded["redis"].scan_iter("cannect:admin:session:*")) == []


def test_sign_in_page_on_a_phone(browser, live_web, db_url, redis_url):
    context = browser.new_context(viewport={"width": 390, "height": 844})
    tab = context.new_page()
    errors = []
    tab.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    web = live_web(ADMIN_TOKEN=TOKEN)
    tab.goto(web.http + "/admin/sign-in")
    tab.fill("#token", TOKEN)
    tab.keyboard.press("Enter")
    tab.wait_for_url(web.http + "/admin/")
    assert tab.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    shot(tab, "admin_farm_phone")
    context.close()
    assert not errors
