"""Admin kind ``jetstream_replay`` (services/backfill/window.py) against the real replay server.

A capture of this test's own, played by ``cannect.replay`` in a subprocess (as
tests/test_replay.py starts it), is replayed over a time window; only the window's events
reach the index, a second replay changes nothing, and a delete the stream applied in
between is not undone by a third.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest
from sqlalchemy import text

from cannect.config import load_settings
from cannect.embedded import free_port
from fakes.pds import make_cid
from kind_driver import run_job, session_factory
from services.backfill.kinds import KINDS, InvalidParams
from services.backfill.window import JetstreamReplay
from services.ingest import ingest_batch
from services.jetstream import parse_event
from snapshot import db_snapshot

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[1]
POST, LIKE = "app.bsky.feed.post", "app.bsky.feed.like"
A, B = ("did:plc:" + ch * 24 for ch in "ab")
SECOND = 1_000_000
T0 = (int(datetime.now(timezone.utc).timestamp()) - 3600) * SECOND  # an hour ago


def at(did: str, rkey: str, collection=POST) -> str:
    return f"at://{did}/{collection}/{rkey}"


def commit(did, t, collection, rkey, record=None, op="create") -> str:
    body = {"rev": "3laaaaaaaaaaa", "operation": op, "collection": collection, "rkey": rkey}
    if op != "delete":
        body["record"] = {"$type": collection, "createdAt": "2026-07-04T14:00:00.000Z", **record}
        body["cid"] = make_cid(body["record"])
    return json.dumps({"did": did, "time_us": t, "kind": "commit", "commit": body})


def post(did, t, rkey, text_="#cannabis", reply_to=None) -> str:
    record = {"text": text_}
    if reply_to:
        ref = {"uri": reply_to, "cid": make_cid({"x": reply_to})}
        record["reply"] = {"parent": ref, "root": ref}
    return commit(did, t, POST, rkey, record)


def like(did, t, rkey, subject) -> str:
    return commit(did, t, LIKE, rkey, {"subject": {"uri": subject, "cid": make_cid({"x": subject})}})


P1, P2, P3, P4, P5 = at(A, "3laaaaaaaaaa1"), at(A, "3laaaaaaaaaa2"), at(B, "3laaaaaaaaaa3"), \
    at(A, "3laaaaaaaaaa4"), at(A, "3laaaaaaaaaa5")
START, END = T0 + 2 * SECOND, T0 + 9 * SECOND
LINES = [
    post(A, T0 + 1 * SECOND, "3laaaaaaaaaa1"),                     # before the window
    post(A, T0 + 2 * SECOND, "3laaaaaaaaaa2"),                     # the window starts here
    like(B, T0 + 3 * SECOND, "3laaaaaaaaal1", P1),                 # P1 is not indexed: dropped
    like(B, T0 + 4 * SECOND, "3laaaaaaaaal2", P2),
    post(B, T0 + 5 * SECOND, "3laaaaaaaaaa3", "a reply", reply_to=P2),
    post(A, T0 + 6 * SECOND, "3laaaaaaaaaa4"),
    commit(A, T0 + 7 * SECOND, POST, "3laaaaaaaaaa4", op="delete"),
    json.dumps({"did": "did:bad", "time_us": T0 + 8 * SECOND, "kind": "commit", "commit": {}}),
    '{"did": "did:plc:broken", "time_us": 17',                     # malformed, at the line above's time
    commit(A, T0 + 8 * SECOND + 1, "app.bsky.graph.block", "3laaaaaaaaab1", {"subject": B}),  # filtered out
    post(A, T0 + 11 * SECOND, "3laaaaaaaaaa5"),                    # after the window
    post(A, T0 + 12 * SECOND, "3laaaaaaaaaa6"),
]
EXPECTED = Counter({"read": 9, "applied": 6, "posts_indexed": 2, ("outside_window", "after"): 1,
                    ("rejected", "bad_did"): 1, ("rejected", "malformed_json"): 1,
                    "realtime_new_posts": 2})  # the read_changed events name both new posts


@pytest.fixture
def replay_url(tmp_path):
    capture = tmp_path / "capture.jsonl"
    capture.write_text("".join(line + "\n" for line in LINES))
    code = ("import sys; from cannect.replay import serve; "
            "serve(sys.argv[1], port=0, ready=lambda p: print(p, flush=True))")
    python_path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    with open(tmp_path / "replay.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-c", code, str(capture)], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=log, text=True, env={**os.environ, "PYTHONPATH": python_path})
    try:
        port = proc.stdout.readline().strip()
        assert port.isdigit(), (tmp_path / "replay.log").read_text()
        yield f"ws://127.0.0.1:{port}/subscribe"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def world(engine, db_url, redis_url, replay_url):
    scope = session_factory(engine)
    settings = load_settings(database_url=db_url, redis_url=redis_url, jetstream_url=replay_url,
                             cannabis_tags="cannabis")
    return JetstreamReplay(settings=lambda: settings), scope


def window(**extra) -> dict:
    return {"cursor_from_us": START, "cursor_to_us": END, "idle_seconds": 1, **extra}


def test_only_the_window_is_applied_and_replays_change_nothing(world):
    kind, scope = world
    total, done, report, ids, _ = run_job(kind, scope, window())
    assert report == EXPECTED and done == 8 and total is None
    with scope() as session:
        snapshot = db_snapshot(session)
        assert set(snapshot["posts"]) == {P2, P3}
        assert set(snapshot["likes"]) == {at(B, "3laaaaaaaaal2", LIKE)}
        assert (snapshot["posts"][P2]["like_count"], snapshot["posts"][P2]["reply_count"]) == (1, 1)
        assert sorted(ids) == sorted(session.scalars(text("SELECT id FROM posts")))
        assert session.scalar(text("SELECT count(*) FROM record_tombstones WHERE uri = :u"), {"u": P4}) == 1

    # Again, in chunks of two events, with the window as ISO datetimes: nothing changes.
    iso = lambda us: datetime.fromtimestamp(us / SECOND, timezone.utc).isoformat()  # noqa: E731
    _, done, report, ids, chunks = run_job(kind, scope, window(cursor_from_us=iso(START), cursor_to_us=iso(END),
                                                            max_events=2))
    assert chunks >= 5 and ids == [] and done == 8
    assert report == EXPECTED - Counter({"posts_indexed": 2, "realtime_new_posts": 2})
    with scope() as session:
        assert db_snapshot(session) == snapshot


def test_a_stream_delete_since_is_not_undone(world):
    kind, scope = world
    run_job(kind, scope, window())
    now = int(datetime.now(timezone.utc).timestamp() * SECOND)
    delete = parse_event(orjson.dumps({"did": A, "time_us": now, "kind": "commit", "commit": {
        "rev": "3laaaaaaaaaaa", "operation": "delete", "collection": POST, "rkey": "3laaaaaaaaaa2"}}))
    with scope() as session:
        ingest_batch(session, {"conn": 1, "seq": 1, "prev": None, "events": [delete]}, frozenset({"cannabis"}))
    with scope() as session:
        after_delete = db_snapshot(session)
        assert set(after_delete["posts"]) == {P3} and not after_delete["likes"]
    _, _, report, ids, _ = run_job(kind, scope, window())
    assert ids == [] and report["applied"] == EXPECTED["applied"]
    with scope() as session:
        assert db_snapshot(session) == after_delete


def test_bad_params_are_invalid_and_registration(world):
    kind, _ = world
    assert KINDS["jetstream_replay"].unit == "events"
    cases = [
        ({}, "cursor_from_us"), ({"cursor_from_us": START}, "cursor_to_us"),
        (window(cursor_from_us=END + 1), "ends before it starts"), (window(cursor_from_us=0), "out of range"),
        (window(cursor_from_us=True), "cursor_from_us"), (window(cursor_to_us="next tuesday"), "ISO 8601"),
        (window(url="http://127.0.0.1/subscribe"), "url"), (window(url="ws://h/subscribe?cursor=1"), "url"),
        (window(url=5), "url"), (window(max_events=0), "max_events"), (window(idle_seconds="x"), "idle_seconds"),
        (window(speed=2), "unknown"), ("window", "object"),
    ]
    for params, message in cases:
        with pytest.raises(InvalidParams, match=message):
            kind.validate(params)
    assert kind.validate(window())["url"].startswith("ws://127.0.0.1:")  # JETSTREAM_URL by default


def _replay_of(db_url, redis_url, jetstream_url) -> JetstreamReplay:
    settings = load_settings(database_url=db_url, redis_url=redis_url, jetstream_url=jetstream_url,
                             cannabis_tags="cannabis")
    return JetstreamReplay(settings=lambda: settings)


def test_an_unreachable_stream_is_a_connection_error(engine, db_url, redis_url):
    url = f"ws://127.0.0.1:{free_port()}/subscribe"
    kind = _replay_of(db_url, redis_url, url)
    with pytest.raises(ConnectionError, match="cannot connect"):
        kind.run_chunk(session_factory(engine), kind.validate(window(url=url)), None)


def test_an_admin_given_url_must_be_wss_to_public_addresses(world):
    """The url is admin input the server connects to: JETSTREAM_URL's origin is trusted, any
    other must be wss:// to public addresses, checked when asked and again at connect time."""
    kind, scope = world
    configured = kind.settings().jetstream_url
    assert kind.validate(window(url=configured.replace("/subscribe", "/other")))["url"].endswith("/other")
    for url, message in [(f"ws://127.0.0.1:{free_port()}/subscribe", "wss"), ("ws://example.com/subscribe", "wss"),
                         ("wss://127.0.0.1/subscribe", "non-public"), ("wss://localhost:6379/", "non-public"),
                         ("wss://10.0.0.1/subscribe", "non-public"), ("wss://[::1]/subscribe", "non-public"),
                         ("wss://169.254.169.254/latest", "non-public"), ("wss://user:pw@example.com/", "password"),
                         ("wss://example.com/subscribe#x", "url")]:
        with pytest.raises(InvalidParams, match=message):
            kind.validate(window(url=url))
    # A job whose host resolves to a private address by the time it runs (DNS rebinding) is refused too.
    stored = {**kind.validate(window()), "url": "wss://127.0.0.1:9/subscribe"}
    with pytest.raises(ConnectionError, match="refused to connect.*non-public"):
        kind.run_chunk(scope, stored, None)


def test_a_redirect_is_not_followed(engine, db_url, redis_url):
    """Even the trusted server cannot send the worker elsewhere with a 3xx."""
    import socket
    import threading

    target = socket.create_server(("127.0.0.1", 0))
    redirector = socket.create_server(("127.0.0.1", 0))

    def answer_once():
        conn, _ = redirector.accept()
        with conn:
            conn.recv(65536)
            location = f"ws://127.0.0.1:{target.getsockname()[1]}/subscribe"
            conn.sendall(f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode())

    thread = threading.Thread(target=answer_once, daemon=True)
    thread.start()
    try:
        url = f"ws://127.0.0.1:{redirector.getsockname()[1]}/subscribe"
        kind = _replay_of(db_url, redis_url, url)
        with pytest.raises(ConnectionError, match="cannot connect.*[Rr]edirect"):
            kind.run_chunk(session_factory(engine), kind.validate(window()), None)
        thread.join(10)
        target.setblocking(False)
        with pytest.raises(BlockingIOError):  # nobody came
            target.accept()
    finally:
        target.close()
        redirector.close()
