"""Live updates over ``/ws``: a real gunicorn process, real WebSocket clients, real Redis and PostgreSQL.

Changes are made the way production makes them: an ingest batch applied with
``services.ingest.ingest_batch``, its events collected in the transaction and published after
the commit (``services.realtime``), or the whole pipeline (replay server, listener, Dramatiq
worker) for the end-to-end test. Sessions are opened through the web process's own login on
the fake PDS (tests/fakes/pds.py) when a test ends them.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest
import redis as redis_lib
import websocket
from harness import Client, System, Web, token_for, wait_for
from sqlalchemy import text

from app.ws_limits import SWEEP_EVERY, IpLedger
from cannect.config import DEFAULT_CANNABIS_TAGS
from services.ingest import ingest_batch
from services.jetstream import parse_event
from services.members import add_member
from services.realtime import collect_events, notification_event, publish
from services.tokens import issue_access_token

ROOT = Path(__file__).resolve().parent.parent
TAGS = frozenset(DEFAULT_CANNABIS_TAGS)
CDN = "https://cdn.example/img"
MEMBER = "did:plc:" + "m" * 24
OTHER = "did:plc:" + "o" * 24
FAN = "did:plc:" + "f" * 24
#: A well-formed CID for the strong refs of likes and replies (only its syntax is checked).
CID = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"


@pytest.fixture
def web(env, tmp_path):
    # Every test client comes from 127.0.0.1: the per-address cap is tested on its own.
    server = Web(env, tmp_path / "web.log", WS_MAX_CONNECTIONS_PER_IP="1000")
    yield server
    server.stop()


@pytest.fixture
def stream(redis_url):
    return redis_lib.Redis.from_url(redis_url)


# -- changes, made the way the ingest actor makes them -------------------------------------

class Network:
    """Jetstream events for a few accounts, applied in batches like the ingest actor does."""

    def __init__(self, session, redis):
        self.session, self.redis = session, redis
        self.clock = itertools.count(1_700_000_000_000_000, 1000)
        self.seq = itertools.count(1)
        self.rkeys = itertools.count(1)

    def raw(self, did: str, collection: str, operation: str, rkey: str | None = None, record=None) -> dict:
        rkey = rkey or f"3k{next(self.rkeys):011d}"
        commit = {"rev": "r", "operation": operation, "collection": collection, "rkey": rkey}
        if record is not None:
            commit.update(record=record, cid=CID)
        return {"did": did, "time_us": next(self.clock), "kind": "commit", "commit": commit}

    def post(self, did: str, text: str = "a #cannabis post", parent: str | None = None) -> tuple[dict, str]:
        record = {"$type": "app.bsky.feed.post", "text": text, "createdAt": "2026-01-01T00:00:00Z"}
        if parent:
            record["reply"] = {"root": {"uri": parent, "cid": CID}, "parent": {"uri": parent, "cid": CID}}
        event = self.raw(did, "app.bsky.feed.post", "create", record=record)
        return event, f"at://{did}/app.bsky.feed.post/{event['commit']['rkey']}"

    def like(self, did: str, uri: str) -> dict:
        return self.raw(did, "app.bsky.feed.like", "create",
                        record={"subject": {"uri": uri, "cid": CID}, "createdAt": "2026-01-01T00:00:00Z"})

    def follow(self, did: str, subject: str) -> dict:
        return self.raw(did, "app.bsky.graph.follow", "create",
                        record={"subject": subject, "createdAt": "2026-01-01T00:00:00Z"})

    def delete_post(self, uri: str) -> dict:
        did, _, rkey = uri.removeprefix("at://").partition("/app.bsky.feed.post/")
        return self.raw(did, "app.bsky.feed.post", "delete", rkey=rkey)

    def apply(self, *raw_events: dict) -> list[dict]:
        """One ingest batch: apply, collect in the transaction, commit, then publish."""
        batch = {"conn": 1, "seq": next(self.seq), "prev": None,
                 "events": [parse_event(orjson.dumps(e)) for e in raw_events]}
        outcome = ingest_batch(self.session, batch, TAGS)
        events = collect_events(self.session, outcome.changes, CDN)
        self.session.commit()
        return publish(self.redis, events)


@pytest.fixture
def network(session, stream):
    add_member(session, MEMBER, "member.test")
    session.commit()
    return Network(session, stream)


# -- tests ---------------------------------------------------------------------------------

def test_auth_ok_and_bad_token_rejected(web, env):
    client = Client(web.url)
    reply = client.auth(token_for(env, MEMBER))
    assert reply["did"] == MEMBER and reply["expiresAt"] > time.time()

    intruder = Client(web.url)
    intruder.send({"type": "auth", "token": "not-a-token"})
    assert intruder.expect("error")["code"] == "invalid_token"
    opcode, frame = intruder.ws.recv_data_frame(True)
    assert opcode == websocket.ABNF.OPCODE_CLOSE and int.from_bytes(frame.data[:2], "big") == 4401

    forged = issue_access_token(MEMBER, "s", "another-secret-" + "y" * 32, 3600)
    intruder = Client(web.url)
    intruder.send({"type": "auth", "token": forged})
    assert intruder.expect("error")["code"] == "invalid_token"
    client.sync()  # the signed-in socket is unaffected


def test_subscribers_get_counts_replies_and_deletes(web, network):
    post, uri = network.post(MEMBER)
    other_post, unrelated = network.post(MEMBER)
    network.apply(post, other_post)
    viewer, bystander = Client(web.url), Client(web.url)
    viewer.subscribe([uri])
    bystander.subscribe([unrelated])

    published = network.apply(network.like(FAN, uri), network.like(OTHER, uri))
    event = viewer.expect("post_updated")
    assert event["post"] == {"uri": uri, "likeCount": 2, "repostCount": 0, "replyCount": 0}
    assert event["id"] == published[0]["id"]

    reply, reply_uri = network.post(OTHER, text="no tag, but a reply to an indexed post", parent=uri)
    network.apply(reply)
    added = viewer.expect("reply_added")
    assert added["parentUri"] == uri
    assert added["reply"]["uri"] == reply_uri and added["reply"]["author"]["did"] == OTHER
    assert added["reply"]["record"]["text"].startswith("no tag")
    assert viewer.expect("post_updated")["post"]["replyCount"] == 1

    deleted = network.apply(network.delete_post(uri))
    assert viewer.expect("post_deleted") == {"id": deleted[0]["id"], "type": "post_deleted", "uri": uri}

    # The bystander's post never changed: its next message is the reply to its own ping.
    bystander.sync()
    viewer.send({"type": "unsubscribe", "uris": [uri]})
    assert viewer.expect("unsubscribed") == {"type": "unsubscribed", "uris": [uri], "total": 0}


def test_profile_counters_reach_the_members_own_sockets_only(web, env, network):
    post, uri = network.post(MEMBER)
    network.apply(post)
    member, anonymous = Client(web.url), Client(web.url)
    member.auth(token_for(env, MEMBER))
    member.subscribe([uri])
    anonymous.subscribe([uri])

    network.apply(network.follow(FAN, MEMBER))
    update = member.expect("profile_updated")["profile"]
    assert update["did"] == MEMBER and update["followersCount"] == 1 and update["handle"] == "member.test"
    assert update["postsCount"] == 1

    notification = {"type": "follow", "actor": {"did": FAN}, "subject": None}
    sent = publish(network.redis, [notification_event(MEMBER, notification)])
    assert member.expect("notification") == {"id": sent[0]["id"], "type": "notification", "recipient": MEMBER,
                                             "notification": notification}

    # A later event for both: the anonymous socket gets it first, never the member's events.
    network.apply(network.like(FAN, uri))
    assert anonymous.expect("post_updated")["post"]["likeCount"] == 1
    assert member.expect("post_updated")["post"]["likeCount"] == 1


def test_reconnect_with_since_gets_missed_events_once_then_live(web, network):
    post, uri = network.post(MEMBER)
    _, elsewhere = network.post(OTHER)
    network.apply(post)
    first = Client(web.url)
    first.subscribe([uri])
    network.apply(network.like(FAN, uri))
    seen = first.expect("post_updated")["id"]
    first.close()

    missed = network.apply(network.like(OTHER, uri))
    reply, _ = network.post(OTHER, text="reply", parent=uri)
    missed += network.apply(reply)
    missed += network.apply(network.follow(FAN, OTHER))  # no subscriber: not replayed
    assert [e["type"] for e in missed] == ["post_updated", "reply_added", "post_updated"]

    again = Client(web.url)
    again.subscribe([uri], since=seen)
    replayed = [again.recv() for _ in missed]
    assert [m["id"] for m in replayed] == [e["id"] for e in missed]
    assert replayed[0]["post"]["likeCount"] == 2 and replayed[2]["post"]["replyCount"] == 1

    live = network.apply(network.like(MEMBER, uri))
    assert again.expect("post_updated")["id"] == live[0]["id"]
    again.sync()  # nothing else came: no duplicate of the replayed events

    stale = Client(web.url)
    stale.send({"type": "subscribe", "uris": [uri, elsewhere], "since": "1-0"})
    stale.expect("subscribed")
    assert stale.expect("resync") == {"type": "resync", "reason": "history_trimmed", "uris": [uri, elsewhere]}


def post_uri(n: int, did: str = OTHER) -> str:
    return f"at://{did}/app.bsky.feed.post/3k{n:011d}"


def test_malformed_messages_get_errors_and_the_socket_lives_on(web):
    client = Client(web.url)
    cases = [
        ("{not json", "bad_json"),
        ('["a list"]', "bad_message"),
        ('{"no": "type"}', "bad_message"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "subscribe", "uris": "at://x"}', "bad_message"),
        ('{"type": "subscribe", "uris": ["https://not.an.at.uri"]}', "bad_message"),
        ('{"type": "subscribe", "uris": ["at://a"]}', "bad_message"),
        (json.dumps({"type": "subscribe", "uris": [f"at://{OTHER}/app.bsky.feed.like/3k1"]}), "bad_message"),
        (json.dumps({"type": "subscribe", "uris": [post_uri(1) + "x" * 1000]}), "bad_message"),  # > 1024
        (json.dumps({"type": "subscribe", "uris": [post_uri(1)], "since": "yesterday"}), "bad_message"),
        ('{"type": "auth"}', "bad_message"),
        (json.dumps({"type": "subscribe", "uris": [post_uri(i) for i in range(501)]}), "too_many_subscriptions"),
    ]
    for raw, code in cases:
        client.send(raw)
        error = client.expect("error")
        assert error["code"] == code, (raw, error)
        assert error["message"]
    client.ws.send_binary(b"\x00\x01")
    assert client.expect("error")["code"] == "bad_message"

    client.subscribe([post_uri(i) for i in range(300)])
    client.send({"type": "subscribe", "uris": [post_uri(i, FAN) for i in range(300)]})
    assert client.expect("error")["code"] == "too_many_subscriptions"
    assert client.subscribe([post_uri(i) for i in range(200, 500)])["total"] == 500
    client.sync()


def test_an_expired_token_signs_the_socket_out(web, env):
    client = Client(web.url)
    client.auth(token_for(env, MEMBER, ttl=1))
    assert client.expect("error")["code"] == "token_expired"
    client.auth(token_for(env, MEMBER))


def test_many_sockets_in_one_process_all_get_the_event(web, network):
    post, uri = network.post(MEMBER)
    network.apply(post)
    clients = [Client(web.url) for _ in range(200)]
    for client in clients:
        client.subscribe([uri])
    health = httpx.get(web.http + "/health/ws").json()
    assert health["connections"] == 200 and health["reader"]["running"] and health["reader"]["healthy"]

    published = network.apply(network.like(FAN, uri))
    for client in clients:
        event = client.expect("post_updated")
        assert event["id"] == published[0]["id"] and event["post"]["likeCount"] == 1

    metrics = httpx.get(web.http + "/metrics").text
    assert "cannect_ws_connections 200.0" in metrics
    assert 'cannect_ws_deliveries_total{type="post_updated"} 200.0' in metrics

    # A stopping worker closes its sockets as "going away": clients reconnect and resume.
    web.stop()
    opcode, frame = clients[0].ws.recv_data_frame(True)
    assert opcode == websocket.ABNF.OPCODE_CLOSE and int.from_bytes(frame.data[:2], "big") == 1001


def test_a_socket_that_stops_reading_is_dropped_without_holding_up_the_others(web, stream):
    uri = "at://did:plc:" + "s" * 24 + "/app.bsky.feed.post/3kslow"
    healthy = Client(web.url)
    healthy.subscribe([uri])
    stuck = Client(web.url, sockopt=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)])
    stuck.subscribe([uri])  # and never reads again

    padding = "x" * 20_000  # the stuck socket's kernel buffers (4 MB at most) fill long before the end
    received: list[str] = []

    def read_all():
        for _ in range(1500):
            received.append(healthy.expect("post_updated")["id"])

    reader = threading.Thread(target=read_all)
    reader.start()
    published = []
    for start in range(0, 1500, 100):  # at the pace the healthy client reads
        published += publish(stream, [{"type": "post_updated", "pad": padding, "post": {
            "uri": uri, "likeCount": n, "repostCount": 0, "replyCount": 0}} for n in range(start, start + 100)])
        wait_for(lambda: len(received) == len(published) or not reader.is_alive(), "the healthy client reads")
    reader.join(timeout=60)
    assert received == [event["id"] for event in published]

    wait_for(lambda: httpx.get(web.http + "/health/ws").json()["connections"] == 1, "the stuck socket is dropped")
    assert 'cannect_ws_dropped_total{reason="slow"} 1.0' in httpx.get(web.http + "/metrics").text
    healthy.sync()


def test_threaded_workers_serve_the_same_protocol(env, tmp_path, network):
    """gthread (a thread per socket) is the fallback worker class: same behaviour."""
    web = Web(env, tmp_path / "web.log", WEB_WORKER_CLASS="gthread", WEB_THREADS="20")
    try:
        post, uri = network.post(MEMBER)
        network.apply(post)
        clients = [Client(web.url) for _ in range(10)]
        for client in clients:
            client.subscribe([uri])
        clients[0].auth(token_for(env, MEMBER))
        published = network.apply(network.like(FAN, uri))
        for client in clients:
            assert client.expect("post_updated")["id"] == published[0]["id"]
            client.sync()
            client.close()
    finally:
        web.stop()


def test_through_the_real_pipeline(env, tmp_path, session):
    """Replay server -> listener -> Dramatiq worker (collect + publish after commit) -> web -> socket."""
    add_member(session, MEMBER, "member.test")
    session.commit()
    net = Network(session, None)
    net.clock = itertools.count(int(time.time() * 1_000_000) - 60_000_000, 1000)
    post, uri = net.post(MEMBER)
    capture = tmp_path / "capture.jsonl"
    capture.write_bytes(orjson.dumps(post) + b"\n")

    system = System(env, tmp_path)
    web = Web(env, tmp_path / "web.log")
    try:
        system.start_worker()
        system.start_replay(capture)
        system.start_listener()
        system.wait_until_applied(post["time_us"], timeout=60)
        client = Client(web.url)
        client.auth(token_for(env, MEMBER))
        client.subscribe([uri])
        with open(capture, "ab") as tail:
            tail.write(orjson.dumps(net.like(FAN, uri)) + b"\n" + orjson.dumps(net.follow(FAN, MEMBER)) + b"\n")
        received = {client.recv()["type"]: None for _ in range(2)}
        assert set(received) == {"post_updated", "profile_updated"}
    finally:
        web.stop()
        system.stop_all()


def test_collect_events_reports_net_changes_only(network):
    """No socket needed: what one batch's net changes turn into."""
    post, uri = network.post(MEMBER)
    network.apply(post)
    like = network.like(FAN, uri)
    unlike = network.raw(FAN, "app.bsky.feed.like", "delete", rkey=like["commit"]["rkey"])
    assert network.apply(like, unlike) == []  # liked and unliked in one batch: nothing changed

    events = network.apply(network.follow(MEMBER, FAN), network.follow(FAN, OTHER))
    # Both sides of the first follow changed counts, but only the member has sockets; the
    # second follow touches no member and is not stored at all.
    assert [(e["type"], e["profile"]["did"], e["profile"]["followingCount"]) for e in events] == [
        ("profile_updated", MEMBER, 1)]
    assert all(e["id"] for e in events)


