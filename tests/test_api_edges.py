"""The edges of the app API: who is asked first, how much is read, which route a URI names,
and whether the process trusts the right proxies.

- Authentication comes before input validation: every operation whose OpenAPI ``security``
  requires a member answers an anonymous (or badly signed, expired, signed-out) request 401,
  never 422, whatever its input; a token sent to an optional-auth operation must be valid.
- Bodies over ``MAX_REQUEST_BYTES`` are a 413 problem, with or without Content-Length.
- A post whose record key is ``thread`` or ``replies`` is reachable, and so are its thread and
  replies.
- ``PROXY_COUNT`` that does not fit the requests seen is reported once in the log.

Flask test client on real PostgreSQL and Redis with the fake PDS; one real gunicorn for what
only a real server shows (chunked bodies, URL-decoding of the path).
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import time
from datetime import timedelta
from urllib.parse import quote

import httpx
import pytest

from app.proxy_check import SAMPLE, is_local
from conftest import JWT_SECRET
from harness import Web
from services.tokens import issue_access_token
from test_actions import Member
from test_api_read import BASE, Network, did
from test_auth import assert_problem, bearer, login

SESSION_ID = "3f0c6a1e-1111-4222-8333-444455556666"
ORIGIN = "https://cannect.space"
ADMIN_TOKEN = "admin-token-" + "z" * 32


# --------------------------------------------------------------------------- auth before input


def documented_operations(client) -> list[tuple[str, str, dict]]:
    """(Flask rule, method, OpenAPI operation) of every route and method of the running app."""
    spec = client.get("/api/openapi.json").json
    found = []
    for rule in client.application.url_map.iter_rules():
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            operation = spec["paths"].get(path, {}).get(method.lower())
            if operation is not None:
                found.append((rule.rule, method, operation))
    return found


def malformed_request(rule: str, method: str, operation: dict) -> dict:
    """Arguments for the test client: every path variable, query and body wrong for ``operation``."""
    # An int variable cannot be malformed and still route (Flask answers 404 first): use 0.
    path = re.sub(r"<(?:\w+:)?\w+>", "!not valid!", re.sub(r"<int:\w+>", "0", rule))
    request = {"method": method, "path": path, "query_string": {"limit": "many", "undocumented": "1"}}
    if "requestBody" in operation:
        request.update(data="{not json", content_type="application/json")
    return request


def takes_input(operation: dict) -> bool:
    """Input that :func:`malformed_request` can make wrong (not an int path variable's)."""
    return bool(operation.get("requestBody") or any(
        parameter["in"] != "path" or parameter.get("schema", {}).get("type") != "integer"
        for parameter in operation.get("parameters", [])))


@pytest.fixture
def api(make_api):
    return make_api(ADMIN_TOKEN=ADMIN_TOKEN)


def is_admin_only(operation: dict) -> bool:
    return any("adminToken" in requirement or "admin" in requirement.get("bearer", [])
               for requirement in operation["security"])


@pytest.fixture
def alice(api, fake_pds):
    return Member(api, fake_pds, "alice.test")


@pytest.fixture
def bad_tokens(api, alice) -> dict[str, dict]:
    """Authorization headers that must not get past the token check, by what is wrong with them."""
    signed_out = bearer(login(api, "alice.test").json["accessToken"])
    assert api.post("/api/auth/logout", headers=signed_out).status_code == 200
    return {
        "anonymous": {},
        "garbage": bearer("garbage"),
        "wrong scheme": {"Authorization": "Basic YWxpY2U6cHc="},
        "empty bearer": {"Authorization": "Bearer "},
        "expired": bearer(issue_access_token(alice.did, SESSION_ID, JWT_SECRET, -60)),
        "foreign key": bearer(issue_access_token(alice.did, SESSION_ID, "another-secret-" + "y" * 32, 3600)),
        "signed out": signed_out,
    }


def test_operations_that_need_a_member_answer_401_before_looking_at_the_input(api, alice, bad_tokens):
    required = [(rule, method, op) for rule, method, op in documented_operations(api)
                if op.get("security") and all(op["security"]) and not is_b2b(op)]
    assert {(rule, method) for rule, method, _ in required} >= {
        ("/api/post", "POST"), ("/api/like", "POST"), ("/api/follow", "POST"), ("/api/post/<path:uri>", "DELETE"),
        ("/api/feed/following", "GET"), ("/api/auth/logout", "POST"), ("/api/push/broadcast", "POST")}
    for rule, method, operation in required:
        request = malformed_request(rule, method, operation)
        if is_admin_only(operation):  # a member who is no admin is refused before the input too
            assert_problem(api.open(**request, headers=alice.headers), 403)
            if takes_input(operation):
                assert_problem(api.open(**request, headers={"X-Admin-Token": ADMIN_TOKEN}), 422)
        elif takes_input(operation):  # the input really is bad: a member is told so
            assert_problem(api.open(**request, headers=alice.headers), 422)
        for why, headers in bad_tokens.items():
            response = api.open(**request, headers=headers)
            assert response.status_code == 401, (rule, method, why, response.get_data(as_text=True))
            assert response.mimetype == "application/problem+json"
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert "errors" not in response.json  # nothing about the input leaks


def is_b2b(operation: dict) -> bool:
    """B2B operations take an API key, not a member's token (tests/test_b2b_access.py)."""
    from app.api.v1.access import B2B_SCHEME

    return all(B2B_SCHEME in requirement or "apiKeyBearer" in requirement for requirement in operation["security"])


def test_a_token_sent_to_an_open_operation_is_checked_before_the_input(api, alice, bad_tokens):
    optional = [(rule, method, op) for rule, method, op in documented_operations(api)
                if op.get("security") and not all(op["security"])]
    assert {rule for rule, _, _ in optional} >= {"/api/feed/global", "/api/post/<path:uri>",
                                                "/api/post/<aturi:uri>/thread", "/api/profile/<actor>", "/api/search"}
    for rule, method, operation in optional:
        request = malformed_request(rule, method, operation)
        assert_problem(api.open(**request), 422)  # anonymous readers are welcome, bad input is still bad
        assert_problem(api.open(**request, headers=alice.headers), 422)
        for why, headers in bad_tokens.items():
            if why != "anonymous":
                response = api.open(**request, headers=headers)
                assert response.status_code == 401, (rule, why, response.get_data(as_text=True))
                assert response.mimetype == "application/problem+json"


def test_every_api_operation_declares_whether_it_reads_the_token(api):
    """Only these public operations leave the Authorization header unread: login and refresh,
    which a client with an expired token sends everywhere, must work; and what is the same for
    everyone. A new operation must say (in its ``security``) whether it reads the token."""
    unguarded = {(rule, method) for rule, method, op in documented_operations(api)
                 if rule.startswith("/api/") and not op.get("security")}
    assert unguarded == {("/api/auth/login", "POST"), ("/api/auth/refresh", "POST"),
                         ("/api/push/vapid-public-key", "GET")}


def test_login_and_refresh_ignore_a_stale_token(api, alice):
    stale = bearer(issue_access_token(alice.did, SESSION_ID, JWT_SECRET, -60))
    tokens = login(api, "alice.test", **stale)
    assert tokens.status_code == 200
    refreshed = api.post("/api/auth/refresh", json={"refreshToken": tokens.json["refreshToken"]}, headers=stale)
    assert refreshed.status_code == 200


def test_preflight_and_head_requests(api):
    preflight = api.options("/api/like", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                                                  "Access-Control-Request-Headers": "Authorization, Content-Type"})
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert api.head("/api/feed/following").status_code == 401
    assert api.head("/api/feed/global").status_code == 200


