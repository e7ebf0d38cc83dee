"""B2B access to /api/v1 (services/b2b, app/api/v1/access.py): keys, refusals, rotation and
revocation, plans, per-minute limits under concurrency, monthly quotas, headers, the usage
log flushed exactly once, the admin API and ``cannect clients``. Real PostgreSQL and Redis."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
import redis as redis_lib
from sqlalchemy import func, select, update

from harness import wait_for
from models import ApiClient, ApiUsage
from services.b2b import access, keys, limits, tiers, usage
from services.b2b.tiers import PlanError, resolve_plan

ADMIN_TOKEN = "admin-token-" + "a" * 32
ADMIN = {"X-Admin-Token": ADMIN_TOKEN}
USAGE = "/api/v1/usage"


# --------------------------------------------------------------------------- helpers

@pytest.fixture
def b2b(make_api, redis_url):
    api = make_api(ADMIN_TOKEN=ADMIN_TOKEN, B2B_AUTH_FAILURES_PER_MINUTE="1000")
    # Usage entries reach Redis with the next limiter script or by flush() below, never from the
    # background pusher in the middle of a test's flush (which would leave one in flight).
    api.application.extensions["b2b_gate"].push_interval = 3600
    return api


@pytest.fixture
def rdb(redis_url):
    return redis_lib.Redis.from_url(redis_url)


def create(api, name="Acme", tier="starter", **plan) -> tuple[dict, str]:
    answer = api.post("/api/admin/clients", json={"name": name, "tier": tier, **plan}, headers=ADMIN)
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()["client"], answer.get_json()["apiKey"]


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def flush(api) -> dict:
    """Push the app's waiting usage entries to Redis (as its pusher thread would), then flush."""
    from cannect.config import get_settings
    from services.db import session_scope

    api.application.extensions["b2b_gate"].push_usage()
    return usage.flush(redis_lib.Redis.from_url(get_settings().redis_url), session_scope)


def call(api, path=USAGE, key=None, headers=None):
    return api.get(path, headers={**(bearer(key) if key else {}), **(headers or {})})


def set_columns(client_id: int, **values) -> None:
    """Change a client row behind the API's back (as time passing would), and announce it."""
    from cannect.config import get_settings
    from services.db import session_scope

    with session_scope() as session:
        session.execute(update(ApiClient).where(ApiClient.id == client_id).values(**values))
    limits.invalidate(redis_lib.Redis.from_url(get_settings().redis_url), client_id)


def usage_rows(client_id: int | None = None) -> list[ApiUsage]:
    from services.db import session_scope

    with session_scope() as session:
        query = select(ApiUsage).order_by(ApiUsage.id)
        if client_id is not None:
            query = query.where(ApiUsage.client_id == client_id)
        return list(session.scalars(query))


def assert_limit_headers(response, limit: int | None = None):
    headers = response.headers
    for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "RateLimit", "RateLimit-Policy"):
        assert name in headers, (name, dict(headers))
    if limit is not None:
        assert headers["X-RateLimit-Limit"] == str(limit)
        assert f'"minute";q={limit};w=60' in headers["RateLimit-Policy"]
        assert headers["RateLimit"].startswith(f'"minute";r={headers["X-RateLimit-Remaining"]};t=')


# --------------------------------------------------------------------------- keys and plans

def test_keys_carry_a_checksum_and_are_stored_only_as_a_hash():
    key, key_id, stored = keys.new_key()
    assert key.startswith(f"cnk_live_{key_id}_") and len(key) == 9 + 12 + 1 + 43 + 6
    assert stored.startswith("sha256$") and key not in stored and key[22:65] not in stored
    presented = keys.parse(key)
    assert presented.key_id == key_id and keys.matches(presented.secret_hash, stored)
    for position in (9, 30, len(key) - 1):  # one mistyped character anywhere: refused before any lookup
        typo = key[:position] + ("a" if key[position] != "a" else "b") + key[position + 1:]
        assert keys.parse(typo) is None
    assert keys.parse(key + "x") is None and keys.parse(key[:-1]) is None and keys.parse(None) is None
    assert len({keys.new_key()[0] for _ in range(100)}) == 100
    # Parsed keys are remembered, only those of a key's length: a header of any size costs no memory.
    remembered = keys._parse.cache_info().currsize
    assert keys.parse("cnk_live_" + "a" * 8000) is None and keys.parse(key) == presented
    assert keys._parse.cache_info().currsize == remembered


