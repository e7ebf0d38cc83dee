"""The read side of the app API (feeds, threads, profiles, search) through the Flask test client.

Data is built through the real ingest path: hand-written Jetstream events, parsed by
``parse_event`` and applied by ``ingest_batch``, so the API reads exactly what the indexer
writes (counters, viewer state, deletes). Pagination is checked for completeness and
stability by ingesting newer records between page fetches.
"""

from __future__ import annotations

import base64
import itertools
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import orjson
import pytest
from sqlalchemy import text

from app import create_app
from cannect.config import DEFAULT_CANNABIS_TAGS, get_settings
from services import db
from services.ingest import ingest_batch
from services.jetstream import Skip, parse_event
from services.members import add_member
from services.tokens import issue_access_token

SECRET = "test-secret-" + "x" * 32
TAGS = frozenset(DEFAULT_CANNABIS_TAGS)
BASE = datetime(2025, 6, 1, tzinfo=UTC)


def did(name: str) -> str:
    """A did:plc of 24 base32 characters derived from a short name."""
    return "did:plc:" + (name + "a" * 24)[:24]


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class Network:
    """Writes Jetstream events as the firehose would carry them and ingests them in batches."""

    def __init__(self, session):
        self.session = session
        self.time_us = 1_760_000_000_000_000
        self.seq = 0
        self.pending: list[dict] = []
        self.rkeys = itertools.count(1)

    def _event(self, author: str, kind: str, body: dict) -> None:
        self.time_us += 1000
        raw = orjson.dumps({"did": author, "time_us": self.time_us, "kind": kind, kind: body})
        event = parse_event(raw)
        assert not isinstance(event, Skip), event
        self.pending.append(event)

    def _commit(self, author: str, collection: str, record: dict | None, rkey: str | None = None,
                operation: str = "create") -> tuple[str, str]:
        rkey = rkey or f"3l{next(self.rkeys):011d}"
        cid = f"bafy{self.time_us + 1000:020d}"
        body = {"rev": rkey, "operation": operation, "collection": collection, "rkey": rkey}
        if record is not None:
            body.update(record=record, cid=cid)
        self._event(author, "commit", body)
        return f"at://{author}/{collection}/{rkey}", cid

    def post(self, author: str, text: str, at: datetime, reply_to: tuple | None = None, root: tuple | None = None,
             images: int = 0, rkey: str | None = None) -> tuple[str, str]:
        """Create a post; returns its (uri, cid). ``reply_to`` / ``root`` are (uri, cid) refs."""
        record = {"$type": "app.bsky.feed.post", "text": text, "createdAt": iso(at), "langs": ["en"]}
        if reply_to:
            root = root or reply_to
            record["reply"] = {"root": {"uri": root[0], "cid": root[1]},
                               "parent": {"uri": reply_to[0], "cid": reply_to[1]}}
        if images:
            record["embed"] = {"$type": "app.bsky.embed.images", "images": [
                {"alt": "", "image": {"$type": "blob", "ref": {"$link": f"bafkimg{i}"}, "mimeType": "image/jpeg",
                                      "size": 1000}} for i in range(images)]}
        return self._commit(author, "app.bsky.feed.post", record, rkey)

    def like(self, actor: str, subject: tuple, at: datetime) -> str:
        record = {"$type": "app.bsky.feed.like", "subject": {"uri": subject[0], "cid": subject[1]},
                  "createdAt": iso(at)}
        return self._commit(actor, "app.bsky.feed.like", record)[0]

    def repost(self, actor: str, subject: tuple, at: datetime) -> str:
        record = {"$type": "app.bsky.feed.repost", "subject": {"uri": subject[0], "cid": subject[1]},
                  "createdAt": iso(at)}
        return self._commit(actor, "app.bsky.feed.repost", record)[0]

    def follow(self, actor: str, subject: str, at: datetime) -> str:
        record = {"$type": "app.bsky.graph.follow", "subject": subject, "createdAt": iso(at)}
        return self._commit(actor, "app.bsky.graph.follow", record)[0]

    def profile(self, actor: str, display_name: str, description: str = "") -> None:
        record = {"$type": "app.bsky.actor.profile", "displayName": display_name, "description": description}
        self._commit(actor, "app.bsky.actor.profile", record, rkey="self")

    def identity(self, actor: str, handle: str) -> None:
        self._event(actor, "identity", {"did": actor, "handle": handle, "seq": 1, "time": iso(BASE)})

    def delete(self, uri: str) -> None:
        _, _, author, collection, rkey = uri.split("/")
        self._commit(author, collection, None, rkey=rkey, operation="delete")

    def member(self, name: str, handle: str | None = None) -> str:
        member = did(name)
        add_member(self.session, member, handle or f"{name}.cannect.space")
        self.session.commit()
        return member

    def flush(self) -> None:
        """Apply the pending events as the next batch of one listener connection."""
        if self.pending:
            self.seq += 1
            batch = {"conn": 1, "seq": self.seq, "prev": None, "events": self.pending}
            assert ingest_batch(self.session, batch, TAGS).verdict == "apply"
            self.session.commit()
            self.pending = []


