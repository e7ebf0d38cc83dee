"""The admin API: ``/api/admin/backfills`` (app/api/admin_backfills.py) and ``/api/admin/queues``,
``/api/admin/status`` (app/api/admin_ops.py), on real PostgreSQL and Redis, with a real
Dramatiq worker in this process running the jobs and the failing test actor.
"""

from __future__ import annotations

import pytest

from admin_kinds import FAIL, HELD, HOLD, RELEASE, Jobs
from harness import token_for

JWT_SECRET = "test-secret-" + "x" * 32
ADMIN_TOKEN = "admin-token-" + "c" * 32
ADMIN_DID = "did:plc:" + "a" * 24
HEADERS = {"X-Admin-Token": ADMIN_TOKEN}


@pytest.fixture
def api(make_api, monkeypatch, db_url, redis_url):
    client = make_api(ADMIN_TOKEN=ADMIN_TOKEN, ADMIN_DIDS=ADMIN_DID)
    jobs = Jobs(monkeypatch, db_url, redis_url, JWT_SECRET)
    client.jobs = jobs
    yield client
    jobs.close()


def job(api, job_id: int) -> dict:
    answer = api.get(f"/api/admin/backfills/{job_id}", headers=HEADERS)
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def test_admin_endpoints_need_an_admin(api):
    member = {"Authorization": f"Bearer {token_for({'JWT_SECRET': JWT_SECRET}, 'did:plc:' + 'b' * 24)}"}
    admin = {"Authorization": f"Bearer {token_for({'JWT_SECRET': JWT_SECRET}, ADMIN_DID)}"}
    for method, path in (("post", "/api/admin/backfills"), ("get", "/api/admin/backfills"),
                         ("get", "/api/admin/backfills/1"), ("post", "/api/admin/backfills/1/cancel"),
                         ("post", "/api/admin/backfills/1/resume"), ("get", "/api/admin/queues"),
                         ("get", "/api/admin/queues/dead"), ("delete", "/api/admin/queues/dead/x"),
                         ("get", "/api/admin/status")):
        anonymous = getattr(api, method)(path, json={"kind": "x"})
        assert anonymous.status_code == 401, (path, anonymous.get_json())
        assert anonymous.content_type == "application/problem+json"
        assert getattr(api, method)(path, json={}, headers=member).status_code == 403
        assert getattr(api, method)(path, json={}, headers={"X-Admin-Token": "wrong"}).status_code == 403
    assert api.get("/api/admin/backfills", headers=admin).status_code == 200  # an admin member


def test_start_list_show_cancel_and_resume(api):
    with api.jobs.worker():
        started = api.post("/api/admin/backfills", json={"kind": "test_items", "params": {"n": 5, "size": 2}},
                           headers=HEADERS)
        assert started.status_code == 201, started.get_json()
        body = started.get_json()
        assert body["started"] is True and body["job"]["total"] == 5 and body["job"]["requestedBy"] == "token"
        first = body["job"]["jobId"]
        api.jobs.wait_for(lambda: job(api, first)["status"] == "done", "done")
        done = job(api, first)
        assert (done["done"], done["report"], done["unit"]) == (5, {"items": 5}, "items")
        assert done["ratePerSecond"] > 0

        api.jobs.redis.set(HOLD, 0)
        second = api.post("/api/admin/backfills", json={"kind": "test_items", "params": {"n": 4}},
                          headers=HEADERS).get_json()["job"]["jobId"]
        api.jobs.wait_for(lambda: api.jobs.redis.llen(HELD) == 1, "holding")
        running = api.get("/api/admin/backfills", query_string={"status": "running"}, headers=HEADERS).get_json()
        assert [j["jobId"] for j in running["jobs"]] == [second] and running["cursor"] is None
        assert api.get(f"/api/admin/backfills/{second}/resume", headers=HEADERS).status_code == 405
        cancelled = api.post(f"/api/admin/backfills/{second}/cancel", headers=HEADERS)
        assert cancelled.status_code == 200 and cancelled.get_json()["status"] == "cancelled"
        api.jobs.redis.rpush(RELEASE, 1)
        api.jobs.drain()
    assert job(api, second)["chunksDone"] == 1  # the chunk in flight counted, no other ran
    again = api.post(f"/api/admin/backfills/{second}/cancel", headers=HEADERS)
    assert again.status_code == 409 and again.content_type == "application/problem+json"
    assert api.post(f"/api/admin/backfills/{first}/resume", headers=HEADERS).status_code == 409
    assert api.get("/api/admin/backfills/999999", headers=HEADERS).status_code == 404

    page = api.get("/api/admin/backfills", query_string={"limit": 1}, headers=HEADERS).get_json()
    assert [j["jobId"] for j in page["jobs"]] == [second] and page["cursor"] == str(second)
    rest = api.get("/api/admin/backfills", query_string={"limit": 1, "cursor": page["cursor"]}, headers=HEADERS)
    assert [j["jobId"] for j in rest.get_json()["jobs"]] == [first]
    assert api.get("/api/admin/backfills", query_string={"kind": "reclassify"},
                   headers=HEADERS).get_json()["jobs"] == []


def test_a_failed_job_is_resumed_through_the_api(api):
    api.jobs.redis.set(FAIL, 2)
    with api.jobs.worker():
        job_id = api.post("/api/admin/backfills", json={"kind": "test_items", "params": {"n": 4, "size": 2}},
                          headers=HEADERS).get_json()["job"]["jobId"]
        api.jobs.wait_for(lambda: job(api, job_id)["status"] == "failed", "failed")
        assert job(api, job_id)["cursor"] == {"next": 2}
        api.jobs.redis.delete(FAIL)
        resumed = api.post(f"/api/admin/backfills/{job_id}/resume", headers=HEADERS)
        assert resumed.status_code == 200 and resumed.get_json()["started"] is True
        api.jobs.wait_for(lambda: job(api, job_id)["status"] == "done", "done")
    assert job(api, job_id)["done"] == 4 and api.jobs.items() == {0, 1, 2, 3}


