"""Members' actions end to end: Flask test client -> fake PDS (real XRPC server) -> our index.

Each action must be on the PDS and in the index at once; the same record arriving later
from Jetstream must count nothing twice; a PDS failure must leave our data as it was.
"""

from __future__ import annotations

import json
import threading
from urllib.parse import quote

import orjson
import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from cannect.config import DEFAULT_CANNABIS_TAGS
from fakes.pds import FakePds
from services.crypto import token_cipher
from services.ingest import ingest_batch
from services.jetstream import parse_event
from conftest import JWT_SECRET
from test_auth import PASSWORD, assert_problem, bearer, login, rows

POST, LIKE, REPOST, FOLLOW = "app.bsky.feed.post", "app.bsky.feed.like", "app.bsky.feed.repost", "app.bsky.graph.follow"
TAGS = frozenset(DEFAULT_CANNABIS_TAGS)


class Member:
    """A signed-in account: its DID and the headers that carry its token."""

    def __init__(self, api, fake: FakePds, handle: str):
        self.account = fake.add_account(handle, PASSWORD)
        self.did = self.account.did
        tokens = login(api, handle).json
        self.headers = bearer(tokens["accessToken"])


@pytest.fixture
def alice(api, fake_pds):
    return Member(api, fake_pds, "alice.test")


@pytest.fixture
def bob(api, fake_pds):
    return Member(api, fake_pds, "bob.test")


class Stream:
    """Jetstream as the listener delivers it: batches of one connection, through ingest."""

    def __init__(self, session):
        self.session, self.seq, self.time_us = session, 0, 1_900_000_000_000_000

    def deliver(self, *frames: dict):
        events = []
        for frame in frames:
            self.time_us += 1
            events.append(parse_event(orjson.dumps({**frame, "time_us": self.time_us})))
        self.seq += 1
        outcome = ingest_batch(self.session, {"conn": 1, "seq": self.seq, "prev": None, "events": events}, TAGS)
        self.session.commit()
        assert outcome.verdict == "apply"
        return outcome


def commit_frame(did: str, collection: str, rkey: str, record: dict | None = None, cid: str | None = None) -> dict:
    """The Jetstream v1 event of a commit (a delete when no record is given)."""
    commit = {"rev": "3lxyz", "operation": "create" if record else "delete", "collection": collection, "rkey": rkey}
    if record:
        commit.update(record=record, cid=cid)
    return {"did": did, "kind": "commit", "commit": commit}


def frames_of_pds_records(fake: FakePds) -> list[dict]:
    """Create events for everything the PDS holds: what Jetstream will deliver later."""
    return [commit_frame(did, collection, rkey, entry["value"], entry["cid"])
            for did, collections in fake.records.items()
            for collection, records in collections.items() for rkey, entry in records.items()]


def index_post(stream: Stream, did: str, rkey: str, text: str) -> str:
    """Index a post by someone who never used Cannect (tagged, so the index keeps it)."""
    record = {"$type": POST, "text": text, "createdAt": "2026-05-01T12:00:00.000Z"}
    stream.deliver(commit_frame(did, POST, rkey, record, "bafyreioutside" + rkey))
    return f"at://{did}/{POST}/{rkey}"


def snapshot(session) -> dict:
    """Everything an action can change in our index."""
    queries = {
        "posts": "SELECT uri, cid, like_count, repost_count, reply_count FROM posts",
        "profiles": "SELECT did, followers_count, following_count, posts_count FROM profiles",
        "likes": "SELECT uri FROM likes", "reposts": "SELECT uri FROM reposts", "follows": "SELECT uri FROM follows",
        "post_state": "SELECT * FROM user_post_state", "follow_state": "SELECT * FROM user_follow_state",
    }
    return {name: sorted(map(tuple, rows(session, query))) for name, query in queries.items()}


def counts(session, uri: str) -> tuple:
    return tuple(rows(session, "SELECT like_count, repost_count, reply_count FROM posts WHERE uri = :uri", uri=uri)[0])


def profile_counts(session, did: str) -> tuple:
    return tuple(rows(session, "SELECT followers_count, following_count, posts_count FROM profiles WHERE did = :did",
                      did=did)[0])


def rkey_of(uri: str) -> str:
    return uri.rsplit("/", 1)[1]


def post(api, member: Member, text: str, **extra):
    return api.post("/api/post", json={"text": text, **extra}, headers=member.headers)


# -- posts and replies ---------------------------------------------------------------------

