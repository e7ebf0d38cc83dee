"""Handles are verified both ways before the index shows them (services/identity).

Against a real local PLC directory, DNS server and HTTPS handle hosts (tests/fakes/identity.py),
real PostgreSQL and Redis. The resolver runs unchanged: only its endpoints point at the fakes.
"""

from __future__ import annotations

from contextlib import contextmanager

import dramatiq
import orjson
import pytest
import redis as redis_lib
from sqlalchemy import text
from sqlalchemy.orm import Session

from cannect.config import Settings, get_settings
from fakes.identity import IdentityWorld, did_document
from services import db
from services.identity import IdentityResolver, Unreachable, requests, resolve_and_store
from services.identity.guard import check_addresses
from services.identity.store import due_for_resolution
from services.members import add_member

from conftest import JWT_SECRET

VICTIM = "did:plc:" + "v" * 24
ATTACKER = "did:plc:" + "x" * 24
ALICE = "did:plc:" + "a" * 24
BOB = "did:plc:" + "b" * 24
CAROL = "did:plc:" + "c" * 24
WEB_DID = "did:web:web.example.test"


@pytest.fixture
def world():
    with IdentityWorld() as world:
        yield world


@pytest.fixture
def redis(redis_url):
    return redis_lib.Redis.from_url(redis_url)


def _settings(world: IdentityWorld, redis_url: str, allow_private: bool = True, **extra) -> Settings:
    values = {name.lower(): value for name, value in world.environment(allow_private).items()}
    values.update(extra)
    return Settings(database_url="postgresql://unused/unused", redis_url=redis_url, **values)


@pytest.fixture
def make_resolver(world, redis_url, redis):
    made = []

    def make(allow_private: bool = True, cache: bool = True, **extra) -> IdentityResolver:
        resolver = IdentityResolver(_settings(world, redis_url, allow_private, **extra), redis if cache else None)
        made.append(resolver)
        return resolver

    yield make
    for resolver in made:
        resolver.close()


@pytest.fixture
def resolver(make_resolver):
    return make_resolver()


@pytest.fixture
def scope(engine):
    @contextmanager
    def scope():
        with Session(engine) as session, session.begin():
            yield session

    return scope


def _profiles(session, *dids, handles: dict | None = None) -> None:
    for did in dids:
        session.execute(text("INSERT INTO profiles (did, handle) VALUES (:did, :handle)"),
                        {"did": did, "handle": (handles or {}).get(did)})
    session.commit()


def _handle(session, did):
    session.rollback()
    return session.execute(text("SELECT handle FROM profiles WHERE did = :did"), {"did": did}).scalar()


def _checked(session, did):
    session.rollback()
    return session.execute(text("SELECT handle_checked_at FROM profiles WHERE did = :did"), {"did": did}).scalar()


# -- verification ---------------------------------------------------------------------------


def test_a_handle_verified_by_dns_is_stored(world, resolver, scope, session):
    world.account(ALICE, "Alice.Test", method="dns")
    _profiles(session, ALICE)
    outcome = resolve_and_store(scope, resolver, ALICE)
    assert outcome.verdict.handle == "alice.test" and outcome.verdict.reason == "verified"
    assert _handle(session, ALICE) == "alice.test"
    assert _checked(session, ALICE) is not None
    assert ("_atproto.alice.test", "TXT") in world.dns.queries
    assert world.web.requests == []  # DNS answered: no HTTPS needed


def test_a_handle_verified_by_https_well_known_is_stored(world, resolver, scope, session):
    world.account(BOB, "bob.test", method="https")
    _profiles(session, BOB)
    assert resolve_and_store(scope, resolver, BOB).verdict.handle == "bob.test"
    assert _handle(session, BOB) == "bob.test"
    assert world.web.requests == [("bob.test", "/.well-known/atproto-did")]


def test_a_did_web_document_comes_from_its_host(world, resolver, scope, session):
    world.dns.host("web.example.test", "127.0.0.1")
    world.web.route("web.example.test", "/.well-known/did.json", body=orjson.dumps(did_document(WEB_DID, "carol.test")))
    world.point("carol.test", WEB_DID, method="https")
    _profiles(session, WEB_DID)
    assert resolve_and_store(scope, resolver, WEB_DID).verdict.handle == "carol.test"
    assert _handle(session, WEB_DID) == "carol.test"
    # a document that is not the DID's own is worth nothing
    world.web.route("web.example.test", "/.well-known/did.json", body=orjson.dumps(did_document(ALICE, "carol.test")))
    assert resolve_and_store(scope, resolver, WEB_DID, fresh=True).verdict.handle is None
    assert _handle(session, WEB_DID) is None