# --------------------------------------------------------------------------- body size

LIMIT = 2048


def padded_post(size: int) -> bytes:
    """A valid new-post body of exactly ``size`` bytes (JSON allows any amount of whitespace)."""
    body = b'{"text": "hello"}'
    return body[:-1] + b" " * (size - len(body)) + b"}"


def test_bodies_over_the_limit_are_413(make_api, fake_pds):
    api = make_api(MAX_REQUEST_BYTES=str(LIMIT))
    alice = Member(api, fake_pds, "alice.test")

    def send(body: bytes, headers: dict, chunked: bool = False):
        if chunked:  # as a WSGI server passes a chunked body: no length, the server ends the stream
            return api.post("/api/post", input_stream=io.BytesIO(body), content_type="application/json",
                            headers={**headers, "Transfer-Encoding": "chunked"},
                            environ_overrides={"wsgi.input_terminated": True})
        return api.post("/api/post", data=body, content_type="application/json", headers=headers)

    assert send(padded_post(LIMIT), alice.headers).status_code == 201
    assert send(padded_post(LIMIT), alice.headers, chunked=True).status_code == 201
    for chunked in (False, True):
        response = send(padded_post(LIMIT + 1), alice.headers, chunked)
        assert_problem(response, 413)
        assert response.json["maxBytes"] == LIMIT and str(LIMIT) in response.json["detail"]
    # The size is checked before anything else, the token included.
    assert_problem(send(padded_post(LIMIT + 1), {}), 413)
    assert_problem(send(padded_post(LIMIT + 1), {}, chunked=True), 413)
    assert_problem(send(padded_post(LIMIT), {}, chunked=True), 401)
    # Valid JSON within the limit followed by more: refused whole, never parsed cut short.
    assert_problem(send(padded_post(LIMIT) + b"]", alice.headers, chunked=True), 413)
    assert_problem(api.post("/api/auth/logout", data=b"x" * (LIMIT + 1), headers=alice.headers), 413)
    assert len(fake_pds.records[alice.did]["app.bsky.feed.post"]) == 2