def test_tiers_have_defaults_and_per_client_overrides():
    assert resolve_plan("starter") == tiers.TIERS["starter"]
    growth = resolve_plan("growth", rate_limit_per_min=10, allowed_endpoints=["trends", "segments", "trends"])
    assert growth.rate_limit_per_min == 10 and growth.monthly_quota == 100_000
    assert growth.allowed_endpoints == ("segments", "trends")
    assert resolve_plan("enterprise").allowed_endpoints == tiers.ENDPOINTS
    for bad in (lambda: resolve_plan("gold"), lambda: resolve_plan("custom"),
                lambda: resolve_plan("starter", monthly_quota=0), lambda: resolve_plan("starter", allowed_endpoints=["x"])):
        with pytest.raises(PlanError):
            bad()


# --------------------------------------------------------------------------- refusals

def test_every_bad_key_gets_the_same_401_with_headers(b2b):
    client, key = create(b2b)
    unknown_body = "cnk_live_" + "A" * 12 + "_" + "B" * 43
    unknown = unknown_body + keys.checksum(unknown_body)
    typo = key[:-2] + ("x" if key[-2] != "x" else "y") + key[-1]
    injections = ["' OR '1'='1", "cnk_live_' OR 1=1 --", f"{key}' OR '1'='1", "cnk_live_x_y; DROP TABLE api_clients;--",
                  key.replace(client["keyId"], "' OR 1=1--" + "a" * 2)]
    attempts = [{}, bearer(""), bearer("cnk_live_short"), bearer(typo), bearer(unknown), {"Authorization": f"Basic {key}"},
                {"X-API-Key": unknown}, {"Authorization": f"Bearer {key}", "X-API-Key": unknown},
                *[bearer(text) for text in injections], *[{"X-API-Key": text} for text in injections]]
    bodies = set()
    for headers in attempts:
        response = call(b2b, headers=headers)
        assert response.status_code == 401, headers
        assert response.mimetype == "application/problem+json"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert '"auth-failures";q=1000;w=60' in response.headers["RateLimit-Policy"]
        assert_limit_headers(response)
        bodies.add(json.dumps(response.get_json(), sort_keys=True))
    assert len(bodies) == 1
    # an unmatched path and a foreign endpoint answer the same to a stranger: no map of the API
    assert call(b2b, "/api/v1/no-such-thing").get_json() == {**json.loads(bodies.pop()), "instance": "/api/v1/no-such-thing"}
    with ThreadPoolExecutor(1) as pool:  # the table is intact and the real key still works
        assert pool.submit(call, b2b, USAGE, key).result().status_code == 200


def test_failed_keys_are_limited_per_ip(make_api, redis_url):
    api = make_api(ADMIN_TOKEN=ADMIN_TOKEN, B2B_AUTH_FAILURES_PER_MINUTE="3")
    statuses = [call(api, headers=bearer("cnk_live_nope")) for _ in range(5)]
    assert [r.status_code for r in statuses] == [401, 401, 401, 429, 429]
    assert statuses[-1].get_json()["limit"] == "auth-failures" and int(statuses[-1].headers["Retry-After"]) >= 1


def test_a_valid_key_works_by_bearer_or_header_with_headers_on_every_answer(b2b):
    client, key = create(b2b)
    for headers in (bearer(key), {"X-API-Key": key}, {"Authorization": f"bearer {key}", "X-API-Key": key}):
        response = call(b2b, headers=headers)
        assert response.status_code == 200, response.get_json()
        assert_limit_headers(response, 60)
        assert '"month";q=10000;w=' in response.headers["RateLimit-Policy"]
    assert int(response.headers["X-RateLimit-Remaining"]) == 57
    assert response.headers["RateLimit"].endswith(f'"month";r={10000 - 3};t={response.headers["RateLimit"].split(";t=")[-1]}')
    invalid = call(b2b, USAGE + "?from=yesterday", key)  # a 422 carries them too
    assert invalid.status_code == 422 and invalid.mimetype == "application/problem+json"
    assert_limit_headers(invalid, 60)
    missing = call(b2b, "/api/v1/segments/no-such-route", key)
    assert missing.status_code == 404
    assert_limit_headers(missing, 60)