def test_claiming_another_accounts_handle_gets_nothing(world, resolver, scope, session, make_api):
    """The hijack: the attacker's document names the victim's handle, which names the victim."""
    world.account(VICTIM, "victim.test")
    world.plc.publish(ATTACKER, "victim.test")
    _profiles(session, VICTIM, ATTACKER)
    resolve_and_store(scope, resolver, VICTIM)
    verdict = resolve_and_store(scope, resolver, ATTACKER).verdict
    assert verdict.handle is None and verdict.claimed == "victim.test"
    assert verdict.reason == f"victim.test names {VICTIM}"
    assert _handle(session, VICTIM) == "victim.test" and _handle(session, ATTACKER) is None
    api = make_api()
    assert api.get("/api/profile/victim.test").get_json()["profile"]["did"] == VICTIM
    assert api.get(f"/api/profile/{ATTACKER}").get_json()["profile"]["handle"] is None


def test_a_document_naming_a_handle_that_names_nobody_clears_the_stored_handle(world, resolver, scope, session):
    world.plc.publish(ALICE, "gone.test")  # no DNS record, no host: the handle names no DID
    _profiles(session, ALICE, handles={ALICE: "gone.test"})
    verdict = resolve_and_store(scope, resolver, ALICE).verdict
    assert verdict.handle is None and verdict.reason == "gone.test names no DID"
    assert _handle(session, ALICE) is None


def test_a_handle_pointing_at_a_did_whose_document_names_another_handle_is_not_taken(world, resolver, scope, session):
    world.point("shared.test", ALICE)
    world.plc.publish(ALICE, "alice.test")  # the document names something else, which names nobody
    _profiles(session, ALICE)
    assert resolve_and_store(scope, resolver, ALICE).verdict.handle is None
    assert _handle(session, ALICE) is None


def test_a_handle_that_moves_is_released_by_its_old_owner(world, resolver, scope, session):
    world.account(ALICE, "moving.test")
    _profiles(session, ALICE, BOB)
    resolve_and_store(scope, resolver, ALICE)
    world.account(BOB, "moving.test")      # the handle now names Bob, whose document names it
    outcome = resolve_and_store(scope, resolver, BOB, fresh=True)
    assert outcome.released == [ALICE]      # to be resolved again by the caller
    assert _handle(session, BOB) == "moving.test" and _handle(session, ALICE) is None


def test_several_different_dids_in_dns_name_nobody(world, resolver, scope, session):
    world.plc.publish(ALICE, "twice.test")
    world.dns.txt("_atproto.twice.test", f"did={ALICE}", f"did={BOB}")
    _profiles(session, ALICE)
    assert resolve_and_store(scope, resolver, ALICE).verdict.handle is None


def test_accounts_without_a_profile_are_not_resolved(world, resolver, scope):
    world.account(CAROL, "carol.test")
    outcome = resolve_and_store(scope, resolver, CAROL)
    assert outcome.verdict is None and world.plc.requests == []


def test_bad_documents_verify_nothing(world, resolver, scope, session):
    _profiles(session, ALICE, handles={ALICE: "alice.test"})
    world.point("alice.test", ALICE)
    for document in (b"not json", orjson.dumps([1, 2]), orjson.dumps({"id": ALICE, "alsoKnownAs": "at://alice.test"}),
                     orjson.dumps({"id": ALICE, "alsoKnownAs": ["at://not a handle", "at://alice.test"]}),
                     orjson.dumps({"id": ALICE, "alsoKnownAs": ["https://alice.test"]})):
        world.plc.publish(ALICE, document=document)
        assert resolve_and_store(scope, resolver, ALICE, fresh=True).verdict.handle is None
    world.plc.publish(ALICE, "alice.test")
    assert resolve_and_store(scope, resolver, ALICE, fresh=True).verdict.handle == "alice.test"


# -- failures ---------------------------------------------------------------------------------


def test_an_unreachable_plc_directory_leaves_the_handle_as_it_was(world, resolver, scope, session):
    world.account(ALICE, "alice.test")
    _profiles(session, ALICE, handles={ALICE: "alice.test"})
    world.plc.fail(503)
    with pytest.raises(Unreachable):
        resolve_and_store(scope, resolver, ALICE)
    assert _handle(session, ALICE) == "alice.test" and _checked(session, ALICE) is None
    world.plc.fail(status=0, stall_seconds=3)  # longer than IDENTITY_TIMEOUT_SECONDS
    with pytest.raises(Unreachable):
        resolve_and_store(scope, resolver, ALICE)
    assert _handle(session, ALICE) == "alice.test"


