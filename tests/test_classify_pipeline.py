"""The classification pipeline (services/classify/pipeline.py, tasks/classify.py) on real
PostgreSQL and Redis, with real Dramatiq workers in this process.

Posts arrive the way production indexes them (an ingest batch through the ``ingest`` actor),
are classified through the ``classify`` queue by the offline classifier or by the LLM one
talking to the fake OpenAI-compatible server (tests/fakes/llm.py), and the rows left in
``posts``, ``post_classifications``, ``brands`` and ``strains`` are checked.
"""

from __future__ import annotations

import contextlib
import threading
from datetime import datetime, timezone

import dramatiq
import orjson
import pytest
import redis as redis_lib
from click.testing import CliRunner
from sqlalchemy import text
from sqlalchemy.orm import Session

from cannect.config import get_settings
from services import db
from services.classify import CLASSIFICATION_VERSION, entities, pipeline
from services.classify.schema import Classification, Outcome
from services.members import add_member

JWT_SECRET = "test-secret-" + "x" * 32
MEMBER = "did:plc:" + "m" * 24
FAN = "did:plc:" + "f" * 24
CID = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"
T = 1_783_173_600_000_000


def _post(did: str, t: int, rkey: str, body: str) -> dict:
    return {"did": did, "time_us": T + t, "kind": "commit",
            "commit": {"rev": f"3l{t}", "operation": "create", "collection": "app.bsky.feed.post", "rkey": rkey,
                       "cid": CID, "record": {"$type": "app.bsky.feed.post", "text": body, "langs": ["en"],
                                              "createdAt": "2026-07-04T14:00:00Z"}}}


def _delete(did: str, t: int, rkey: str) -> dict:
    return {"did": did, "time_us": T + t, "kind": "commit",
            "commit": {"rev": f"3l{t}", "operation": "delete", "collection": "app.bsky.feed.post", "rkey": rkey}}


def _batch(seq: int, *raw_events) -> dict:
    from services.jetstream import parse_event

    return {"conn": 1, "seq": seq, "prev": None, "events": [parse_event(orjson.dumps(e)) for e in raw_events]}


POSTS = {
    "bd": "Blue Dream got me so relaxed tonight, love this flower #weed",
    "gsc": "anyone know where to buy gsc? my dispensary is out #cannabis",
    "dog": "took the dog to the beach, he loved it",           # a member's post, not about cannabis
    "pre": "pre rolls at the shop were cheap today #weed",
}


class Pipeline:
    """The actors of this process on the test's database and Redis, and a worker to run them."""

    def __init__(self, monkeypatch, db_url: str, redis_url: str):
        self.monkeypatch, self.db_url, self.redis_url = monkeypatch, db_url, redis_url
        self.redis = redis_lib.Redis.from_url(redis_url)

    def configure(self, **environ) -> None:
        base = dict(DATABASE_URL=self.db_url, REDIS_URL=self.redis_url, JWT_SECRET=JWT_SECRET)
        for name in ("DEEPSEEK_API_KEY", "DEEPSEEK_BASE_URL", "CLASSIFIER"):
            self.monkeypatch.delenv(name, raising=False)
        for name, value in {**base, **environ}.items():
            self.monkeypatch.setenv(name, value)
        self.clear()
        import tasks

        assert tasks.broker.client.connection_pool.connection_kwargs["db"] == \
            self.redis.connection_pool.connection_kwargs["db"]

    def clear(self) -> None:
        from tasks import classify
        from tasks.broker import app_redis

        for cached in (get_settings, db.get_engine, db._session_factory, app_redis,
                       classify._build_classifier):
            cached.cache_clear()

    @property
    def tasks(self):
        from tasks import classify

        return classify

    @contextlib.contextmanager
    def worker(self, queues=("ingest", "classify"), threads: int = 4):
        import tasks

        worker = dramatiq.Worker(tasks.broker, queues=set(queues), worker_threads=threads, worker_timeout=50)
        worker.start()
        try:
            yield worker
        finally:
            worker.stop()

    def drain(self, queues=("ingest", "classify")) -> None:
        """Until every message of these queues (and the messages they queued) is done, retries
        included (a deadlock PostgreSQL broke under load sends a message to the delay queue)."""
        from dramatiq.common import dq_name

        import tasks

        for _ in range(3):   # ingest queues classify work: go round until both stay empty
            for queue in queues:
                tasks.broker.join(queue, timeout=60_000)
                tasks.broker.join(dq_name(queue), timeout=60_000)
                tasks.broker.join(queue, timeout=60_000)

    def ingest(self, seq: int, *raw_events) -> None:
        from tasks import ingest

        ingest.apply_batch.send(_batch(seq, *raw_events))

    def forget_queued_classifications(self) -> None:
        """Drop the messages ingest queued, so a test sends its own."""
        import tasks

        tasks.broker.flush("classify")