def test_a_key_on_an_endpoint_outside_its_plan_gets_403_without_spending(b2b):
    _, key = create(b2b, tier="starter")
    before = call(b2b, USAGE, key)
    forbidden = call(b2b, "/api/v1/intents", key)
    assert forbidden.status_code == 403 and forbidden.mimetype == "application/problem+json"
    assert "intents" in forbidden.get_json()["detail"] and "intents" not in forbidden.get_json()["allowedEndpoints"]
    assert_limit_headers(forbidden, 60)
    assert forbidden.headers["X-RateLimit-Remaining"] == before.headers["X-RateLimit-Remaining"]
    _, wider = create(b2b, name="Wide", tier="custom", monthlyQuota=10, rateLimitPerMin=10, allowedEndpoints=["intents"])
    assert call(b2b, "/api/v1/intents", wider).status_code != 403
    assert call(b2b, "/api/v1/trends", wider).status_code == 403


# --------------------------------------------------------------------------- revocation, rotation, expiry

def test_revocation_is_effective_at_once_even_in_another_process(b2b, env):
    client, key = create(b2b)
    assert call(b2b, USAGE, key).status_code == 200  # now cached in this process
    revoked = cannect(dict(env, ADMIN_TOKEN=ADMIN_TOKEN), "clients", "revoke", str(client["id"]), "--json")
    assert revoked.returncode == 0, revoked.stderr
    assert json.loads(revoked.stdout)["active"] is False
    assert call(b2b, USAGE, key).status_code == 401
    assert b2b.post(f"/api/admin/clients/{client['id']}/rotate", json={}, headers=ADMIN).status_code == 422


def test_rotation_keeps_the_old_key_during_the_overlap_only(b2b):
    client, old = create(b2b)
    call(b2b, USAGE, old)
    rotated = b2b.post(f"/api/admin/clients/{client['id']}/rotate", json={"overlapSeconds": 3600}, headers=ADMIN)
    assert rotated.status_code == 200
    new = rotated.get_json()["apiKey"]
    assert new != old and rotated.get_json()["client"]["previousKeyId"] == client["keyId"]
    assert call(b2b, USAGE, old).status_code == 200 and call(b2b, USAGE, new).status_code == 200
    set_columns(client["id"], previous_key_expires_at=datetime.now(timezone.utc) - timedelta(seconds=1))  # overlap over
    assert call(b2b, USAGE, old).status_code == 401 and call(b2b, USAGE, new).status_code == 200
    # a rotation without overlap stops the current key at once; the one before is gone too
    again = b2b.post(f"/api/admin/clients/{client['id']}/rotate", json={"overlapSeconds": 0}, headers=ADMIN).get_json()
    assert call(b2b, USAGE, new).status_code == 401 and call(b2b, USAGE, old).status_code == 401
    assert call(b2b, USAGE, again["apiKey"]).status_code == 200 and again["client"]["previousKeyId"] is None


def test_an_expired_key_is_refused(b2b):
    client, key = create(b2b, expiresInDays=30)
    assert call(b2b, USAGE, key).status_code == 200
    set_columns(client["id"], key_expires_at=datetime.now(timezone.utc) - timedelta(seconds=1))
    assert call(b2b, USAGE, key).status_code == 401


# --------------------------------------------------------------------------- limits

