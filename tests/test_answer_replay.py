"""Cached /api/v1 answers replayed before Flask (app/api/v1/answer_replay.py), on real PostgreSQL
and Redis: segments, brands, strains and time series. The replay is the answer Flask gave,
behind the same key check (bad, revoked, foreign and over-the-limit keys refused as under Flask,
and counted once), logged in usage and metrics, ended by a job run, never used for other URLs,
CORS requests or when Redis is away; failed keys are limited per client address behind a proxy."""

from __future__ import annotations

import time
from urllib.parse import urlparse

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text

from app.api.v1.answer_replay import AnswerReplay
from harness import Proxy
from test_b2b_access import ADMIN, ADMIN_TOKEN, bearer, create, flush, usage_rows
from test_b2b_endpoints import BOB, add_post, data, run_jobs  # noqa: F401 (data: a fixture)

SEGMENTS = "/api/v1/segments"
PER_CALL = {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "RateLimit", "RateLimit-Policy"}


def build(make_api, **environ):
    """The app as deployed (replay on); the version of the jobs' runs is read at most every
    ``B2B_CACHE_CHECK_SECONDS`` (60 here unless given: replays last the whole test)."""
    api = make_api(**{"ADMIN_TOKEN": ADMIN_TOKEN, "B2B_AUTH_FAILURES_PER_MINUTE": "1000",
                      "B2B_CACHE_CHECK_SECONDS": "60", **environ})
    api.application.extensions["b2b_gate"].push_interval = 3600  # usage reaches Redis by flush() only
    return api


def replay_of(api) -> AnswerReplay:
    replay = api.application.wsgi_app
    while not isinstance(replay, AnswerReplay):
        replay = replay.app  # (ProxyFix)
    return replay


@pytest.fixture
def b2b(make_api):
    return build(make_api)


def latency_count() -> float:
    return REGISTRY.get_sample_value("cannect_http_request_seconds_count",
                                     {"endpoint": SEGMENTS, "method": "GET"}) or 0.0


def static_headers(response) -> dict:
    return {name: value for name, value in response.headers.items() if name not in PER_CALL}


def test_the_replay_is_flasks_answer_counted_logged_and_measured_like_it(b2b, data):
    client, key = create(b2b, tier="starter")
    measured = latency_count()
    first = b2b.get(SEGMENTS, headers=bearer(key))
    assert first.status_code == 200 and replay_of(b2b).replayed == 0
    again = [b2b.get(SEGMENTS, headers=bearer(key)) for _ in range(3)]
    assert replay_of(b2b).replayed == 3
    for answer in again:
        assert answer.status_code == 200 and answer.data == first.data
        assert static_headers(answer) == static_headers(first)
        assert set(PER_CALL) <= set(answer.headers.keys())
    remaining = [int(a.headers["X-RateLimit-Remaining"]) for a in (first, *again)]
    assert remaining == [59, 58, 57, 56]  # each replay spends a call
    assert latency_count() == measured + 4
    flush(b2b)
    rows = usage_rows(client["id"])
    assert [(r.endpoint, r.method, r.status_code) for r in rows] == [("/segments", "GET", 200)] * 4


@pytest.mark.parametrize("url, route, rows", [("/api/v1/brands?limit=5", "/brands", "brands"),
                                              ("/api/v1/strains", "/strains", "strains"),
                                              ("/api/v1/timeseries?period=day", "/timeseries", "points")])
def test_every_answer_the_same_for_all_clients_is_replayed_as_flask_gave_it(b2b, data, url, route, rows):
    client, key = create(b2b, tier="starter")
    first = b2b.get(url, headers=bearer(key))
    assert first.status_code == 200 and first.get_json()[rows] and replay_of(b2b).replayed == 0
    again = b2b.get(url, headers=bearer(key))
    assert replay_of(b2b).replayed == 1
    assert again.data == first.data and static_headers(again) == static_headers(first)
    flush(b2b)
    assert [(r.endpoint, r.status_code) for r in usage_rows(client["id"])] == [(route, 200)] * 2


def test_a_replayed_url_refuses_every_key_flask_refuses(make_api, data):
    b2b = build(make_api, B2B_AUTH_FAILURES_PER_MINUTE="4")
    _, key = create(b2b, tier="starter")
    assert b2b.get(SEGMENTS, headers=bearer(key)).status_code == 200  # kept
    replay = replay_of(b2b)
    member, member_key = create(b2b, name="Member", tier="starter")
    assert b2b.get(SEGMENTS, headers=bearer(member_key)).status_code == 200 and replay.replayed == 1
    assert b2b.post(f"/api/admin/clients/{member['id']}/revoke", headers=ADMIN).status_code == 200
    refused = {
        "revoked": b2b.get(SEGMENTS, headers=bearer(member_key)),
        "missing": b2b.get(SEGMENTS),
        "malformed": b2b.get(SEGMENTS, headers=bearer("cnk_live_nope")),
        "two different keys": b2b.get(SEGMENTS, headers={**bearer(key), "X-API-Key": key + "x"}),
    }
    for why, answer in refused.items():
        assert answer.status_code == 401 and answer.mimetype == "application/problem+json", why
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    # each failure counted once, replay or not: the fifth within the minute is throttled
    throttled = b2b.get(SEGMENTS, headers=bearer("cnk_live_nope"))
    assert throttled.status_code == 429 and throttled.get_json()["limit"] == "auth-failures"
    assert replay.replayed == 1

    _, other = create(b2b, name="Other", tier="custom", monthlyQuota=100, rateLimitPerMin=2,
                      allowedEndpoints=["trends"])
    forbidden = b2b.get(SEGMENTS, headers=bearer(other))
    assert forbidden.status_code == 403 and forbidden.get_json()["allowedEndpoints"] == ["trends"]

    _, limited = create(b2b, name="Limited", tier="custom", monthlyQuota=100, rateLimitPerMin=2)
    answers = [b2b.get(SEGMENTS, headers=bearer(limited)) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].get_json()["limit"] == "minute" and int(answers[2].headers["Retry-After"]) >= 1
    assert replay.replayed == 3


