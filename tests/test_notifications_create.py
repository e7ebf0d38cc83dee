"""Notifications created by ingest (docs/notification-rules.md) against real PostgreSQL.

Events go through ``services.ingest.ingest_batch`` as the ingest worker applies them (and once
through an app action's path, ``apply_events`` under the ingest lock); the rows it leaves in
``notifications`` are checked rule by rule. Then the fan-out: a new notification's live event
and its push, delivered to the local push service (tests/fakes/push.py) and decrypted there.
"""

from __future__ import annotations

import orjson
import pytest
from sqlalchemy import text

from cannect.config import DEFAULT_CANNABIS_TAGS, load_settings
from services.ingest import apply_events, ingest_batch, lock_index
from services.members import add_member

TAGS = frozenset(DEFAULT_CANNABIS_TAGS)
MEMBER = "did:plc:" + "m" * 24
MEMBER2 = "did:plc:" + "n" * 24
FAN = "did:plc:" + "f" * 24
NET = "did:plc:" + "x" * 24   # an account nobody follows: its plain posts are not indexed
T = 1_783_173_600_000_000


def _commit(did, t, col, rkey, record=None, op="c"):
    event = {"t": T + t, "did": did, "k": "commit", "col": col, "op": op, "rkey": rkey}
    if record is not None:
        event.update(cid=f"bafy-{rkey}", rec=record)
    return event


def _post(did, t, rkey, text_="hi", **extra):
    return _commit(did, t, "post", rkey, {"text": text_, "createdAt": "2026-07-04T14:00:00Z", **extra})


def _reply(did, t, rkey, parent, root):
    return _post(did, t, rkey, "re", reply={"parent": {"uri": parent, "cid": "c1"}, "root": {"uri": root, "cid": "c2"}})


def _mention(did, t, rkey, *mentioned):
    facets = [{"index": {"byteStart": 0, "byteEnd": 5}, "features": [{"$type": "app.bsky.richtext.facet#mention",
                                                                        "did": m}]} for m in mentioned]
    return _post(did, t, rkey, "@you look", facets=facets, langs=["en"])


def _quote(did, t, rkey, quoted):
    return _post(did, t, rkey, "this!", embed={"$type": "app.bsky.embed.record", "record": {"uri": quoted, "cid": "c"}})


def _like(did, t, rkey, subject, col="like"):
    return _commit(did, t, col, rkey, {"subject": {"uri": subject, "cid": "c"}, "createdAt": "2026-07-04T14:00:01Z"})


def _follow(did, t, rkey, subject):
    return _commit(did, t, "follow", rkey, {"subject": subject, "createdAt": "2026-07-04T14:00:02Z"})


def _delete(did, t, col, rkey):
    return _commit(did, t, col, rkey, op="d")


def _uri(did, rkey, col="app.bsky.feed.post"):
    return f"at://{did}/{col}/{rkey}"


class Stream:
    """Batches of one listener connection, applied as the ingest worker does."""

    def __init__(self, session):
        self.session, self.seq = session, 0

    def send(self, *events, seq=None):
        if seq is None:
            self.seq += 1
        outcome = ingest_batch(self.session, {"conn": 1, "seq": seq or self.seq, "prev": None, "events": list(events)},
                               TAGS)
        self.session.commit()
        return [nid for changes in outcome.changes for nid in changes.notification_ids]


@pytest.fixture
def stream(session):
    for did in (MEMBER, MEMBER2):
        add_member(session, did, None)
    session.commit()
    return Stream(session)


def notes(session) -> set[tuple]:
    return {tuple(r) for r in session.execute(text(
        "SELECT recipient_did, type, actor_did, subject_uri, reason_uri FROM notifications"))}


