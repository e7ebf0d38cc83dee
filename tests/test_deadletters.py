"""One bad event never costs another, against real PostgreSQL.

Batches are built by hand (bypassing ``parse_event``, as an old message, a rule change or a
bug would) with events PostgreSQL refuses or the rules cannot read, mixed with innocent
ones. Every innocent event must be applied exactly as if the bad ones had never been sent,
the bad ones must land in ``ingest_dead_letters`` with their reason, and the chain must move
on at once. Errors that say nothing about the events (a lock wait cut short) still fail the
batch, so that the actor retries it.
"""

from __future__ import annotations

import importlib
import json
import logging
import random

import dramatiq
import orjson
import psycopg
import pytest
from dramatiq.brokers.stub import StubBroker
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from cannect.capture import generate_capture
from cannect.config import DEFAULT_CANNABIS_TAGS, get_settings
from conftest import SAMPLES, _scratch_database
from services.ingest import deadletters, ingest_batch
from services.jetstream import Skip, parse_event
from services.members import add_member
from services.realtime import collect_events
from snapshot import db_snapshot, diff

TAGS = frozenset(DEFAULT_CANNABIS_TAGS)
MEMBER = "did:plc:" + "m" * 24
AUTHOR = "did:plc:" + "a" * 24
FAN = "did:plc:" + "f" * 24
CDN = "https://cdn.example"
#: ~750 KB of distinct words: more than a tsvector can hold (1 MB of lexemes and positions).
_rng = random.Random(750)
HUGE_TAGGED_TEXT = " ".join("".join(_rng.choices("abcdefghijklmnopqrstuvwxyz", k=7)) for _ in range(94_000)) + " #weed"


# -- events, in the slim shape of ingest messages ------------------------------------------------

def _commit(did, t, col, rkey, record=None, op="c"):
    event = {"t": t, "did": did, "k": "commit", "col": col, "op": op, "rkey": rkey}
    if record is not None:
        event.update(cid=f"cid-{rkey}", rec=record)
    return event


def _post(did, t, rkey, text_, **extra):
    return _commit(did, t, "post", rkey, {"text": text_, "createdAt": "2026-07-04T14:00:00Z", **extra})


def _reply(did, t, rkey, parent, text_="re"):
    ref = {"uri": parent, "cid": "cid-parent"}
    return _post(did, t, rkey, text_, reply={"parent": ref, "root": ref})


def _like(did, t, rkey, subject):
    return _commit(did, t, "like", rkey, {"subject": {"uri": subject, "cid": "cid-x"},
                                          "createdAt": "2026-07-04T14:00:01Z"})


def _follow(did, t, rkey, subject):
    return _commit(did, t, "follow", rkey, {"subject": subject, "createdAt": "2026-07-04T14:00:02Z"})


def _uri(did, rkey):
    return f"at://{did}/app.bsky.feed.post/{rkey}"


def _bad_events(t):
    """One of each kind of event that fails in SQL or in the rules, with reason fragments."""
    return [
        (_post(AUTHOR, t + 1, "nul-text", "hello\x00 #weed"), "NUL"),
        (_like(FAN, t + 2, "nul-like", _uri(AUTHOR, "p1") + "\x00"), "NUL"),
        (_follow(FAN, t + 3, "nul-follow", MEMBER + "\x00"), "NUL"),
        (_reply(FAN, t + 4, "nul-reply", _uri(AUTHOR, "p1") + "\x00"), "NUL"),
        (_post(MEMBER, t + 5, "nul-jsonb", "fine #weed", extra={"note": "a\x00b"}), "[22P05]"),
        (_post(AUTHOR, t + 6, "huge", HUGE_TAGGED_TEXT), "[54000]"),
        ({"t": t + 7, "did": AUTHOR, "k": "commit", "col": "post", "op": "c"}, "KeyError"),
        ({"t": t + 8, "k": "commit", "col": "like", "op": "d", "rkey": "x"}, "KeyError"),
        ({"did": AUTHOR, "k": "identity", "handle": "x.test"}, "no usable time_us"),
        ({"t": 2**63, "did": AUTHOR, "k": "identity", "handle": "x.test"}, "no usable time_us"),
        ("not an event", "no usable time_us"),
    ]