def test_unreachable_dns_and_https_leave_the_handle_as_it_was(world, make_resolver, scope, session):
    resolver = make_resolver(identity_timeout_seconds=1)
    world.plc.publish(ALICE, "alice.test")
    world.dns.fail("_atproto.alice.test", "timeout")
    world.dns.fail("alice.test", "servfail")
    _profiles(session, ALICE, handles={ALICE: "alice.test"})
    with pytest.raises(Unreachable):
        resolve_and_store(scope, resolver, ALICE)
    assert _handle(session, ALICE) == "alice.test"
    # DNS TXT down but the HTTPS well-known answers: that is enough
    del world.dns.failing["alice.test"]
    world.dns.host("alice.test", "127.0.0.1")
    world.web.route("alice.test", "/.well-known/atproto-did", body=ALICE)
    assert resolve_and_store(scope, resolver, ALICE).verdict.handle == "alice.test"


def test_a_failing_handle_host_is_unreachable_not_a_refusal(world, resolver, scope, session):
    world.plc.publish(ALICE, "alice.test")
    world.dns.host("alice.test", "127.0.0.1")
    world.web.route("alice.test", "/.well-known/atproto-did", status=502)
    _profiles(session, ALICE, handles={ALICE: "alice.test"})
    with pytest.raises(Unreachable):
        resolve_and_store(scope, resolver, ALICE)
    assert _handle(session, ALICE) == "alice.test"


# -- guards -----------------------------------------------------------------------------------


def test_handle_hosts_on_private_addresses_are_refused(world, make_resolver, scope, session):
    resolver = make_resolver(allow_private=False)
    world.account(ALICE, "alice.test", method="https")  # alice.test -> 127.0.0.1
    world.plc.publish(ATTACKER, "metadata.test")
    world.dns.host("metadata.test", "8.8.8.8", "169.254.169.254")  # one bad address is enough
    _profiles(session, ALICE, ATTACKER)
    verdict = resolve_and_store(scope, resolver, ALICE).verdict
    assert verdict.handle is None and verdict.reason == "alice.test names no DID"
    assert resolve_and_store(scope, resolver, ATTACKER).verdict.handle is None
    assert world.web.requests == []  # nothing was ever sent


def test_did_web_hosts_on_private_addresses_are_refused(world, make_resolver, scope, session):
    resolver = make_resolver(allow_private=False)
    world.dns.host("web.example.test", "10.0.0.7")
    _profiles(session, WEB_DID)
    verdict = resolve_and_store(scope, resolver, WEB_DID).verdict
    assert verdict.handle is None and "non-public address" in verdict.reason


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
                                     "100.64.0.1", "0.0.0.0", "224.0.0.1", "::1", "fe80::1", "fc00::1",
                                     "::ffff:127.0.0.1", "64:ff9b::a00:1"])
def test_non_public_addresses_are_refused(address):
    from services.identity import Refused

    with pytest.raises(Refused):
        check_addresses("host.test", ["8.8.8.8", address], allow_private=False)
    assert check_addresses("host.test", [address], allow_private=True) == [address]


def test_redirects_are_not_followed(world, resolver, scope, session):
    world.plc.publish(ALICE, "alice.test")
    world.dns.host("alice.test", "127.0.0.1")
    world.dns.host("elsewhere.test", "127.0.0.1")
    world.web.route("alice.test", "/.well-known/atproto-did", status=302,
                    headers={"Location": "https://elsewhere.test/.well-known/atproto-did"})
    world.web.route("elsewhere.test", "/.well-known/atproto-did", body=ALICE)
    _profiles(session, ALICE)
    assert resolve_and_store(scope, resolver, ALICE).verdict.handle is None
    assert world.web.requests == [("alice.test", "/.well-known/atproto-did")]