def test_a_post_is_written_to_the_pds_and_shown_at_once(api, session, fake_pds, alice):
    text = "First harvest 🌿 #Weed see https://example.com/grow."
    response = post(api, alice, text, langs=["en"])
    assert response.status_code == 201, response.json
    body = response.json
    [(rkey, stored)] = fake_pds.list_records(alice.did, POST).items()
    assert body["uri"] == f"at://{alice.did}/{POST}/{rkey}" and body["cid"] == stored["cid"]
    record = stored["value"]
    assert record["text"] == text and record["langs"] == ["en"] and record["createdAt"].endswith("Z")
    tag, link = record["facets"]
    start = len("First harvest 🌿 ".encode())
    assert tag["index"] == {"byteStart": start, "byteEnd": start + len("#Weed")}
    assert tag["features"] == [{"$type": "app.bsky.richtext.facet#tag", "tag": "Weed"}]
    assert link["features"] == [{"$type": "app.bsky.richtext.facet#link", "uri": "https://example.com/grow"}]
    assert text.encode()[link["index"]["byteStart"]:link["index"]["byteEnd"]] == b"https://example.com/grow"

    view = body["post"]
    assert view["uri"] == body["uri"] and view["author"]["did"] == alice.did and view["author"]["isCannectUser"]
    assert view["record"] == record and (view["likeCount"], view["replyCount"]) == (0, 0)
    assert api.get(f"/api/post/{quote(body['uri'], safe='')}").json["post"] == view
    [(tagged, member)] = rows(session, "SELECT has_cannabis_hashtag, is_cannect_user FROM posts")
    assert tagged and member
    assert profile_counts(session, alice.did) == (0, 0, 1)


def test_replies_thread_under_the_root(api, session, fake_pds, alice, bob):
    top = post(api, bob, "What are you growing?").json
    reply = api.post("/api/reply", json={"text": "Blue dream", "parent": top["uri"]}, headers=alice.headers)
    assert reply.status_code == 201, reply.json
    top_ref = {"uri": top["uri"], "cid": top["cid"]}
    assert fake_pds.list_records(alice.did, POST)[rkey_of(reply.json["uri"])]["value"]["reply"] == \
        {"root": top_ref, "parent": top_ref}

    nested = api.post("/api/reply", json={"text": "Nice", "parent": reply.json["uri"]}, headers=bob.headers)
    assert nested.status_code == 201
    assert fake_pds.list_records(bob.did, POST)[rkey_of(nested.json["uri"])]["value"]["reply"] == \
        {"root": top_ref, "parent": {"uri": reply.json["uri"], "cid": reply.json["cid"]}}
    assert nested.json["post"]["reply"] == {"parent": reply.json["uri"], "root": top["uri"]}
    assert counts(session, top["uri"])[2] == 1 and counts(session, reply.json["uri"])[2] == 1


def test_a_reply_to_a_post_we_do_not_index_is_404_and_writes_nothing(api, fake_pds, alice):
    missing = f"at://did:plc:{'z' * 24}/{POST}/3kabcdefghijk"
    response = api.post("/api/reply", json={"text": "hello", "parent": missing}, headers=alice.headers)
    assert_problem(response, 404)
    assert fake_pds.list_records(alice.did, POST) == {}


def test_members_delete_their_own_posts_only(api, session, fake_pds, alice, bob):
    top = post(api, bob, "Top post").json
    reply = api.post("/api/reply", json={"text": "A reply", "parent": top["uri"]}, headers=alice.headers).json

    assert_problem(api.delete(f"/api/post/{top['uri']}", headers=alice.headers), 403)
    assert len(fake_pds.list_records(bob.did, POST)) == 1

    response = api.delete(f"/api/post/{quote(reply['uri'], safe='')}", headers=alice.headers)
    assert response.status_code == 200 and response.json == {"uri": reply["uri"], "deleted": True}
    assert fake_pds.list_records(alice.did, POST) == {}
    assert_problem(api.get(f"/api/post/{quote(reply['uri'], safe='')}"), 404)
    assert counts(session, top["uri"])[2] == 0 and profile_counts(session, alice.did)[2] == 0
    assert_problem(api.delete(f"/api/post/{reply['uri']}", headers=alice.headers), 404)


# -- likes, reposts, follows ---------------------------------------------------------------

@pytest.mark.parametrize("verb, collection, slot, count_index", [
    ("like", LIKE, "like", 0), ("repost", REPOST, "repost", 1)])