def _story(t):
    """Innocent events whose outcome depends on each other: a member follows an author, who
    posts (indexed because followed); a fan likes, replies and follows; the author edits."""
    return [
        _follow(MEMBER, t + 10, "f-member", AUTHOR),
        _post(AUTHOR, t + 11, "p1", "plain post by a followed author"),
        _like(FAN, t + 12, "l1", _uri(AUTHOR, "p1")),
        _reply(FAN, t + 13, "r1", _uri(AUTHOR, "p1")),
        _follow(FAN, t + 14, "f-fan", MEMBER),
        _post(FAN, t + 15, "tagged", "a #weed post"),
        _like(MEMBER, t + 16, "l2", _uri(FAN, "tagged")),
        _commit(AUTHOR, t + 17, "post", "p1", {"text": "edited", "createdAt": "2026-07-04T14:00:00Z"}, op="u"),
        _commit(FAN, t + 18, "like", "l1", op="d"),
    ]


def _interleave(good, bad, seed):
    mixed = list(good)
    rng = random.Random(seed)
    for event in bad:
        mixed.insert(rng.randrange(len(mixed) + 1), event)
    return mixed


def _batches(events, conn, size):
    return [{"conn": conn, "seq": n + 1, "prev": None, "events": events[i:i + size]}
            for n, i in enumerate(range(0, len(events), size))]


def _deliver(session, batches):
    outcomes = []
    for batch in batches:
        outcomes.append(ingest_batch(session, batch, TAGS))
        session.commit()
    return outcomes


def _dump(session) -> dict:
    """Every column the rules write, timestamps of the apply itself aside."""
    q = lambda sql: sorted(repr(tuple(row)) for row in session.execute(text(sql)))  # noqa: E731
    return {
        "snapshot": db_snapshot(session),
        "posts": q("SELECT uri, cid, author_did, text, raw_record::text, facets::text, langs, tags, reply_parent_uri,"
                   " like_count, repost_count, reply_count, has_cannabis_hashtag, is_cannect_user FROM posts"),
        "likes": q("SELECT uri, actor_did, subject_uri, subject_cid FROM likes"),
        "follows": q("SELECT uri, follower_did, following_did FROM follows"),
        "profiles": q("SELECT did, handle, followers_count, following_count, posts_count FROM profiles"),
        "post_state": q("SELECT user_did, post_uri, liked, like_uri, reposted FROM user_post_state"),
        "follow_state": q("SELECT user_did, target_did, following, follow_uri, followed_by FROM user_follow_state"),
    }


def _assert_same(actual: dict, expected: dict) -> None:
    problems = diff(expected.pop("snapshot"), actual.pop("snapshot"))
    for table in expected:
        extra, missing = set(actual[table]) - set(expected[table]), set(expected[table]) - set(actual[table])
        if extra or missing:
            problems += f"\n{table}: extra {sorted(extra)[:4]} missing {sorted(missing)[:4]}"
    assert not problems, problems


@pytest.fixture
def other_session(servers, template_db):
    """A second migrated database, to apply the innocent events alone."""
    from services.db import make_engine

    for url in _scratch_database(servers[0], template_db):
        engine = make_engine(url.replace("postgresql://", "postgresql+psycopg://", 1), pool_size=1)
        with Session(engine) as session:
            yield session
        engine.dispose()


def _member(session):
    add_member(session, MEMBER, "member.cannect.space")
    session.commit()


# -- the apply path --------------------------------------------------------------------------

def test_bad_events_are_left_out_and_innocent_ones_applied_as_if_alone(session, other_session, caplog):
    t = 1_783_173_600_000_000
    good, bad = _story(t), _bad_events(t)
    for s in (session, other_session):
        _member(s)
    with caplog.at_level(logging.ERROR, logger="services.ingest"):
        outcomes = _deliver(session, _batches(_interleave(good, [e for e, _ in bad], seed=1), conn=1, size=8))
    _deliver(other_session, _batches(good, conn=1, size=8))

    _assert_same(_dump(session), _dump(other_session))
    assert sum(o.events for o in outcomes) == len(good)
    assert sum(o.dead_lettered for o in outcomes) == len(bad)
    letters = {letter.rkey or letter.event: letter for letter in deadletters.latest(session, 100)}
    assert len(letters) == len(bad)
    for event, fragment in bad:
        key = event.get("rkey") if isinstance(event, dict) else None
        letter = letters[key] if key else next(x for x in letters.values() if x.event == deadletters.event_text(event))
        assert fragment in letter.reason, (letter.reason, fragment)
        assert "\x00" not in letter.event and "\x00" not in letter.reason
        assert deadletters.event_text(event) == letter.event
    nul = letters["nul-text"]
    assert (nul.did, nul.collection, nul.time_us) == (AUTHOR, "app.bsky.feed.post", t + 1)
    assert orjson.loads(nul.event)["rec"]["text"] == "hello\x00 #weed"
    # The log names each event and its reason, never a record or a batch.
    logged = [r.getMessage() for r in caplog.records if "dead letter" in r.getMessage()]
    assert len(logged) == len(bad)
    assert any(f"{AUTHOR}/app.bsky.feed.post/nul-text at {t + 1}" in line for line in logged)
    assert all(len(line) < 1_000 and "hello" not in line for line in logged)