@pytest.fixture
def system(monkeypatch, db_url, redis_url, session):
    add_member(session, MEMBER, "member.test")
    session.commit()
    pipe = Pipeline(monkeypatch, db_url, redis_url)
    pipe.configure(CLASSIFIER="offline")
    yield pipe
    db.get_engine().dispose()
    pipe.clear()


@pytest.fixture
def fake_llm():
    from fakes.llm import FakeLLM

    with FakeLLM() as llm:
        yield llm


def _llm_env(fake_llm, **extra) -> dict:
    return dict(CLASSIFIER="llm", DEEPSEEK_API_KEY="test-key", DEEPSEEK_BASE_URL=fake_llm.base_url,
                DEEPSEEK_MODEL="deepseek-test", LLM_MAX_ATTEMPTS="1", **extra)


def _ingest_posts(system, *rkeys, seq=1, did=MEMBER):
    system.ingest(seq, *(_post(did, i + 1 + seq * 100, rkey, POSTS[rkey]) for i, rkey in enumerate(rkeys)))


def _rows(session: Session) -> dict[str, dict]:
    session.rollback()
    return {row.rkey: row._asdict() for row in session.execute(text(
        "SELECT split_part(p.uri, '/', 5) AS rkey, c.model_version, c.cannabis_related, c.strain_mentioned, "
        "c.brand_mentioned, c.product_category, c.sentiment, c.processing_ms, c.classified_at "
        "FROM post_classifications c JOIN posts p ON p.id = c.post_id"))}


def _posts(session: Session) -> dict[str, dict]:
    session.rollback()
    return {row.rkey: row._asdict() for row in session.execute(text(
        "SELECT split_part(uri, '/', 5) AS rkey, id, processed_at, classification_version, processing_error "
        "FROM posts"))}


# -- end to end --------------------------------------------------------------------------------

def test_indexed_posts_are_classified_once_through_the_queues(system, session):
    with system.worker():
        _ingest_posts(system, "bd", "gsc", "dog")
        system.drain()
    rows, posts = _rows(session), _posts(session)
    assert set(rows) == {"bd", "gsc", "dog"}
    assert rows["bd"]["strain_mentioned"] == "Blue Dream" and rows["bd"]["cannabis_related"]
    assert rows["gsc"]["strain_mentioned"] == "Girl Scout Cookies"
    assert rows["dog"]["cannabis_related"] is False and rows["dog"]["product_category"] == "none"
    assert all(p["processed_at"] is not None and p["classification_version"] == CLASSIFICATION_VERSION
               and p["processing_error"] is None for p in posts.values())
    # the strains mentioned are rows of the reference table, seen at the posts' time
    seen = dict(session.execute(text("SELECT name, last_seen_at FROM strains WHERE last_seen_at IS NOT NULL")).all())
    assert set(seen) == {"Blue Dream", "Girl Scout Cookies"}
    assert seen["Blue Dream"] == datetime(2026, 7, 4, 14, tzinfo=timezone.utc)


def test_replayed_and_duplicated_messages_leave_one_row_per_post(system, session):
    with system.worker(queues=("ingest",)):
        _ingest_posts(system, "bd", "gsc")
        system.drain(("ingest",))
    ids = [p["id"] for p in _posts(session).values()]
    with system.worker(queues=("classify",), threads=4):
        for _ in range(3):                      # the after-ingest message, replayed and duplicated
            system.tasks.classify_posts.send(ids)
        system.drain(("classify",))
        first = _rows(session)
        system.tasks.classify_posts.send(ids)   # already classified at this version: skipped
        system.drain(("classify",))
        assert _rows(session) == first
        system.tasks.classify_posts.send(ids, True)   # forced: replaced in place
        system.drain(("classify",))
    again = _rows(session)
    assert session.execute(text("SELECT count(*) FROM post_classifications")).scalar() == 2
    assert {k: {**v, "classified_at": None} for k, v in again.items()} == \
        {k: {**v, "classified_at": None} for k, v in first.items()}
    assert all(again[k]["classified_at"] > first[k]["classified_at"] for k in again)