def test_a_job_run_ends_the_replay_and_the_new_answer_is_kept(make_api, data, session):
    b2b = build(make_api, B2B_CACHE_CHECK_SECONDS="1")
    _, key = create(b2b, tier="starter")
    replay = replay_of(b2b)
    before = b2b.get(SEGMENTS, headers=bearer(key)).get_json()
    assert b2b.get(SEGMENTS, headers=bearer(key)).get_json() == before and replay.replayed == 1
    add_post(session, BOB, session.scalar(text("SELECT now()")), "another", consumer_type="connoisseur",
             experience_level="expert", product_category="flower", purchase_intent=10, sentiment_score=0)
    session.commit()
    run_jobs(session)  # the view is refreshed: its run is counted in intelligence_runs
    time.sleep(1.1)  # the process asks whether a job ran at most every second
    after = b2b.get(SEGMENTS, headers=bearer(key)).get_json()
    assert after["total_posts"] == before["total_posts"] + 1 and replay.replayed == 1  # Flask answered
    assert b2b.get(SEGMENTS, headers=bearer(key)).get_json() == after and replay.replayed == 2


def test_other_urls_cors_requests_and_invalid_queries_go_through_flask(b2b, data):
    _, key = create(b2b, tier="starter")
    replay = replay_of(b2b)
    b2b.get(SEGMENTS, headers=bearer(key))
    narrower = b2b.get(SEGMENTS + "?consumer_type=wellness", headers=bearer(key))
    assert narrower.status_code == 200 and replay.replayed == 0  # another URL: its own first answer
    assert all(s["consumer_type"] == "wellness" for s in narrower.get_json()["segments"])
    origin = "http://localhost:8081"
    cors = b2b.get(SEGMENTS, headers={**bearer(key), "Origin": origin})
    assert cors.status_code == 200 and cors.headers["Access-Control-Allow-Origin"] == origin
    assert "Origin" in cors.headers.get("Vary", "") and replay.replayed == 0
    for _ in range(2):
        invalid = b2b.get(SEGMENTS + "?lifestyles=many", headers=bearer(key))
        assert invalid.status_code == 422 and invalid.mimetype == "application/problem+json"
    head = b2b.head(SEGMENTS, headers=bearer(key))
    assert head.status_code == 200 and replay.replayed == 0
    assert b2b.get(SEGMENTS + "?consumer_type=wellness", headers=bearer(key)).data == narrower.data
    assert replay.replayed == 1


def test_redis_away_is_a_503_even_for_a_kept_answer(make_api, data, redis_url):
    target = urlparse(redis_url)
    proxy = Proxy((target.hostname, target.port or 6379))
    try:
        b2b = build(make_api, REDIS_URL=f"redis://127.0.0.1:{proxy.port}{target.path or '/0'}")
        _, key = create(b2b, tier="starter")
        assert [b2b.get(SEGMENTS, headers=bearer(key)).status_code for _ in range(2)] == [200, 200]
        assert replay_of(b2b).replayed == 1
        proxy.cut()
        for _ in range(3):  # leased calls end with the subscription; then no script can run
            answer = b2b.get(SEGMENTS, headers=bearer(key))
            if answer.status_code != 200:
                break
        assert answer.status_code == 503 and answer.mimetype == "application/problem+json"
        assert answer.headers["Retry-After"] == "1"
    finally:
        proxy.close()


def test_behind_a_proxy_failed_keys_are_limited_per_client_address(make_api, data):
    b2b = build(make_api, PROXY_COUNT="1", B2B_AUTH_FAILURES_PER_MINUTE="2")
    _, key = create(b2b, tier="starter")
    b2b.get(SEGMENTS, headers={**bearer(key), "X-Forwarded-For": "203.0.113.1"})  # kept
    bad = bearer("cnk_live_nope")

    def status(address):
        return b2b.get(SEGMENTS, headers={**bad, "X-Forwarded-For": address}).status_code

    assert [status("203.0.113.7") for _ in range(3)] == [401, 401, 429]
    assert status("203.0.113.8") == 401  # another client behind the same proxy: its own allowance


def test_replay_off_sends_every_request_through_flask(make_api, data):
    b2b = build(make_api, B2B_ANSWER_REPLAY="0")
    _, key = create(b2b, tier="starter")
    assert not isinstance(b2b.application.wsgi_app, AnswerReplay)
    answers = [b2b.get(SEGMENTS, headers=bearer(key)) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200] and answers[0].data == answers[1].data