def test_the_chain_moves_on_at_once_and_a_replay_changes_nothing(session):
    t = 1_783_173_600_000_000
    _member(session)
    first = {"conn": 4, "seq": 1, "prev": None, "events": [_post(MEMBER, t, "ok", "hi"),
                                                            _post(MEMBER, t + 1, "bad", "x\x00")]}
    second = {"conn": 4, "seq": 2, "prev": None, "events": [_post(MEMBER, t + 2, "next", "there")]}
    assert [o.verdict for o in _deliver(session, [first, second])] == ["apply", "apply"]
    state = session.execute(text("SELECT conn, seq, events_applied, events_dead_lettered, gaps_accepted "
                                 "FROM ingest_state")).one()
    assert tuple(state) == (4, 2, 2, 1, 0)
    assert session.scalar(text("SELECT count(*) FROM ingest_pending")) == 0
    before = _dump(session)

    # The same batch again (a redelivery) is a duplicate; its events again (a reconnect's
    # overlap) are recognised by time_us, the dead-lettered one included.
    overlap = {"conn": 5, "seq": 1, "prev": [4, 2], "events": first["events"] + second["events"]}
    outcomes = _deliver(session, [first, overlap])
    assert [o.verdict for o in outcomes] == ["duplicate", "apply"]
    assert outcomes[1].duplicates == 3 and outcomes[1].dead_lettered == 0
    assert _dump(session) == before and deadletters.count(session) == 1


def test_a_parked_batch_with_a_bad_event_is_drained_without_it(session):
    t = 1_783_173_600_000_000
    _member(session)
    second = {"conn": 2, "seq": 2, "prev": None, "events": [_post(MEMBER, t + 1, "bad", "x\x00"),
                                                             _post(MEMBER, t + 2, "good", "y")]}
    first = {"conn": 2, "seq": 1, "prev": None, "events": [_post(MEMBER, t, "first", "z")]}
    assert [o.verdict for o in _deliver(session, [second])] == ["wait"]
    (outcome,) = _deliver(session, [first])
    assert (outcome.batches, outcome.events, outcome.dead_lettered) == (2, 2, 1)
    assert session.scalar(text("SELECT seq FROM ingest_state")) == 2
    assert set(db_snapshot(session)["posts"]) == {_uri(MEMBER, "first"), _uri(MEMBER, "good")}
    assert [letter.rkey for letter in deadletters.latest(session)] == ["bad"]


def test_an_event_nested_too_deeply_for_json_is_still_dead_lettered(session):
    deep: dict = {}
    inner = deep
    for _ in range(3_000):
        inner["a"] = {}
        inner = inner["a"]
    t = 1_783_173_600_000_000
    _member(session)
    events = [_post(MEMBER, t, "deep", "#weed", extra=deep), _post(MEMBER, t + 1, "fine", "ok")]
    (outcome,) = _deliver(session, [{"conn": 1, "seq": 1, "prev": None, "events": events}])
    assert (outcome.events, outcome.dead_lettered) == (1, 1)
    (letter,) = deadletters.latest(session)
    assert letter.rkey == "deep" and "RecursionError" in letter.reason and "nested too deeply" in letter.event


