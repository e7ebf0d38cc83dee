"""End to end through real processes: replay server -> listener -> Redis -> workers -> PostgreSQL.

The final index must equal ``tests/model.py`` run over the capture in order, however the
processes are killed and restarted along the way.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import orjson
import pytest
from sqlalchemy import text

from cannect.capture import generate_capture
from cannect.config import DEFAULT_CANNABIS_TAGS
from cannect.replay import Capture
from harness import Client, System, Web, last_kept_time_us, token_for
from model import CommunityModel, assert_invariants
from services.jetstream import Skip, parse_event
from services.members import add_member
from snapshot import db_snapshot, diff


@pytest.fixture
def system(env, tmp_path):
    system = System(env, tmp_path)
    yield system
    system.stop_all()


def _prepare(tmp_path, session, events, seed, mangle=None):
    capture = tmp_path / "capture.jsonl"
    meta = generate_capture(str(capture), events, seed=seed)
    if mangle:
        capture.write_bytes(b"\n".join(mangle(capture.read_bytes().splitlines())) + b"\n")
    for member in meta["members"]:
        add_member(session, member["did"], member["handle"])
    session.commit()
    model = CommunityModel([(m["did"], m["handle"]) for m in meta["members"]], DEFAULT_CANNABIS_TAGS)
    model.apply_file(str(capture))
    return capture, model


def _assert_matches(session, model):
    session.rollback()
    actual = db_snapshot(session)
    assert_invariants(actual)
    problems = diff(model.snapshot(), actual)
    assert not problems, problems


def test_capture_end_to_end_matches_the_model(system, tmp_path, session):
    """With handle resolution: every profile ends with the handle the capture's identity world
    verifies (the replay server plays the PLC directory and resolveHandle)."""
    capture, model = _prepare(tmp_path, session, 20_000, seed=21)
    system.start_replay(capture)
    system.start_worker(processes=1, threads=4)
    system.start_identity_worker()
    system.start_listener()
    system.wait_until_applied(last_kept_time_us(capture))
    system.wait_until_resolved()
    world = Capture.load(str(capture)).directory
    model.resolve_identities(world.handle_of, world.did_of)
    _assert_matches(session, model)
    handles = [p["handle"] for p in model.snapshot()["profiles"].values()]
    assert sum(h is not None for h in handles) > 0.9 * len(handles)  # authors have handles now

    status = subprocess.run([sys.executable, "-m", "cannect.cli", "status", "--json"], env=system.env,
                            capture_output=True, text=True, check=True)
    report = json.loads(status.stdout)
    assert report["cursor"] >= last_kept_time_us(capture) and report["lag_seconds"] > 0
    events = report["events"]
    kept = sum(not isinstance(parse_event(line), Skip) for line in capture.read_bytes().splitlines())
    assert events["kept"] == kept  # the server filtered other collections out: seen <= 20,000
    assert events["seen"] == events["kept"] + events["rejected"] + events["ignored"] <= 20_000
    assert report["queues"]["ingest"] == 0
    assert report["ingest"]["batches_waiting"] == 0
    check = [sys.executable, "-m", "cannect.cli", "status", "--check", "60"]
    assert subprocess.run(check, env=system.env, capture_output=True).returncode == 0
    system.kill("listener")
    time.sleep(1.5)
    assert subprocess.run(check[:-1] + ["1"], env=system.env, capture_output=True).returncode == 1


def test_killed_listener_and_worker_recover_without_loss_or_double_counting(system, tmp_path, session):
    capture, model = _prepare(tmp_path, session, 30_000, seed=22)
    last = last_kept_time_us(capture)
    system.env["WORKER_HEARTBEAT_TIMEOUT_MS"] = "3000"
    system.env["INGEST_BATCH_SIZE"] = "200"
    port = system.start_replay(capture, speed=10)  # ~3 s of stream time per second
    system.start_worker("worker-a", threads=2)
    system.start_worker("worker-b", threads=2)
    system.start_listener()

    deadline = time.monotonic() + 60
    while system.applied()[1] < 5_000 and time.monotonic() < deadline:
        time.sleep(0.1)
    system.kill("listener")
    system.kill("worker-a")   # dies holding prefetched, unacknowledged batches
    time.sleep(1)
    system.start_listener()   # resumes a few seconds before its saved cursor
    while system.applied()[1] < 15_000 and time.monotonic() < deadline + 60:
        time.sleep(0.1)
    system.kill("listener")
    system.kill("worker-b")
    system.start_worker("worker-c", threads=3)
    system.start_listener()
    time.sleep(2)
    system.kill("replay")     # Jetstream goes away: the listener reconnects with backoff
    time.sleep(1)
    system.start_replay(capture, speed=0, port=port)
    system.wait_until_applied(last, timeout=240)
    _assert_matches(session, model)
    duplicates = session.scalar(text("SELECT duplicates_skipped FROM ingest_state"))
    assert duplicates > 0  # the restarts really did replay events


def test_malformed_and_duplicated_events_are_counted_and_harmless(system, tmp_path, session):
    def mangle(lines):
        out = []
        for i, line in enumerate(lines):
            out.append(line)
            if i % 97 == 0:
                out.append(line)                       # delivered twice in a row
            if i % 501 == 0:
                out.append(b'{"did": "did:plc:broken", "time_us": ')   # truncated JSON
            if i % 733 == 0:
                out.append(orjson.dumps({"did": "did:plc:" + "z" * 24, "time_us": 1 + i, "kind": "commit",
                                         "commit": {"operation": "create", "collection": "app.bsky.feed.like",
                                                    "rkey": "x", "record": {"subject": 7}}}))
        return out

    capture, model = _prepare(tmp_path, session, 8_000, seed=23, mangle=mangle)
    system.start_replay(capture)
    system.start_worker()
    system.start_listener()
    system.wait_until_applied(last_kept_time_us(capture))
    _assert_matches(session, model)
    status = subprocess.run([sys.executable, "-m", "cannect.cli", "status", "--json"], env=system.env,
                            capture_output=True, text=True, check=True)
    events = json.loads(status.stdout)["events"]
    assert events["rejected"] == 16 + 11 and events["reasons"]["rejected:malformed_json"] == 16


def test_real_jetstream_samples_through_the_listener(system, tmp_path, session):
    """Real events arrive slightly out of time_us order; none may be lost."""
    from conftest import SAMPLES

    capture = tmp_path / "real.jsonl"
    capture.write_bytes((SAMPLES / "jetstream1-us-east-2026-07-04.jsonl").read_bytes())
    lines = capture.read_bytes().splitlines()
    authors = sorted({orjson.loads(line)["did"] for line in lines if b'"app.bsky.feed.post"' in line})[:4]
    for did in authors:
        add_member(session, did)
    session.commit()
    model = CommunityModel([(did, None) for did in authors], DEFAULT_CANNABIS_TAGS)
    model.apply_file(str(capture))
    system.start_replay(capture)
    system.start_worker()
    system.start_listener()
    system.wait_until_applied(last_kept_time_us(capture))
    _assert_matches(session, model)
    assert model.snapshot()["posts"]  # the members' posts were indexed


def test_hostile_events_mixed_into_a_capture_cost_only_themselves(system, tmp_path, session):
    """tests/hostile.py's corpus, from the capture's own members, spread through a normal capture
    and played through the replay server: no restart, no reconnect, no parked or dead-lettered
    batch, and every innocent event applied as the model says."""
    from hostile import hostile_lines

    added = []

    def mix(lines):
        members = json.loads((tmp_path / "capture.jsonl.meta.json").read_text())["members"]
        times = [orjson.loads(line)["time_us"] for line in lines]
        first, last = min(times), max(times)
        hostile = hostile_lines(first + (last - first) // 4, [m["did"] for m in members],
                                spacing_us=max(1, (last - first) // 400), taken_time_us=set(times))
        added.extend(hostile)
        keyed, at = [(t, 0, line) for t, line in zip(times, lines)], first
        for line in hostile:  # a line without a usable time_us goes where the one before it went
            at = _time_us_or_none(line) or at
            keyed.append((at, 1, line))
        return [line for _, _, line in sorted(keyed, key=lambda item: item[:2])]

    capture, model = _prepare(tmp_path, session, 6_000, seed=24, mangle=mix)
    assert len(added) > 100
    system.env["INGEST_BATCH_SIZE"] = "200"
    system.start_replay(capture)
    system.start_worker()
    system.start_listener()
    system.wait_until_applied(last_kept_time_us(capture))
    _assert_matches(session, model)

    state = session.execute(text("SELECT gaps_accepted, events_dead_lettered FROM ingest_state")).one()
    assert tuple(state) == (0, 0)
    assert session.scalar(text("SELECT count(*) FROM ingest_pending")) == 0
    assert "reconnecting" not in system.log("listener")
    report = json.loads(subprocess.run([sys.executable, "-m", "cannect.cli", "status", "--json"], env=system.env,
                                       capture_output=True, text=True, check=True).stdout)
    assert report["events"]["rejected"] >= 100


def _time_us_or_none(line: bytes) -> int | None:
    """The line's time_us when it has a usable one."""
    try:
        value = orjson.loads(line).get("time_us")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return value if type(value) is int and value > 0 else None