def test_invalid_jobs_are_a_problem_422_naming_the_reason(api):
    for body, says in (({"kind": "nope"}, "unknown kind 'nope'"),
                       ({"kind": "reclassify", "params": {"since": "yesterday"}}, "since must be an ISO date"),
                       ({"kind": "reclassify", "params": {"limit": -1}}, "limit must be an integer"),
                       ({"kind": "recompute", "params": {"what": 3}}, "what must be one of"),
                       ({"kind": "recompute", "params": {"extra": {"deep": [1]}}}, "unknown params extra"),
                       ({"kind": "recompute", "params": []}, "params"),
                       ({"kind": ""}, "kind"), ({"params": {}}, "kind"),
                       ({"kind": "recompute", "surprise": 1}, "surprise"),
                       # admin input the server would open or connect to: confined (a clear 422, no 500)
                       ({"kind": "legacy_import", "params": {"path": "/etc/passwd"}}, "inside LEGACY_IMPORT_DIR"),
                       ({"kind": "legacy_import", "params": {"path": "../../etc/passwd"}}, "inside LEGACY_IMPORT_DIR"),
                       ({"kind": "jetstream_replay", "params": {"cursor_from_us": 1, "cursor_to_us": 2,
                                                                "url": "wss://169.254.169.254/"}}, "non-public"),
                       ({"kind": "jetstream_replay", "params": {"cursor_from_us": 1, "cursor_to_us": 2,
                                                                "url": "ws://127.0.0.1:6379/"}}, "wss")):
        answer = api.post("/api/admin/backfills", json=body, headers=HEADERS)
        assert answer.status_code == 422, (body, answer.get_json())
        assert answer.content_type == "application/problem+json" and says in str(answer.get_json()), body
    for query in ({"status": "sleeping"}, {"limit": 0}, {"cursor": "abc"}):
        assert api.get("/api/admin/backfills", query_string=query, headers=HEADERS).status_code == 422
    assert api.get("/api/admin/backfills", headers=HEADERS).get_json()["jobs"] == []


def test_queues_dead_letters_and_status(api):
    import queue_actors

    redis = api.jobs.redis
    with api.jobs.worker(queues=(queue_actors.QUEUE,)):
        queue_actors.flaky.send("a", {"conn": 1, "seq": 2, "events": [{}, {}]})
        queue_actors.flaky.send("b", {"conn": 1, "seq": 3, "events": []})
        api.jobs.wait_for(lambda: api.get("/api/admin/queues", headers=HEADERS).get_json()
                          ["queues"].get(queue_actors.QUEUE, {}).get("deadLetters") == 2, "dead-lettered")
        listed = api.get("/api/admin/queues/dead", query_string={"queue": queue_actors.QUEUE}, headers=HEADERS)
        letters = listed.get_json()["deadLetters"]
        assert {tuple(letter["args"]) for letter in letters} == {('"a"', "batch 1/2 (2 events)"),
                                                                  ('"b"', "batch 1/3 (0 events)")}
        ids = {letter["args"][0].strip('"'): letter["id"] for letter in letters}
        shown = api.get(f"/api/admin/queues/dead/{ids['a']}", headers=HEADERS)
        assert shown.status_code == 200 and "NotFixedYet" in shown.get_json()["message"]["options"]["traceback"]
        assert shown.get_json()["actor"] == "test.flaky" and shown.get_json()["retries"] >= 1

        redis.set(queue_actors.FIXED_KEY, 1)
        replayed = api.post(f"/api/admin/queues/dead/{ids['a']}/replay", headers=HEADERS)
        assert replayed.status_code == 200
        api.jobs.wait_for(lambda: redis.get("test:queues:ran:a") == b"1", "replayed message ran")
        dropped = api.delete(f"/api/admin/queues/dead/{ids['b']}", headers=HEADERS)
        assert dropped.status_code == 200
    assert api.get("/api/admin/queues/dead", headers=HEADERS).get_json()["deadLetters"] == []
    gone = api.post(f"/api/admin/queues/dead/{ids['a']}/replay", headers=HEADERS)
    assert gone.status_code == 404 and gone.content_type == "application/problem+json"
    assert api.get("/api/admin/queues/dead/not%20an%20id", headers=HEADERS).status_code == 422
    assert redis.get("test:queues:ran:b") is None

    queues = api.get("/api/admin/queues", headers=HEADERS).get_json()
    assert queues["queues"]["backfill"] == {"pending": 0, "deadLetters": 0}
    assert queues["workers"] and all({"id", "secondsSinceBeat", "alive"} <= set(w) for w in queues["workers"])
    status = api.get("/api/admin/status", headers=HEADERS)
    assert status.status_code == 200
    assert {"queues", "workers", "backfills", "ingest", "classification"} <= set(status.get_json())


def test_the_openapi_document_describes_the_admin_endpoints(api):
    spec = api.get("/api/openapi.json").get_json()
    start = spec["paths"]["/api/admin/backfills"]["post"]
    assert {"bearer": ["admin"]} in start["security"] and {"adminToken": []} in start["security"]
    assert {"201", "401", "403", "422"} <= set(start["responses"])
    assert "reclassify" in start["requestBody"]["content"]["application/json"]["examples"]
    assert "examples" in start["responses"]["201"]["content"]["application/json"]
    for path in ("/api/admin/backfills/{job_id}/resume", "/api/admin/queues/dead/{message_id}/replay",
                 "/api/admin/status"):
        assert path in spec["paths"], path
