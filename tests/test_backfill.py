"""Member onboarding (services/backfill): a new member's follows and recent posts, merged with
the live stream exactly as docs/indexing-rules.md ("Backfilled records") says.

The outside peers are real local HTTP servers: a PLC directory (tests/fakes/identity.py), a
PDS and an AppView (tests/fakes/appview.py). The in-process tests drive the pages of a job
one by one (the queue's work, without its timing); the end-to-end test runs the real
listener, ingest and backfill workers over a live stream and compares with tests/model.py.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import orjson
import pytest
import redis as redis_lib
from sqlalchemy import text
from sqlalchemy.orm import Session

from cannect.config import DEFAULT_CANNABIS_TAGS, load_settings
from fakes.appview import FakeAtproto
from fakes.identity import FakePlc, did_document
from fakes.pds import make_cid, make_tid
from model import CommunityModel, invariant_violations
from services.backfill import PageSettings, pending_pages, request_member_backfill, run_page, start_job
from services.backfill.fetch import FetchSettings, TryLater, XrpcFetcher
from services.identity import IdentityResolver
from services.ingest import ingest_batch
from services.jetstream import Skip, parse_event
from services.members import add_member
from services.realtime import did_key, event_key
from harness import Client, System, Web, token_for
from snapshot import db_snapshot, diff

POST, FOLLOW, LIKE = "app.bsky.feed.post", "app.bsky.graph.follow", "app.bsky.feed.like"
BASE32 = "abcdefghijklmnopqrstuvwxyz234567"
TAGS = frozenset(DEFAULT_CANNABIS_TAGS)


def plc_did(name: str) -> str:
    """A valid did:plc made from a short name (letters only)."""
    return "did:plc:" + (name + "z" * 24)[:24]


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


class World:
    """PLC directory, PDS and AppView, the settings pointing at them, and helpers to fill them."""

    def __init__(self, engine, redis_url: str, **overrides):
        self.engine, self.redis_url = engine, redis_url
        self.plc, self.pds, self.appview = FakePlc(), FakeAtproto("fake-pds"), FakeAtproto("fake-appview")
        self.plc.start(), self.pds.start(), self.appview.start()
        values = dict(database_url=str(engine.url), redis_url=redis_url, plc_directory_url=self.plc.url,
                      backfill_appview_url=self.appview.url, backfill_page_size=2,
                      backfill_insecure_test_origins=f"{self.pds.url},{self.appview.url}",
                      backfill_max_retry_wait_seconds=1, identity_timeout_seconds=2)
        values.update(overrides)
        self.settings = load_settings(**values)
        self.redis = redis_lib.Redis.from_url(redis_url)
        self.fetcher = XrpcFetcher(FetchSettings.of(self.settings), self.redis)
        self.resolver = IdentityResolver(self.settings, self.redis)
        self.now = datetime.now(timezone.utc)
        self.clock = 0
        self.stream_seq = 0

    def close(self) -> None:
        self.fetcher.close(), self.resolver.close()
        self.plc.stop(), self.pds.stop(), self.appview.stop()

    @contextmanager
    def scope(self):
        with Session(self.engine) as session, session.begin():
            yield session

    def account(self, did: str) -> None:
        self.plc.publish(did, document=did_document(did, None, self.pds.url))
        self.pds.repos.setdefault(did, {})
        self.appview.repos.setdefault(did, {})

    def tid(self, moment: datetime) -> str:
        self.clock += 1
        return make_tid(us(moment), self.clock)

    def follow(self, member: str, subject: str, when: datetime | None = None) -> str:
        when = when or self.now - timedelta(days=30)
        record = {"$type": FOLLOW, "subject": subject, "createdAt": iso(when)}
        return self.pds.put(member, FOLLOW, self.tid(when), make_cid(record), record)

    def post(self, author: str, age: timedelta, counts=(0, 0, 0), text_: str = "hello", reply_to: str | None = None,
             ) -> str:
        when = self.now - age
        record = {"$type": POST, "text": text_, "createdAt": iso(when)}
        if reply_to:
            ref = {"uri": reply_to, "cid": make_cid({"uri": reply_to})}
            record["reply"] = {"root": ref, "parent": ref}
        rkey, cid = self.tid(when), make_cid(record)
        self.pds.put(author, POST, rkey, cid, record)
        return self.appview.put(author, POST, rkey, cid, record, counts)

    def page_settings(self) -> PageSettings:
        return PageSettings.of(self.settings)

    def start(self, job_id: int):
        with self.scope() as session:
            return start_job(session, job_id)

    def run(self, request):
        return run_page(self.scope, self.fetcher, self.resolver, self.page_settings(), request)

    def drain(self, queue: list) -> list:
        """Run pages until none is left to send; the outcomes, in order."""
        outcomes = []
        while queue:
            outcome = self.run(queue.pop(0))
            outcomes.append(outcome)
            queue += outcome.send
        return outcomes

    def stream(self, *frames: dict) -> None:
        """Apply frames as one live ingest batch (the stream's path)."""
        self.stream_seq += 1
        events = [parse_event(orjson.dumps(frame)) for frame in frames]
        assert not any(isinstance(e, Skip) for e in events), events
        with self.scope() as session:
            ingest_batch(session, {"conn": 1, "seq": self.stream_seq, "prev": None, "events": events}, TAGS)


def commit_frame(did: str, time_us: int, collection: str, rkey: str, operation: str = "create",
                 record: dict | None = None) -> dict:
    commit = {"rev": "x", "operation": operation, "collection": collection, "rkey": rkey}
    if record is not None:
        commit.update(record=record, cid=make_cid(record))
    return {"did": did, "time_us": time_us, "kind": "commit", "commit": commit}


def split(uri: str) -> tuple[str, str, str]:
    did, collection, rkey = uri.removeprefix("at://").split("/")
    return did, collection, rkey


def served(fake: FakeAtproto, uri: str, counts: bool = True) -> dict:
    """The record ``uri`` as a backfill fetched it (for the model)."""
    did, collection, rkey = split(uri)
    cid, record, numbers = fake.repos[did][collection][rkey]
    return {"did": did, "collection": collection, "rkey": rkey, "cid": cid, "record": record,
            "counts": numbers if counts else None}


@pytest.fixture
def world(engine, redis_url):
    world = World(engine, redis_url)
    yield world
    world.close()


def member_job(world: World, session, did: str) -> int:
    add_member(session, did)
    session.commit()
    return session.scalar(text("SELECT id FROM backfill_jobs WHERE subject_did = :d AND kind = 'member'"), {"d": did})


def assert_model(session, model: CommunityModel) -> None:
    session.rollback()
    actual = db_snapshot(session)
    baselined = set(session.execute(text("SELECT uri FROM posts WHERE counts_as_of_us IS NOT NULL")).scalars())
    assert_invariants_except(actual, baselined)
    problems = diff(model.snapshot(), actual)
    assert not problems, problems


def assert_invariants_except(snapshot: dict, baselined: set[str]) -> None:
    problems = invariant_violations(snapshot, baselined=baselined)
    assert not problems, problems


def test_member_backfill_pages_through_follows_and_recent_posts(world, session):
    member, alice, bob, gone = plc_did("member"), plc_did("alice"), plc_did("bob"), plc_did("gone")
    for did in (member, alice, bob):
        world.account(did)
    world.plc.publish(gone, document=did_document(gone, None, world.pds.url))  # no repo anywhere
    follows = [world.follow(member, did) for did in (alice, bob, gone)]
    own = world.post(member, timedelta(hours=1), counts=(1, 0, 0))
    alice_posts = [world.post(alice, timedelta(hours=h), counts=(h, h % 2, 0)) for h in range(1, 6)]
    bob_recent = world.post(bob, timedelta(days=1), counts=(4, 2, 1))
    world.post(bob, timedelta(days=8))  # outside the 7-day window
    world.settings = load_settings(**{**world.settings.model_dump(), "backfill_max_posts_per_account": 3})

    job = member_job(world, session, member)
    outcomes = world.drain(world.start(job))

    row = session.execute(text("SELECT * FROM backfill_jobs WHERE id = :id"), {"id": job}).one()
    assert (row.status, row.done, row.total) == ("done", 5, 5)  # follows, own posts, 3 accounts
    assert row.error == "1 of 5 parts could not be fetched"  # the account with no repository
    assert row.records == 3 + 1 + 3 + 1
    stored = set(session.execute(text("SELECT uri FROM posts")).scalars())
    assert stored == {own, bob_recent, *alice_posts[:3]}  # newest first, 3 at most, 7 days
    assert set(session.execute(text("SELECT uri FROM follows")).scalars()) == set(follows)
    counts = session.execute(text("SELECT like_count, repost_count, reply_count FROM posts WHERE uri = :u"),
                             {"u": bob_recent}).one()
    assert tuple(counts) == (4, 2, 1)  # the AppView's, as of the fetch
    follow_pages = world.pds.calls("com.atproto.repo.listRecords")
    assert len(follow_pages) == 2 and "cursor" not in follow_pages[0] and follow_pages[1]["cursor"]
    assert len(world.appview.calls("app.bsky.feed.getAuthorFeed")) >= 5  # paginated by 2
    progress = outcomes[-1].progress_event
    assert progress["type"] == "backfill_progress" and progress["member"] == member
    assert progress["backfill"]["status"] == "done" and event_key(progress) == did_key(member)

    model = CommunityModel([(member, None)], DEFAULT_CANNABIS_TAGS)
    model.apply_backfill([served(world.pds, uri, counts=False) for uri in follows], us(world.now))
    model.apply_backfill([served(world.appview, uri) for uri in (own, *alice_posts[:3], bob_recent)], us(world.now))
    assert_model(session, model)


def test_stream_delete_wins_and_a_like_counts_once(world, session):
    member, alice = plc_did("member"), plc_did("alice")
    world.account(member), world.account(alice)
    follow = world.follow(member, alice)
    deleted = world.post(alice, timedelta(hours=2), counts=(5, 1, 0))
    kept = world.post(alice, timedelta(hours=1), counts=(2, 0, 0))
    before = us(datetime.now(timezone.utc)) - 1_000_000
    model = CommunityModel([(member, None)], DEFAULT_CANNABIS_TAGS)

    # The stream deletes a post the (lagging) AppView still serves, before the backfill runs.
    delete = commit_frame(alice, before, POST, split(deleted)[2], "delete")
    world.stream(delete)
    model.apply_line(orjson.dumps(delete))
    job = member_job(world, session, member)
    world.drain(world.start(job))
    fetched = session.scalar(text("SELECT counts_as_of_us FROM posts WHERE uri = :u"), {"u": kept})
    model.apply_backfill([served(world.pds, follow, counts=False)], fetched)
    model.apply_backfill([served(world.appview, kept), served(world.appview, deleted)], fetched)
    assert session.scalar(text("SELECT count(*) FROM posts WHERE uri = :u"), {"u": deleted}) == 0

    # A like the AppView counted already (it happened before the fetch) arrives late on the
    # stream: stored, not counted again. A like after the fetch counts.
    liker = plc_did("liker")
    subject = {"uri": kept, "cid": served(world.appview, kept)["cid"]}
    like_before = commit_frame(liker, fetched - 500_000, LIKE, "3kbefore2222a", record={
        "$type": LIKE, "subject": subject, "createdAt": iso(world.now)})
    like_after = commit_frame(liker, fetched + 1_000_000, LIKE, "3kafter22222a", record={
        "$type": LIKE, "subject": subject, "createdAt": iso(world.now)})
    for frame in (like_before, like_after):
        world.stream(frame)
        model.apply_line(orjson.dumps(frame))
    session.rollback()
    assert session.scalar(text("SELECT like_count FROM posts WHERE uri = :u"), {"u": kept}) == 3

    # A second backfill bringing the same post (the member follows alice anew) stores nothing twice.
    with world.scope() as s:
        again = request_member_backfill(s, member)
    world.drain(world.start(again))
    session.rollback()
    assert session.scalar(text("SELECT count(*) FROM posts WHERE uri = :u"), {"u": kept}) == 1
    assert session.scalar(text("SELECT like_count FROM posts WHERE uri = :u"), {"u": kept}) == 3

    # Both likes undone after the fetch: each was in the count once, each leaves it once.
    for n, rkey in enumerate(("3kbefore2222a", "3kafter22222a")):
        undo = commit_frame(liker, fetched + 2_000_000 + n, LIKE, rkey, "delete")
        world.stream(undo)
        model.apply_line(orjson.dumps(undo))
    session.rollback()
    assert session.scalar(text("SELECT like_count FROM posts WHERE uri = :u"), {"u": kept}) == 1
    assert_model(session, model)


def test_a_follow_deleted_on_the_stream_is_not_brought_back(world, session):
    member, alice, bob = plc_did("member"), plc_did("alice"), plc_did("bob")
    for did in (member, alice, bob):
        world.account(did)
    kept, unfollowed = world.follow(member, alice), world.follow(member, bob)
    world.post(bob, timedelta(hours=1))
    job = member_job(world, session, member)
    world.stream(commit_frame(member, us(datetime.now(timezone.utc)), FOLLOW, split(unfollowed)[2], "delete"))
    world.drain(world.start(job))
    assert set(session.execute(text("SELECT uri FROM follows")).scalars()) == {kept}
    assert session.scalar(text("SELECT count(*) FROM posts WHERE author_did = :d"), {"d": bob}) == 0


def test_posts_from_the_pds_start_from_their_stored_rows(engine, redis_url, session):
    world = World(engine, redis_url, backfill_posts_source="pds")
    try:
        member, alice = plc_did("member"), plc_did("alice")
        world.account(member), world.account(alice)
        follow = world.follow(member, alice)
        posts = [world.post(alice, timedelta(hours=h), counts=(7, 7, 7)) for h in (1, 2, 3)]
        world.drain(world.start(member_job(world, session, member)))
        rows = session.execute(text("SELECT like_count, repost_count, reply_count, counts_as_of_us FROM posts")).all()
        assert [tuple(r) for r in rows] == [(0, 0, 0, None)] * 3  # listRecords has no counts
        assert world.appview.requests == []
        model = CommunityModel([(member, None)], DEFAULT_CANNABIS_TAGS)
        model.apply_backfill([served(world.pds, follow, counts=False)], us(world.now))
        model.apply_backfill([served(world.pds, uri, counts=False) for uri in posts], us(world.now))
        assert_model(session, model)
    finally:
        world.close()


def test_rate_limits_and_server_errors_are_retried_within_the_host_limit(engine, redis_url, session):
    world = World(engine, redis_url, backfill_host_concurrency=2, backfill_page_size=100)
    try:
        member = plc_did("member")
        world.account(member)
        accounts = [plc_did(f"acct{BASE32[i]}") for i in range(10)]
        for did in accounts:
            world.account(did)
            world.follow(member, did)
            world.post(did, timedelta(hours=1), counts=(1, 0, 0))
        world.appview.delay = 0.05
        world.appview.fail_next(2, 429, retry_after="0")
        world.appview.fail_next(1, 503)
        job = member_job(world, session, member)
        queue = world.start(job)
        follows = [r for r in queue if r.source == "follows"]
        queue = [r for r in queue if r.source != "follows"] + world.run(follows[0]).send
        with ThreadPoolExecutor(8) as pool:  # eight workers' threads at once, one semaphore per host
            while queue:
                outcomes = list(pool.map(world.run, queue))
                queue = [request for outcome in outcomes for request in outcome.send]
        assert world.appview.max_in_flight <= 2
        feed_calls = len(world.appview.calls("app.bsky.feed.getAuthorFeed"))
        assert feed_calls == 11 + 3  # one page per account, plus the three failed answers
        assert session.scalar(text("SELECT count(*) FROM posts")) == 10  # the member itself posted nothing
        assert session.scalar(text("SELECT status FROM backfill_jobs WHERE id = :id"), {"id": job}) == "done"

        # A Retry-After longer than the worker may wait is handed back to the queue.
        world.appview.fail_next(1, 429, retry_after="120")
        with world.scope() as s:
            again = request_member_backfill(s, member)
        posts = [r for r in world.start(again) if r.source == "posts"]
        with pytest.raises(TryLater) as later:
            world.run(posts[0])
        assert later.value.seconds == 120
    finally:
        world.close()


def test_a_job_resumes_from_its_last_committed_page(world, session):
    member = plc_did("member")
    world.account(member)
    others = [plc_did(f"other{c}") for c in "abcde"]
    for did in others:
        world.account(did)
        world.follow(member, did)
        for hours in (1, 2, 3):
            world.post(did, timedelta(hours=hours))
    job = member_job(world, session, member)
    queue = world.start(job)
    done_first = world.run(queue[0])  # the first follows page, committed
    assert done_first.applied
    # The worker dies: every message in flight is lost. Pending pages say where to pick up.
    with world.scope() as s:
        resumed = pending_pages(s, job)
    assert {(r.source, r.page) for r in resumed} >= {("follows", 2)}
    # A message redelivered for a page already committed writes nothing, and sends again only
    # what that page's commit sent (its successor, the accounts it added), never later pages.
    repeated = world.run(queue[0])
    assert not repeated.applied
    assert {(r.source, r.page) for r in repeated.send} == {("follows", 2), ("posts", 1)}
    world.drain(resumed)
    row = session.execute(text("SELECT status, done, total FROM backfill_jobs WHERE id = :id"), {"id": job}).one()
    assert tuple(row) == ("done", 7, 7)
    assert session.scalar(text("SELECT count(*) FROM posts")) == 15
    assert session.scalar(text("SELECT count(*) FROM follows")) == 5
    assert session.scalar(text("SELECT sum(pages) FROM backfill_chunks WHERE job_id = :id"), {"id": job}) == \
        session.scalar(text("SELECT sum(jsonb_array_length(applied)) FROM backfill_chunks WHERE job_id = :id"),
                       {"id": job})


def test_sign_in_starts_the_backfill_and_the_profile_shows_its_progress(make_api, fake_pds, engine, redis_url):
    member = plc_did("signin")
    fake_pds.add_account("signin.test", "secret-password", did=member)
    api = make_api()
    answer = api.post("/api/auth/login", json={"identifier": "signin.test", "password": "secret-password"})
    assert answer.status_code == 200, answer.json
    token = answer.json["accessToken"]
    profile = api.get(f"/api/profile/{member}", headers={"Authorization": f"Bearer {token}"}).json
    assert profile["backfill"]["status"] == "queued" and profile["backfill"]["kind"] == "member"
    assert "backfill" not in api.get(f"/api/profile/{member}").json  # only the member sees it
    queued = redis_lib.Redis.from_url(redis_url).lrange("dramatiq:backfill", 0, -1)
    assert len(queued) == 1  # backfill.start, sent after the commit

    auth = {"Authorization": f"Bearer {token}"}
    assert api.get("/api/feed/following", headers=auth).json["posts"] == []  # nothing known yet
    world = World(engine, redis_url)
    try:
        friend = plc_did("friend")
        world.account(member), world.account(friend)
        world.follow(member, friend)
        world.post(member, timedelta(hours=1))
        friends_post = world.post(friend, timedelta(hours=2), counts=(3, 1, 0))
        with world.scope() as s:
            job = s.scalar(text("SELECT id FROM backfill_jobs WHERE subject_did = :d"), {"d": member})
        world.drain(world.start(job))
    finally:
        world.close()
    progress = api.get(f"/api/profile/{member}", headers=auth).json["backfill"]
    assert (progress["status"], progress["done"], progress["total"], progress["records"]) == ("done", 3, 3, 3)
    feed = api.get("/api/feed/following", headers=auth).json["posts"]
    assert [(p["uri"], p["likeCount"], p["repostCount"]) for p in feed] == [(friends_post, 3, 1)]
    # Signing in again does not onboard the member a second time.
    api.post("/api/auth/login", json={"identifier": "signin.test", "password": "secret-password"})
    with Session(engine) as s:
        assert s.scalar(text("SELECT count(*) FROM backfill_jobs")) == 1


# -- end to end: real listener, ingest and backfill workers over a live stream ------------------

class LiveStream:
    """A capture file the replay server tails: each frame is written at once, stamped now."""

    def __init__(self, path):
        self.file = open(path, "ab")
        self.lines: list[tuple[int, bytes]] = []
        self.last = 0

    def emit(self, frame: dict) -> int:
        frame["time_us"] = self.last = max(time.time_ns() // 1000, self.last + 1)
        line = orjson.dumps(frame)
        self.file.write(line + b"\n")
        self.file.flush()
        self.lines.append((frame["time_us"], line))
        return frame["time_us"]


class Network:
    """The accounts' repositories (fake PDS and AppView) and the stream, kept in step."""

    def __init__(self, pds: FakeAtproto, appview: FakeAtproto, stream: LiveStream, seed: int):
        import random

        self.pds, self.appview, self.stream, self.random = pds, appview, stream, random.Random(seed)
        self.posts: list[str] = []
        self.likes: list[tuple[str, str]] = []  # (liker, rkey)
        self.clock = 0

    def tid(self) -> str:
        self.clock += 1
        return make_tid(time.time_ns() // 1000, self.clock)

    def post(self, author: str, age: timedelta | None = None, counts=(0, 0, 0)) -> str:
        """A post: already there (``age``, only in the repositories) or made now (on the stream too)."""
        when = datetime.now(timezone.utc) - (age or timedelta(0))
        record = {"$type": POST, "text": f"post {self.clock}", "createdAt": iso(when)}
        rkey = make_tid(us(when), self.clock + 1) if age else self.tid()
        self.clock += 1
        self.pds.put(author, POST, rkey, make_cid(record), record)
        uri = self.appview.put(author, POST, rkey, make_cid(record), record, counts)
        if age is None:
            self.stream.emit(commit_frame(author, 0, POST, rkey, record=record))
        self.posts.append(uri)
        return uri

    def follow(self, follower: str, subject: str, live: bool) -> str:
        record = {"$type": FOLLOW, "subject": subject, "createdAt": iso(datetime.now(timezone.utc))}
        rkey = self.tid()
        uri = self.pds.put(follower, FOLLOW, rkey, make_cid(record), record)
        if live:
            self.stream.emit(commit_frame(follower, 0, FOLLOW, rkey, record=record))
        return uri

    def unfollow(self, uri: str) -> None:
        did, collection, rkey = split(uri)
        self.pds.delete(did, collection, rkey)
        self.stream.emit(commit_frame(did, 0, collection, rkey, "delete"))

    def like(self, liker: str) -> None:
        uri = self.random.choice(self.posts)
        record = {"$type": LIKE, "subject": {"uri": uri, "cid": served(self.appview, uri)["cid"]
                                             if split(uri)[2] in self.appview.repos[split(uri)[0]].get(POST, {})
                                             else make_cid({"gone": uri})},
                  "createdAt": iso(datetime.now(timezone.utc))}
        rkey = self.tid()
        self.likes.append((liker, rkey))
        self.stream.emit(commit_frame(liker, 0, LIKE, rkey, record=record))

    def unlike(self) -> None:
        if self.likes:
            liker, rkey = self.likes.pop(self.random.randrange(len(self.likes)))
            self.stream.emit(commit_frame(liker, 0, LIKE, rkey, "delete"))

    def delete_post(self, stale: bool) -> None:
        uri = self.posts.pop(self.random.randrange(len(self.posts)))
        did, _, rkey = split(uri)
        if not stale:  # else a lagging AppView (and PDS list) still serves it
            self.pds.delete(did, POST, rkey)
            self.appview.delete(did, POST, rkey)
        self.stream.emit(commit_frame(did, 0, POST, rkey, "delete"))

    def step(self, authors: list[str], liker: str) -> None:
        roll = self.random.random()
        if roll < 0.4:
            self.post(self.random.choice(authors))
        elif roll < 0.75:
            self.like(liker)
        elif roll < 0.85:
            self.unlike()
        else:
            self.delete_post(stale=self.random.random() < 0.5)


def _backfill_settled(system: System, db_url: str) -> bool:
    import psycopg

    from services.status import queue_depths

    depths = queue_depths(redis_lib.Redis.from_url(system.redis_url))["backfill"]
    with psycopg.connect(db_url) as conn:
        open_jobs = conn.execute(
            "SELECT count(*) FROM backfill_jobs WHERE status IN ('queued', 'running')").fetchone()[0]
    return open_jobs == 0 and depths["pending"] == 0


def _model_of_the_race(session, stream: LiveStream, member: str, joined_at: int, pds: FakeAtproto,
                       appview: FakeAtproto) -> CommunityModel:
    """The model fed what really happened: stream events in order, the member joining, and each
    backfilled page (what the fakes served it) at the point of the stream where it was applied."""
    timeline = [((t, 0, 0), ("event", line)) for t, line in stream.lines]
    for account, source, applied in session.execute(text("SELECT account_did, source, applied FROM backfill_chunks")):
        fake, path = (pds, "/xrpc/com.atproto.repo.listRecords") if source == "follows" \
            else (appview, "/xrpc/app.bsky.feed.getAuthorFeed")
        for entry in applied:
            answers = [a for a in fake.answers if a[1] == path and a[0] >= entry["fetchedUs"]
                       and account in (a[2].get("repo"), a[2].get("actor"))]
            if answers:  # else the page answered nothing usable (the account is gone)
                first = min(answers, key=lambda a: a[0])
                timeline.append(((entry["streamUs"], 1, entry["appliedUs"]), ("page", (first[3], entry["fetchedUs"]))))
    timeline.sort(key=lambda item: item[0])
    model = CommunityModel([], DEFAULT_CANNABIS_TAGS)
    joined = False
    for (t, kind, _), (what, payload) in timeline:
        if not joined and (kind == 1 or t >= joined_at):
            model.add_member(member)  # no event before this point depended on the membership
            joined = True
        if what == "event":
            model.apply_line(payload)
        else:
            model.apply_backfill(*payload)
    return model


def test_a_member_signing_in_mid_stream_races_the_backfill_and_the_index_equals_the_model(env, tmp_path, session):
    import subprocess
    import sys

    member, alice, bob, carol, liker = (plc_did(n) for n in ("member", "alice", "bob", "carol", "liker"))
    plc, pds, appview = FakePlc(), FakeAtproto("fake-pds"), FakeAtproto("fake-appview", delay=0.02)
    plc.start(), pds.start(), appview.start()
    capture = tmp_path / "live.jsonl"
    stream = LiveStream(capture)
    net = Network(pds, appview, stream, seed=7)
    system = System(env, tmp_path)
    try:
        for did in (member, alice, bob, carol):
            plc.publish(did, document=did_document(did, None, pds.url))
            pds.repos[did], appview.repos[did] = {}, {}
        for author in (alice, bob, carol, member):  # the past: only a backfill can see it
            for hours in range(1, 9):
                net.post(author, timedelta(hours=hours, minutes=net.random.randrange(60)),
                         counts=(net.random.randrange(9), net.random.randrange(3), net.random.randrange(2)))
        following_bob = net.follow(member, bob, live=False)
        net.follow(member, alice, live=False)
        stream.emit({"did": liker, "kind": "identity", "identity": {"did": liker, "handle": "liker.test"}})

        system.env.update(WORKER_HEARTBEAT_TIMEOUT_MS="3000", INGEST_BATCH_MS="50", BACKFILL_PAGE_SIZE="3",
                          BACKFILL_APPVIEW_URL=appview.url, BACKFILL_INSECURE_TEST_ORIGINS=f"{pds.url},{appview.url}",
                          BACKFILL_MAX_RETRY_WAIT_SECONDS="1")
        system.start_replay(capture)
        system.env["PLC_DIRECTORY_URL"] = plc.url
        web = Web(system.env, tmp_path / "web.log")
        socket = Client(web.url)
        socket.auth(token_for(env, member))  # the member's app, open while they join
        system.start_worker(threads=2)
        backfill_worker = ["worker", "--queues", "backfill", "--processes", "1", "--threads", "8"]
        system.start("worker-backfill", *backfill_worker)
        system.start_listener()
        appview.fail_next(2, 429, retry_after="0")
        appview.fail_next(1, 502)

        for _ in range(40):  # the stream before the member signs in
            net.step([alice, bob, carol], liker)
            time.sleep(0.02)
        # The member signs in while the stream flows on (none of their own records meanwhile).
        adder = subprocess.Popen([sys.executable, "-m", "cannect.cli", "members", "add", member], env=system.env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        while adder.poll() is None:
            net.step([alice, bob, carol], liker)
            time.sleep(0.02)
        assert adder.returncode == 0, adder.stdout.read()
        joined_at = stream.last + 1
        for step in range(160):  # the stream while the backfill runs
            net.step([alice, bob, carol, member], liker)
            if step == 20:
                net.follow(member, carol, live=True)  # an account nobody covered: its own job
            if step == 50:
                system.kill("worker-backfill")  # dies with pages in flight
            if step == 70:
                system.start("worker-backfill-2", *backfill_worker)
            if step == 90:
                net.unfollow(following_bob)
            time.sleep(0.02)
        system.wait_until_applied(stream.last, timeout=120)
        deadline = time.monotonic() + 120
        while not _backfill_settled(system, system.db_url):
            assert time.monotonic() < deadline, system.log("worker-backfill-2")
            time.sleep(0.2)
        system.wait_until_applied(stream.last, timeout=60)

        session.rollback()
        jobs = session.execute(text("SELECT kind, status, done, total FROM backfill_jobs ORDER BY id")).all()
        assert [(kind, status) for kind, status, _, _ in jobs][0] == ("member", "done")
        assert all(status == "done" and done == total for _, status, done, total in jobs)
        model = _model_of_the_race(session, stream, member, joined_at, pds, appview)
        assert_model(session, model)
        backfilled = session.scalar(text("SELECT count(*) FROM posts WHERE counts_as_of_us IS NOT NULL"))
        assert backfilled >= 8  # the member's own past, at least, came from the backfill
        assert len(appview.answers) < len(appview.requests)  # the 429s and the 502 were retried

        socket.ws.settimeout(3)
        progress = []
        try:
            while True:
                message = socket.recv()
                if message["type"] == "backfill_progress":
                    progress.append(message["backfill"])
        except Exception:  # nothing more within the timeout
            pass
        member_job = [p for p in progress if p["kind"] == "member"]
        assert member_job and member_job[-1]["status"] == "done"
        assert [p["done"] for p in member_job] == sorted(p["done"] for p in member_job)  # it only moves on
        assert {p["kind"] for p in progress} == {"member", "account"}  # carol's job reports to its member too
        socket.close()
    finally:
        if "web" in locals():
            web.stop()
        system.stop_all()
        plc.stop(), pds.stop(), appview.stop()


def test_following_an_account_nobody_covered_from_the_app_backfills_its_posts(make_api, fake_pds, engine,
                                                                             redis_url):
    member, covered, fresh = plc_did("signin"), plc_did("covered"), plc_did("fresh")
    fake_pds.add_account("signin.test", "secret-password", did=member)
    api = make_api()
    token = api.post("/api/auth/login", json={"identifier": "signin.test",
                                              "password": "secret-password"}).json["accessToken"]
    auth = {"Authorization": f"Bearer {token}"}
    assert api.post("/api/follow", json={"did": fresh}, headers=auth).status_code == 200
    assert api.post("/api/follow", json={"did": fresh}, headers=auth).status_code == 200  # already: nothing new
    with Session(engine) as s:
        s.execute(text("INSERT INTO follows (uri, follower_did, following_did, created_at) "
                       "VALUES ('at://x/app.bsky.graph.follow/1', :m, :c, now())"), {"m": member, "c": covered})
        s.commit()
    assert api.post("/api/follow", json={"did": covered}, headers=auth).status_code == 200  # a member follows it
    with Session(engine) as s:
        jobs = s.execute(text("SELECT id, kind, subject_did, params FROM backfill_jobs ORDER BY id")).all()
    assert [(job.kind, job.subject_did) for job in jobs] == [("member", member), ("account", fresh)]
    assert jobs[1].params == {"member": member}  # the member sees its progress
    queued = redis_lib.Redis.from_url(redis_url).lrange("dramatiq:backfill", 0, -1)
    assert len(queued) == 2  # both started after their commits

    world = World(engine, redis_url)
    try:
        world.account(fresh)
        recent = world.post(fresh, timedelta(hours=3), counts=(2, 0, 1))
        outcomes = world.drain(world.start(jobs[1].id))
    finally:
        world.close()
    with Session(engine) as s:
        assert s.scalar(text("SELECT reply_count FROM posts WHERE uri = :u"), {"u": recent}) == 1
    assert outcomes[-1].progress_event["member"] == member