def test_concurrent_requests_at_the_rate_limit_edge_let_exactly_the_limit_through(b2b):
    _, key = create(b2b, tier="custom", monthlyQuota=1000, rateLimitPerMin=7)
    barrier = threading.Barrier(24)

    def hit(_):
        barrier.wait()
        return call(b2b, USAGE, key)

    with ThreadPoolExecutor(24) as pool:
        answers = list(pool.map(hit, range(24)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(200) == 7 and statuses.count(429) == 17
    for refused in (a for a in answers if a.status_code == 429):
        assert refused.get_json()["limit"] == "minute" and int(refused.headers["Retry-After"]) >= 1
        assert refused.headers["X-RateLimit-Remaining"] == "0"
        assert_limit_headers(refused, 7)


def test_the_limiter_script_is_exact_under_a_race_of_many_threads(rdb):
    limiter = limits.Limiter(rdb)
    rdb.set(limits.quota_key(99, datetime.now(timezone.utc)), 0)
    with ThreadPoolExecutor(32) as pool:
        verdicts = list(pool.map(lambda _: limiter.admit(99, None, 50, 1_000_000), range(300)))
    assert sum(v.status == "ok" for v in verdicts) == 50
    assert sorted(v.remaining for v in verdicts if v.status == "ok") == list(range(50))
    assert limits.quota_used(rdb, 99) == 50  # refused calls did not count against the month


def test_a_lease_takes_at_most_a_quarter_of_what_is_left_and_never_passes_a_limit(rdb):
    limiter = limits.Limiter(rdb)
    rdb.set(limits.quota_key(97, datetime.now(timezone.utc)), 0)
    first = limiter.admit(97, None, 50, 1_000_000, extra=100)
    assert first.status == "ok" and first.granted == 1 + 49 // 4 and first.remaining == 50 - first.granted
    granted = first.granted
    while (verdict := limiter.admit(97, None, 50, 1_000_000, extra=100)).status == "ok":
        granted += verdict.granted
    assert granted == 50 and verdict.granted == 0 and limits.quota_used(rdb, 97) == 50
    # the month: a lease never goes past the quota; leased calls not used go back to it
    rdb.set(limits.quota_key(96, datetime.now(timezone.utc)), 0)
    taken = [limiter.admit(96, None, 100_000, 9, extra=32).granted for _ in range(12)]
    assert sum(taken) == 9 and taken[0] == 1 + 8 // 4
    counter = limiter.month_counter(96)
    assert limiter.refund(counter, 3) == 3 and limits.quota_used(rdb, 96) == 6
    assert limiter.refund(counter, 100) == 6 and limits.quota_used(rdb, 96) == 0  # never below zero
    rdb.delete(counter)
    assert limiter.refund(counter, 2) == 0 and rdb.get(counter) is None  # a lost counter is seeded, not made up


def test_leased_calls_serve_without_a_script_and_a_revocation_still_stops_the_next_call(b2b, rdb, monkeypatch):
    monkeypatch.setattr(access, "LEASE_SECONDS", 600.0)  # no lease expires on a slow machine
    client, key = create(b2b, tier="custom", monthlyQuota=100_000, rateLimitPerMin=100_000)
    gate = b2b.application.extensions["b2b_gate"]
    scripts = []
    admit = gate.limiter.admit
    gate.limiter.admit = lambda *a, **k: scripts.append(k.get("extra")) or admit(*a, **k)
    answers = [call(b2b, USAGE, key) for _ in range(40)]
    assert all(a.status_code == 200 for a in answers)
    assert len(scripts) < 12 and scripts[0] == 0 and max(scripts) > 1  # leases grew: 40 calls, few scripts
    months = [int(a.headers["RateLimit"].split('"month";r=')[1].split(";")[0]) for a in answers]
    assert months == list(range(99_999, 99_959, -1))  # what a client sees goes down call by call
    while gate.held(client["id"]) == 0:
        call(b2b, USAGE, key)
        answers.append(None)
    # the usage report does not count the calls this process holds
    assert call(b2b, USAGE, key).get_json()["quota"]["used"] == len(answers) + 1
    revoked = b2b.post(f"/api/admin/clients/{client['id']}/revoke", headers=ADMIN)
    assert revoked.status_code == 200
    assert call(b2b, USAGE, key).status_code == 401  # the lease was dropped before this request
    assert gate.held(client["id"]) == 0
    gate.push_usage()  # gives the dropped lease back to the month
    assert limits.quota_used(rdb, client["id"]) == len(answers) + 1


def test_a_revocation_from_another_process_stops_a_leased_client_at_once(b2b, env, monkeypatch):
    monkeypatch.setattr(access, "LEASE_SECONDS", 600.0)
    client, key = create(b2b, tier="custom", monthlyQuota=100_000, rateLimitPerMin=100_000)
    for _ in range(30):
        assert call(b2b, USAGE, key).status_code == 200
        if b2b.application.extensions["b2b_gate"].held(client["id"]):
            break
    assert b2b.application.extensions["b2b_gate"].held(client["id"]) > 0
    revoked = cannect(dict(env, ADMIN_TOKEN=ADMIN_TOKEN), "clients", "revoke", str(client["id"]), "--json")
    assert revoked.returncode == 0, revoked.stderr
    assert call(b2b, USAGE, key).status_code == 401


def test_the_change_listener_hears_changes_again_after_its_connection_is_killed(rdb, monkeypatch):
    """Its poller is registered on one descriptor: a new subscription (a new socket) must be
    watched instead, or a change published later would go unheard."""
    monkeypatch.setattr(access, "LISTEN_RETRY_SECONDS", 0.0)
    heard, lost = [], []
    changes = access.Changes(rdb, heard.append, lambda: lost.append(True))
    assert changes.start() and changes.poll() and heard == []  # nothing published: quiet
    limits.invalidate(rdb, 41)
    wait_for(lambda: changes.poll() and 41 in heard, "the first change heard", 5)
    first = changes._pubsub.connection._sock
    old_fd, port = first.fileno(), first.getsockname()[1]
    rdb.client_kill_filter(_id=next(c["id"] for c in rdb.client_list(_type="pubsub")
                                    if c["addr"].endswith(f":{port}")))
    wait_for(lambda: not changes.poll(), "the killed subscription noticed", 5)  # a hang-up is not quiet
    assert lost and not changes.listening
    # The old descriptor now names a connected socket that stays quiet: a poller still watching
    # it would take the new subscription for quiet too, and miss what it receives.
    quiet = socket.create_connection(("127.0.0.1", rdb.connection_pool.connection_kwargs["port"]))
    duplicated = quiet.fileno() != old_fd  # (it may have taken the freed number itself)
    if duplicated:
        os.dup2(quiet.fileno(), old_fd)
    try:
        assert changes.start() and changes._pubsub.connection._sock.fileno() != old_fd
        assert changes.poll() and heard == [41]
        limits.invalidate(rdb, 42)
        wait_for(lambda: changes.poll() and 42 in heard, "a change heard on the new socket", 5)
    finally:
        changes._pubsub.close()
        if duplicated:
            os.close(old_fd)
        quiet.close()


def test_two_processes_leasing_at_once_never_pass_the_limit_or_the_quota(make_api, rdb):
    first = make_api(ADMIN_TOKEN=ADMIN_TOKEN, B2B_AUTH_FAILURES_PER_MINUTE="1000")
    second = make_api(ADMIN_TOKEN=ADMIN_TOKEN, B2B_AUTH_FAILURES_PER_MINUTE="1000")  # another gate, as another process
    for api in (first, second):
        api.application.extensions["b2b_gate"].push_interval = 3600
    for plan, limit in (({"monthlyQuota": 100_000, "rateLimitPerMin": 90}, "minute"),
                        ({"monthlyQuota": 90, "rateLimitPerMin": 100_000}, "month")):
        client, key = create(first, name=f"Racer {limit}", tier="custom", **plan)
        for api in (first, second):  # both warm: their leases have grown
            for _ in range(5):
                call(api, USAGE, key)
        barrier = threading.Barrier(32)
        started = time.monotonic()

        def hit(i):
            barrier.wait()
            return [call((first, second)[i % 2], USAGE, key).status_code for _ in range(6)]

        with ThreadPoolExecutor(32) as pool:
            statuses = [status for answers in pool.map(hit, range(32)) for status in answers]
        served = 10 + statuses.count(200)
        refilled = (time.monotonic() - started) * 90 / 60 + 1 if limit == "minute" else 0  # one call per 2/3 s
        assert served <= 90 + refilled and statuses.count(429) > 0, (limit, served, refilled)
        for api in (first, second):  # what they still hold goes back to the month
            gate = api.application.extensions["b2b_gate"]
            gate._lost()
            gate.refund()
        assert limits.quota_used(rdb, client["id"]) == served


def test_the_limiter_survives_redis_forgetting_its_script(rdb):
    limiter = limits.Limiter(rdb)
    rdb.script_flush()
    assert limiter.admit(98, None, 5, None).status == "ok"
    assert limiter.admit(98, None, 5, None).remaining == 3


def test_redis_away_is_a_503_not_an_open_door(make_api, db_url):
    api = make_api(ADMIN_TOKEN=ADMIN_TOKEN, REDIS_URL="redis://127.0.0.1:1/0")
    from services.b2b import clients
    from services.db import session_scope

    with session_scope() as session:
        _, key = clients.create(session, "Acme", "starter")
    answer = call(api, USAGE, key)
    assert answer.status_code == 503 and answer.mimetype == "application/problem+json"
    assert answer.headers["Retry-After"] == "1"


def test_the_monthly_quota_runs_out_and_is_seeded_from_api_usage(b2b, rdb):
    client, key = create(b2b, tier="custom", monthlyQuota=3, rateLimitPerMin=100)
    answers = [call(b2b, USAGE, key) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    last = answers[-1]
    assert last.get_json()["limit"] == "month" and "quota" in last.get_json()["detail"]
    now = datetime.now(timezone.utc)
    assert int(last.headers["Retry-After"]) == pytest.approx((limits.next_month_start(now) - now).total_seconds(), abs=5)
    assert '"month";r=0;' in last.headers["RateLimit"]
    # Redis loses the counter: it is rebuilt from api_usage (the refused call does not count)
    assert flush(b2b)["inserted"] == 4
    rdb.delete(limits.quota_key(client["id"], now))
    assert call(b2b, USAGE, key).status_code == 429
    assert limits.quota_used(rdb, client["id"]) == 3
    bigger = b2b.put(f"/api/admin/clients/{client['id']}/tier", json={"tier": "custom", "monthlyQuota": 5,
                                                                       "rateLimitPerMin": 100}, headers=ADMIN)
    assert bigger.status_code == 200 and call(b2b, USAGE, key).status_code == 200


# --------------------------------------------------------------------------- usage

def test_usage_is_recorded_and_a_client_sees_only_its_own(b2b):
    alice, alice_key = create(b2b, name="Alice")
    bob, bob_key = create(b2b, name="Bob")
    for _ in range(3):
        call(b2b, USAGE, alice_key)
    call(b2b, "/api/v1/intents", alice_key)  # 403, recorded
    call(b2b, USAGE, bob_key)
    assert flush(b2b)["inserted"] == 5
    mine = call(b2b, USAGE, alice_key).get_json()
    assert {(d["endpoint"], d["calls"], d["errors"]) for d in mine["days"]} == {("/usage", 3, 0), ("/intents", 1, 1)}
    assert mine["quota"]["used"] == 4 and mine["quota"]["limit"] == 10000 and mine["quota"]["remaining"] == 9996
    theirs = call(b2b, USAGE, bob_key).get_json()
    assert theirs["totalCalls"] == 1 and theirs["quota"]["used"] == 2
    for sneaky in (f"?client_id={alice['id']}", f"?clientId={alice['id']}", "?from=2026-01-01'%20OR%20'1'='1",
                   "?to=2026-01-01;DROP%20TABLE%20api_usage", "?from=2026-02-01&to=2026-01-01"):
        assert call(b2b, USAGE + sneaky, bob_key).status_code == 422, sneaky
    rows = usage_rows(alice["id"])
    assert {(r.method, r.status_code) for r in rows} == {("GET", 200), ("GET", 403)}
    assert all(r.response_time_ms is not None and r.request_id for r in rows)
    assert b2b.get(f"/api/admin/clients/{alice['id']}", headers=ADMIN).get_json()["lastUsedAt"] is not None


def test_usage_entries_ride_on_the_next_limiter_call(b2b, rdb):
    _, key = create(b2b)
    call(b2b, USAGE, key)
    assert rdb.llen(usage.BUFFER) == 0  # waiting in the process: no round trip of its own
    call(b2b, USAGE, key)
    assert rdb.llen(usage.BUFFER) == 1  # pushed by the second call's limiter script
    assert b2b.application.extensions["b2b_gate"].push_usage() == 1 and rdb.llen(usage.BUFFER) == 2


def test_usage_flush_counts_each_call_exactly_once_across_replays_and_crashes(b2b, rdb):
    client, _ = create(b2b)
    calls = [usage.entry(client["id"], "/trends", "GET", 200, 5) for _ in range(7)]
    for item in calls:
        usage.record(rdb, item)
    rdb.rpush(usage.BUFFER, b"not json", b'["x", 1]')
    first = flush(b2b)
    assert first == {"inserted": 7, "duplicates": 0, "rejected": 2, "skipped": False}
    assert rdb.llen(usage.REJECTED) == 2  # kept for a person, not dropped
    for item in calls[:3]:  # the same calls delivered again (a retried request log): nothing new
        usage.record(rdb, item)
    assert flush(b2b)["duplicates"] == 3
    # a flusher claims a batch, commits it and dies before clearing: the next one finds it claimed
    more = [usage.entry(client["id"], "/segments", "GET", 200, 3) for _ in range(4)]
    for item in more:
        usage.record(rdb, item)
    claimed = rdb.register_script(usage.CLAIM)(keys=[usage.BUFFER, usage.PROCESSING], args=[100])
    assert len(claimed) == 4 and rdb.llen(usage.BUFFER) == 0
    from services.db import session_scope
    with session_scope() as session:
        usage._insert(session, [usage._parse(raw) for raw in claimed])
    assert flush(b2b) == {"inserted": 0, "duplicates": 4, "rejected": 0, "skipped": False}
    assert rdb.llen(usage.PROCESSING) == 0 and usage.pending(rdb) == 0
    assert len(usage_rows(client["id"])) == 11
    # a second flusher while one holds the lock does nothing
    rdb.set(usage.LOCK, "someone", px=10_000)
    usage.record(rdb, usage.entry(client["id"], "/trends", "GET", 200, 1))
    assert flush(b2b)["skipped"] is True and usage.pending(rdb) == 1


def test_usage_entries_carry_request_ids_unique_across_processes():
    """The flush counts a call once per request id: ids never repeat in a process, nor after a fork."""
    ids = [json.loads(usage.entry(1, "segments", "GET", 200, 3))[0] for _ in range(1000)]
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # a worker forked from a process that had already made ids
        os.write(write, json.dumps([json.loads(usage.entry(1, "segments", "GET", 200, 3))[0]
                                    for _ in range(1000)]).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        forked = json.loads(pipe.read())
    os.waitpid(child, 0)
    assert len(set(ids) | set(forked)) == 2000
    assert all(uuid.UUID(i).version == 4 and str(uuid.UUID(i)) == i for i in ids + forked)


def test_the_flush_actor_and_its_schedule(b2b):
    from tasks import b2b as b2b_tasks
    from tasks.scheduler import JOBS

    assert (b2b_tasks.flush_usage, 10) in JOBS
    assert b2b_tasks.flush_usage.queue_name == "b2b"
    _, key = create(b2b)
    call(b2b, USAGE, key)
    b2b.application.extensions["b2b_gate"].push_usage()
    b2b_tasks.app_redis.cache_clear()
    b2b_tasks.flush_usage.fn()
    b2b_tasks.app_redis.cache_clear()
    assert len(usage_rows()) == 1


# --------------------------------------------------------------------------- admin API and CLI

def test_admin_api_manages_clients_behind_the_admin_token(b2b):
    assert b2b.get("/api/admin/clients").status_code == 401
    assert b2b.get("/api/admin/clients", headers={"X-Admin-Token": "wrong" * 8}).status_code == 403
    client, key = create(b2b, name="Robert'); DROP TABLE api_clients;--", tier="growth", rateLimitPerMin=120)
    assert client["name"] == "Robert'); DROP TABLE api_clients;--" and client["rateLimitPerMin"] == 120
    assert "intents" in client["allowedEndpoints"] and client["monthlyQuota"] == 100_000
    listed = b2b.get("/api/admin/clients", headers=ADMIN).get_json()["clients"]
    assert [c["id"] for c in listed] == [client["id"]] and key not in json.dumps(listed)
    shown = b2b.get(f"/api/admin/clients/{client['id']}", headers=ADMIN).get_json()
    assert shown["keyId"] == client["keyId"] and "apiKey" not in shown
    moved = b2b.put(f"/api/admin/clients/{client['id']}/tier", json={"tier": "starter"}, headers=ADMIN).get_json()
    assert moved["tier"] == "starter" and moved["rateLimitPerMin"] == 60 and "intents" not in moved["allowedEndpoints"]
    assert call(b2b, "/api/v1/intents", key).status_code == 403  # the new plan applies at once
    report = b2b.get(f"/api/admin/clients/{client['id']}/usage", headers=ADMIN)
    assert report.status_code == 200 and report.get_json()["quota"]["limit"] == 10_000
    for method, path, body in (("get", "/api/admin/clients/999", None), ("post", "/api/admin/clients/999/revoke", None),
                               ("put", "/api/admin/clients/999/tier", {"tier": "growth"})):
        assert getattr(b2b, method)(path, json=body, headers=ADMIN).status_code == 404
    for body in ({"name": "x", "tier": "gold"}, {"name": "", "tier": "starter"}, {"name": "x", "tier": "custom"},
                 {"name": "x", "tier": "starter", "allowedEndpoints": ["admin"]},
                 {"name": "x", "tier": "starter", "rateLimitPerMin": 0}, {"name": "x", "tier": "starter", "extra": 1}):
        answer = b2b.post("/api/admin/clients", json=body, headers=ADMIN)
        assert answer.status_code == 422 and answer.mimetype == "application/problem+json", body
    assert b2b.get("/api/admin/clients/1%27%20OR%201=1", headers=ADMIN).status_code == 404
    revoked = b2b.post(f"/api/admin/clients/{client['id']}/revoke", headers=ADMIN).get_json()
    assert revoked["active"] is False and revoked["revokedAt"]
    assert call(b2b, USAGE, key).status_code == 401


def test_openapi_documents_the_b2b_api_and_its_admin(b2b):
    spec = b2b.get("/api/openapi.json").get_json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["apiKey"] == {"type": "apiKey", "in": "header", "name": "X-API-Key",
                                 "description": schemes["apiKey"]["description"]}
    assert schemes["apiKeyBearer"]["scheme"] == "bearer"
    operation = spec["paths"]["/api/v1/usage"]["get"]
    assert {"apiKey": []} in operation["security"]
    assert {"200", "401", "403", "429"} <= set(operation["responses"])
    for path in ("/api/admin/clients", "/api/admin/clients/{client_id}", "/api/admin/clients/{client_id}/rotate",
                 "/api/admin/clients/{client_id}/revoke", "/api/admin/clients/{client_id}/tier",
                 "/api/admin/clients/{client_id}/usage"):
        assert path in spec["paths"], path


def cannect(env, *args):
    return subprocess.run([sys.executable, "-m", "cannect.cli", *args], env=env, capture_output=True, text=True)


def test_cli_manages_clients(env, redis_url):
    created = cannect(env, "clients", "create", "CLI Co", "--tier", "growth", "--rate", "90", "--json")
    assert created.returncode == 0, created.stderr
    client = json.loads(created.stdout)
    assert client["rateLimitPerMin"] == 90 and keys.parse(client["apiKey"]) is not None
    cid = str(client["id"])
    listed = cannect(env, "clients", "list")
    assert "CLI Co" in listed.stdout and client["apiKey"] not in listed.stdout
    shown = json.loads(cannect(env, "clients", "show", cid, "--json").stdout)
    assert shown["usage"]["quota"]["limit"] == 100_000 and "apiKey" not in shown
    rotated = json.loads(cannect(env, "clients", "rotate", cid, "--overlap", "60", "--json").stdout)
    assert rotated["previousKeyId"] == client["keyId"] and rotated["apiKey"] != client["apiKey"]
    text = cannect(env, "clients", "rotate", cid)
    assert "shown once" in text.stdout and "cnk_live_" in text.stdout
    tiered = json.loads(cannect(env, "clients", "set-tier", cid, "custom", "--quota", "50", "--rate", "5",
                                "--endpoints", "trends,search", "--json").stdout)
    assert (tiered["monthlyQuota"], tiered["allowedEndpoints"]) == (50, ["trends", "search"])
    assert json.loads(cannect(env, "clients", "revoke", cid, "--json").stdout)["active"] is False
    assert "revoked" in cannect(env, "clients", "list").stdout
    assert cannect(env, "clients", "list", "--active").stdout.strip() == ""
    for args, status, words in ((("show", "999"), 1, "no API client"), (("create", "X", "--tier", "gold"), 2, "gold"),
                                (("create", "X", "--tier", "custom"), 2, "custom tier needs"),
                                (("set-tier", cid, "starter", "--endpoints", "nope"), 2, "unknown endpoints"),
                                (("rotate", cid), 2, "revoked")):
        result = cannect(env, "clients", *args)
        assert result.returncode == status and words in result.stderr and "Traceback" not in result.stderr, args
    with redis_lib.Redis.from_url(redis_url) as rdb:
        assert rdb.get(limits.version_key(client["id"])) is not None  # every change was announced


def test_usage_rows_count_in_the_database(b2b):
    client, key = create(b2b)
    for _ in range(2):
        call(b2b, USAGE, key)
    flush(b2b)
    from services.db import session_scope
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(ApiUsage).where(ApiUsage.client_id == client["id"])) == 2