def test_realtime_events_of_a_batch_with_bad_events_are_built_from_the_good_ones(session):
    t = 1_783_173_600_000_000
    _member(session)
    events = [_post(MEMBER, t, "p", "hello"), _like(FAN, t + 1, "l-bad", _uri(MEMBER, "p") + "\x00"),
              _like(FAN, t + 2, "l", _uri(MEMBER, "p")), _reply(FAN, t + 3, "r", _uri(MEMBER, "p"), "re\x00")]
    outcome = ingest_batch(session, {"conn": 1, "seq": 1, "prev": None, "events": events}, TAGS)
    realtime = collect_events(session, outcome.changes, CDN)
    session.commit()
    assert outcome.dead_lettered == 2
    updated = [e["post"] for e in realtime if e["type"] == "post_updated"]
    assert updated == [{"uri": _uri(MEMBER, "p"), "likeCount": 1, "repostCount": 0, "replyCount": 0}]


def test_a_capture_with_bad_events_sprinkled_in_equals_the_capture_alone(tmp_path, session, other_session):
    path = tmp_path / "capture.jsonl"
    meta = generate_capture(str(path), 3_000, seed=21)
    for s in (session, other_session):
        for member in meta["members"]:
            add_member(s, member["did"], member["handle"])
        s.commit()
    good = [e for e in map(parse_event, path.read_bytes().splitlines()) if not isinstance(e, Skip)]
    taken = {e["t"] for e in good}
    bad = []
    for n, (event, _) in enumerate(_bad_events(0)):
        if isinstance(event, dict) and isinstance(event.get("t"), int) and event["t"] < 2**62:
            neighbour = good[(n * 131) % len(good)]["t"]
            event = {**event, "t": next(v for v in range(neighbour + 1, neighbour + 10_000) if v not in taken)}
            taken.add(event["t"])
        bad.append(event)
    batches = _batches(_interleave(good, bad, seed=2), conn=9, size=250)
    _deliver(session, batches + batches[::-1])
    _deliver(other_session, _batches(good, conn=9, size=250))
    _assert_same(_dump(session), _dump(other_session))
    assert deadletters.count(session) == len(bad)
    assert session.scalar(text("SELECT seq FROM ingest_state")) == len(batches)


def test_an_error_that_says_nothing_about_the_events_still_fails_the_batch(session, db_url):
    """A lock wait cut short (lock_timeout) is no event's fault: the batch must be retried."""
    t = 1_783_173_600_000_000
    _member(session)
    with psycopg.connect(db_url) as blocker:
        blocker.execute("SELECT * FROM profiles WHERE did = %s FOR UPDATE", (MEMBER,))
        session.execute(text("SET LOCAL lock_timeout = '100ms'"))
        with pytest.raises(OperationalError) as raised:
            ingest_batch(session, {"conn": 1, "seq": 1, "prev": None,
                                   "events": [_follow(FAN, t, "f", MEMBER)]}, TAGS)
        assert not deadletters.is_event_error(raised.value)
        session.rollback()
    assert deadletters.count(session) == 0
    assert session.scalar(text("SELECT seq FROM ingest_state")) is None


def test_errors_are_classified_by_what_they_say_about_the_data(session, db_url):
    def error_of(sql, params=None):
        try:
            with session.begin_nested():
                session.execute(text(sql), params or {})
        except Exception as exc:  # the subject of the test
            return exc
        raise AssertionError("no error")

    assert deadletters.is_event_error(error_of("SELECT CAST(:v AS text)", {"v": "a\x00b"}))
    assert deadletters.is_event_error(error_of("SELECT CAST(:v AS jsonb)", {"v": '{"a": "\\u0000"}'}))
    assert deadletters.is_event_error(error_of("SELECT to_tsvector('english', :v)", {"v": HUGE_TAGGED_TEXT}))
    assert deadletters.is_event_error(error_of("SELECT CAST(:v AS bigint)", {"v": 2**64 - 1}))
    assert deadletters.is_event_error(KeyError("rkey")) and deadletters.is_event_error(TypeError("x"))
    reason = deadletters.describe_error(error_of("SELECT CAST(:v AS jsonb)", {"v": '{"a": "\\u0000"}'}))
    assert reason == ("UntranslatableCharacter [22P05]: unsupported Unicode escape sequence "
                      "(\\u0000 cannot be converted to text.)")
    assert not deadletters.is_event_error(error_of("SELECT * FROM no_such_table"))
    session.execute(text("SET LOCAL statement_timeout = '50ms'"))
    assert not deadletters.is_event_error(error_of("SELECT pg_sleep(5)"))
    assert not deadletters.is_event_error(RuntimeError("redis away"))
    session.rollback()
    pid = session.scalar(text("SELECT pg_backend_pid()"))
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    assert not deadletters.is_event_error(error_of("SELECT 1"))