# -- limits --------------------------------------------------------------------------------

def closed_with(client: Client) -> tuple[int, str]:
    """The close frame the server sent next: (code, reason)."""
    opcode, frame = client.ws.recv_data_frame(True)
    assert opcode == websocket.ABNF.OPCODE_CLOSE, (opcode, frame.data)
    return int.from_bytes(frame.data[:2], "big"), frame.data[2:].decode()


def connections(web: Web) -> int:
    return httpx.get(web.http + "/health/ws").json()["connections"]


def test_limits_per_address_and_per_socket(env, tmp_path):
    # A refill of one message per 100 s: nothing the test's own pace can change.
    web = Web(env, tmp_path / "web.log", WS_MAX_CONNECTIONS_PER_IP="3", WS_MESSAGES_PER_SECOND="0.01",
              WS_MESSAGE_BURST="4", WS_MAX_MESSAGE_BYTES="2048", WS_MAX_SUBSCRIPTIONS="5")
    try:
        first, chatty, big = Client(web.url), Client(web.url), Client(web.url)
        refused = Client(web.url)
        assert refused.expect("error")["code"] == "too_many_connections"
        assert closed_with(refused) == (4429, "too many connections from this address")
        first.close()
        wait_for(lambda: connections(web) == 2, "the closed socket is forgotten")
        follower = Client(web.url)  # its place is free again

        for _ in range(4):  # the burst
            chatty.sync()
        for _ in range(4):  # over the rate: ignored, with an error each
            chatty.send({"type": "ping"})
            assert chatty.expect("error")["code"] == "rate_limited"
        chatty.send({"type": "ping"})  # and on: closed
        assert chatty.expect("error")["code"] == "rate_limited"
        assert closed_with(chatty) == (4429, "too many messages")

        big.send(json.dumps({"type": "subscribe", "uris": [post_uri(i) for i in range(40)]}))  # > 2 KiB
        assert closed_with(big)[0] == 1009

        assert follower.subscribe([post_uri(i) for i in range(5)])["total"] == 5
        follower.send({"type": "subscribe", "uris": [post_uri(5)]})
        assert follower.expect("error")["code"] == "too_many_subscriptions"
        follower.sync()
    finally:
        web.stop()


