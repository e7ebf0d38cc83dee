"""The web process's read cache (services/read_cache.py, app/read_cache.py) is exact.

- Unit tests of the invalidation order: a fill that started before an event is never stored,
  an outage of the subscription flushes and turns the cache off, events drop what they name,
  concurrent requests share one position check sent after they arrived.
- A race: ingest batches (the worker's own steps: apply, collect the live events, commit,
  publish) run while readers load feeds, posts, threads, profiles and the B2B trends' supporting
  posts (``services/b2b/queries/posts.py``) from a real gunicorn web app whose realtime
  subscriber feeds its cache. After each commit the test snapshots the
  database; every served view must equal the database as of some batch between the last one
  published before the request was sent and the last one committed when the answer came.
"""

from __future__ import annotations

import random
import threading
import time
from datetime import timedelta

import httpx
import orjson
import pytest
from sqlalchemy import text

from app.read_cache import Barrier
from harness import Proxy, Web, token_for
from services.ingest import ingest_batch
from services.read_cache import ReadCache
from services.realtime import collect_events, publish, read_changed_events
from test_api_read import BASE, TAGS, Network, did

CDN = "https://cdn.example/img"
URI = "at://did:plc:aaaaaaaaaaaaaaaaaaaaaaaa/app.bsky.feed.post/3labc"


# --------------------------------------------------------------------------- unit: ordering

def cache() -> ReadCache:
    c = ReadCache(CDN)
    c.enable()
    return c


def test_a_fill_that_started_before_an_invalidation_is_not_stored():
    c = cache()
    ticket = c.ticket()                      # the fill's query starts ...
    c.apply("post_updated", "post:" + URI)   # ... an event for the post arrives meanwhile ...
    c.store(ticket, [(("p", URI), {"likeCount": 1})])  # ... and its (older) answer comes back
    assert c.get(("p", URI)) is None
    ticket = c.ticket()                      # a fill that starts after the event is kept
    c.store(ticket, [(("p", URI), {"likeCount": 2})])
    assert c.get(("p", URI)) == {"likeCount": 2}
    c.apply("post_updated", "post:" + URI)
    assert c.get(("p", URI)) is None


def test_an_invalidation_of_another_key_does_not_refuse_a_fill():
    c = cache()
    ticket = c.ticket()
    c.apply("post_updated", "post:" + URI + "x")
    c.store(ticket, [(("p", URI), {"likeCount": 1})])
    assert c.get(("p", URI)) == {"likeCount": 1}


def test_a_dependent_entry_lives_as_long_as_what_it_was_computed_from():
    c = cache()
    reads = []

    def read():
        reads.append(1)
        return ["reply rows"], [("p", URI), ("p", URI + "parent")]
    assert c.dependent(("t", URI), read) == ["reply rows"]
    assert c.dependent(("t", URI), read) == ["reply rows"] and len(reads) == 1
    c.apply("reply_added", "post:" + URI + "parent")  # a new reply counts on its parent
    assert c.get(("t", URI)) is None
    c.dependent(("t", URI), read)
    assert len(reads) == 2 and c.get(("t", URI)) == ["reply rows"]


def test_a_dependent_fill_raced_by_a_change_of_what_it_depends_on_is_not_stored():
    c = cache()

    def read():
        c.apply("read_changed", "cache:read", b'{"deleted": ["' + URI.encode() + b'"]}')  # meanwhile
        return ["stale"], [("p", URI)]
    assert c.dependent(("t", URI), read) == ["stale"]  # this answer is as of the read's start
    assert c.get(("t", URI)) is None and c.refused == 1


def test_many_dependent_entries_are_read_at_once_and_each_lives_with_its_own_sources():
    c = cache()
    reads = []

    def read(keys):
        reads.append(keys)
        return {key: (f"view {key[1]}", [("p", f"post {key[1]}")]) for key in keys}

    assert c.dependents([("bp", 1), ("bp", 2)], read) == {("bp", 1): "view 1", ("bp", 2): "view 2"}
    c.invalidate([("p", "post 1")])
    assert c.dependents([("bp", 1), ("bp", 2)], read) == {("bp", 1): "view 1", ("bp", 2): "view 2"}
    assert reads == [[("bp", 1), ("bp", 2)], [("bp", 1)]]