def test_a_message_that_failed_is_retried_and_writes_once(system, session):
    import time

    with system.worker(queues=("ingest",)):
        _ingest_posts(system, "bd", "gsc")
        system.drain(("ingest",))
    system.forget_queued_classifications()
    ids = [p["id"] for p in _posts(session).values()]
    session.execute(text("ALTER TABLE post_classifications RENAME TO post_classifications_away"))
    session.commit()
    with system.worker(queues=("classify",)):
        system.tasks.classify_posts.send(ids)   # its write fails: the whole message is retried
        deadline = time.monotonic() + 30
        while not system.redis.hlen("dramatiq:classify.DQ.msgs") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert system.redis.hlen("dramatiq:classify.DQ.msgs") == 1
        assert all(p["processed_at"] is None and p["processing_error"] is None for p in _posts(session).values())
        session.execute(text("ALTER TABLE post_classifications_away RENAME TO post_classifications"))
        session.commit()
        system.tasks.classify_posts.send(ids)   # a duplicate, while the retry waits
        system.drain(("classify",))
    assert set(_rows(session)) == {"bd", "gsc"}
    assert session.execute(text("SELECT count(*) FROM post_classifications")).scalar() == 2


def test_a_post_deleted_before_its_classification_is_skipped(system, session):
    with system.worker(queues=("ingest",)):
        _ingest_posts(system, "bd", "gsc")
        system.drain(("ingest",))
        system.forget_queued_classifications()
        ids = [p["id"] for p in _posts(session).values()]
        system.ingest(2, _delete(MEMBER, 500, "gsc"))
        system.drain(("ingest",))
    assert set(_posts(session)) == {"bd"}
    with system.worker(queues=("classify",)):
        system.tasks.classify_posts.send(ids)
        system.drain(("classify",))
    assert set(_rows(session)) == {"bd"}
    assert system.redis.hlen("dramatiq:classify.XQ.msgs") == 0   # nothing dead-lettered


def test_a_post_deleted_while_it_is_being_classified_is_skipped(system, session):
    with system.worker(queues=("ingest",)):
        _ingest_posts(system, "bd", "gsc")
        system.drain(("ingest",))
    posts = _posts(session)
    from services.classify.offline import OfflineClassifier

    work, existing = pipeline.pending_posts(session, [p["id"] for p in posts.values()])
    session.rollback()
    outcome = OfflineClassifier().classify([item.text for item in work])
    session.execute(text("DELETE FROM posts WHERE id = :id"), {"id": posts["gsc"]["id"]})
    session.commit()
    report = pipeline.store_outcome(session, work, outcome)
    session.commit()
    assert (report.classified, report.gone) == (1, 1)
    assert set(_rows(session)) == {"bd"}


# -- failures, the sweep, the backfill ----------------------------------------------------------

def _age_posts(session: Session) -> None:
    """As if the posts had been indexed long ago (the sweep leaves fresh ones to ingest's message)."""
    session.execute(text("UPDATE posts SET indexed_at = now() - interval '1 hour'"))
    session.commit()


def test_failures_are_recorded_and_retried_by_the_sweep(system, session, fake_llm):
    system.configure(**_llm_env(fake_llm))
    with system.worker(queues=("ingest",)):
        _ingest_posts(system, "bd", "gsc")
        system.drain(("ingest",))
    fake_llm.script([401])                      # the provider refuses our key: not the posts' fault
    with system.worker(queues=("classify",)):   # the message ingest queued
        system.drain(("classify",))
        posts = _posts(session)
        assert all(p["processed_at"] is None and "401" in (p["processing_error"] or "") and
                   p["classification_version"] == 0 for p in posts.values()), posts
        assert _rows(session) == {}
        from services.status import gather

        figures = gather(system.redis, session)["classification"]
        assert (figures["failed_retrying"], figures["classified"], figures["failed"]) == (2, 0, 0)

        _age_posts(session)
        system.tasks.sweep.send()               # the first sweep opens a retry round: both retried
        system.drain(("classify",))
    assert set(_rows(session)) == {"bd", "gsc"}
    assert all(p["processing_error"] is None and p["processed_at"] is not None for p in _posts(session).values())
    calls = dict(session.execute(text("SELECT outcome, count(*) FROM llm_calls GROUP BY outcome")).all())
    assert calls == {"refused": 1, "ok": 1}