def test_oversized_answers_are_refused(world, resolver, scope, session):
    world.plc.publish(ALICE, "alice.test")
    world.dns.host("alice.test", "127.0.0.1")
    world.web.route("alice.test", "/.well-known/atproto-did", body=ALICE + " " * 10_000)
    _profiles(session, ALICE, BOB)
    assert resolve_and_store(scope, resolver, ALICE).verdict.handle is None
    # the same without a Content-Length (chunked): refused while reading
    world.web.route("alice.test", "/.well-known/atproto-did", body=ALICE + " " * 10_000, chunked=True)
    assert resolve_and_store(scope, resolver, ALICE, fresh=True).verdict.handle is None
    world.plc.publish(BOB, document=orjson.dumps({**did_document(BOB, "bob.test"), "padding": "x" * 100_000}))
    world.point("bob.test", BOB)
    verdict = resolve_and_store(scope, resolver, BOB).verdict
    assert verdict.handle is None and "more than" in verdict.reason


# -- cache ------------------------------------------------------------------------------------


def test_answers_are_cached_for_their_ttl_and_identity_events_bypass_the_cache(world, make_resolver, redis):
    resolver = make_resolver(identity_cache_ttl_seconds=600, identity_negative_cache_ttl_seconds=30)
    world.account(ALICE, "alice.test")
    world.plc.publish(BOB, "nobody.test")
    assert resolver.verify(ALICE).handle == "alice.test"
    assert resolver.verify(ALICE).handle == "alice.test"
    assert world.plc.requests == [ALICE]  # the second answer came from the cache
    assert 590 < redis.ttl(f"cannect:identity:doc:{ALICE}") <= 600
    assert 590 < redis.ttl("cannect:identity:handle:alice.test") <= 600
    assert resolver.verify(BOB).handle is None
    assert 0 < redis.ttl("cannect:identity:handle:nobody.test") <= 30  # a negative answer, shorter
    world.account(ALICE, "alice2.test")  # the account changed its handle
    assert resolver.verify(ALICE).handle == "alice.test"  # stale, within the TTL
    assert resolver.verify(ALICE, fresh=True).handle == "alice2.test"
    assert world.plc.requests == [ALICE, BOB, ALICE]


def test_unreachable_answers_are_not_cached(world, resolver, redis):
    world.account(ALICE, "alice.test")
    world.plc.fail(503)
    with pytest.raises(Unreachable):
        resolver.verify(ALICE)
    assert redis.get(f"cannect:identity:doc:{ALICE}") is None
    assert resolver.verify(ALICE).handle == "alice.test"


# -- queueing ---------------------------------------------------------------------------------


def test_a_did_is_queued_once_until_its_run_finishes(redis):
    assert requests.claim(redis, [ALICE, BOB, ALICE]) == [ALICE, BOB]
    assert requests.claim(redis, [ALICE, CAROL]) == [CAROL]
    assert requests.start(redis, ALICE) is False
    assert requests.claim(redis, [ALICE], refresh=True) == []  # an identity event during the run
    assert requests.finish(redis, ALICE) == [ALICE]             # ... queues one more, fresh
    assert requests.start(redis, ALICE) is True
    assert requests.finish(redis, ALICE) == []
    assert requests.claim(redis, [ALICE]) == [ALICE]


def test_the_sweep_finds_profiles_never_checked_then_stale_ones(world, resolver, scope, session):
    from datetime import timedelta

    world.account(ALICE, "alice.test")
    _profiles(session, ALICE, BOB)
    assert sorted(due_for_resolution(session, 10, timedelta(hours=1))) == [ALICE, BOB]
    resolve_and_store(scope, resolver, ALICE)
    session.rollback()
    assert due_for_resolution(session, 10, timedelta(hours=1)) == [BOB]
    assert due_for_resolution(session, 10, timedelta(seconds=0)) == [BOB, ALICE]


# -- operators ------------------------------------------------------------------------------------


def test_an_operator_given_handle_is_trusted_and_taken_from_others(session):
    _profiles(session, ALICE, handles={ALICE: "member.test"})
    profile = add_member(session, BOB, "@Member.Test")
    session.commit()
    assert profile.handle == "member.test"
    assert _handle(session, ALICE) is None and _handle(session, BOB) == "member.test"
    assert _checked(session, BOB) is not None  # not swept again before it is due


# -- through the actors ----------------------------------------------------------------------------


@pytest.fixture
def task_env(monkeypatch, world, db_url, redis_url):
    """The environment the actors read (get_settings), pointing at this test's servers."""
    environ = dict(world.environment(), DATABASE_URL=db_url, REDIS_URL=redis_url, JWT_SECRET=JWT_SECRET)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    import tasks
    from tasks import identity as identity_tasks
    from tasks import ingest as ingest_tasks
    from tasks.broker import app_redis

    caches = (get_settings, db.get_engine, db._session_factory, app_redis, identity_tasks._resolver)
    for cached in caches:
        cached.cache_clear()
    assert tasks.broker.client.connection_pool.connection_kwargs["db"] == redis_lib.Redis.from_url(
        redis_url).connection_pool.connection_kwargs["db"]
    yield identity_tasks, ingest_tasks
    db.get_engine().dispose()
    for cached in caches:
        cached.cache_clear()