def test_nothing_found_is_not_cached_as_a_dependent_entry():
    c = cache()
    assert c.dependent(("t", URI), lambda: (None, ())) is None
    assert c.stats()["entries"] == 0


def test_forgetting_old_invalidations_refuses_every_fill_in_flight():
    c = ReadCache(CDN, max_entries=100)
    c.enable()
    ticket = c.ticket()
    c.invalidate([("p", f"{URI}{i}") for i in range(101)])  # more than it remembers
    c.store(ticket, [(("p", URI), 1)])
    assert c.get(("p", URI)) is None


def test_an_outage_flushes_and_refuses_fills_until_the_reader_reads_again():
    c = cache()
    c.store(c.ticket(), [(("p", URI), 1)])
    ticket = c.ticket()
    c.disable()
    assert not c.enabled and c.get(("p", URI)) is None
    c.store(c.ticket(), [(("p", URI), 1)])   # nothing is stored while off
    assert c.get(("p", URI)) is None
    c.enable()
    c.store(ticket, [(("p", URI), 1)])       # a fill from before the outage stays refused
    assert c.get(("p", URI)) is None


def test_events_drop_what_they_change():
    c = cache()
    author = URI.split("/")[2]
    keys = [("p", URI), ("f", "global"), ("f", "local"), ("tab", author, "posts"), ("a", author),
            ("au", author), ("h", "alice.test"), ("h", author)]
    c.store(c.ticket(), [(key, author if key[0] == "h" else 1) for key in keys])
    c.apply("post_deleted", "post:" + URI)
    assert [key for key in keys if c.get(key) is None] == keys[:4]
    c.apply("profile_updated", "did:" + author)
    assert all(c.get(key) is None for key in keys)

    c.store(c.ticket(), [(("f", "global"), 1), (("f", "local"), 1)])
    c.apply("read_changed", "cache:read", '{"id":"1-0","type":"read_changed","posts":[],'
            '"newPosts":[["' + URI + 'n",["local"]]],"deleted":[],"profiles":[]}')
    assert c.get(("f", "global")) == 1 and c.get(("f", "local")) is None
    c.store(c.ticket(), [(("p", URI), 1), (("h", "x.test"), author)])
    c.apply("backfill_progress", "did:" + author)
    assert c.get(("p", URI)) is None and c.get(("h", "x.test")) is None


def test_a_follow_and_an_unfollow_in_one_batch_still_name_the_follower():
    """Counts unchanged (+1 -1), the Following feed changed: its dependent entries must go."""
    from services.ingest.changes import Changes

    follower = "did:plc:ffffffffffffffffffffffff"
    changes = Changes(follow_rows={f"at://{follower}/app.bsky.graph.follow/3new": {}},
                      deleted_follows={f"at://{follower}/app.bsky.graph.follow/3old"})
    c = cache()
    c.dependent(("following", follower), lambda: (["a page"], [("a", follower)]))
    [event] = read_changed_events([changes])
    c.apply("read_changed", "cache:read", orjson.dumps(event))
    assert follower in event["profiles"] and c.get(("following", follower)) is None


def test_a_request_waits_for_a_check_sent_after_it_arrived():
    barrier = Barrier()
    sent, release, answers = [], threading.Event(), []

    def run():
        sent.append(time.monotonic())
        release.wait(5)
        return True

    first = threading.Thread(target=lambda: answers.append(barrier.check(run)))
    first.start()
    while not sent:
        time.sleep(0.001)
    arrived = time.monotonic()               # the first check is in flight: these join the next
    late = [threading.Thread(target=lambda: answers.append(barrier.check(run))) for _ in range(5)]
    for thread in late:
        thread.start()
    time.sleep(0.05)
    release.set()
    for thread in [first, *late]:
        thread.join(5)
    assert answers == [True] * 6
    assert len(sent) == 2 and sent[1] > arrived  # one more check, sent after they arrived, for all five


# --------------------------------------------------------------------------- the race

