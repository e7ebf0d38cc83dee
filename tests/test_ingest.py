"""The ingest service against real PostgreSQL: rules, ordering, idempotency.

Batches are fed straight to ``services.ingest.ingest_batch`` in the orders and multiplicities
Dramatiq may deliver them (shuffled, repeated, across reconnects), and the result must equal
``tests/model.py`` run over the same events in stream order.
"""

from __future__ import annotations

import random

import orjson
import pytest
from sqlalchemy import text

from cannect.config import DEFAULT_CANNABIS_TAGS
from cannect.capture import generate_capture
from model import CommunityModel, assert_invariants
from services.ingest import drain_parked, ingest_batch
from services.jetstream import Skip, parse_event
from services.members import add_member
from snapshot import db_snapshot, diff

from conftest import SAMPLES

TAGS = frozenset(DEFAULT_CANNABIS_TAGS)


def _capture(tmp_path, events, seed):
    path = tmp_path / "capture.jsonl"
    meta = generate_capture(str(path), events, seed=seed)
    return path.read_bytes().splitlines(), meta


def _expected(lines, meta):
    model = CommunityModel([(m["did"], m["handle"]) for m in meta["members"]], TAGS)
    for line in lines:
        model.apply_line(line)
    return model.snapshot()


def _register(session, meta):
    for member in meta["members"]:
        add_member(session, member["did"], member["handle"])
    session.commit()


def _batches(events, conn, size, prev=None):
    chunks = [events[i:i + size] for i in range(0, len(events), size)]
    return [{"conn": conn, "seq": n + 1, "prev": prev if n == 0 else None, "events": chunk}
            for n, chunk in enumerate(chunks)]


def _deliver(session, batches, gap_timeout=300.0):
    for batch in batches:
        ingest_batch(session, batch, TAGS, gap_timeout)
        session.commit()


def _parsed(lines):
    return [e for e in map(parse_event, lines) if not isinstance(e, Skip)]


def _commit(did: str, time_us: int, collection: str, rkey: str, record: dict) -> bytes:
    """One Jetstream v1 create event, as the wire carries it."""
    return orjson.dumps({"did": did, "time_us": time_us, "kind": "commit", "commit": {
        "operation": "create", "collection": collection, "rkey": rkey, "cid": f"bafyreicid{rkey}", "record": record}})


def _post_liked_and_author_followed(author: str, fan: str, text: str) -> list[bytes]:
    """``author`` posts p1; ``fan`` likes it (l1) and follows the author (f1)."""
    post_uri = f"at://{author}/app.bsky.feed.post/p1"
    return [
        _commit(author, 1, "app.bsky.feed.post", "p1", {"text": text, "createdAt": "2026-07-04T14:00:00Z"}),
        _commit(fan, 2, "app.bsky.feed.like", "l1", {"subject": {"uri": post_uri, "cid": "bafyreicidp1"},
                                                      "createdAt": "2026-07-04T14:00:01Z"}),
        _commit(fan, 3, "app.bsky.graph.follow", "f1", {"subject": author, "createdAt": "2026-07-04T14:00:02Z"}),
    ]


def test_real_samples_parse_without_errors():
    for path in SAMPLES.glob("*.jsonl"):
        results = [parse_event(line) for line in path.read_bytes().splitlines()]
        kept = [r for r in results if not isinstance(r, Skip)]
        skipped = [r for r in results if isinstance(r, Skip)]
        assert kept, path
        assert {s.outcome for s in skipped} <= {"ignored"}, skipped  # real events are never "broken"
        kinds = {(e["k"], e.get("col")) for e in kept}
        assert ("commit", "like") in kinds and ("account", None) in kinds and ("identity", None) in kinds


@pytest.mark.parametrize("line, reason", [
    (b"{not json", "malformed_json"),
    (b"[1,2]", "not_an_object"),
    (b'{"did":"did:plc:x","kind":"commit"}', "bad_time_us"),
    (b'{"did":42,"time_us":1,"kind":"commit"}', "bad_did"),
    (b'{"did":"did:plc:x","time_us":1,"kind":"commit","commit":{"operation":"create"}}', "bad_commit"),
    (b'{"did":"did:plc:x","time_us":1,"kind":"commit","commit":{"collection":"app.bsky.feed.like",'
     b'"operation":"create","rkey":"a"}}', "missing_record"),
    (b'{"did":"did:plc:x","time_us":1,"kind":"commit","commit":{"collection":"app.bsky.feed.like",'
     b'"operation":"create","rkey":"a","record":{"subject":"nope"}}}', "bad_like_record"),
    (b'{"did":"did:plc:x","time_us":1,"kind":"commit","commit":{"collection":"app.bsky.feed.post",'
     b'"operation":"create","rkey":"a","record":{"text":"' + b"x" * 2_000_000 + b'"}}}', "too_large"),
])
def test_bad_events_are_rejected_with_a_reason(line, reason):
    result = parse_event(line)
    assert isinstance(result, Skip) and result.outcome == "rejected" and result.reason == reason