@pytest.fixture
def client(monkeypatch, db_url, redis_url):
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("JWT_SECRET", SECRET)
    monkeypatch.setenv("RATE_LIMIT_IP", "100000/minute")  # rate limits are tested elsewhere
    monkeypatch.setenv("RATE_LIMIT_USER", "100000/minute")
    for cached in (get_settings, db.get_engine, db._session_factory):
        cached.cache_clear()
    yield create_app().test_client()
    db.get_engine().dispose()
    for cached in (get_settings, db.get_engine, db._session_factory):
        cached.cache_clear()


@pytest.fixture
def net(session):
    return Network(session)


def bearer(viewer: str) -> dict:
    return {"Authorization": "Bearer " + issue_access_token(viewer, "3f0c6a1e-1111-4222-8333-444455556666",
                                                            SECRET, 3600)}


def get(client, url: str, status: int = 200, **kwargs) -> dict:
    response = client.get(url, **kwargs)
    assert response.status_code == status, (url, response.status_code, response.get_data(as_text=True)[:500])
    if status >= 400:
        assert response.mimetype == "application/problem+json"
    return response.json


def uris(body: dict) -> list[str]:
    return [post["uri"] for post in body["posts"]]


def walk(client, url: str, limit: int, between=None, key: str = "posts", headers=None) -> list[str]:
    """Every item of a paginated list, page by page; ``between()`` runs between two pages."""
    seen, cursor = [], None
    while True:
        sep = "&" if "?" in url else "?"
        body = get(client, f"{url}{sep}limit={limit}" + (f"&cursor={cursor}" if cursor else ""), headers=headers)
        assert len(body[key]) <= limit
        seen += [item["uri"] if key == "posts" else item["did"] for item in body[key]]
        cursor = body["cursor"]
        if cursor is None:
            return seen
        if between:
            between()


# --------------------------------------------------------------------------- feeds


@pytest.fixture
def community(net):
    """alice (member) follows carol; bob posts with cannabis tags; dave posts untagged (not indexed)."""
    alice, bob, carol, dave = net.member("alice"), did("bob"), did("carol"), did("dave")
    net.follow(alice, carol, BASE)
    net.flush()
    posts = {
        "alice": net.post(alice, "morning walk", BASE + timedelta(minutes=1)),
        "bob": net.post(bob, "first harvest #cannabis", BASE + timedelta(minutes=2)),
        "carol": net.post(carol, "new pots for the garden", BASE + timedelta(minutes=3)),
        "dave": net.post(dave, "nothing to see", BASE + timedelta(minutes=4)),
        "alice_tagged": net.post(alice, "#weed tea", BASE + timedelta(minutes=5)),
    }
    net.flush()
    return {"alice": alice, "bob": bob, "carol": carol, "dave": dave, "posts": posts}


def test_feeds_hold_what_their_rule_selects(client, community):
    posts = {name: ref[0] for name, ref in community["posts"].items()}
    assert uris(get(client, "/api/feed/global")) == [posts["alice_tagged"], posts["bob"]]
    assert uris(get(client, "/api/feed/local")) == [posts["alice_tagged"], posts["alice"]]
    following = get(client, "/api/feed/following", headers=bearer(community["alice"]))
    assert uris(following) == [posts["carol"]] and following["cursor"] is None
    view = get(client, "/api/feed/global")["posts"][1]
    assert view["author"]["did"] == community["bob"] and view["record"]["text"] == "first harvest #cannabis"
    assert view["viewer"] == {"like": None, "repost": None} and view["createdAt"] == iso(BASE + timedelta(minutes=2))