def trend_of(session, uris: list[str]) -> str:
    """A rising hashtag trend supported by these posts, in this order, as the trends job leaves it;
    returns a B2B key that may read it."""
    from services.b2b import clients

    trend = session.execute(text("""INSERT INTO trends (kind, name, "window", current_count, previous_count, velocity)
                                    VALUES ('hashtag', 'cannabis', '24h', 40, 10, 3.0) RETURNING id""")).scalar()
    for rank, uri in enumerate(uris):
        session.execute(text("""INSERT INTO trend_sources (trend_id, post_id, relevance_score)
                                SELECT :trend, id, :score FROM posts WHERE uri = :uri"""),
                        {"trend": trend, "uri": uri, "score": 100 - rank})
    session.execute(text("""INSERT INTO intelligence_runs (job, finished_at, duration_ms, rows, runs)
                            VALUES ('trends', now(), 1, 1, 1)"""))
    _, key = clients.create(session, "race", "enterprise")
    session.commit()
    return key


class Writer(Network):
    """Applies each batch as the ingest worker does, snapshots the database, then publishes."""

    def __init__(self, session, redis_url: str):
        super().__init__(session)
        import redis

        self.redis = redis.Redis.from_url(redis_url)
        self.snapshots: list[dict] = []
        self.published = 0   # snapshots[:published] are announced on the stream
        self.committing = 0  # batches whose commit may have happened (snapshots follow)
        self.threads: list[str] = []  # posts whose direct replies each snapshot lists
        self.viewer = ""              # whose Following feed each snapshot lists

    def flush(self) -> None:
        self.seq += 1
        batch = {"conn": 1, "seq": self.seq, "prev": None, "events": self.pending}
        self.pending = []
        outcome = ingest_batch(self.session, batch, TAGS)
        assert outcome.verdict == "apply"
        events = collect_events(self.session, outcome.changes, CDN) + read_changed_events(outcome.changes)
        self.committing = len(self.snapshots) + 1
        self.session.commit()
        self.snapshots.append(snapshot(self.session, self.threads, self.viewer))
        self.session.commit()
        publish(self.redis, events)
        self.published = len(self.snapshots)


def snapshot(session, threads: list[str], viewer: str) -> dict:
    counts = {row.uri: (row.like_count, row.repost_count, row.reply_count) for row in session.execute(
        text("SELECT uri, like_count, repost_count, reply_count FROM posts"))}
    page = "SELECT uri FROM posts WHERE {} ORDER BY sort_at DESC, cid DESC LIMIT 20"
    replies = text("""WITH RECURSIVE down(uri) AS (SELECT uri FROM posts WHERE reply_parent_uri = :uri
                      UNION SELECT p.uri FROM down JOIN posts p ON p.reply_parent_uri = down.uri)
                      SELECT uri FROM down""")
    following = "author_did IN (SELECT following_did FROM follows WHERE follower_did = :viewer)"
    return {"counts": counts,
            "threads": {uri: sorted(session.execute(replies, {"uri": uri}).scalars()) for uri in threads},
            "following": list(session.execute(text(page.format(following)), {"viewer": viewer}).scalars()),
            "global": [row[0] for row in session.execute(text(page.format("has_cannabis_hashtag")))],
            "local": [row[0] for row in session.execute(text(page.format("is_cannect_user")))],
            "profiles": {row.did: (row.followers_count, row.following_count, row.posts_count, row.display_name)
                         for row in session.execute(text("SELECT * FROM profiles"))}}