def test_members_get_their_notifications_live_and_pushed(env, tmp_path, session):
    """Replay -> listener -> ingest -> notify -> push and web, against the local push service:
    the notifications are the model's, each reached the member's own socket on ``/ws`` (a real
    gunicorn process) once, and each arrived at the member's phone as a decrypted push once."""
    import websocket

    from fakes.push import FakePushService
    from services.push.keys import generate_vapid_keys

    capture, model = _prepare(tmp_path, session, 20_000, seed=21)
    expected = model.snapshot()["notifications"]
    by_member: dict[str, int] = {}
    for key in expected:
        by_member[key.split(" ")[0]] = by_member.get(key.split(" ")[0], 0) + 1
    member = max(by_member, key=by_member.get)
    public, private = generate_vapid_keys()
    with FakePushService(vapid_public_key=public) as service:
        phone = service.subscriber()
        session.execute(text("INSERT INTO push_subscriptions (user_did, endpoint, p256dh, auth) VALUES (:d, :e, :p, :a)"),
                        {"d": member, "e": phone.endpoint, "p": phone.p256dh, "a": phone.auth})
        session.commit()
        push_env = {**env, "VAPID_PUBLIC_KEY": public, "VAPID_PRIVATE_KEY": private,
                    "VAPID_EMAIL": "mailto:ops@cannect.space", "PUSH_INSECURE_TEST_ORIGINS": service.origin}
        system = System(push_env, tmp_path)
        web = Web(push_env, tmp_path / "web.log")
        live: list[dict] = []
        try:
            socket = Client(web.url)
            socket.auth(token_for(env, member))
            system.start_replay(capture)
            system.start_worker(processes=1, threads=2)
            system.start_notify_worker()
            system.start_push_worker()
            system.start_listener()
            system.wait_until_applied(last_kept_time_us(capture))
            session.rollback()
            actual = db_snapshot(session)
            assert not diff({"notifications": expected}, {"notifications": actual["notifications"]})
            ids = dict(session.execute(text("SELECT id, type FROM notifications WHERE recipient_did = :d"),
                                       {"d": member}).all())
            assert len(ids) == by_member[member]
            deadline = time.monotonic() + 120
            while not {str(i) for i in ids} <= {p.payload["id"] for p in service.delivered()}:
                assert time.monotonic() < deadline, "not every notification was pushed"
                time.sleep(0.2)
            pushes = service.delivered()
            assert service.errors == []
            socket.ws.settimeout(2)
            while not set(ids) <= {event["notification"]["id"] for event in live}:
                assert time.monotonic() < deadline, "not every notification reached the socket"
                try:
                    message = socket.recv()
                except websocket.WebSocketTimeoutException:
                    continue
                if message["type"] == "notification":
                    live.append(message)
            socket.sync()   # and anything still on its way: no second copy of any of them
            while True:
                try:
                    message = socket.recv()
                except websocket.WebSocketTimeoutException:
                    break
                if message["type"] == "notification":
                    live.append(message)
            socket.close()
        finally:
            web.stop()
            system.stop_all()
    # Each pushed once, decrypted, with its type; a push of a notification whose cause was
    # deleted later (an unlike) may have gone out before the delete: it is one of the member's.
    pushed = [(p.payload["id"], p.payload["type"]) for p in pushes]
    assert len(pushed) == len(set(pushed))
    assert {(str(i), t) for i, t in ids.items()} <= set(pushed)
    assert all(int(i) <= max(ids) + 1000 for i, _ in pushed)

    # On the socket: only the member's own, each once, as the REST API shows them.
    announced = [event["notification"]["id"] for event in live]
    assert set(ids) <= set(announced) and len(announced) == len(set(announced))
    assert all(event["notification"]["reason"] == ids[event["notification"]["id"]]
               for event in live if event["notification"]["id"] in ids)
    # A push is sent only for a notification still there: some announced ones were gone by then.
    assert {i for i, _ in pushed} <= {str(i) for i in announced}