def test_like_and_repost_and_their_undo(api, session, fake_pds, alice, verb, collection, slot, count_index):
    target = index_post(Stream(session), "did:plc:" + "o" * 24, "3kaaaaaaaaaaa", "Outdoor grow #cannabis")
    response = api.post(f"/api/{verb}", json={"uri": target}, headers=alice.headers)
    assert response.status_code == 200, response.json
    body = response.json
    [(rkey, stored)] = fake_pds.list_records(alice.did, collection).items()
    assert body["uri"] == f"at://{alice.did}/{collection}/{rkey}" and body["cid"] == stored["cid"]
    assert stored["value"]["subject"] == {"uri": target, "cid": "bafyreioutside3kaaaaaaaaaaa"}
    assert body["post"]["viewer"][slot] == body["uri"]
    assert body["post"][f"{verb}Count"] == 1 and counts(session, target)[count_index] == 1

    again = api.post(f"/api/{verb}", json={"uri": target}, headers=alice.headers).json
    assert again["uri"] == body["uri"] and again["post"][f"{verb}Count"] == 1
    assert len(fake_pds.list_records(alice.did, collection)) == 1

    undone = api.post(f"/api/un{verb}", json={"uri": target}, headers=alice.headers)
    assert undone.status_code == 200 and undone.json["uri"] == body["uri"]
    assert undone.json["post"]["viewer"][slot] is None and undone.json["post"][f"{verb}Count"] == 0
    assert fake_pds.list_records(alice.did, collection) == {} and counts(session, target)[count_index] == 0

    noop = api.post(f"/api/un{verb}", json={"uri": target}, headers=alice.headers)
    assert noop.status_code == 200 and noop.json["uri"] is None and noop.json["post"][f"{verb}Count"] == 0
    missing = f"at://did:plc:{'z' * 24}/{POST}/3kabcdefghijk"
    assert_problem(api.post(f"/api/{verb}", json={"uri": missing}, headers=alice.headers), 404)
    assert_problem(api.post(f"/api/un{verb}", json={"uri": missing}, headers=alice.headers), 404)


def test_follow_and_unfollow(api, session, fake_pds, alice, bob):
    response = api.post("/api/follow", json={"did": bob.did}, headers=alice.headers)
    assert response.status_code == 200, response.json
    body = response.json
    [(rkey, stored)] = fake_pds.list_records(alice.did, FOLLOW).items()
    assert body["uri"] == f"at://{alice.did}/{FOLLOW}/{rkey}" and stored["value"]["subject"] == bob.did
    assert body["profile"]["did"] == bob.did and body["profile"]["followersCount"] == 1
    assert body["profile"]["viewer"]["following"] == body["uri"]
    assert profile_counts(session, alice.did)[1] == 1

    assert api.post("/api/follow", json={"did": bob.did}, headers=alice.headers).json["uri"] == body["uri"]
    assert len(fake_pds.list_records(alice.did, FOLLOW)) == 1

    undone = api.post("/api/unfollow", json={"did": bob.did}, headers=alice.headers).json
    assert undone["uri"] == body["uri"] and undone["profile"]["followersCount"] == 0
    assert undone["profile"]["viewer"]["following"] is None
    assert fake_pds.list_records(alice.did, FOLLOW) == {} and profile_counts(session, alice.did)[1] == 0
    assert api.post("/api/unfollow", json={"did": bob.did}, headers=alice.headers).json["uri"] is None

    stranger = "did:plc:" + "s" * 24  # never seen: following them makes their profile known
    followed = api.post("/api/follow", json={"did": stranger}, headers=alice.headers).json
    assert followed["profile"]["did"] == stranger and followed["profile"]["followersCount"] == 1

    assert_problem(api.post("/api/follow", json={"did": alice.did}, headers=alice.headers), 422)


# -- the same records arriving later from Jetstream ----------------------------------------