def post_views_in(body) -> list[dict]:
    """Every post view in an answer (feeds, a post, a thread)."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            if "uri" in node and "likeCount" in node:
                found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    walk(body)
    return found


def check(kind: str, target: str, status: int, body, states: list[dict]) -> str | None:
    """None if the answer equals the database as of one of ``states``, else what is wrong."""
    if kind == "thread" and status == 200:
        shown = sorted(view["uri"] for view in post_views_in(body["thread"]["replies"]))
        if shown not in [state["threads"][target] for state in states]:
            return f"thread {target[-6:]}: replies {[uri[-6:] for uri in shown]} are no state's"
    if kind in ("global", "local", "following"):
        # A page is one state's list; a post deleted since (by a later state here) is left out
        # when the page is hydrated, as it is without the cache: never shown once deleted.
        if [post["uri"] for post in body["posts"]] not in [
                [uri for uri in page[kind] if uri in later["counts"]]
                for i, page in enumerate(states) for later in states[i:]]:
            return f"{kind} feed {[p['uri'][-6:] for p in body['posts']]} is no state's first page"
    if kind == "post" and status == 404:
        return None if any(target not in state["counts"] for state in states) else f"{target} missing"
    if kind == "b2b":  # each supporting post as of one of the states, as every post view
        if status != 200:
            return f"b2b trends: status {status}"
        shown = {post["uri"]: post["engagement"] for trend in body["trends"]["hashtag"] for post in trend["sources"]}
        for uri in target.split():
            if not any(shown.get(uri) == (sum(state["counts"][uri]) if uri in state["counts"] else None)
                       for state in states):
                return (f"b2b trends: {uri[-6:]} shown as {shown.get(uri)}, states "
                        f"{[sum(state['counts'].get(uri, ())) if uri in state['counts'] else None for state in states]}")
        return None
    if kind == "profile" and status == 404:
        return None if any(target not in state["profiles"] for state in states) else f"{target} missing"
    if kind == "profile":
        shown = (body["profile"]["followersCount"], body["profile"]["followingCount"], body["profile"]["postsCount"],
                 body["profile"]["displayName"])
        if shown not in [state["profiles"].get(target) for state in states]:
            return f"profile {target} shows {shown}, states {[s['profiles'].get(target) for s in states]}"
        return None
    if status != 200:
        return f"{kind} {target}: status {status}"
    for view in post_views_in(body):
        shown = (view["likeCount"], view["repostCount"], view["replyCount"])
        if shown not in [state["counts"].get(view["uri"]) for state in states]:
            return (f"{kind} {target}: {view['uri'][-8:]} shows {shown}, states "
                    f"{[state['counts'].get(view['uri']) for state in states]}")
    return None


def test_served_views_are_never_older_than_the_events_before_them(env, session, redis_url, tmp_path):
    rng = random.Random(12)
    net = Writer(session, redis_url)
    member, other = net.member("member"), net.member("other")
    fans = [did(f"fan{i}") for i in range(30)]
    at = BASE
    hot = [net.post(member if i % 2 else fans[i], f"grow day {i} #cannabis", at + timedelta(seconds=i))
           for i in range(8)]
    net.post(other, "hello from a member", at)
    net.threads, net.viewer = [uri for uri, _ in hot[:3]], other
    followed = [net.follow(other, fan, at) for fan in fans[:10]]
    doomed = [net.post(fans[20 + i], f"sleepy gummies {i} #cannabis", at) for i in range(4)]
    net.flush()
    trend_sources = hot[:4] + doomed  # deleted one by one during the race, liked all along
    b2b_key = trend_of(session, [uri for uri, _ in trend_sources])
    web = Web(env, tmp_path / "web.log", WEB_CONCURRENCY="2", READ_CACHE="true", RATE_LIMIT_IP="1000000/minute",
              RATE_LIMIT_USER="1000000/minute")
    signed_in = {"Authorization": f"Bearer {token_for(env, other)}"}
    stop, failures, served, kinds_served = threading.Event(), [], [0], {}
    requests = [("global", "", "/api/feed/global?limit=20"), ("local", "", "/api/feed/local?limit=20"),
                ("profile", member, f"/api/profile/{member}"), ("profile", fans[3], f"/api/profile/{fans[3]}"),
                ("tab", member, f"/api/profile/{member}/posts?limit=20")]
    requests += [("post", uri, f"/api/post/{uri}") for uri, _ in hot]
    requests += [("thread", uri, f"/api/post/{uri}/thread") for uri, _ in hot[:3]]
    requests += [("following", other, "/api/feed/following?limit=20")] * 3
    requests += [("b2b", " ".join(uri for uri, _ in trend_sources), "/api/v1/trends?kind=hashtag&sources=10")] * 3
    b2b_headers = {"Authorization": f"Bearer {b2b_key}"}

    def reader(seed: int):
        order = random.Random(seed)
        with httpx.Client(base_url=web.http, timeout=30) as client:
            while not stop.is_set():
                kind, target, url = order.choice(requests)
                before = net.published
                response = client.get(url, headers=signed_in if kind == "following" else
                                      b2b_headers if kind == "b2b" else {})
                after = net.committing
                while len(net.snapshots) < after:
                    time.sleep(0.001)
                try:
                    problem = check(kind, target, response.status_code, response.json(),
                                    net.snapshots[max(before - 1, 0):after])
                except Exception as exc:  # an answer of an unexpected shape
                    problem = f"{url}: {response.status_code} {exc!r} {response.text[:200]}"
                served[0] += 1
                kinds_served[kind] = kinds_served.get(kind, 0) + 1
                if problem:
                    failures.append(f"batches {before}..{after}: {problem}")

    readers = [threading.Thread(target=reader, args=(seed,)) for seed in range(4)]
    try:
        for thread in readers:
            thread.start()
        likes: list[tuple[str, str]] = []
        follows: list[str] = []
        deletable = []
        replies = hot[:3]  # replies go to these posts or to earlier replies: nested threads
        for step in range(80):
            at += timedelta(minutes=1)
            for _ in range(rng.randint(1, 6)):
                likes.append((net.like(rng.choice(fans), rng.choice(hot), at), ""))
            if doomed and rng.random() < 0.6:
                likes.append((net.like(rng.choice(fans), rng.choice(doomed), at), ""))
            if doomed and step % 16 == 15:
                net.delete(doomed.pop(0)[0])
            if likes and rng.random() < 0.5:
                net.delete(likes.pop(rng.randrange(len(likes)))[0])
            if rng.random() < 0.3:
                deletable.append(net.post(rng.choice(fans + [member]), f"step {step} #weed", at))
            if rng.random() < 0.25:
                replies.append(net.post(rng.choice(fans), f"reply {step} #420", at, reply_to=rng.choice(replies)))
            if len(replies) > 3 and rng.random() < 0.1:
                net.delete(replies.pop(rng.randrange(3, len(replies)))[0])
            if deletable and rng.random() < 0.2:
                net.delete(deletable.pop(rng.randrange(len(deletable)))[0])
            if rng.random() < 0.3:
                follows.append(net.follow(rng.choice(fans), member, at))
            if follows and rng.random() < 0.15:
                net.delete(follows.pop(rng.randrange(len(follows))))
            if rng.random() < 0.1:
                net.profile(member, f"Member {step}")
            if rng.random() < 0.15:
                followed.append(net.follow(other, rng.choice(fans), at))
            if followed and rng.random() < 0.1:
                net.delete(followed.pop(rng.randrange(len(followed))))
            net.flush()
            time.sleep(rng.random() * 0.05)
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in readers:
            thread.join(30)
        stats = []  # from both processes: new connections until one that served the readers answers
        while len(stats) < 50 and not any(stat["hits"] for stat in stats):
            stats.append(httpx.get(web.http + "/health/ws").json()["read_cache"])
        web.stop()
    assert not failures, f"{len(failures)} of {served[0]} answers older than an event before them:\n" + \
        "\n".join(failures[:10])
    assert served[0] > 100
    assert kinds_served["b2b"] > 10 and not doomed, kinds_served
    assert all(stat["enabled"] for stat in stats) and sum(stat["hits"] for stat in stats) > 0, (stats, web.log())


# --------------------------------------------------------------------------- the subscription drops

def test_a_dropped_subscription_turns_the_cache_off_until_it_reads_again(redis_url):
    from urllib.parse import urlparse

    from app.realtime import Hub

    parsed = urlparse(redis_url)
    proxy = Proxy((parsed.hostname, parsed.port or 6379))
    try:
        hub = Hub(f"redis://127.0.0.1:{proxy.port}{parsed.path}")
        c = ReadCache(CDN)
        hub.cache = c
        hub.start()
        c.store(c.ticket(), [(("p", URI), 1)])
        assert c.enabled and c.get(("p", URI)) == 1
        proxy.cut()
        deadline = time.monotonic() + 30
        while c.enabled and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not c.enabled and not hub.healthy and c.get(("p", URI)) is None
        proxy.restore()
        deadline = time.monotonic() + 30
        while not c.enabled and time.monotonic() < deadline:
            time.sleep(0.05)
        assert c.enabled and hub.healthy
    finally:
        proxy.close()


@pytest.fixture(autouse=True)
def _short(monkeypatch):
    """The hub's blocking read waits 5 s; nothing here needs to wait that long for an outage."""
    import app.realtime as hub_module

    monkeypatch.setattr(hub_module, "BLOCK_MS", 200)