def _queued(redis, queue="identity") -> list[list]:
    return [orjson.loads(raw)["args"] for raw in redis.hvals(f"dramatiq:{queue}.msgs")]


def _jetstream_batch(*raw_events, seq=1):
    from services.jetstream import parse_event

    return {"conn": 1, "seq": seq, "prev": None, "events": [parse_event(orjson.dumps(e)) for e in raw_events]}


def test_identity_events_and_new_authors_through_ingest_are_resolved_after_commit(task_env, world, session, redis):
    identity_tasks, ingest_tasks = task_env
    world.account(VICTIM, "victim.test")
    world.plc.publish(ATTACKER, "victim.test")
    world.account(ALICE, "alice.test", method="https")
    add_member(session, VICTIM, "victim.test")
    session.commit()
    post = {"did": ALICE, "time_us": 1_000_001, "kind": "commit",
            "commit": {"rev": "3l", "operation": "create", "collection": "app.bsky.feed.post", "rkey": "3kabc",
                       "cid": "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm",
                       "record": {"$type": "app.bsky.feed.post", "text": "hello #cannabis",
                                  "createdAt": "2026-01-01T00:00:00Z"}}}
    follow = {"did": ATTACKER, "time_us": 1_000_002, "kind": "commit",
              "commit": {"rev": "3m", "operation": "create", "collection": "app.bsky.graph.follow", "rkey": "3kabd",
                         "cid": "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpn",
                         "record": {"$type": "app.bsky.graph.follow", "subject": VICTIM,
                                    "createdAt": "2026-01-01T00:00:00Z"}}}
    claim = {"did": ATTACKER, "time_us": 1_000_003, "kind": "identity",
             "identity": {"did": ATTACKER, "handle": "victim.test", "seq": 1, "time": "2026-01-01T00:00:00Z"}}
    ingest_tasks.apply_batch.fn(_jetstream_batch(post, follow, claim))

    # the identity event changed nothing by itself; resolution of both new accounts is queued once
    assert _handle(session, ATTACKER) is None and _handle(session, VICTIM) == "victim.test"
    assert sorted(_queued(redis)) == [[ALICE], [ATTACKER]]
    assert redis.exists(requests.AGAIN + ATTACKER)  # the identity event asks for fresh lookups
    ingest_tasks.apply_batch.fn(_jetstream_batch({**claim, "time_us": 1_000_004}, seq=2))
    assert len(_queued(redis)) == 2                  # a busy DID is not queued again

    for did in (ALICE, ATTACKER):
        identity_tasks.resolve.fn(did)
    assert _handle(session, ALICE) == "alice.test"   # an author that had no handle now has one
    assert _handle(session, ATTACKER) is None and _handle(session, VICTIM) == "victim.test"
    assert not redis.exists(requests.QUEUED + ALICE, requests.QUEUED + ATTACKER)


def test_the_actor_retries_an_unreachable_resolver_and_keeps_the_handle(task_env, world, session, redis):
    identity_tasks, _ = task_env
    world.account(ALICE, "alice.test")
    add_member(session, ALICE, "alice.test")
    session.execute(text("UPDATE profiles SET handle_checked_at = NULL"))
    session.commit()
    assert identity_tasks.request([ALICE], refresh=True) == 1
    world.plc.fail(503)
    with pytest.raises(dramatiq.Retry):
        identity_tasks.resolve.fn(ALICE)
    assert _handle(session, ALICE) == "alice.test"
    assert redis.exists(requests.QUEUED + ALICE)      # the retrying message stays the only one
    assert identity_tasks.request([ALICE]) == 0
    world.account(ALICE, "alice2.test")
    identity_tasks.resolve.fn(ALICE)                   # the retry: still fresh, no stale cache
    assert _handle(session, ALICE) == "alice2.test"
    updates = [orjson.loads(fields[b"e"]) for _, fields in redis.xrange("cannect:realtime")
               if fields[b"t"] == b"profile_updated"]
    assert [u["profile"]["handle"] for u in updates] == ["alice2.test"]  # the member's sockets hear of it