def test_an_address_cannot_refill_its_replay_budget_by_reconnecting():
    """No server needed: the per-address ledger keeps a spent budget after its sockets close."""
    ledger = IpLedger(max_connections=2, replays_per_minute=1)
    assert ledger.open("192.0.2.1") and ledger.open("192.0.2.1") and not ledger.open("192.0.2.1")
    assert ledger.open("192.0.2.2")  # another address has its own count
    assert ledger.take_replay("192.0.2.1") and not ledger.take_replay("192.0.2.1")
    ledger.close("192.0.2.1")
    ledger.close("192.0.2.1")
    for n in range(SWEEP_EVERY):  # many sockets come and go: the table is swept
        ledger.open(f"198.51.100.{n % 250}")
        ledger.close(f"198.51.100.{n % 250}")
    assert ledger.open("192.0.2.1") and not ledger.take_replay("192.0.2.1")


def test_history_replays_have_a_budget(env, tmp_path, stream):
    web = Web(env, tmp_path / "web.log", WS_REPLAYS_PER_MINUTE="2", WS_IP_REPLAYS_PER_MINUTE="3",
              WS_REPLAY_MAX_EVENTS="100")
    uri, other, third = post_uri(1), post_uri(2), post_uri(3)

    def updated(post: str, likes: int = 1) -> dict:
        return {"type": "post_updated", "post": {"uri": post, "likeCount": likes, "repostCount": 0, "replyCount": 0}}

    try:
        since = publish(stream, [updated(uri, 1)])[0]["id"]
        missed = publish(stream, [updated(uri, 2)])[0]["id"]
        one, two = Client(web.url), Client(web.url)
        one.subscribe([uri], since=since)
        assert one.expect("post_updated")["id"] == missed  # replay 1 of the socket, 1 of the address

        filler = publish(stream, [updated(post_uri(1000 + n)) for n in range(100)])
        one.subscribe([other], since=since)  # replay 2: more than 100 events ago
        assert one.expect("resync") == {"type": "resync", "reason": "history_trimmed", "uris": [other]}
        one.subscribe([third], since=since)  # the socket's budget is spent
        assert one.expect("resync") == {"type": "resync", "reason": "replay_budget", "uris": [third]}

        two.subscribe([uri], since=filler[-1]["id"])  # replay 3 of the address: nothing missed
        two.subscribe([other], since=filler[-1]["id"])  # the address's budget is spent
        assert two.expect("resync") == {"type": "resync", "reason": "replay_budget", "uris": [other]}
        one.sync()
        two.sync()
        live = publish(stream, [updated(other, 5)])  # live events flow all the same
        assert one.expect("post_updated")["id"] == two.expect("post_updated")["id"] == live[0]["id"]
    finally:
        web.stop()