# -- hostile Jetstream lines, parsed, never fail a batch --------------------------------------

HOSTILE_STRINGS = st.one_of(
    st.sampled_from(["\x00", "a\x00b", "#weed \x00", "did:plc:\x00", "at://x/app.bsky.feed.post/\x00", "",
                     "\u2028\u202e", "\uffff", "#weed", HUGE_TAGGED_TEXT, "x" * 100_000, "did:web:" + "a" * 3000]),
    st.text(max_size=40).map(lambda s: s + "\x00" + s),
)
HOSTILE_VALUES = st.one_of(
    HOSTILE_STRINGS, st.none(), st.booleans(), st.integers(min_value=-2**63, max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False), st.just([]), st.just({}),
    st.lists(HOSTILE_STRINGS, max_size=3), st.dictionaries(st.sampled_from(["uri", "cid", "$type", "tag"]),
                                                           HOSTILE_STRINGS, max_size=3),
)


def _paths(value, path=()):
    """Every place in a JSON value that a mutation can replace."""
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, path + (index,))


def _replace(value, path, new):
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    return [_replace(item, rest, new) if i == head else item for i, item in enumerate(value)]


@st.composite
def hostile_lines(draw, seeds, members):
    """A Jetstream line from one of the groups of ``seeds``, mutated where it hurts: strings of its record, the text
    of a post made to be indexed (tagged), the author made a member, or any value at all."""
    event = orjson.loads(draw(st.sampled_from(draw(st.sampled_from(seeds)))))
    for _ in range(draw(st.integers(0, 2))):
        record = event.get("commit", {}).get("record") if isinstance(event.get("commit"), dict) else None
        how = draw(st.sampled_from(["record", "record", "tagged", "member", "anywhere"]))
        if how == "member":
            event["did"] = draw(st.sampled_from(members))
        elif how == "tagged" and isinstance(record, dict):
            record["text"] = "#weed " + draw(HOSTILE_STRINGS)
        else:
            paths = list(_paths(record if how == "record" and isinstance(record, dict) else event))[1:]
            if paths:
                new = _replace(record if how == "record" and isinstance(record, dict) else event,
                               draw(st.sampled_from(paths)), draw(HOSTILE_VALUES))
                if how == "record" and isinstance(record, dict):
                    event["commit"]["record"] = new
                else:
                    event = new
    return orjson.dumps(event)


@pytest.fixture(scope="module")
def seed_lines(tmp_path_factory):
    path = tmp_path_factory.mktemp("capture") / "capture.jsonl"
    meta = generate_capture(str(path), 400, seed=5)
    lines = path.read_bytes().splitlines()
    for sample in SAMPLES.glob("*.jsonl"):
        lines += sample.read_bytes().splitlines()[:100]
    lines = [line for line in lines if line.strip()]
    # Posts and follows are where the index grows: as likely to be drawn as everything else.
    groups = [[line for line in lines if f'"collection":"{nsid}"'.encode() in line]
              for nsid in ("app.bsky.feed.post", "app.bsky.graph.follow")] + [lines]
    return groups, meta


def test_no_parsed_event_ever_fails_a_batch(session, seed_lines):
    lines, meta = seed_lines
    for member in meta["members"]:
        add_member(session, member["did"], member["handle"])
    session.commit()
    conns = iter(range(1, 10_000))

    @settings(max_examples=80, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.lists(hostile_lines(lines, [m["did"] for m in meta["members"]]), min_size=5, max_size=25))
    def apply_one_batch(raw_lines):
        conn = next(conns)
        events = [e for e in map(parse_event, raw_lines) if not isinstance(e, Skip)]
        for n, event in enumerate(events):  # fresh time_us, so that nothing is a duplicate
            if 0 < event["t"] < 2**62:
                event["t"] = conn * 1_000_000 + n
        outcome = ingest_batch(session, {"conn": conn, "seq": 1, "prev": None, "events": events}, TAGS)
        collect_events(session, outcome.changes, CDN)
        session.commit()
        assert outcome.verdict == "apply"
        assert outcome.events + outcome.duplicates + outcome.dead_lettered == len(events)

    apply_one_batch()
    assert session.scalar(text("SELECT batches_applied FROM ingest_state")) == next(conns) - 1