def test_the_default_limit_is_far_above_any_valid_body(api, alice):
    assert api.application.config["MAX_CONTENT_LENGTH"] == 256 * 1024
    # The longest post text, every character escaped: 300 graphemes of two astral code points.
    body = json.dumps({"text": "\U0001F44D\U0001F3FD" * 300, "langs": ["en", "de", "fr"]}, ensure_ascii=True)
    assert len(body) > 7000
    response = api.post("/api/post", data=body, content_type="application/json", headers=alice.headers)
    assert response.status_code == 201, response.get_data(as_text=True)


# --------------------------------------------------------------------------- record keys


@pytest.fixture
def odd_keys(session):
    """A post whose record key is ``thread``, with a reply whose record key is ``replies``."""
    net = Network(session)
    author = did("oddkeys")
    parent = net.post(author, "a post keyed thread #cannabis", BASE, rkey="thread")
    reply = net.post(author, "a reply keyed replies #cannabis", BASE + timedelta(minutes=1), reply_to=parent,
                     rkey="replies")
    net.flush()
    return parent[0], reply[0]


def test_posts_keyed_thread_or_replies_are_reachable(api, odd_keys):
    parent, reply = odd_keys
    assert parent.endswith("/app.bsky.feed.post/thread") and reply.endswith("/app.bsky.feed.post/replies")
    for encode in (lambda uri: uri, lambda uri: quote(uri, safe="")):
        def get(url):
            response = api.get(url)
            assert response.status_code == 200, (url, response.get_data(as_text=True))
            return response.json

        assert get(f"/api/post/{encode(parent)}")["post"]["uri"] == parent
        assert get(f"/api/post/{encode(reply)}")["post"]["uri"] == reply
        thread = get(f"/api/post/{encode(parent)}/thread")["thread"]
        assert thread["post"]["uri"] == parent and [r["post"]["uri"] for r in thread["replies"]] == [reply]
        assert get(f"/api/post/{encode(reply)}/thread")["thread"]["parent"]["post"]["uri"] == parent
        assert [p["uri"] for p in get(f"/api/post/{encode(parent)}/replies")["posts"]] == [reply]
        assert get(f"/api/post/{encode(reply)}/replies")["posts"] == []
    # A suffix only counts after a whole AT-URI; before that it is part of a (malformed) post URI.
    collection = parent.rsplit("/", 1)[0]
    assert_problem(api.get(f"/api/post/{collection}"), 422)
    assert_problem(api.get(f"/api/post/{collection}/replies/thread/replies"), 422)
    assert_problem(api.get("/api/post/not-a-uri/thread"), 422)
    assert_problem(api.get(f"/api/post/{collection}/elsewhere/thread"), 404)