def test_unknown_collections_kinds_and_fields_are_tolerated():
    assert parse_event(b'{"did":"did:plc:x","time_us":5,"kind":"commit","commit":{"collection":"fm.teal.x",'
                       b'"operation":"create","rkey":"a","record":{}}}').outcome == "ignored"
    assert parse_event(b'{"did":"did:plc:x","time_us":5,"kind":"sync"}').outcome == "ignored"
    event = parse_event(b'{"did":"did:plc:x","time_us":5,"kind":"commit","cursor":9,"commit":{"rev":"r",'
                        b'"operation":"create","collection":"app.bsky.feed.post","rkey":"a","newField":1,'
                        b'"record":{"createdAt":"2026-07-04T14:38:07+00:00"}}}')
    assert event["col"] == "post" and event["rec"]["createdAt"].endswith("+00:00")


def test_in_order_batches_match_the_model(tmp_path, session):
    lines, meta = _capture(tmp_path, 6_000, seed=11)
    _register(session, meta)
    _deliver(session, _batches(_parsed(lines), conn=1, size=250))
    actual = db_snapshot(session)
    assert_invariants(actual)
    problems = diff(_expected(lines, meta), actual)
    assert not problems, problems


def test_shuffled_repeated_delivery_and_reconnect_overlap_match_the_model(tmp_path, session):
    """Workers take batches in any order, more than once; a reconnect replays an overlap."""
    lines, meta = _capture(tmp_path, 6_000, seed=12)
    _register(session, meta)
    events = _parsed(lines)
    rng = random.Random(5)
    cut, rewind = 3_500, 400
    first = _batches(events[:cut], conn=100, size=200)
    # The listener died after enqueuing all of `first` but saving its cursor at batch 12; the
    # new connection names batch 12 as its predecessor and replays from a few seconds before.
    second = _batches(events[12 * 200 - rewind:], conn=200, size=300, prev=[100, 12])
    deliveries = first + second + rng.sample(first, 6) + rng.sample(second, 4)
    rng.shuffle(deliveries)
    _deliver(session, deliveries)
    assert session.scalar(text("SELECT count(*) FROM ingest_pending")) == 0
    problems = diff(_expected(lines, meta), db_snapshot(session))
    assert not problems, problems


def test_a_batch_whose_predecessor_is_lost_is_applied_after_the_gap_timeout(tmp_path, session):
    lines, meta = _capture(tmp_path, 2_000, seed=13)
    _register(session, meta)
    batches = _batches(_parsed(lines), conn=7, size=500)
    _deliver(session, [batches[0], batches[2], batches[3]])   # batch 2 never arrives
    assert session.scalar(text("SELECT count(*) FROM ingest_pending")) == 2
    outcome = drain_parked(session, TAGS, gap_timeout=0)
    session.commit()
    assert outcome.batches == 2
    state = session.execute(text("SELECT seq, gaps_accepted FROM ingest_state")).one()
    assert (state.seq, state.gaps_accepted) == (4, 1)
    _deliver(session, [batches[1]])  # arrives at last: superseded, changes nothing
    assert session.scalar(text("SELECT seq FROM ingest_state")) == 4


def test_events_of_one_batch_are_applied_once_even_when_listed_twice(tmp_path, session):
    lines, meta = _capture(tmp_path, 1_500, seed=14)
    _register(session, meta)
    events = _parsed(lines)
    doubled = [e for event in events for e in (event, dict(event))]
    _deliver(session, _batches(doubled, conn=1, size=400))
    problems = diff(_expected(lines, meta), db_snapshot(session))
    assert not problems, problems


def test_account_deletion_removes_the_account_everywhere(session):
    member, other = "did:plc:" + "a" * 24, "did:plc:" + "b" * 24
    add_member(session, member, "m.cannect.space")
    session.commit()
    raw = _post_liked_and_author_followed(author=other, fan=member, text="hello #weed") + [orjson.dumps(
        {"did": other, "time_us": 4, "kind": "account", "account": {"active": False, "did": other, "seq": 9,
                                                                     "time": "2026-07-04T14:00:03Z",
                                                                     "status": "deleted"}})]
    _deliver(session, _batches(_parsed(raw), conn=1, size=10))
    snap = db_snapshot(session)
    assert not snap["posts"] and not snap["likes"] and not snap["follows"]
    assert set(snap["profiles"]) == {member} and snap["profiles"][member]["following_count"] == 0
    assert not session.execute(text("SELECT * FROM user_post_state WHERE liked")).all()


def test_a_new_member_sees_their_earlier_likes_and_follows(session):
    author, fan = "did:plc:" + "e" * 24, "did:plc:" + "f" * 24
    add_member(session, author)
    session.commit()
    raw = _post_liked_and_author_followed(author=author, fan=fan, text="hi")
    _deliver(session, _batches(_parsed(raw), conn=1, size=10))
    assert not session.execute(text("SELECT * FROM user_post_state WHERE user_did = :d"), {"d": fan}).all()
    add_member(session, fan)  # the fan joins Cannect later
    session.commit()
    liked = session.execute(text("SELECT liked, like_uri FROM user_post_state WHERE user_did = :d"), {"d": fan}).one()
    assert liked == (True, f"at://{fan}/app.bsky.feed.like/l1")
    follows = session.execute(text("SELECT following, follow_uri FROM user_follow_state WHERE user_did = :d"),
                              {"d": fan}).one()
    assert follows == (True, f"at://{fan}/app.bsky.graph.follow/f1")