def test_a_failure_for_good_waits_for_a_new_version_and_retries_wait_for_the_next_round(system, session, fake_llm):
    system.configure(**_llm_env(fake_llm))
    with system.worker(queues=("ingest",)):
        _ingest_posts(system, "bd")
        _ingest_posts(system, "gsc", seq=2)
        system.drain(("ingest",))
    system.forget_queued_classifications()
    posts = _posts(session)
    _age_posts(session)
    with system.worker():
        fake_llm.script(["invalid_json"])       # answers that never validate: the post's own failure
        system.tasks.classify_posts.send([posts["bd"]["id"]])
        system.drain(("classify",))
        assert _posts(session)["bd"]["classification_version"] == CLASSIFICATION_VERSION
        assert _posts(session)["bd"]["processing_error"] and _posts(session)["bd"]["processed_at"] is None
        system.tasks.sweep.send()               # opens a retry round; "bd" failed for good: not retried
        system.drain(("classify",))
        assert set(_rows(session)) == {"gsc"}
        fake_llm.script([503])                  # service trouble: retry later...
        _ingest_posts(system, "pre", seq=3)
        system.drain()
        _age_posts(session)
        assert _posts(session)["pre"]["processing_error"]
        system.tasks.sweep.send()               # ... but not within the same retry round
        system.drain(("classify",))
        assert set(_rows(session)) == {"gsc"}
        system.redis.delete(system.tasks.RETRY_ROUND_KEY)     # the retry delay has passed
        system.tasks.sweep.send()
        system.drain(("classify",))
    assert set(_rows(session)) == {"gsc", "pre"}
    assert _posts(session)["bd"]["processed_at"] is None


def test_backfill_reclassifies_posts_below_the_current_version(system, session, monkeypatch):
    from cannect.cli import main

    with system.worker():
        _ingest_posts(system, "bd", "gsc", "dog")
        system.drain()
    # As if classified by an older version, with another model.
    session.execute(text("UPDATE posts SET classification_version = :v WHERE split_part(uri, '/', 5) <> 'dog'"),
                    {"v": CLASSIFICATION_VERSION - 1})
    session.execute(text("UPDATE post_classifications SET model_version = 'old-model', strain_mentioned = NULL"))
    session.commit()
    result = CliRunner().invoke(main, ["backfill", "reclassify", "--inline"])
    assert result.exit_code == 0, result.output
    assert "2 posts reclassified" in result.output
    rows = _rows(session)
    assert rows["bd"]["model_version"] != "old-model" and rows["bd"]["strain_mentioned"] == "Blue Dream"
    assert rows["dog"]["model_version"] == "old-model"           # was at the current version: untouched
    assert session.execute(text("SELECT count(*) FROM post_classifications")).scalar() == 3
    assert all(p["classification_version"] == CLASSIFICATION_VERSION for p in _posts(session).values())

    session.execute(text("UPDATE posts SET classification_version = 0"))
    session.commit()
    queued = CliRunner().invoke(main, ["backfill", "reclassify", "--limit", "2", "--since", "2026-07-01"])
    assert queued.exit_code == 0 and "2 posts queued" in queued.output, queued.output
    assert system.redis.hlen("dramatiq:classify.msgs") == 1
    bad = CliRunner().invoke(main, ["backfill", "reclassify", "--since", "yesterday"])
    assert bad.exit_code == 2 and "--since" in bad.output


# -- entities ------------------------------------------------------------------------------------

class Fixed:
    """A classifier that names the given brand and strain for every post (the LLM's free text)."""

    model_version = "fixed-test"

    def __init__(self, brand: str | None, strain: str | None):
        self.answer = Classification.from_answer({"brand_mentioned": brand, "strain_mentioned": strain,
                                                  "sentiment": "positive"})

    def classify(self, posts):
        return Outcome([self.answer for _ in posts], self.model_version, 5)