def test_openapi_documents_the_post_routes(api):
    paths = api.get("/api/openapi.json").json["paths"]
    assert {"get", "delete"} <= set(paths["/api/post/{uri}"])
    assert "get" in paths["/api/post/{uri}/thread"] and "get" in paths["/api/post/{uri}/replies"]
    assert "thread" in paths["/api/post/{uri}"]["get"]["description"]


# --------------------------------------------------------------------------- a real server


def test_a_real_server_caps_chunked_bodies_and_decodes_uris(env, fake_pds, session, tmp_path, odd_keys):
    parent, _ = odd_keys
    fake_pds.add_account("alice.test", "pw")
    web = Web(dict(env, PDS_URL=fake_pds.url), tmp_path / "web.log", MAX_REQUEST_BYTES=str(LIMIT))
    try:
        with httpx.Client(base_url=web.http, timeout=10) as http:
            token = http.post("/api/auth/login", json={"identifier": "alice.test", "password": "pw"}).json()
            member = bearer(token["accessToken"])

            def chunks(body: bytes):
                for start in range(0, len(body), 512):
                    yield body[start:start + 512]

            for size, status in ((LIMIT, 201), (4 * LIMIT, 413)):
                response = http.post("/api/post", content=chunks(padded_post(size)),
                                     headers={**member, "Content-Type": "application/json"})
                assert response.status_code == status, response.text
            assert response.headers["Content-Type"] == "application/problem+json"
            anonymous = {"Content-Type": "application/json"}
            assert http.post("/api/post", content=padded_post(4 * LIMIT), headers=anonymous).status_code == 413
            assert http.post("/api/post", content=chunks(padded_post(4 * LIMIT)), headers=anonymous).status_code == 413
            assert http.post("/api/post", content=chunks(padded_post(LIMIT)), headers=anonymous).status_code == 401

            for url in (f"/api/post/{quote(parent, safe='')}", f"/api/post/{parent}"):
                assert http.get(url).json()["post"]["uri"] == parent
                assert http.get(url + "/thread").json()["thread"]["post"]["uri"] == parent
    finally:
        web.stop()


# --------------------------------------------------------------------------- PROXY_COUNT


def feed(api, peer: str, forwarded_for: str | None = None):
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return api.get("/api/feed/global", headers=headers, environ_base={"REMOTE_ADDR": peer})


def proxy_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "app.proxy_check" and r.levelno == logging.WARNING]