def test_the_later_jetstream_events_count_nothing_twice(api, session, fake_pds, alice, bob):
    stream = Stream(session)
    outside = index_post(stream, "did:plc:" + "o" * 24, "3kaaaaaaaaaaa", "Outdoor grow #cannabis")
    top = post(api, bob, "Top #thc").json
    reply = api.post("/api/reply", json={"text": "Reply", "parent": top["uri"]}, headers=alice.headers).json
    for verb in ("like", "repost"):
        for uri in (top["uri"], outside):
            assert api.post(f"/api/{verb}", json={"uri": uri}, headers=alice.headers).status_code == 200
    assert api.post("/api/follow", json={"did": bob.did}, headers=alice.headers).status_code == 200
    assert api.post("/api/follow", json={"did": alice.did}, headers=bob.headers).status_code == 200
    before = snapshot(session)
    assert counts(session, top["uri"]) == (1, 1, 1) and counts(session, reply["uri"]) == (0, 0, 0)

    stream.deliver(*frames_of_pds_records(fake_pds))
    assert snapshot(session) == before

    # Undo some of it: the deletes arriving afterwards change nothing either.
    like_uri = api.post("/api/unlike", json={"uri": top["uri"]}, headers=alice.headers).json["uri"]
    assert api.delete(f"/api/post/{reply['uri']}", headers=alice.headers).status_code == 200
    follow_uri = api.post("/api/unfollow", json={"did": bob.did}, headers=alice.headers).json["uri"]
    after_undo = snapshot(session)
    assert counts(session, top["uri"]) == (0, 1, 0) and profile_counts(session, bob.did)[0] == 0
    stream.deliver(commit_frame(alice.did, LIKE, rkey_of(like_uri)), commit_frame(alice.did, POST, rkey_of(reply["uri"])),
                   commit_frame(alice.did, FOLLOW, rkey_of(follow_uri)))
    assert snapshot(session) == after_undo


# -- the PDS session and PDS failures ------------------------------------------------------

def test_an_expired_pds_access_token_is_refreshed_transparently(api, session, fake_pds, alice):
    target = index_post(Stream(session), "did:plc:" + "o" * 24, "3kaaaaaaaaaaa", "Indoor grow #cannabis")
    fake_pds.expire_access_tokens(alice.did)
    response = api.post("/api/like", json={"uri": target}, headers=alice.headers)
    assert response.status_code == 200, response.json
    assert fake_pds.calls.count("com.atproto.server.refreshSession") == 1
    assert len(fake_pds.list_records(alice.did, LIKE)) == 1 and counts(session, target)[0] == 1

    [stored] = rows(session, "SELECT access_jwt, refresh_jwt FROM pds_sessions WHERE did = :did", did=alice.did)
    cipher = token_cipher(None, JWT_SECRET)
    assert {cipher.decrypt(stored.access_jwt), cipher.decrypt(stored.refresh_jwt)} == set(fake_pds.live_tokens(alice.did))

    assert api.post("/api/repost", json={"uri": target}, headers=alice.headers).status_code == 200
    assert fake_pds.calls.count("com.atproto.server.refreshSession") == 1


def test_a_refreshed_pds_session_is_kept_even_when_the_action_then_fails(api, session, fake_pds, alice, bob):
    fake_pds.expire_access_tokens(alice.did)
    fake_pds.fail_next(1, status=503, method="com.atproto.repo.createRecord", after=1)
    before = snapshot(session)
    response = api.post("/api/follow", json={"did": bob.did}, headers=alice.headers)
    assert_problem(response, 503)
    assert fake_pds.calls[-3:] == ["com.atproto.repo.createRecord", "com.atproto.server.refreshSession",
                                   "com.atproto.repo.createRecord"]
    assert snapshot(session) == before and fake_pds.list_records(alice.did, FOLLOW) == {}

    # The PDS spent the old refresh token: the new pair must have been kept despite the 503.
    [stored] = rows(session, "SELECT access_jwt, refresh_jwt FROM pds_sessions WHERE did = :did", did=alice.did)
    cipher = token_cipher(None, JWT_SECRET)
    assert {cipher.decrypt(stored.access_jwt), cipher.decrypt(stored.refresh_jwt)} == set(fake_pds.live_tokens(alice.did))
    assert api.post("/api/follow", json={"did": bob.did}, headers=alice.headers).status_code == 200
    assert fake_pds.calls.count("com.atproto.server.refreshSession") == 1