def _make_posts(session: Session, count: int) -> list[int]:
    ids = session.execute(text(
        "INSERT INTO posts (uri, cid, author_did, text, created_at, sort_at, indexed_time_us) "
        "SELECT 'at://' || :did || '/app.bsky.feed.post/p' || n, 'c', :did, 'text ' || n, now(), now(), n "
        "FROM generate_series(1, :count) n RETURNING id"), {"did": FAN, "count": count}).scalars().all()
    session.commit()
    return sorted(ids)


def test_mentions_resolve_to_canonical_names(system, session):
    entities.seed_from_lexicon(session)
    session.commit()
    ids = _make_posts(session, 3)
    scope = db.session_scope
    pipeline.classify_posts(scope, Fixed("cookies sf", "GSC"), ids[:1])
    pipeline.classify_posts(scope, Fixed("Jungle Boyz", "blue-dream"), ids[1:2])
    pipeline.classify_posts(scope, Fixed("!!!", None), ids[2:])
    found = session.execute(text("SELECT brand_mentioned, strain_mentioned FROM post_classifications "
                                 "ORDER BY post_id")).all()
    assert [tuple(r) for r in found] == [("Cookies", "Girl Scout Cookies"), ("Jungle Boys", "Blue Dream"),
                                         (None, None)]
    seeded = session.execute(text("SELECT count(*) FROM brands")).scalar()
    entities.seed_from_lexicon(session)          # seeding again changes nothing
    session.commit()
    assert session.execute(text("SELECT count(*) FROM brands")).scalar() == seeded
    aliases = session.execute(text("SELECT aliases FROM brands WHERE name = 'Cookies'")).scalar()
    assert "cookies sf" in aliases