def test_likes_reposts_and_follows_of_a_member_notify_them(stream, session):
    ids = stream.send(_post(MEMBER, 1, "m1"), _like(FAN, 2, "l1", _uri(MEMBER, "m1")),
                      _like(FAN, 3, "r1", _uri(MEMBER, "m1"), col="repost"), _follow(FAN, 4, "f1", MEMBER))
    assert notes(session) == {
        (MEMBER, "like", FAN, _uri(MEMBER, "m1"), _uri(FAN, "l1", "app.bsky.feed.like")),
        (MEMBER, "repost", FAN, _uri(MEMBER, "m1"), _uri(FAN, "r1", "app.bsky.feed.repost")),
        (MEMBER, "follow", FAN, None, _uri(FAN, "f1", "app.bsky.graph.follow")),
    }
    assert len(ids) == 3


def test_own_actions_and_non_members_notify_nobody(stream, session):
    stream.send(_post(MEMBER, 1, "m1"), _like(MEMBER, 2, "l1", _uri(MEMBER, "m1")),
                _reply(MEMBER, 3, "r1", _uri(MEMBER, "m1"), _uri(MEMBER, "m1")), _mention(MEMBER, 4, "me", MEMBER),
                _quote(MEMBER, 5, "q", _uri(MEMBER, "m1")),
                _post(FAN, 6, "p #weed"), _like(MEMBER, 7, "l2", _uri(FAN, "p")), _follow(MEMBER, 8, "f", FAN),
                _mention(MEMBER, 9, "you", FAN))
    assert notes(session) == set()


def test_a_reply_notifies_the_parent_and_root_authors_once_each(stream, session):
    stream.send(_post(MEMBER, 1, "root"), _reply(MEMBER2, 2, "parent", _uri(MEMBER, "root"), _uri(MEMBER, "root")))
    stream.send(_reply(FAN, 3, "r", _uri(MEMBER2, "parent"), _uri(MEMBER, "root")),
                # parent and root by the same member, who is mentioned as well: one notification
                _post(FAN, 4, "r2", "re", reply={"parent": {"uri": _uri(MEMBER, "root"), "cid": "c"},
                                                 "root": {"uri": _uri(MEMBER, "root"), "cid": "c"}},
                      facets=[{"index": {"byteStart": 0, "byteEnd": 2},
                               "features": [{"$type": "app.bsky.richtext.facet#mention", "did": MEMBER}]}]))
    assert notes(session) == {
        (MEMBER, "reply", MEMBER2, _uri(MEMBER, "root"), _uri(MEMBER2, "parent")),
        (MEMBER2, "reply", FAN, _uri(MEMBER2, "parent"), _uri(FAN, "r")),
        (MEMBER, "reply", FAN, _uri(MEMBER, "root"), _uri(FAN, "r")),
        (MEMBER, "reply", FAN, _uri(MEMBER, "root"), _uri(FAN, "r2")),
    }


def test_mentions_and_quotes_notify_from_a_post_that_is_not_indexed(stream, session):
    stream.send(_post(MEMBER, 1, "m1"), _mention(NET, 2, "men", MEMBER, MEMBER2, FAN, MEMBER),
                _quote(NET, 3, "quo", _uri(MEMBER, "m1")))
    assert notes(session) == {
        (MEMBER, "mention", NET, None, _uri(NET, "men")), (MEMBER2, "mention", NET, None, _uri(NET, "men")),
        (MEMBER, "quote", NET, _uri(MEMBER, "m1"), _uri(NET, "quo")),
    }
    assert session.execute(text("SELECT uri FROM posts")).scalars().all() == [_uri(MEMBER, "m1")]
    assert session.execute(text("SELECT count(*) FROM profiles WHERE did = :d"), {"d": NET}).scalar() == 0
    cid, record = session.execute(text("SELECT reason_cid, reason_record FROM notifications "
                                       "WHERE type = 'mention' AND recipient_did = :d"), {"d": MEMBER}).one()
    assert cid == "bafy-men"
    assert record["text"] == "@you look" and record["langs"] == ["en"] and record["createdAt"]
    assert record["facets"][0]["features"][0]["did"] == MEMBER
    quote = session.execute(text("SELECT reason_record FROM notifications WHERE type = 'quote'")).scalar()
    assert quote["embed"]["record"]["uri"] == _uri(MEMBER, "m1")