def test_concurrent_actions_with_an_expired_pds_token_refresh_it_once(api, session, fake_pds, alice):
    stream = Stream(session)
    targets = [index_post(stream, "did:plc:" + "o" * 24, f"3kaaaaaaaaaa{i}", f"Post {i} #cannabis") for i in range(4)]
    fake_pds.expire_access_tokens(alice.did)
    app = api.application
    statuses = []

    def like(uri):
        statuses.append(app.test_client().post("/api/like", json={"uri": uri}, headers=alice.headers).status_code)

    threads = [threading.Thread(target=like, args=(uri,)) for uri in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert statuses == [200] * 4
    assert fake_pds.calls.count("com.atproto.server.refreshSession") == 1
    assert len(fake_pds.list_records(alice.did, LIKE)) == 4
    assert [counts(session, uri)[0] for uri in targets] == [1] * 4


def test_a_dead_pds_session_means_sign_in_again(api, session, fake_pds, alice):
    fake_pds.revoke_sessions(alice.did)
    before = snapshot(session)
    response = post(api, alice, "Hello #weed")
    assert_problem(response, 401)
    assert "sign in again" in response.json["detail"]
    assert snapshot(session) == before and fake_pds.list_records(alice.did, POST) == {}

    alice.headers = bearer(login(api, "alice.test").json["accessToken"])
    assert post(api, alice, "Hello #weed").status_code == 201


@pytest.mark.parametrize("failure, status", [
    ("503", 503), ("500", 503), ("502 html", 503), ("stopped", 503), ("rate limit", 429),
    ("invalid record", 422), ("unauthorized", 401)])
@pytest.mark.parametrize("action", ["post", "reply", "like", "unlike", "repost", "follow", "unfollow", "delete"])
def test_pds_failures_leave_our_data_unchanged(api, session, fake_pds, alice, bob, failure, status, action):
    target = post(api, bob, "Bob's post #420").json["uri"]
    own = post(api, alice, "Alice's post").json["uri"]
    assert api.post("/api/like", json={"uri": target}, headers=alice.headers).status_code == 200
    assert api.post("/api/follow", json={"did": bob.did}, headers=alice.headers).status_code == 200
    requests = {
        "post": ("post", "/api/post", {"text": "New #weed"}),
        "reply": ("post", "/api/reply", {"text": "Re", "parent": target}),
        "like": ("post", "/api/like", {"uri": own}),
        "unlike": ("post", "/api/unlike", {"uri": target}),
        "repost": ("post", "/api/repost", {"uri": target}),
        "follow": ("post", "/api/follow", {"did": "did:plc:" + "f" * 24}),
        "unfollow": ("post", "/api/unfollow", {"did": bob.did}),
        "delete": ("delete", f"/api/post/{own}", None),
    }
    method, path, body = requests[action]
    before, records_before = snapshot(session), orjson.dumps(fake_pds.records, option=orjson.OPT_SORT_KEYS)
    if failure == "stopped":
        fake_pds.stop()
    elif failure == "rate limit":
        fake_pds.rate_limit_next(1, reset_after=90)
    elif failure == "invalid record":
        fake_pds.fail_next(1, status=400, error="InvalidRecord", message="Invalid app.bsky.feed.post record")
    elif failure == "unauthorized":  # the session was revoked on the PDS: refreshing cannot help
        fake_pds.fail_next(1, status=401, error="InvalidToken", message="Token could not be verified")
        fake_pds.revoke_sessions(alice.did)
    else:
        fake_pds.fail_next(1, status=int(failure.split()[0]), error=None if "html" in failure else "InternalServerError")

    response = getattr(api, method)(path, json=body, headers=alice.headers)
    assert_problem(response, status)
    if status in (429, 503):
        assert int(response.headers["Retry-After"]) > 0
    if failure == "invalid record":
        assert response.json["pdsError"] == "InvalidRecord"
    assert snapshot(session) == before
    assert orjson.dumps(fake_pds.records, option=orjson.OPT_SORT_KEYS) == records_before


# -- who may act, and what they may send ---------------------------------------------------

def test_actions_need_a_signed_in_member(api, session, alice):
    target = post(api, alice, "Mine").json["uri"]
    calls = [("post", "/api/post", {"text": "x"}), ("post", "/api/like", {"uri": target}),
             ("post", "/api/follow", {"did": "did:plc:" + "b" * 24}), ("delete", f"/api/post/{target}", None)]
    signed_out = bearer(login(api, "alice.test").json["accessToken"])
    assert api.post("/api/auth/logout", headers=signed_out).status_code == 200
    for headers in ({}, bearer("garbage"), signed_out):
        for method, path, body in calls:
            response = getattr(api, method)(path, json=body, headers=headers)
            assert_problem(response, 401)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert rows(session, "SELECT count(*) FROM posts")[0][0] == 1


def test_text_limits_follow_the_post_lexicon(api, alice):
    assert post(api, alice, "👍🏽" * 300).status_code == 201  # 300 graphemes, 2,400 bytes
    assert post(api, alice, "é" * 300).status_code == 201
    for text in ("👍🏽" * 301, "a" * 301, "ab" * 1501, "   ", "", "nul\x00byte"):
        assert_problem(post(api, alice, text), 422)


POST_URI = f"at://did:plc:{'p' * 24}/{POST}/3kabcdefghijk"


@pytest.mark.parametrize("method, path, body", [
    ("post", "/api/post", {}),
    ("post", "/api/post", {"text": 42}),
    ("post", "/api/post", {"text": "hi", "langs": ["english!"]}),
    ("post", "/api/post", {"text": "hi", "langs": ["en", "de", "fr", "es"]}),
    ("post", "/api/post", {"text": "hi", "langs": "en"}),
    ("post", "/api/post", {"text": "hi", "embed": {}}),
    ("post", "/api/post", ["hi"]),
    ("post", "/api/post", "not json"),
    ("post", "/api/reply", {"text": "hi"}),
    ("post", "/api/reply", {"text": "hi", "parent": "https://bsky.app/post/1"}),
    ("post", "/api/reply", {"text": "hi", "parent": f"at://did:plc:{'p' * 24}/{LIKE}/3kabcdefghijk"}),
    ("post", "/api/like", {}),
    ("post", "/api/like", {"uri": None}),
    ("post", "/api/like", {"uri": "at://not a uri"}),
    ("post", "/api/like", {"uri": f"at://did:plc:{'p' * 24}/{FOLLOW}/3kabcdefghijk"}),
    ("post", "/api/unrepost", {"uri": POST_URI, "cid": "x"}),
    ("post", "/api/follow", {"did": "alice.test"}),
    ("post", "/api/follow", {"did": ""}),
    ("post", "/api/unfollow", {"did": ["did:plc:x"]}),
    ("delete", "/api/post/not-a-uri", None),
])
def test_bad_input_is_a_4xx_problem(api, fake_pds, alice, method, path, body):
    if isinstance(body, str):
        response = api.post(path, data=body, content_type="application/json", headers=alice.headers)
    else:
        response = getattr(api, method)(path, json=body, headers=alice.headers)
    assert 400 <= response.status_code < 500, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert fake_pds.records.get(alice.did) is None


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                    max_leaves=12)
BODIES = (JSON | st.fixed_dictionaries({"text": st.text(max_size=400)}, optional={"langs": JSON, "parent": JSON})
          | st.fixed_dictionaries({"uri": st.text(max_size=80) | st.just(POST_URI)})
          | st.fixed_dictionaries({"did": st.text(max_size=60) | st.just("did:plc:" + "q" * 24)}))


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(["/api/post", "/api/reply", "/api/like", "/api/unlike", "/api/repost", "/api/unrepost",
                             "/api/follow", "/api/unfollow"]), body=BODIES)