def test_following_feed_needs_a_valid_token(client, community):
    assert get(client, "/api/feed/following", 401)["title"] == "Unauthorized"
    get(client, "/api/feed/following", 401, headers={"Authorization": "Bearer not-a-jwt"})
    expired = issue_access_token(community["alice"], "3f0c6a1e-1111-4222-8333-444455556666", SECRET, -10)
    get(client, "/api/feed/following", 401, headers={"Authorization": f"Bearer {expired}"})
    other = issue_access_token(community["alice"], "3f0c6a1e-1111-4222-8333-444455556666", "y" * 40, 3600)
    get(client, "/api/feed/following", 401, headers={"Authorization": f"Bearer {other}"})


def test_following_feed_of_a_viewer_who_follows_nobody_is_empty(client, net):
    loner = net.member("loner")
    assert get(client, "/api/feed/following", headers=bearer(loner)) == {"posts": [], "cursor": None}


def test_viewer_state_shows_the_members_own_likes_reposts_and_follows(client, net, community):
    alice, bob = community["alice"], community["bob"]
    bob_post = community["posts"]["bob"]
    like = net.like(alice, bob_post, BASE + timedelta(hours=1))
    repost = net.repost(alice, bob_post, BASE + timedelta(hours=1))
    follow = net.follow(alice, bob, BASE + timedelta(hours=1))
    net.follow(bob, alice, BASE + timedelta(hours=2))
    net.flush()
    signed_in = get(client, "/api/feed/global", headers=bearer(alice))["posts"][1]
    assert signed_in["viewer"] == {"like": like, "repost": repost}
    assert signed_in["likeCount"] == 1 and signed_in["repostCount"] == 1
    assert get(client, "/api/feed/global")["posts"][1]["viewer"] == {"like": None, "repost": None}
    thread = get(client, f"/api/post/{bob_post[0]}/thread", headers=bearer(alice))["thread"]
    assert thread["post"]["viewer"]["like"] == like
    profile = get(client, f"/api/profile/{bob}", headers=bearer(alice))["profile"]
    assert profile["viewer"] == {"following": follow, "followedBy": True}
    assert get(client, f"/api/profile/{bob}")["profile"]["viewer"] == {"following": None, "followedBy": False}
    # Bob now follows alice too, so her following feed carries his posts; her own like shows.
    assert bob_post[0] in uris(get(client, "/api/feed/following", headers=bearer(alice)))


# --------------------------------------------------------------------------- pagination


def newer_posts(net, author: str, text: str):
    """A ``between`` hook: three newer posts arrive between two page fetches."""
    moments = itertools.count(1)

    def arrive():
        for _ in range(3):
            net.post(author, text, BASE + timedelta(days=30, seconds=next(moments)))
        net.flush()
    return arrive