def test_deleting_the_cause_removes_its_notification(stream, session):
    stream.send(_post(MEMBER, 1, "m1"), _post(MEMBER, 2, "m2"), _like(FAN, 3, "l1", _uri(MEMBER, "m1")),
                _like(FAN, 4, "l2", _uri(MEMBER, "m2")), _follow(FAN, 5, "f1", MEMBER),
                _mention(NET, 6, "men", MEMBER), _reply(FAN, 7, "r", _uri(MEMBER, "m1"), _uri(MEMBER, "m1")))
    assert len(notes(session)) == 5
    stream.send(_delete(FAN, 8, "like", "l1"), _delete(FAN, 9, "follow", "f1"), _delete(NET, 10, "post", "men"),
                _delete(MEMBER, 11, "post", "m2"))  # takes the like of it along
    assert notes(session) == {(MEMBER, "reply", FAN, _uri(MEMBER, "m1"), _uri(FAN, "r"))}
    stream.send(_delete(FAN, 12, "post", "r"))
    assert notes(session) == set()


def test_a_purged_account_takes_its_notifications_along(stream, session):
    stream.send(_post(MEMBER, 1, "m1"), _like(FAN, 2, "l1", _uri(MEMBER, "m1")), _follow(MEMBER2, 3, "f", MEMBER),
                _mention(FAN, 4, "men", MEMBER2))
    stream.send({"t": T + 5, "did": FAN, "k": "account", "active": False, "status": "deleted"})
    assert notes(session) == {(MEMBER, "follow", MEMBER2, None, _uri(MEMBER2, "f", "app.bsky.graph.follow"))}
    stream.send({"t": T + 6, "did": MEMBER, "k": "account", "active": False, "status": "takendown"})
    assert notes(session) == set()


def test_replays_create_nothing_twice(stream, session):
    events = [_post(MEMBER, 1, "m1"), _like(FAN, 2, "l1", _uri(MEMBER, "m1")), _mention(NET, 3, "men", MEMBER)]
    assert len(stream.send(*events)) == 2
    assert stream.send(*events, seq=1) == []          # the same batch delivered again
    assert stream.send(*events) == []                 # the same events in a later batch (reconnect)
    # Even applied again past the event dedup (as an app action racing the stream would):
    lock_index(session)
    changes = apply_events(session, events, TAGS)
    session.commit()
    assert [nid for c in changes for nid in c.notification_ids] == []
    assert len(notes(session)) == 2


def test_an_app_action_creates_the_notification_under_the_ingest_lock(stream, session):
    """The app applies the event of the record it just wrote, like ingest; the stream's copy later adds nothing."""
    stream.send(_post(MEMBER, 1, "m1"))
    lock_index(session)
    [changes] = apply_events(session, [_like(MEMBER2, 2, "l1", _uri(MEMBER, "m1"))], TAGS)
    session.commit()
    assert len(changes.notification_ids) == 1
    assert stream.send(_like(MEMBER2, 3, "l1", _uri(MEMBER, "m1"))) == []
    assert notes(session) == {(MEMBER, "like", MEMBER2, _uri(MEMBER, "m1"), _uri(MEMBER2, "l1", "app.bsky.feed.like"))}


# -- the fan-out -----------------------------------------------------------------------------------

