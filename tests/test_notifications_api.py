"""The notifications REST API on real PostgreSQL: list (plain and grouped), count, read,
preferences, and the preferences' effect on push delivery.

Posts and profiles come from the real ingest service (as in test_api_read); notification
rows are written directly, as the notify step writes them, so these tests fix what the API
shows for given rows.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from sqlalchemy import text

from test_api_read import BASE, bearer, client, did, get, net  # noqa: F401  (fixtures)
from test_push import (  # noqa: F401  (fixtures)
    accounts, alice_subscribed, api, notify, push_environ, push_service, redis, send_push, tokens, vapid)

URL = "/api/notifications"


class Notifications:
    """Writes notification rows at given times."""

    def __init__(self, session):
        self.session = session
        self.minute = 0

    def add(self, recipient: str, actor: str, reason: str, subject: str | None = None, cause: str | None = None,
            read: bool = False, reason_cid: str | None = None, reason_record: dict | None = None) -> int:
        self.minute += 1
        cause = cause or f"at://{actor}/app.bsky.feed.{reason}/n{self.minute}"
        row = self.session.execute(text(
            "INSERT INTO notifications (recipient_did, type, actor_did, subject_uri, reason_uri, read, created_at,"
            " reason_cid, reason_record) VALUES (:r, :t, :a, :s, :c, :read, :at, :cid,"
            " CAST(:record AS jsonb)) RETURNING id"),
            {"r": recipient, "t": reason, "a": actor, "s": subject, "c": cause, "read": read,
             "at": BASE + timedelta(days=30, minutes=self.minute), "cid": reason_cid,
             "record": orjson.dumps(reason_record).decode() if reason_record is not None else None}).one()
        self.session.commit()
        return row.id

    def clear(self) -> None:
        self.session.execute(text("DELETE FROM notifications"))
        self.session.commit()


@pytest.fixture
def notes(session):
    return Notifications(session)


@pytest.fixture
def people(net, session):
    """alice and bob (members with posts; bob has a display name) and carol (not indexed).

    Notifications ingest may create are dropped: each test writes the rows it is about.
    """
    alice, bob = net.member("alice"), net.member("bob")
    carol = did("carol")
    net.profile(bob, "Bob Grows")
    post = net.post(alice, "first harvest", BASE)
    other = net.post(alice, "second harvest", BASE + timedelta(minutes=1))
    bobs = net.post(bob, "bob's garden", BASE + timedelta(minutes=2))
    net.like(alice, post, BASE + timedelta(minutes=3))  # alice's own like: viewer state
    net.flush()
    Notifications(session).clear()
    return {"alice": alice, "bob": bob, "carol": carol, "post": post[0], "post_ref": post, "other": other[0], "bobs": bobs[0]}


def items(body: dict) -> list[int]:
    return [item["id"] for item in body["notifications"]]


def page_through(client, url: str, headers: dict, limit: int, key: str, between=None) -> list:
    seen, cursor = [], None
    while True:
        sep = "&" if "?" in url else "?"
        body = get(client, f"{url}{sep}limit={limit}" + (f"&cursor={cursor}" if cursor else ""), headers=headers)
        assert len(body[key]) <= limit
        seen += body[key]
        cursor = body["cursor"]
        if cursor is None:
            return seen
        if between:
            between()


# -- isolation, count, read --------------------------------------------------------------------------

def test_a_member_sees_and_changes_only_their_own(client, people, notes):
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    mine = [notes.add(alice, carol, "like", people["post"]), notes.add(alice, bob, "follow", alice)]
    theirs = notes.add(bob, carol, "like", people["bobs"])

    assert items(get(client, URL, headers=bearer(alice))) == mine[::-1]
    assert items(get(client, URL, headers=bearer(bob))) == [theirs]
    assert get(client, f"{URL}/count", headers=bearer(alice)) == {"count": 2}

    response = client.post(f"{URL}/read", json={"ids": mine}, headers=bearer(bob))
    assert response.status_code == 200 and response.json == {"updated": 0}
    response = client.post(f"{URL}/read", json={"all": True}, headers=bearer(bob))
    assert response.json == {"updated": 1}
    assert get(client, f"{URL}/count", headers=bearer(alice)) == {"count": 2}
    assert get(client, f"{URL}/count", headers=bearer(bob)) == {"count": 0}

    for method, path in (("get", URL), ("get", f"{URL}/count"), ("post", f"{URL}/read"),
                         ("get", f"{URL}/preferences"), ("put", f"{URL}/preferences")):
        response = getattr(client, method)(path, json={"all": True} if method != "get" else None)
        assert response.status_code == 401 and response.mimetype == "application/problem+json"


def test_read_all_before_a_time_or_ids(client, people, notes):
    alice, carol = people["alice"], people["carol"]
    ids = [notes.add(alice, carol, "like", people["post"], cause=f"at://{carol}/app.bsky.feed.like/{n}")
           for n in range(5)]
    headers = bearer(alice)
    [third] = [item for item in get(client, URL, headers=headers)["notifications"] if item["id"] == ids[2]]

    assert client.post(f"{URL}/read", json={"ids": [ids[4], 999_999]}, headers=headers).json == {"updated": 1}
    assert client.post(f"{URL}/read", json={"before": third["indexedAt"]}, headers=headers).json == {"updated": 3}
    assert get(client, f"{URL}/count", headers=headers) == {"count": 1}
    assert [item["isRead"] for item in get(client, URL, headers=headers)["notifications"]] == [
        True, False, True, True, True]
    assert client.post(f"{URL}/read", json={"all": True}, headers=headers).json == {"updated": 1}
    assert get(client, f"{URL}/count", headers=headers) == {"count": 0}

    for body in ({}, {"all": True, "ids": [1]}, {"all": False}, {"ids": []}, {"ids": [0]},
                 {"before": "2025-01-01T00:00:00"}, {"ids": [2**63]}, {"everything": True}):
        response = client.post(f"{URL}/read", json=body, headers=headers)
        assert response.status_code == 422, body
        assert response.mimetype == "application/problem+json"


# -- the plain list ----------------------------------------------------------------------------------

def test_pages_stay_complete_and_stable_while_new_ones_arrive(client, people, notes):
    alice, carol = people["alice"], people["carol"]
    ids = [notes.add(alice, carol, "like", people["post"]) for _ in range(7)]
    arrived = []
    seen = page_through(client, URL, bearer(alice), 3, "notifications",
                        between=lambda: arrived.append(notes.add(alice, carol, "repost", people["post"])))
    assert [item["id"] for item in seen] == ids[::-1]
    assert items(get(client, f"{URL}?limit=100", headers=bearer(alice)))[:len(arrived)] == arrived[::-1]


def test_reason_filter_and_bad_parameters(client, people, notes):
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    like = notes.add(alice, carol, "like", people["post"])
    follow = notes.add(alice, bob, "follow", alice)
    notes.add(alice, carol, "repost", people["post"])
    assert items(get(client, f"{URL}?reasons=like,follow", headers=bearer(alice))) == [follow, like]
    assert items(get(client, f"{URL}?reasons=follow", headers=bearer(alice))) == [follow]
    for query in ("reasons=likes", "reasons=like,", "limit=0", "limit=101", "grouped=maybe", "extra=1"):
        get(client, f"{URL}?{query}", 422, headers=bearer(alice))
    for cursor in ("nonsense", "MTIzOmFiYw", "MTIzOjE6Mg"):  # not base64 of ours; 123:abc; 123:1:2
        get(client, f"{URL}?cursor={cursor}", 400, headers=bearer(alice))


# -- hydration ---------------------------------------------------------------------------------------

def test_items_carry_the_actor_the_subject_with_viewer_state_and_the_reason_post(client, net, people, notes):
    alice, bob = people["alice"], people["bob"]
    stranger = did("stranger")
    reply_uri, reply_cid = net.post(bob, "looks great #cannabis", BASE + timedelta(minutes=5),
                                    reply_to=people["post_ref"])
    net.flush()
    notes.clear()  # what ingest notified: the rows below are the ones this test is about
    like = notes.add(alice, bob, "like", people["post"])
    reply = notes.add(alice, bob, "reply", people["post"], cause=reply_uri, reason_cid=reply_cid,
                      reason_record={"text": "stale copy"})
    mention_uri = f"at://{stranger}/app.bsky.feed.post/3kmention"
    record = {"text": "hey @alice.cannect.space", "langs": ["en"], "createdAt": "2025-07-01T10:00:00Z",
              "embed": {"$type": "app.bsky.embed.images", "images": [{"alt": "", "image": {}}]}}
    mention = notes.add(alice, stranger, "mention", None, cause=mention_uri, reason_cid="bafymention",
                        reason_record=record)

    body = get(client, URL, headers=bearer(alice))
    views = {item["id"]: item for item in body["notifications"]}
    liked = views[like]
    assert liked["reason"] == "like" and liked["isRead"] is False and liked["indexedAt"].endswith("Z")
    assert liked["author"]["did"] == bob and liked["author"]["displayName"] == "Bob Grows"
    assert liked["author"]["isCannectUser"] is True and liked["author"]["viewer"]["following"] is None
    assert liked["reasonSubject"] == people["post"] and liked["post"] is None
    assert liked["subject"]["uri"] == people["post"] and liked["subject"]["record"]["text"] == "first harvest"
    assert liked["subject"]["viewer"]["like"] is not None  # alice's own like of it

    replied = views[reply]
    assert replied["post"]["uri"] == reply_uri and replied["post"]["record"]["text"] == "looks great #cannabis"
    assert replied["post"]["indexedAt"] is not None and replied["subject"]["uri"] == people["post"]

    mentioned = views[mention]
    assert mentioned["author"]["did"] == stranger and mentioned["author"]["handle"] is None
    assert mentioned["subject"] is None
    assert mentioned["post"] == {
        "uri": mention_uri, "cid": "bafymention",
        "author": {"did": stranger, "handle": None, "displayName": None, "avatar": None, "isCannectUser": False},
        "record": record, "embedType": "images", "hasMedia": True, "likeCount": 0, "repostCount": 0,
        "replyCount": 0, "createdAt": "2025-07-01T10:00:00Z", "indexedAt": None,
        "viewer": {"like": None, "repost": None}}


# -- grouped -----------------------------------------------------------------------------------------

def test_grouped_folds_likes_reposts_and_follows_with_counts_and_latest_actors(client, people, notes):
    alice, bob = people["alice"], people["bob"]
    actors = [did(f"fan{n}") for n in range(7)]
    for actor in actors:
        notes.add(alice, actor, "like", people["post"])
    notes.add(alice, actors[0], "repost", people["post"])
    notes.add(alice, actors[1], "like", people["other"], read=True)
    for actor in actors[:3]:
        notes.add(alice, actor, "follow", alice)
    reply = notes.add(alice, bob, "reply", people["post"], cause=f"at://{bob}/app.bsky.feed.post/3kr",
                      reason_cid="bafyr", reason_record={"text": "nice", "createdAt": "2025-07-01T10:00:00Z"})
    notes.add(bob, actors[0], "like", people["bobs"])  # bob's, not alice's

    body = get(client, f"{URL}?grouped=true", headers=bearer(alice))
    assert body["cursor"] is None and body.get("notifications") is None
    groups = body["groups"]
    assert [group["groupKey"] for group in groups] == [
        f"reply:{reply}", "follow", f"like:{people['other']}", f"repost:{people['post']}",
        f"like:{people['post']}"]
    single, follows, other, repost, likes = groups
    assert single["count"] == 1 and single["notification"]["id"] == reply
    assert single["notification"]["post"]["record"]["text"] == "nice"
    assert follows["count"] == 3 and follows["subject"] is None and follows["reasonSubject"] is None
    assert [actor["did"] for actor in follows["latestActors"]] == actors[:3][::-1]
    assert other["isRead"] is True and likes["isRead"] is False
    assert likes["count"] == 7 and [actor["did"] for actor in likes["latestActors"]] == actors[::-1][:5]
    assert likes["subject"]["uri"] == people["post"] and likes["subject"]["viewer"]["like"] is not None
    assert repost["count"] == 1 and repost["reason"] == "repost"

    only_likes = get(client, f"{URL}?grouped=true&reasons=like", headers=bearer(alice))["groups"]
    assert [group["groupKey"] for group in only_likes] == [f"like:{people['other']}", f"like:{people['post']}"]


def test_grouped_pages_are_stable_while_new_ones_arrive(client, people, notes):
    alice = people["alice"]
    subjects = [f"at://{alice}/app.bsky.feed.post/3kp{n}" for n in range(6)]
    for n, subject in enumerate(subjects):
        for fan in range(n + 1):
            notes.add(alice, did(f"fan{fan}"), "like", subject)
    expected = [f"like:{subject}" for subject in subjects[::-1]]

    def more():  # a like on the oldest group (still on a later page) and a brand-new group
        notes.add(alice, did("late"), "like", subjects[0])
        notes.add(alice, did("late"), "like", f"at://{alice}/app.bsky.feed.post/3knew{notes.minute}")

    seen = page_through(client, f"{URL}?grouped=true", bearer(alice), 2, "groups", between=more)
    assert [group["groupKey"] for group in seen] == expected
    assert [group["count"] for group in seen] == [6, 5, 4, 3, 2, 1]  # as of the first page

    fresh = get(client, f"{URL}?grouped=true&limit=100", headers=bearer(alice))["groups"]
    assert fresh[0]["groupKey"].startswith("like:at://") and "3knew" in fresh[0]["groupKey"]
    oldest = next(group for group in fresh if group["groupKey"] == f"like:{subjects[0]}")
    assert oldest["count"] == 3 and oldest["latestActors"][0]["did"] == did("late")


# -- preferences -------------------------------------------------------------------------------------

def test_preferences_default_replace_validate_and_stay_per_member(client, people):
    alice, bob = bearer(people["alice"]), bearer(people["bob"])
    defaults = {"pushReasons": ["like", "repost", "follow", "reply", "mention", "quote"], "mutedUntil": None,
                "updatedAt": None}
    assert get(client, f"{URL}/preferences", headers=alice) == defaults

    response = client.put(f"{URL}/preferences", headers=alice,
                          json={"pushReasons": ["reply", "mention", "reply"], "mutedUntil": "2030-01-01T00:00:00Z"})
    assert response.status_code == 200, response.json
    saved = response.json
    assert saved["pushReasons"] == ["reply", "mention"] and saved["mutedUntil"].startswith("2030-01-01T00:00:00")
    assert saved["updatedAt"] is not None
    assert get(client, f"{URL}/preferences", headers=alice) == saved
    assert get(client, f"{URL}/preferences", headers=bob) == defaults

    for body in ({"pushReasons": ["likes"], "mutedUntil": None}, {"pushReasons": []},
                 {"pushReasons": [], "mutedUntil": "2030-01-01T00:00:00"},
                 {"pushReasons": [], "mutedUntil": None, "mutedActors": []},
                 {"pushReasons": [], "mutedUntil": "9999-12-31T23:00:00-05:00"}, {"pushReasons": "like", "mutedUntil": None}):
        response = client.put(f"{URL}/preferences", headers=alice, json=body)
        assert response.status_code == 422, body
        assert response.mimetype == "application/problem+json"
    assert get(client, f"{URL}/preferences", headers=alice) == saved


def test_preferences_hold_back_pushes_but_not_the_list(api, tokens, accounts, alice_subscribed, push_service,
                                                       send_push):
    _, subscription = alice_subscribed
    alice, bob = accounts["alice"].did, accounts["bob"].did
    headers = tokens["alice"]
    subject = f"at://{alice}/app.bsky.feed.post/3kpost"

    def preferences(reasons: list[str], muted_until: str | None):
        response = api.put(f"{URL}/preferences", headers=headers,
                           json={"pushReasons": reasons, "mutedUntil": muted_until})
        assert response.status_code == 200, response.json

    everything = ["like", "repost", "follow", "reply", "mention", "quote"]
    preferences(everything, (datetime.now(UTC) + timedelta(hours=1)).isoformat())
    muted = notify(alice, bob, "like", subject, f"at://{bob}/app.bsky.feed.like/1")
    assert send_push(subscription, muted) == send_push(subscription, muted)
    assert send_push(subscription, muted).result == "skipped" and send_push(subscription, muted).reason == "muted"

    preferences(["reply"], None)
    like = notify(alice, bob, "like", subject, f"at://{bob}/app.bsky.feed.like/2")
    outcome = send_push(subscription, like)
    assert (outcome.result, outcome.reason) == ("skipped", "reason_off")
    reply = notify(alice, bob, "reply", subject, f"at://{bob}/app.bsky.feed.post/3kreply")
    assert send_push(subscription, reply).result == "sent"

    preferences(everything, (datetime.now(UTC) - timedelta(minutes=1)).isoformat())  # a mute that ended
    assert send_push(subscription, muted).result == "sent"
    assert [push.payload["id"] for push in push_service.delivered()] == [str(reply), str(muted)]

    listed = api.get(URL, headers=headers).json["notifications"]
    assert {item["id"] for item in listed} >= {muted, like, reply}