def test_an_untrusted_proxy_in_front_is_reported_once(make_api, caplog):
    caplog.set_level(logging.WARNING, logger="app.proxy_check")
    api = make_api(PROXY_COUNT="0")
    for i in range(SAMPLE - 1):
        assert feed(api, "10.0.0.2", f"203.0.113.{i + 1}").status_code == 200
        assert api.get("/health", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 200  # probes don't count
    assert proxy_warnings(caplog) == []
    for i in range(SAMPLE):
        feed(api, "10.0.0.2", "198.51.100.7")
    [warning] = proxy_warnings(caplog)
    assert "PROXY_COUNT=0" in warning and "10.0.0.2" in warning and "share one rate limit" in warning
    assert 'cannect_proxy_misconfigured{reason="proxy_not_trusted"} 1.0' in api.get("/metrics").get_data(as_text=True)


@pytest.mark.parametrize("requests", [
    [("127.0.0.1", None)] * (2 * SAMPLE),                                    # a developer's machine
    [("198.51.100.7", None)] * (2 * SAMPLE),                                 # clients straight on the port
    [("10.0.0.2", "203.0.113.1")] * 3 + [("203.0.113.9", None)] + [("10.0.0.2", "203.0.113.1")] * (2 * SAMPLE),
    [("10.0.0.2", "203.0.113.1")] * 3 + [("10.0.0.3", None)] + [("10.0.0.2", "203.0.113.1")] * (2 * SAMPLE),
])
def test_no_warning_without_a_proxy_in_front(make_api, caplog, requests):
    caplog.set_level(logging.WARNING, logger="app.proxy_check")
    api = make_api(PROXY_COUNT="0")
    for peer, forwarded_for in requests:
        feed(api, peer, forwarded_for)
    assert proxy_warnings(caplog) == []


def test_requests_that_did_not_pass_the_proxies_are_reported_once(make_api, caplog):
    caplog.set_level(logging.WARNING, logger="app.proxy_check")
    api = make_api(PROXY_COUNT="2")
    for _ in range(2 * SAMPLE):
        feed(api, "10.0.0.2", "203.0.113.1, 10.0.0.9")
        api.get("/health/db", environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert proxy_warnings(caplog) == []
    feed(api, "198.51.100.7", "6.6.6.6")  # one hop short: a client that bypassed the outer proxy
    feed(api, "198.51.100.8")
    [warning] = proxy_warnings(caplog)
    assert "PROXY_COUNT=2" in warning and "198.51.100.7" in warning and "1 X-Forwarded-For" in warning


def test_what_counts_as_a_local_peer():
    assert all(map(is_local, ["10.1.2.3", "172.17.0.1", "192.168.1.1", "127.0.0.1", "::1", "fe80::1",
                              "::ffff:10.0.0.1", "", None]))
    assert not any(map(is_local, ["8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "unknown"]))


def _listening_inodes(port: int) -> set[str]:
    """Inodes of the TCP sockets listening on ``port`` (``/proc/net/tcp`` and ``tcp6``)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    found.add(fields[9])
    return found


def _worker_sockets(master: int, port: int) -> dict[int, set[str]]:
    """Worker pid -> inodes of the listening sockets on ``port`` it holds open."""
    listening, workers = _listening_inodes(port), {}
    for entry in os.listdir("/proc"):
        try:
            if not entry.isdigit() or int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1]) != master:
                continue
            links = {os.readlink(f"/proc/{entry}/fd/{fd}") for fd in os.listdir(f"/proc/{entry}/fd")}
        except (FileNotFoundError, ProcessLookupError):
            continue  # gone meanwhile
        workers[int(entry)] = {link[8:-1] for link in links if link.startswith("socket:[")} & listening
    return workers


@pytest.mark.parametrize("setting, sockets", [(None, 2), ("1", 2), ("0", 1), ("false", 1)])
def test_each_web_process_listens_on_its_own_socket_unless_switched_off(env, tmp_path, setting, sockets):
    """The deployed config gives each of the processes its own listening socket (the kernel
    spreads connections among them); ``WEB_REUSE_PORT=0`` goes back to one shared socket."""
    settings = {"WEB_CONCURRENCY": "2"} | ({"WEB_REUSE_PORT": setting} if setting is not None else {})
    web = Web({k: v for k, v in env.items() if k != "WEB_REUSE_PORT"}, tmp_path / "web.log", **settings)
    try:
        deadline = time.monotonic() + 30
        while True:
            workers = _worker_sockets(web.proc.pid, web.port)
            if len(workers) == 2 and all(workers.values()) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert len(workers) == 2 and all(workers.values()), workers
        assert len(set().union(*workers.values())) == sockets, workers
    finally:
        web.stop()