# -- sessions ending -----------------------------------------------------------------------

PASSWORD = "correct-horse-battery"


def sign_in(web: Web, handle: str) -> dict:
    response = httpx.post(web.http + "/api/auth/login", json={"identifier": handle, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return response.json()


def session_over(client: Client) -> None:
    assert client.expect("error")["code"] == "session_ended"
    assert closed_with(client) == (4401, "session ended")


@pytest.fixture
def web_with_pds(env, tmp_path, fake_pds):
    """Two web processes (each reads the stream: a session's end must reach both) on the fake PDS."""
    server = Web(env, tmp_path / "web.log", PDS_URL=fake_pds.url, WEB_CONCURRENCY="2")
    yield server
    server.stop()


def test_logout_and_refresh_token_reuse_close_the_sessions_sockets(web_with_pds, fake_pds):
    web = web_with_pds
    fake_pds.add_account("alice.test", PASSWORD)
    phone, laptop = sign_in(web, "alice.test"), sign_in(web, "alice.test")
    phone_sockets = [Client(web.url) for _ in range(4)]
    for client in phone_sockets:
        client.auth(phone["accessToken"])
    laptop_socket = Client(web.url)
    laptop_socket.auth(laptop["accessToken"])

    response = httpx.post(web.http + "/api/auth/logout", headers={"Authorization": f"Bearer {phone['accessToken']}"})
    assert response.status_code == 200
    for client in phone_sockets:
        session_over(client)
    laptop_socket.sync()  # another session of the same member: open

    late = Client(web.url)  # the signed-out token cannot open a socket either
    late.send({"type": "auth", "token": phone["accessToken"]})
    assert late.expect("error")["code"] == "invalid_token"
    assert closed_with(late)[0] == 4401

    rotated = httpx.post(web.http + "/api/auth/refresh", json={"refreshToken": laptop["refreshToken"]})
    assert rotated.status_code == 200
    laptop_socket.auth(rotated.json()["accessToken"])  # the same session, a newer token
    reused = httpx.post(web.http + "/api/auth/refresh", json={"refreshToken": laptop["refreshToken"]})
    assert reused.status_code == 401
    session_over(laptop_socket)


def test_an_account_purge_deletes_its_posts_live_and_ends_its_sessions(web_with_pds, fake_pds, network, session):
    web = web_with_pds
    alice = fake_pds.add_account("alice.test", PASSWORD)
    tokens = sign_in(web, "alice.test")
    own, own_uri = network.post(alice.did)
    others, others_uri = network.post(OTHER)
    network.apply(own, others, network.like(alice.did, others_uri))
    viewer, member = Client(web.url), Client(web.url)
    viewer.subscribe([own_uri, others_uri])
    member.auth(tokens["accessToken"])

    purge = {"did": alice.did, "time_us": next(network.clock), "kind": "account",
             "account": {"active": False, "did": alice.did, "seq": 1, "status": "deleted",
                         "time": "2026-01-01T00:00:00.000Z"}}
    published = network.apply(purge)
    assert [e["type"] for e in published] == ["post_deleted", "post_updated", "session_ended"]
    assert viewer.expect("post_deleted")["uri"] == own_uri
    assert viewer.expect("post_updated")["post"] == {"uri": others_uri, "likeCount": 0, "repostCount": 0,
                                                     "replyCount": 0}
    session_over(member)

    # Its tokens are refused everywhere, and we keep no session or credentials of the account.
    feed = httpx.get(web.http + "/api/feed/following", headers={"Authorization": f"Bearer {tokens['accessToken']}"})
    assert feed.status_code == 401
    assert httpx.post(web.http + "/api/auth/refresh", json={"refreshToken": tokens["refreshToken"]}).status_code == 401
    for table in ("app_sessions", "pds_sessions"):
        assert session.execute(text(f"SELECT count(*) FROM {table}")).scalar() == 0
