"""The web app's health endpoints, metrics and RFC 9457 errors (Flask test client, real services)."""

import pytest

from app import create_app
from cannect.config import get_settings
from services import db


@pytest.fixture
def client(monkeypatch, db_url, redis_url):
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("JWT_SECRET", "test-secret-" + "x" * 32)
    for cached in (get_settings, db.get_engine, db._session_factory):
        cached.cache_clear()
    yield create_app().test_client()
    db.get_engine().dispose()
    for cached in (get_settings, db.get_engine, db._session_factory):
        cached.cache_clear()


def test_health_and_database(client):
    assert client.get("/health").json == {"status": "ok"}
    assert client.get("/health/db").json == {"status": "ok"}


def test_indexer_health_reports_a_listener_that_has_not_started(client):
    response = client.get("/health/indexer")
    assert response.status_code == 503
    assert response.json["status"] == "not started" and response.json["queues"]["ingest"] == 0
    assert not any(response.json["queues"].values())  # every known queue is listed, all empty


def test_errors_are_problem_json(client):
    response = client.get("/no/such/thing")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert response.json["status"] == 404 and response.json["title"] == "Not Found"


def test_metrics_count_requests_per_endpoint(client):
    client.get("/health")
    body = client.get("/metrics").get_data(as_text=True)
    assert 'cannect_http_request_seconds_count{endpoint="/health",method="GET"}' in body


def test_openapi_documents_every_route_and_method(client):
    import re

    spec = client.get("/api/openapi.json").json
    app = client.application
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/") or rule.endpoint.startswith("openapi") or rule.rule.endswith(".html") \
                or "swagger" in rule.rule:
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        documented = {m.upper() for m in spec["paths"].get(path, {})}
        assert rule.methods - {"HEAD", "OPTIONS"} <= documented, (path, rule.methods, documented)
    assert client.get("/api/swagger").status_code == 200  # the human-readable page