# -- logs and the command line ---------------------------------------------------------------

@pytest.fixture
def worker_logging(monkeypatch, env):
    """``tasks.broker`` as a worker process imports it (the ``tasks`` package needs settings)."""
    for name in ("DATABASE_URL", "REDIS_URL", "JWT_SECRET"):
        monkeypatch.setenv(name, env[name])
    get_settings.cache_clear()
    yield importlib.import_module("tasks.broker")
    get_settings.cache_clear()


def test_a_failing_message_is_logged_by_name_not_by_its_events(caplog, worker_logging):
    broker = StubBroker()
    broker.emit_after("process_boot")
    worker_logging.install_concise_message_logs()

    @dramatiq.actor(broker=broker, max_retries=0, actor_name="test.fails")
    def fails(batch):
        raise RuntimeError("boom")

    worker = dramatiq.Worker(broker, worker_timeout=50)
    worker.start()
    try:
        with caplog.at_level(logging.ERROR, logger="dramatiq"):
            message = fails.send({"conn": 3, "seq": 7, "prev": None, "events": [{"text": "SECRET-TEXT"}] * 2})
            broker.join(fails.queue_name, fail_fast=False)
            worker.join()
    finally:
        worker.stop()
        broker.close()
    failed = [r for r in caplog.records if "Failed to process message" in r.getMessage()]
    assert failed, [r.getMessage() for r in caplog.records]
    line = failed[0].getMessage()
    assert f"test.fails[{message.message_id}] batch 3/7 (2 events)" in line and "SECRET" not in line


@pytest.fixture
def cannect(monkeypatch, env):
    """Run the ``cannect`` command line in this process, on the test's database and Redis."""
    from click.testing import CliRunner

    from cannect.cli import main
    from services import db

    for name in ("DATABASE_URL", "REDIS_URL", "JWT_SECRET"):
        monkeypatch.setenv(name, env[name])
    cached = (get_settings, db.get_engine, db._session_factory)
    for function in cached:
        function.cache_clear()
    yield lambda *args: CliRunner().invoke(main, list(args))
    db.get_engine().dispose()
    for function in cached:
        function.cache_clear()


def test_cli_lists_shows_and_drops_dead_letters(cannect, session):
    t = 1_783_173_600_000_000
    events = [_post(AUTHOR, t, "p\x1b[31m", "evil \x00 #weed"), _like(FAN, t + 1, "l", "at://\x00"),
              _post(AUTHOR, t + 2, "ok", "fine #weed")]
    _deliver(session, [{"conn": 1, "seq": 1, "prev": None, "events": events}])
    ids = sorted(letter.id for letter in deadletters.latest(session))
    assert len(ids) == 2

    listed = cannect("deadletters", "list")
    assert listed.exit_code == 0, listed.output
    assert len(listed.stdout.splitlines()) == 2 and "\x1b" not in listed.stdout
    assert "p\\x1b[31m" in listed.stdout and "DataError" in listed.stdout  # rkey shown escaped
    as_json = json.loads(cannect("deadletters", "list", "--json", "--limit", "1").stdout)
    assert [x["id"] for x in as_json] == [ids[1]] and as_json[0]["batch"] == [1, 1]

    shown = cannect("deadletters", "show", str(ids[0]))
    assert shown.exit_code == 0, shown.output
    view = json.loads(shown.stdout)
    assert view["event"]["rec"]["text"] == "evil \x00 #weed" and view["event"]["rkey"] == "p\x1b[31m"
    assert "\x1b" not in shown.stdout
    missing = cannect("deadletters", "show", "999999")
    assert missing.exit_code == 1 and "no dead letter 999999" in missing.stderr

    status = json.loads(cannect("status", "--json").stdout)
    assert status["ingest_dead_letters"]["held"] == 2 and status["ingest_dead_letters"]["total"] == 2
    assert [x["id"] for x in status["ingest_dead_letters"]["latest"]] == ids[::-1]
    assert "2 events held" in cannect("status").stdout

    assert cannect("deadletters", "drop").exit_code == 2
    assert cannect("deadletters", "drop", str(ids[0])).stdout.strip() == "dropped 1"
    assert cannect("deadletters", "drop", "--all").stdout.strip() == "dropped 1"
    status = json.loads(cannect("status", "--json").stdout)
    assert status["ingest_dead_letters"] == {"held": 0, "total": 2, "latest": []}