def spread_posts(net, author: str, text: str, count: int, reply_to=None) -> list[str]:
    """``count`` posts, three to a timestamp so that cids break ties; newest first."""
    made = []
    for i in range(count):
        uri, cid = net.post(author, text, BASE + timedelta(hours=1, seconds=i // 3), reply_to=reply_to)
        made.append((BASE + timedelta(hours=1, seconds=i // 3), cid, uri))
    net.flush()
    return [uri for _, _, uri in sorted(made, reverse=True)]


@pytest.mark.parametrize("feed", ["global", "local", "following", "profile"])
def test_post_lists_page_completely_and_stably_while_new_posts_arrive(client, net, feed):
    viewer = net.member("viewer")
    author = net.member("author") if feed == "local" else did("author")
    net.follow(viewer, author, BASE)
    net.flush()
    expected = spread_posts(net, author, "grow log #cannabis", 40)
    url = {"global": "/api/feed/global", "local": "/api/feed/local", "following": "/api/feed/following",
           "profile": f"/api/profile/{author}/posts"}[feed]
    first_page = uris(get(client, url + "?limit=7", headers=bearer(viewer)))
    assert first_page == expected[:7]
    seen = walk(client, url, 7, between=newer_posts(net, author, "late #cannabis"), headers=bearer(viewer))
    assert seen == expected and len(set(seen)) == len(seen)


def test_replies_page_oldest_first_and_new_replies_come_last(client, net):
    author = did("author")
    root = net.post(author, "question #cannabis", BASE)
    net.flush()
    expected = list(reversed(spread_posts(net, did("replier"), "answer", 25, reply_to=root)))
    moments = itertools.count(1)

    def arrive():
        net.post(did("late"), "late answer", BASE + timedelta(days=2, seconds=next(moments)), reply_to=root)
        net.flush()
    seen = walk(client, f"/api/post/{root[0]}/replies", 4, between=arrive)
    assert seen[:25] == expected and len(set(seen)) == len(seen) and len(seen) > 25
    assert get(client, f"/api/post/{root[0]}")["post"]["replyCount"] == len(seen)


def test_likes_followers_and_following_page_newest_first(client, net):
    fan = net.member("fan")
    target = net.post(did("author"), "#cannabis", BASE)
    net.flush()
    subjects = [net.post(did("author"), f"#cannabis {i}", BASE + timedelta(minutes=i)) for i in range(12)]
    net.flush()
    likes = [net.like(fan, subject, BASE + timedelta(days=1, minutes=(12 - i) // 2)) for i, subject in enumerate(subjects)]
    followed = [did(f"f{i:02d}") for i in range(12)]
    for i, other in enumerate(followed):
        net.follow(fan, other, BASE + timedelta(days=1, minutes=i // 2))
        net.follow(other, fan, BASE + timedelta(days=1, minutes=i // 2))
    net.flush()
    expected_likes = [s[0] for _, _, s in sorted(((BASE + timedelta(days=1, minutes=(12 - i) // 2), like, s)
                                                 for i, (like, s) in enumerate(zip(likes, subjects))), reverse=True)]
    moments = itertools.count(1)

    def more_likes():
        net.like(fan, target, BASE + timedelta(days=5, seconds=next(moments)))
        net.flush()
    assert walk(client, "/api/profile/fan.cannect.space/likes", 5, between=more_likes) == expected_likes

    # Follows of equal created_at are ordered by the follow's URI, newest (largest) first.
    by_time = sorted(((i // 2, i) for i in range(12)), key=lambda pair: (pair[0], pair[1]), reverse=True)
    expected_follows = [followed[i] for _, i in by_time]
    assert walk(client, f"/api/profile/{fan}/following", 5, key="profiles") == expected_follows
    assert walk(client, "/api/profile/fan.cannect.space/followers", 5, key="profiles") == expected_follows
    profile = get(client, f"/api/profile/{fan}")["profile"]
    assert profile["followersCount"] == 12 and profile["followingCount"] == 12


# --------------------------------------------------------------------------- threads


@pytest.fixture
def thread(net):
    """root <- a <- a1 <- a1x, root <- b (b arrives first but was written later), a <- a2."""
    author, other = did("author"), did("other")
    root = net.post(author, "what soil do you use? #cannabis", BASE)
    b = net.post(other, "b", BASE + timedelta(minutes=5), reply_to=root)
    a = net.post(other, "a", BASE + timedelta(minutes=1), reply_to=root)
    a2 = net.post(author, "a2", BASE + timedelta(minutes=7), reply_to=a, root=root)
    a1 = net.post(author, "a1", BASE + timedelta(minutes=2), reply_to=a, root=root)
    a1x = net.post(other, "a1x", BASE + timedelta(minutes=3), reply_to=a1, root=root)
    net.flush()
    return {name: ref[0] for name, ref in dict(root=root, a=a, b=b, a1=a1, a2=a2, a1x=a1x).items()}


def shape(node: dict) -> dict:
    """A thread node reduced to post texts, keeping its structure."""
    if node.get("notFound"):
        return {"notFound": node["uri"]}
    out = {"text": node["post"]["record"]["text"]}
    if "parent" in node:
        out["parent"] = shape(node["parent"]) if node["parent"] else None
    if "replies" in node:
        out["replies"] = [shape(reply) for reply in node["replies"]]
    return out


def test_thread_has_parents_above_and_replies_below_oldest_first(client, thread):
    body = get(client, f"/api/post/{thread['a']}/thread")
    assert shape(body["thread"]) == {
        "text": "a",
        "parent": {"text": "what soil do you use? #cannabis", "parent": None},
        "replies": [{"text": "a1", "replies": [{"text": "a1x", "replies": []}]}, {"text": "a2", "replies": []}],
    }
    root = get(client, f"/api/post/{thread['root']}/thread")["thread"]
    assert [reply["post"]["uri"] for reply in root["replies"]] == [thread["a"], thread["b"]]
    assert root["parent"] is None and root["post"]["replyCount"] == 2


def test_thread_depth_and_parent_height_cut_the_tree(client, thread):
    shallow = get(client, f"/api/post/{thread['root']}/thread?depth=1")["thread"]
    assert [r["replies"] for r in shallow["replies"]] == [[], []]
    assert get(client, f"/api/post/{thread['root']}/thread?depth=0")["thread"]["replies"] == []
    deep = get(client, f"/api/post/{thread['a1x']}/thread?parentHeight=2")["thread"]
    assert shape(deep)["parent"] == {"text": "a1", "parent": {"text": "a", "parent": None}}
    assert get(client, f"/api/post/{thread['a1x']}/thread?parentHeight=0")["thread"]["parent"] is None


def test_thread_marks_a_deleted_parent_and_drops_deleted_replies(client, net, thread):
    net.delete(thread["a"])
    net.delete(thread["b"])
    net.flush()
    orphan = get(client, f"/api/post/{thread['a1']}/thread")["thread"]
    assert orphan["parent"] == {"notFound": True, "uri": thread["a"]}
    assert [r["post"]["uri"] for r in orphan["replies"]] == [thread["a1x"]]
    root = get(client, f"/api/post/{thread['root']}/thread")["thread"]
    assert root["replies"] == [] and root["post"]["replyCount"] == 0
    get(client, f"/api/post/{thread['a']}/thread", 404)
    get(client, f"/api/post/{thread['a']}/replies", 404)


def test_thread_of_a_reply_whose_parent_was_never_indexed(client, net):
    outside = ("at://" + did("outsider") + "/app.bsky.feed.post/3lnever0000001", "bafyouter")
    reply = net.post(did("author"), "#cannabis agreed", BASE, reply_to=outside)
    net.flush()
    assert get(client, f"/api/post/{reply[0]}/thread")["thread"]["parent"] == {"notFound": True, "uri": outside[0]}


def test_reply_loops_end(client, net):
    """Authors choose record keys, so two posts can name each other as parent."""
    author = did("looper")
    a_uri = f"at://{author}/app.bsky.feed.post/3laaaaaaaaaaa"
    b_uri = f"at://{author}/app.bsky.feed.post/3lbbbbbbbbbbb"
    net.post(author, "#cannabis a", BASE, reply_to=(b_uri, "bafyreibbbb"), rkey="3laaaaaaaaaaa")
    net.post(author, "#cannabis b", BASE, reply_to=(a_uri, "bafyreiaaaa"), rkey="3lbbbbbbbbbbb")
    net.flush()
    body = get(client, f"/api/post/{a_uri}/thread?depth=100&parentHeight=200")["thread"]
    assert shape(body) == {"text": "#cannabis a", "parent": {"text": "#cannabis b", "parent": None}, "replies": []}


def test_wide_threads_keep_whole_levels(client, net, monkeypatch):
    from services import threads

    monkeypatch.setattr(threads, "REPLY_LIMIT", 10)
    root = net.post(did("author"), "#cannabis", BASE)
    first = [net.post(did("r"), f"r{i}", BASE + timedelta(minutes=i), reply_to=root) for i in range(4)]
    for i, parent in enumerate(first):
        for j in range(3):
            net.post(did("s"), f"s{i}{j}", BASE + timedelta(hours=1, minutes=j), reply_to=parent, root=root)
    net.flush()
    body = get(client, f"/api/post/{root[0]}/thread")["thread"]
    assert [r["post"]["uri"] for r in body["replies"]] == [ref[0] for ref in first]
    assert all(r["replies"] == [] for r in body["replies"])  # level 2 (12 posts) did not fit
    monkeypatch.setattr(threads, "REPLY_LIMIT", 3)
    narrow = get(client, f"/api/post/{root[0]}/thread")["thread"]
    assert [r["post"]["uri"] for r in narrow["replies"]] == [ref[0] for ref in first[:3]]


@pytest.mark.parametrize("query", ["depth=101", "depth=-1", "parentHeight=201", "depth=x", "deep=1"])
def test_thread_parameters_are_checked(client, thread, query):
    assert get(client, f"/api/post/{thread['root']}/thread?{query}", 422)["status"] == 422


def test_unknown_posts_are_404(client):
    missing = "at://" + did("nobody") + "/app.bsky.feed.post/3lmissing00001"
    for url in (f"/api/post/{missing}", f"/api/post/{missing}/thread", f"/api/post/{missing}/replies"):
        get(client, url, 404)
    get(client, "/api/post/not-a-uri/thread", 422)


# --------------------------------------------------------------------------- profiles


def test_profile_by_handle_or_did(client, net):
    alice = net.member("alice", "alice.cannect.space")
    net.profile(alice, "Alice Green", "grower")
    net.post(alice, "hello", BASE)
    net.flush()
    by_did = get(client, f"/api/profile/{alice}")["profile"]
    assert by_did["handle"] == "alice.cannect.space" and by_did["displayName"] == "Alice Green"
    assert by_did["isCannectUser"] and by_did["postsCount"] == 1 and by_did["description"] == "grower"
    for name in ("alice.cannect.space", "@alice.cannect.space", "Alice.Cannect.Space"):
        assert get(client, f"/api/profile/{name}")["profile"] == by_did
    for name in ("nobody.cannect.space", did("nobody")):
        for tab in ("", "/posts", "/replies", "/media", "/likes", "/followers", "/following"):
            get(client, f"/api/profile/{name}{tab}", 404)
    for name in ("bad handle", "did:", "x" * 300, "%00"):
        get(client, f"/api/profile/{name}", 422)


def test_profile_tabs(client, net):
    author = net.member("author")
    top = net.post(author, "top", BASE)
    with_media = net.post(author, "pics", BASE + timedelta(minutes=1), images=2)
    reply = net.post(author, "reply", BASE + timedelta(minutes=2), reply_to=top)
    net.flush()
    assert uris(get(client, f"/api/profile/{author}/posts")) == [with_media[0], top[0]]
    assert uris(get(client, f"/api/profile/{author}/replies")) == [reply[0]]
    media = get(client, f"/api/profile/{author}/media")
    assert uris(media) == [with_media[0]] and media["posts"][0]["hasMedia"]
    assert media["posts"][0]["embedType"] == "images"


# --------------------------------------------------------------------------- search


def test_search_posts_by_full_text_newest_first(client, net):
    author = did("author")
    soil = net.post(author, "Living soil beats bottled nutrients #cannabis", BASE)
    tomato = net.post(author, "Tomatoes next to the soil beds #homegrow", BASE + timedelta(minutes=1))
    nutrients = net.post(author, "Which nutrients for week 3? #cannabis", BASE + timedelta(minutes=2))
    net.flush()
    assert uris(get(client, "/api/search?q=soil")) == [tomato[0], soil[0]]
    assert uris(get(client, "/api/search?q=nutrient&type=posts")) == [nutrients[0], soil[0]]
    assert uris(get(client, "/api/search?q=soil -tomatoes")) == [soil[0]]
    assert uris(get(client, '/api/search?q="living soil"')) == [soil[0]]
    assert uris(get(client, "/api/search?q=the")) == []          # only a stop word
    assert uris(get(client, "/api/search?q=%26%7C!(")) == []      # tsquery syntax is just text here
    assert walk(client, "/api/search?q=soil or nutrients", 1) == [nutrients[0], tomato[0], soil[0]]


def test_search_pages_through_time_windows_without_gaps(client, net):
    """Search looks back a day, a week, two months, then everywhere: matches far apart in time
    (and non-matches between them) come out complete and in order, page after page."""
    author = did("author")
    ages = [timedelta(0), timedelta(hours=5), timedelta(days=3), timedelta(days=30), timedelta(days=200),
            timedelta(days=201), timedelta(days=900)]
    matches = [net.post(author, f"compost tea batch {i} #cannabis", BASE - age)[0] for i, age in enumerate(ages)]
    for i in range(20):
        net.post(author, f"unrelated {i} #cannabis", BASE - timedelta(days=i * 10, minutes=1))
    net.flush()
    for limit in (1, 2, 3, 50):
        assert walk(client, "/api/search?q=compost", limit) == matches
    newer = net.post(author, "compost now #cannabis", datetime.now(UTC))[0]
    net.flush()
    assert walk(client, "/api/search?q=compost", 2) == [newer, *matches]


def test_search_users_by_prefix(client, net):
    names = {"grower": "Green Thumb", "greta": "Greta", "g_r": "Underscore", "pct": "100% Organic",
             "other": "Someone"}
    members = {}
    for name, display in names.items():
        handle = f"{name.replace('_', '-')}.cannect.space"
        members[name] = net.member(name.replace("_", "x"), handle)
        net.profile(members[name], display)
    net.flush()

    def found(q):
        return {p["did"] for p in get(client, f"/api/search?type=users&q={q}")["profiles"]}
    assert found("gre") == {members["grower"], members["greta"]}
    assert found("GREEN") == {members["grower"]}
    assert found("@greta.cannect") == {members["greta"]}
    assert found("g_") == set()                       # "_" is not a wildcard
    assert found("100%25") == {members["pct"]}        # "%" is not a wildcard either
    assert found("%25") == set()
    assert found("under") == {members["g_r"]}
    assert sorted(walk(client, "/api/search?type=users&q=g", 1, key="profiles")) == sorted(
        [members["grower"], members["greta"], members["g_r"]])


@pytest.mark.parametrize("query", ["", "q=", "q=%20%20", "q=" + "x" * 201, "q=a&type=all", "q=a&limit=0",
                                   "q=a&limit=101", "q=a&limit=x", "q=a%00b", "q=a&sort=new"])
def test_search_parameters_are_checked(client, query):
    assert get(client, f"/api/search?{query}", 422)["status"] == 422


# --------------------------------------------------------------------------- bad input


def _foreign_cursors():
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return ["garbage!", "bm90IG91cnM", b64(b"12:\x00"), b64(b"99999999999999999999999:x"), b64(b"\xff\xfe"),
            b64(b"x:y"), "%00"]


PAGINATED = ["/api/feed/global", "/api/feed/local", "/api/feed/following", "/api/profile/{member}/posts",
             "/api/profile/{member}/replies", "/api/profile/{member}/media", "/api/profile/{member}/likes",
             "/api/profile/{member}/followers", "/api/profile/{member}/following", "/api/post/{post}/replies",
             "/api/search?q=x", "/api/search?q=x&type=users"]


@pytest.mark.parametrize("url", PAGINATED)
def test_foreign_cursors_and_bad_limits_are_client_errors(client, community, url):
    url = url.format(member=community["alice"], post=community["posts"]["bob"][0])
    headers = bearer(community["alice"])
    sep = "&" if "?" in url else "?"
    for cursor in _foreign_cursors():
        response = client.get(f"{url}{sep}cursor={cursor}", headers=headers)
        assert response.status_code in (400, 422), (cursor, response.get_data(as_text=True))
        assert response.mimetype == "application/problem+json"
    assert get(client, f"{url}{sep}cursor=garbage!", 400, headers=headers)["title"] == "Bad Request"
    for limit in ("0", "101", "-1", "ten", "1e3"):
        get(client, f"{url}{sep}limit={limit}", 422, headers=headers)
    get(client, f"{url}{sep}cursor=" + "A" * 5000, 422, headers=headers)


def test_openapi_documents_the_read_endpoints(client):
    paths = get(client, "/api/openapi.json")["paths"]
    for path in ("/api/feed/global", "/api/feed/local", "/api/feed/following", "/api/post/{uri}/thread",
                 "/api/post/{uri}/replies", "/api/profile/{actor}", "/api/profile/{actor}/likes",
                 "/api/profile/{actor}/followers", "/api/profile/{actor}/following", "/api/search"):
        assert "get" in paths[path], path


def test_nothing_is_a_server_error_for_generated_requests(client, community):
    """Property test over the documented read endpoints: whatever the parameters, never a 5xx."""
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hsettings
    from hypothesis import strategies as st

    member, post = community["alice"], community["posts"]["bob"][0]
    bases = ["/api/feed/global", "/api/feed/local", "/api/feed/following", f"/api/post/{post}/thread",
             f"/api/post/{post}/replies", f"/api/profile/{member}", f"/api/profile/{member}/likes",
             f"/api/profile/{member}/followers", "/api/search"]
    values = st.one_of(st.text(max_size=30), st.integers(-10**6, 10**6).map(str), st.sampled_from(_foreign_cursors()))
    params = st.dictionaries(st.sampled_from(["limit", "cursor", "q", "type", "depth", "parentHeight"]), values,
                             max_size=4)

    @hsettings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(bases), params, st.booleans(), st.text(max_size=20))
    def check(base, query, signed_in, actor):
        headers = bearer(member) if signed_in else None
        assert client.get(base, query_string=query, headers=headers).status_code < 500
        assert client.get(f"/api/profile/{quote(actor, safe='')}/posts", query_string=query).status_code < 500

    check()
    with db.session_scope() as session:  # the database was only read
        assert session.execute(text("SELECT count(*) FROM posts")).scalar() == 4