def test_fan_out_renders_the_live_event_and_pushes_to_every_subscription(stream, session, db_url, redis_url):
    from fakes.push import FakePushService
    from services.notifications import fanout
    from services.push.keys import generate_vapid_keys

    ids = stream.send(_post(MEMBER, 1, "m1", "First harvest"), _mention(NET, 2, "men", MEMBER),
                      _like(FAN, 3, "l1", _uri(MEMBER, "m1")))
    public, private = generate_vapid_keys()
    with FakePushService(vapid_public_key=public) as service:
        phone, laptop = service.subscriber(), service.subscriber()
        for subscriber in (phone, laptop):
            session.execute(text("INSERT INTO push_subscriptions (user_did, endpoint, p256dh, auth) "
                                 "VALUES (:d, :e, :p, :a)"), {"d": MEMBER, "e": subscriber.endpoint,
                                                              "p": subscriber.p256dh, "a": subscriber.auth})
        session.commit()
        announcement = fanout.fan_out(session, ids, "https://cdn.example")
        session.commit()
        assert [(e["type"], e["recipient"], e["notification"]["reason"]) for e in announcement.events] == [
            ("notification", MEMBER, "mention"), ("notification", MEMBER, "like")]
        mention = announcement.events[0]["notification"]
        assert mention["author"]["did"] == NET and mention["post"]["uri"] == _uri(NET, "men")
        assert len(announcement.pushes) == 4

        _send_all(db_url, redis_url, service, public, private, announcement.pushes)
        received = service.wait_for(4)
        assert service.errors == []
        assert sorted((r.token, r.payload["type"]) for r in received) == sorted(
            (s.token, kind) for s in (phone, laptop) for kind in ("mention", "like"))
        assert {r.payload["body"] for r in received if r.payload["type"] == "mention"} == {"@you look"}


def test_a_retried_announcement_publishes_each_live_event_once(stream, session, redis_url):
    import redis as redis_lib

    from services.notifications import fanout

    ids = stream.send(_post(MEMBER, 1, "m1"), _like(FAN, 2, "l1", _uri(MEMBER, "m1")), _follow(FAN, 3, "f1", MEMBER))
    redis = redis_lib.Redis.from_url(redis_url)
    first = fanout.fan_out(session, ids, "https://cdn.example")
    assert len(fanout.first_time(redis, first)) == 2
    again = fanout.fan_out(session, ids + ids, "https://cdn.example")   # the message, retried or sent twice
    assert fanout.first_time(redis, again) == [] and len(again.events) == 2


def _send_all(db_url, redis_url, service, public, private, pairs):
    """Deliver each (subscription, notification) as the push actor does."""
    import redis as redis_lib

    from services.db import make_engine
    from services.outbound import GuardedClient
    from services.push import delivery, subscriptions

    settings = load_settings(database_url=db_url, redis_url=redis_url, vapid_public_key=public,
                             vapid_private_key=private, vapid_email="mailto:ops@cannect.space",
                             push_insecure_test_origins=(service.origin,))
    engine = make_engine(settings.sqlalchemy_url, pool_size=2, isolation_level="AUTOCOMMIT")
    http = GuardedClient(subscriptions.endpoint_policy(settings))
    redis = redis_lib.Redis.from_url(redis_url)
    try:
        outcomes = delivery.deliver(engine.connect, redis, http, settings,
                                    lambda c, now: delivery.prepare_notifications(c, settings, pairs, now))
        assert [outcome.result for outcome in outcomes] == ["sent"] * len(pairs), outcomes
    finally:
        engine.dispose()


def test_cannect_notifications_tail_prints_a_members_live_notifications(stream, session, db_url, redis_url,
                                                                        monkeypatch):
    import redis as redis_lib
    from click.testing import CliRunner

    from cannect.cli import main
    from services.notifications import fanout
    from services.realtime import publish

    ids = stream.send(_post(MEMBER, 1, "m1"), _post(MEMBER2, 2, "n1"), _like(FAN, 3, "l1", _uri(MEMBER, "m1")),
                      _like(FAN, 4, "l2", _uri(MEMBER2, "n1")))
    publish(redis_lib.Redis.from_url(redis_url), fanout.fan_out(session, ids, "https://cdn.example").events)
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("REDIS_URL", redis_url)
    from cannect.config import get_settings
    get_settings.cache_clear()
    result = CliRunner().invoke(main, ["notifications", "tail", MEMBER2, "--from-start", "--count", "1"])
    get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    [line] = result.output.splitlines()
    event = orjson.loads(line)
    assert event["type"] == "notification" and event["recipient"] == MEMBER2
    assert event["notification"]["uri"] == _uri(FAN, "l2", "app.bsky.feed.like")