def test_an_unknown_brand_is_inserted_once_under_concurrency(system, session):
    ids = _make_posts(session, 16)
    spellings = ["Acme Farms", "acme farms", "ACME-FARMS", "Acmé Farms"]
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def classify(index: int) -> None:
        try:
            start.wait()
            for post_id in ids[index::8]:
                pipeline.classify_posts(db.session_scope, Fixed(spellings[post_id % 4], "Moonbeam Haze Xyz"),
                                        [post_id])
        except BaseException as exc:  # reported below, with the others
            errors.append(exc)

    threads = [threading.Thread(target=classify, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    brands = session.execute(text("SELECT name, normalized_name FROM brands WHERE normalized_name = 'acmefarms'")).all()
    assert len(brands) == 1
    mentioned = set(session.execute(text("SELECT DISTINCT brand_mentioned FROM post_classifications")).scalars())
    assert mentioned == {brands[0].name}
    strains = session.execute(text("SELECT name, strain_type FROM strains WHERE normalized_name = 'moonbeamhazexyz'"))
    assert [tuple(r) for r in strains] == [("Moonbeam Haze Xyz", "unknown")]


# -- status and the command line ---------------------------------------------------------------

def test_status_and_metrics_show_progress_and_spend(system, session, fake_llm):
    system.configure(**_llm_env(fake_llm))
    with system.worker():
        _ingest_posts(system, "bd", "gsc", "dog")
        system.drain()
    from services.status import gather

    figures = gather(system.redis, session)["classification"]
    assert (figures["classified"], figures["unprocessed"], figures["failed"]) == (3, 0, 0)
    assert figures["llm"]["spend_today_usd"] > 0 and figures["llm"]["cost_per_1000_posts_usd_24h"] > 0
    from cannect.cli import main

    shown = CliRunner().invoke(main, ["status"])
    assert shown.exit_code == 0, shown.output
    assert "classified       3 posts" in shown.output and "per 1,000 posts" in shown.output
    from app.metrics import ClassificationCollector
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(ClassificationCollector())
    exposed = generate_latest(registry).decode()
    assert 'cannect_classify_posts{state="classified"} 3.0' in exposed
    assert "cannect_llm_cost_per_1000_posts_usd " in exposed and "cannect_llm_spend_today_usd " in exposed


def _cli(args, stdin: bytes = b"", **environ):
    from cannect.cli import main

    return CliRunner().invoke(main, args, input=stdin, env=environ or None)


def test_cli_classifies_plain_and_json_lines_without_a_database(monkeypatch):
    for name in ("DATABASE_URL", "REDIS_URL", "DEEPSEEK_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    lines = (b"Blue Dream got me relaxed #weed\n"
             b"\n"
             b'{"text": "walked the dog, he is so happy", "id": 7}\n'
             b'{"text": "gsc edibles are the best", "langs": ["en"]}\n')
    result = _cli(["classify", "--offline"], lines)
    assert result.exit_code == 0, result.output
    out = [orjson.loads(line) for line in result.output.splitlines()]
    assert len(out) == 3
    assert out[0]["strain_mentioned"] == "Blue Dream" and out[0]["cannabis_related"] is True
    assert out[1]["cannabis_related"] is False
    assert {"model_version", "sentiment", "purchase_intent", "effects_mentioned", "processing_ms"} <= set(out[2])


def test_cli_reports_bad_lines_in_place_and_exits_nonzero(tmp_path, monkeypatch):
    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    get_settings.cache_clear()
    source = tmp_path / "in.jsonl"
    source.write_bytes(b'{"text": "fine #weed"}\n{"text": 5}\n{not json\n\xff\xfe bad bytes\n[1, 2]\nlast one\n')
    result = _cli(["classify", "--offline", "--file", str(source)])
    assert result.exit_code == 1
    out = [orjson.loads(line) for line in result.output.splitlines()]
    assert len(out) == 6
    assert [o.get("line") for o in out] == [None, 2, 3, 4, None, None]
    assert "text" in out[1]["error"] and "JSON" in out[2]["error"] and "UTF-8" in out[3]["error"]
    assert "Traceback" not in result.output
    missing = _cli(["classify", "--file", str(tmp_path / "missing")])
    assert missing.exit_code == 2


def test_cli_uses_the_configured_llm_and_says_what_it_lacks(monkeypatch, redis_url, fake_llm):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("CLASSIFIER", raising=False)
    llm = dict(DEEPSEEK_API_KEY="test-key", DEEPSEEK_BASE_URL=fake_llm.base_url, DEEPSEEK_MODEL="deepseek-test")
    result = _cli(["classify"], b"blue dream before bed, so sleepy\n", REDIS_URL=redis_url, **llm)
    assert result.exit_code == 0, result.output
    answer = orjson.loads(result.output)
    assert answer["model_version"].startswith("deepseek-test") and answer["strain_mentioned"] == "Blue Dream"
    assert len(fake_llm.requests) == 1
    monkeypatch.delenv("REDIS_URL", raising=False)
    no_redis = _cli(["classify"], b"hello\n", **llm)
    assert no_redis.exit_code == 2 and "REDIS_URL" in no_redis.output and "Traceback" not in no_redis.output
    offline = _cli(["classify", "--offline"], b"hello\n", **llm)
    assert offline.exit_code == 0 and orjson.loads(offline.output)["model_version"].startswith("offline")


def test_the_classifier_is_chosen_by_key_and_setting(redis_url, fake_llm):
    from cannect.config import load_settings
    from services.classify import ClassifierUnavailable, get_classifier

    base = dict(database_url="postgresql://unused/unused", redis_url=redis_url)
    assert get_classifier(load_settings(**base)).model_version.startswith("offline")
    keyed = dict(base, deepseek_api_key="test-key", deepseek_base_url=fake_llm.base_url, deepseek_model="m")
    client = redis_lib.Redis.from_url(redis_url)
    llm = get_classifier(load_settings(**keyed), client, lambda row: None)
    assert llm.model_version.startswith("m:")
    llm.close()
    assert get_classifier(load_settings(**keyed, classifier="offline")).model_version.startswith("offline")
    with pytest.raises(ClassifierUnavailable):
        get_classifier(load_settings(**base, classifier="llm"))


def test_cli_reads_the_operators_lexicons_and_reports_a_bad_one(tmp_path, monkeypatch):
    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    extra = tmp_path / "lexicons"
    extra.mkdir()
    (extra / "mine.toml").write_text('[strain."Moonbeam Haze"]\naliases = ["moonbeam"]\ntype = "sativa"\n')
    found = _cli(["classify", "--offline"], b"moonbeam got me uplifted #weed\n", CLASSIFIER_LEXICON_DIR=str(extra))
    assert found.exit_code == 0, found.output
    assert orjson.loads(found.output)["strain_mentioned"] == "Moonbeam Haze"
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "bad.toml").write_text("[strain.\n")
    bad = _cli(["classify", "--offline"], b"hello\n", CLASSIFIER_LEXICON_DIR=str(broken))
    assert bad.exit_code == 2 and "bad.toml" in bad.output and "Traceback" not in bad.output