def test_no_body_makes_an_action_fail_with_a_500(api, alice, path, body):
    # The stdlib encoder: integers past 64 bits are valid JSON that the test client's orjson can't write.
    response = api.post(path, data=json.dumps(body), content_type="application/json", headers=alice.headers)
    assert response.status_code < 500, (path, body, response.get_data(as_text=True))
    if response.status_code >= 400:
        assert response.mimetype == "application/problem+json"


def test_openapi_documents_the_actions(api):
    paths = api.get("/api/openapi.json").json["paths"]
    for path in ("/api/post", "/api/reply", "/api/like", "/api/unlike", "/api/repost", "/api/unrepost",
                 "/api/follow", "/api/unfollow"):
        assert "post" in paths[path] and paths[path]["post"]["security"] == [{"bearer": []}]
    assert "delete" in paths["/api/post/{uri}"]


def test_an_action_publishes_its_live_update_after_commit(api, alice, session, redis_url):
    """A like through the API reaches the realtime stream with the new count."""
    import orjson
    import redis as redis_lib

    from services.realtime import STREAM

    token = login(api, "alice.test").json["accessToken"]
    created = api.post("/api/post", json={"text": "first #weed post"}, headers=bearer(token))
    assert created.status_code == 201, created.json
    uri = created.json["uri"]
    stream = redis_lib.Redis.from_url(redis_url)
    before = stream.xlen(STREAM)
    assert api.post("/api/like", json={"uri": uri}, headers=bearer(token)).status_code == 200
    events = [orjson.loads(fields[b"e"]) for _, fields in stream.xrange(STREAM)[before:]]
    assert {"type": "post_updated", "post": {"uri": uri, "likeCount": 1, "repostCount": 0, "replyCount": 0}} in [
        {k: v for k, v in e.items() if k in ("type", "post")} for e in events]