def test_a_resolution_given_up_keeps_the_handle_until_it_is_due_again(task_env, world, session, redis):
    identity_tasks, _ = task_env
    _profiles(session, ALICE, handles={ALICE: "alice.test"})
    assert identity_tasks.request([ALICE]) == 1
    identity_tasks.gave_up.fn({"args": [ALICE]}, {"retries": 8, "max_retries": 8})
    assert _handle(session, ALICE) == "alice.test" and _checked(session, ALICE) is not None
    assert identity_tasks.request([ALICE]) == 1        # no longer marked as queued


def test_the_sweep_queues_unresolved_profiles(task_env, session, redis):
    identity_tasks, _ = task_env
    _profiles(session, ALICE, BOB)
    identity_tasks.sweep.fn()
    identity_tasks.sweep.fn()
    assert sorted(_queued(redis)) == [[ALICE], [BOB]]


# -- offline: the replay server plays the identity services of its capture ---------------------------


def test_the_replay_server_resolves_its_captures_accounts(env, tmp_path, redis_url):
    from harness import System

    member, mover, taker, followed = ("did:plc:" + c * 24 for c in "mnop")
    lines = [
        {"did": mover, "time_us": 1, "kind": "identity", "identity": {"did": mover, "handle": "Moving.Test"}},
        {"did": mover, "time_us": 2, "kind": "commit",
         "commit": {"operation": "create", "collection": "app.bsky.graph.follow", "rkey": "3k",
                    "record": {"subject": followed, "createdAt": "2026-01-01T00:00:00Z"}}},
        {"did": taker, "time_us": 3, "kind": "identity", "identity": {"did": taker, "handle": "moving.test"}},
    ]
    capture = tmp_path / "capture.jsonl"
    capture.write_bytes(b"\n".join(orjson.dumps(line) for line in lines) + b"\n")
    (tmp_path / "capture.jsonl.meta.json").write_bytes(orjson.dumps({"members": [{"did": member, "handle": "m.test"}]}))
    system = System(env, tmp_path)
    try:
        system.start_replay(capture)
        settings = Settings(database_url="postgresql://unused/unused", redis_url=redis_url,
                            plc_directory_url=system.env["PLC_DIRECTORY_URL"],
                            handle_resolver_url=system.env["HANDLE_RESOLVER_URL"])
        resolver = IdentityResolver(settings)
        assert resolver.verify(member).handle == "m.test"
        assert resolver.verify(taker).handle == "moving.test"
        mover_verdict = resolver.verify(mover)           # its document still names the handle it lost
        assert mover_verdict.handle is None and mover_verdict.claimed == "moving.test"
        derived = resolver.verify(followed).handle       # an account the capture gives no handle
        assert derived.endswith(".bsky.social") and resolver.handle_did(derived) == followed
        assert resolver.verify("did:plc:" + "q" * 24).reason == "the PLC directory answers 404"
        assert resolver.handle_did("nobody.test") is None
        resolver.close()
    finally:
        system.stop_all()


# -- the command line -----------------------------------------------------------------------------


def test_cli_trusts_an_operators_handle_and_resolves_on_demand(world, db_url, redis_url, session):
    import subprocess
    import sys

    world.account(ALICE, "alice.test")
    world.plc.publish(ATTACKER, "alice.test")
    environ = {**{k: v for k, v in __import__("os").environ.items() if not k.startswith(("DATABASE_", "REDIS_"))},
               **world.environment(), "DATABASE_URL": db_url, "REDIS_URL": redis_url}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "cannect.cli", *args], env=environ, capture_output=True,
                              text=True, timeout=60)

    added = cli("members", "add", ATTACKER, "--handle", "attacker.test")   # trusted as given
    assert added.returncode == 0 and "attacker.test" in added.stdout
    assert _handle(session, ATTACKER) == "attacker.test"
    _profiles(session, ALICE)
    resolved = cli("identity", "resolve", "alice.test")
    assert resolved.returncode == 0, resolved.stderr
    assert resolved.stdout.split("\t")[:2] == [ALICE, "alice.test"]
    assert _handle(session, ALICE) == "alice.test"
    claimed = cli("identity", "resolve", ATTACKER)                         # its document claims alice.test
    assert claimed.returncode == 0 and claimed.stdout.split("\t")[1] == "-"
    assert _handle(session, ATTACKER) is None and _handle(session, ALICE) == "alice.test"
    world.plc.fail(503)
    assert cli("identity", "resolve", ALICE).returncode == 1
    assert _handle(session, ALICE) == "alice.test"
