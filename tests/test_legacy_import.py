"""Admin kind ``legacy_import`` (services/backfill/legacy.py) over a legacy ``posts.db`` built here.

The old feed generator's schema was never given, so the fixture mixes what such a file can
hold: a full posts table with every odd row we could think of, the bluesky feed-generator
template's ``post`` table (no text: its rows cannot become posts) and an unrelated table.
The kind is driven chunk by chunk as the runner would (the runner itself is another module).
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest
from sqlalchemy import text

from cannect.config import load_settings
from fakes.pds import make_cid
from kind_driver import run_job, session_factory
from services.backfill.kinds import KINDS, InvalidParams
from services.backfill.legacy import LegacyImport
from services.ingest import ingest_batch
from services.jetstream import parse_event
from snapshot import db_snapshot

POST = "app.bsky.feed.post"
TAGS = frozenset({"cannabis"})


def did(name: str) -> str:
    return "did:plc:" + (name + "z" * 24)[:24]


ALICE, BOB, MEMBER, STREAMER = did("alice"), did("bob"), did("member"), did("streamer")
_rkeys = iter(f"3l{n:011d}".replace("0", "a") for n in range(1, 1000))


def uri(author=ALICE, collection=POST) -> str:
    return f"at://{author}/{collection}/{next(_rkeys)}"


def cid(tag: str) -> str:
    return make_cid({"tag": tag})


ROOT_URI = uri()
DELETED_URI, STREAMED_URI = uri(STREAMER), uri(STREAMER)
COLUMNS = ("uri", "cid", "author", "text", "created_at", "indexed_at", "langs", "reply_parent", "reply_parent_cid",
           "reply_root", "reply_root_cid", "is_cannabis")


def row(reason, uri_=None, text_="#cannabis grows", created="2024-03-01T10:00:00.000Z", **extra):
    values = {"uri": uri_ or uri(), "cid": cid(str(uri_)), "author": None, "text": text_, "created_at": created,
              "indexed_at": "2024-03-01T10:00:01.000Z", "langs": None, "reply_parent": None,
              "reply_parent_cid": None, "reply_root": None, "reply_root_cid": None, "is_cannabis": 1}
    values.update(extra)
    return reason, values


# (expected outcome, row). "imported" rows are indexed; the rest name their skip reason.
ROWS = [
    row("imported", ROOT_URI, author=ALICE),
    row("imported", created="2024-03-01 10:00:00", langs="en,pt"),           # SQLite datetime('now') form
    row("imported", created=1709287200, langs='["en"]'),                      # unix seconds
    row("imported", created=1709287200123),                                   # unix milliseconds
    row("bad_date", created="yesterday"),
    row("bad_date", created="1970-01-01T00:00:00Z"),
    row("missing_date", created=None, indexed_at=None),
    row("imported", created=None),                                            # falls back to indexed_at
    row("duplicate", ROOT_URI, text_="#cannabis a second copy"),
    row("imported", text_="#cannabis weed\x00 time"),                          # NUL removed, as the edge does
    row("nul_byte", uri() + "\x00"),
    row("bad_uri", "not-a-uri"),
    row("bad_uri", "at://alice.bsky.social/app.bsky.feed.post/3kaaaaaaaaaaa"),  # a handle, not a DID
    row("not_a_post", uri(collection="app.bsky.feed.like")),
    row("text_too_long", text_="#cannabis " + "a" * 400),                      # > 300 graphemes
    row("text_too_long", text_="#cannabis " + "b" * 70_000),                   # > the read cap
    row("null_text", text_=None),
    row("author_mismatch", author=BOB),
    row("invalid_unicode", text_=b"#cannabis \xff\xfe"),
    row("not_cannabis", is_cannabis=0),
    row("imported", text_="no tag, author nobody follows"),                   # the old feed chose it
    row("imported", uri(MEMBER), text_="a member's post, no tag", author=MEMBER),
    row("incomplete_reply", reply_parent=ROOT_URI, reply_root=ROOT_URI),       # URIs without CIDs
    row("imported", text_="a reply, no tag", reply_parent=ROOT_URI, reply_parent_cid=cid(ROOT_URI),
        reply_root=ROOT_URI, reply_root_cid=cid(ROOT_URI)),
    row("deleted_on_stream", DELETED_URI),
    row("already_indexed", STREAMED_URI),
    row("bad_cid", cid="not-a-cid"),
    row("bad_langs", langs="english!!"),
]
TEMPLATE_ROWS = 3  # the feed-generator template's `post` table: uri, cid, indexedAt only


def build_legacy_db(path) -> None:
    conn = sqlite3.connect(path)
    conn.execute(f"CREATE TABLE posts ({', '.join(COLUMNS)})")  # no types: SQLite stores what it is given
    for _, values in ROWS:
        marks = ", ".join("CAST(? AS TEXT)" if isinstance(values[c], bytes) else "?" for c in COLUMNS)
        conn.execute(f"INSERT INTO posts VALUES ({marks})", [values[c] for c in COLUMNS])
    conn.execute("CREATE TABLE post (uri VARCHAR PRIMARY KEY, cid VARCHAR, indexedAt VARCHAR)")
    conn.executemany("INSERT INTO post VALUES (?, ?, ?)",
                     [(uri(BOB), cid(str(n)), "2024-03-01T10:00:00.000Z") for n in range(TEMPLATE_ROWS)])
    conn.execute("CREATE TABLE sub_state (service VARCHAR PRIMARY KEY, cursor INTEGER)")
    conn.execute("INSERT INTO sub_state VALUES ('did:web:feed.example', 123)")
    conn.commit()
    conn.close()


def stream_event(author: str, rkey: str, t: int, op="create", text_="#cannabis from the stream") -> dict:
    commit = {"rev": "3laaaaaaaaaaa", "operation": op, "collection": POST, "rkey": rkey}
    if op != "delete":
        commit.update(cid=cid(rkey), record={"$type": POST, "text": text_, "createdAt": "2024-03-01T10:00:00.000Z"})
    return parse_event(orjson.dumps({"did": author, "time_us": t, "kind": "commit", "commit": commit}))


@pytest.fixture
def world(engine, db_url, redis_url, tmp_path):
    scope = session_factory(engine)
    with scope() as session:
        session.execute(text("INSERT INTO profiles (did, is_cannect_user) VALUES (:d, true)"), {"d": MEMBER})
        now = int(datetime.now(timezone.utc).timestamp() * 1_000_000)
        rkey = lambda u: u.rsplit("/", 1)[1]  # noqa: E731
        events = [stream_event(STREAMER, rkey(STREAMED_URI), now), stream_event(STREAMER, rkey(DELETED_URI), now + 1),
                  stream_event(STREAMER, rkey(DELETED_URI), now + 2, op="delete")]
        ingest_batch(session, {"conn": 1, "seq": 1, "prev": None, "events": events}, TAGS)
    path = tmp_path / "posts.db"
    build_legacy_db(path)
    settings = load_settings(database_url=db_url, redis_url=redis_url, cannabis_tags="cannabis",
                             legacy_import_dir=str(tmp_path))
    return LegacyImport(settings=lambda: settings), scope, str(path)


def expected_report(first_run: bool) -> Counter:
    outcomes = Counter(reason for reason, _ in ROWS)
    expected = Counter({("skipped", r): n for r, n in outcomes.items() if r != "imported"})
    expected[("skipped", "missing_columns")] = TEMPLATE_ROWS
    expected["imported"] = outcomes["imported"]
    expected["realtime_new_posts"] = outcomes["imported"]  # the web processes' read caches hear of each
    if not first_run:  # what the first run imported is found stored
        expected[("skipped", "already_indexed")] += expected.pop("imported")
        expected.pop("realtime_new_posts")
    expected[("cleaned", "nul_in_text")] = 1
    return +expected


def test_import_skips_odd_rows_with_reasons_and_is_idempotent(world):
    kind, scope, path = world
    total, done, report, ids, chunks = run_job(kind, scope, {"path": path, "chunk_size": 4})
    assert total == done == len(ROWS) + TEMPLATE_ROWS
    assert chunks > len(ROWS) // 4  # really chunked, duplicates found across chunks
    assert report == expected_report(first_run=True)
    with scope() as session:
        posts = dict(session.execute(text("SELECT uri, id FROM posts")).all())
        imported = [v["uri"] for reason, v in ROWS if reason == "imported"]
        assert set(posts) == set(imported) | {STREAMED_URI}
        assert sorted(ids) == sorted(posts[u] for u in imported)
        assert DELETED_URI not in posts  # deleted on the stream before the import: stays deleted
        root = session.execute(text("SELECT reply_count, text FROM posts WHERE uri = :u"), {"u": ROOT_URI}).one()
        assert root == (1, "#cannabis grows")  # the first copy, the reply counted once
        assert session.scalar(text("SELECT posts_count FROM profiles WHERE did = :d"), {"d": MEMBER}) == 1
        assert session.scalar(text("SELECT count(*) FROM posts WHERE text = '#cannabis weed time'")) == 1
        dates = {u: created for u, created in session.execute(text("SELECT uri, created_at FROM posts"))}
        legacy_dates = [dates[v["uri"]] for reason, v in ROWS[:4]]  # ISO, SQLite form, seconds, milliseconds
        assert {d.replace(microsecond=0) for d in legacy_dates} == {datetime(2024, 3, 1, 10, tzinfo=timezone.utc)}
        assert legacy_dates[3].microsecond == 123_000
        assert session.scalar(text("SELECT count(*) FROM notifications")) == 0
        before = db_snapshot(session)

    total, done, report, ids, _ = run_job(kind, scope, {"path": path, "chunk_size": 7})
    assert report == expected_report(first_run=False)
    assert ids == []
    with scope() as session:
        assert db_snapshot(session) == before


def test_one_table_and_registration(world):
    kind, scope, path = world
    assert KINDS["legacy_import"].name == "legacy_import" and KINDS["legacy_import"].unit == "rows"
    _, done, report, _, _ = run_job(kind, scope, {"path": path, "table": "post"})
    assert done == TEMPLATE_ROWS and report == Counter({("skipped", "missing_columns"): TEMPLATE_ROWS})


def test_bad_params_are_invalid(world, tmp_path):
    kind, _, path = world
    not_sqlite = tmp_path / "notes.txt"
    not_sqlite.write_text("hello, this is not a database\n" * 100)
    no_posts = tmp_path / "other.db"
    conn = sqlite3.connect(no_posts)
    conn.execute("CREATE TABLE sub_state (service, cursor)")
    conn.commit()
    conn.close()
    cases = [
        ({}, "path"), ({"path": ""}, "path"), ({"path": 7}, "path"), ({"path": "x\x00y"}, "path"),
        ({"path": str(tmp_path / "missing.db")}, "no such file"), ({"path": str(tmp_path)}, "no such file"),
        ({"path": str(not_sqlite)}, "not a readable SQLite database"), ({"path": str(no_posts)}, "no table of posts"),
        ({"path": path, "table": "sub_state"}, "table"), ({"path": path, "chunk_size": 0}, "chunk_size"),
        ({"path": path, "chunk_size": True}, "chunk_size"), ({"path": path, "min_score": "high"}, "min_score"),
        ({"path": path, "extra": 1}, "unknown"), ([], "object"),
    ]
    for params, message in cases:
        with pytest.raises(InvalidParams, match=message):
            kind.validate(params)
    assert kind.validate({"path": path})["chunk_size"] == 500


def test_only_files_inside_the_import_directory_are_read(world, tmp_path, tmp_path_factory):
    """The path is admin input the server opens: only LEGACY_IMPORT_DIR's files, whatever the spelling."""
    kind, scope, path = world
    outside = tmp_path_factory.mktemp("elsewhere") / "posts.db"
    build_legacy_db(outside)
    (tmp_path / "link.db").symlink_to(outside)
    (tmp_path / "sub").mkdir()
    for refused in (str(outside), "/etc/passwd", "../" + outside.parent.name + "/posts.db",
                    "sub/../../" + outside.parent.name + "/posts.db", "link.db"):
        with pytest.raises(InvalidParams, match="inside LEGACY_IMPORT_DIR"):
            kind.validate({"path": refused})
    elsewhere = kind.settings().model_copy(update={"legacy_import_dir": str(tmp_path / "nowhere")})
    missing_dir = LegacyImport(settings=lambda: elsewhere)
    with pytest.raises(InvalidParams, match="LEGACY_IMPORT_DIR .* is not a directory"):
        missing_dir.validate({"path": "posts.db"})
    # A relative path is taken from the directory and stored as the real path.
    assert kind.validate({"path": "sub/../posts.db"})["path"] == path
    # Checked again when each chunk opens it: a job stored before the rules (or the directory) changed.
    with pytest.raises(InvalidParams, match="inside LEGACY_IMPORT_DIR"):
        kind.run_chunk(scope, {**kind.validate({"path": path}), "path": str(outside)}, None)


def test_a_corrupt_file_is_invalid_params_not_a_crash(world, tmp_path):
    kind, _, path = world
    corrupt = tmp_path / "corrupt.db"
    data = bytearray(Path(path).read_bytes())
    data[200:] = b"\xff" * (len(data) - 200)  # the header stays, the pages are garbage
    corrupt.write_bytes(bytes(data))
    with pytest.raises(InvalidParams, match="path"):
        kind.validate({"path": str(corrupt)})


def test_score_column_and_min_score(engine, db_url, redis_url, tmp_path):
    path = tmp_path / "scored.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE feed_posts (uri TEXT, text TEXT, indexedAt TEXT, cannabis_score REAL)")
    conn.executemany("INSERT INTO feed_posts VALUES (?, ?, ?, ?)",
                     [(uri(), "#cannabis", "2024-03-01T10:00:00Z", score) for score in (0.9, 0.2, None)])
    conn.commit()
    conn.close()

    scope = session_factory(engine)
    settings = load_settings(database_url=db_url, redis_url=redis_url, cannabis_tags="cannabis",
                             legacy_import_dir=str(tmp_path))
    kind = LegacyImport(settings=lambda: settings)
    _, _, report, ids, _ = run_job(kind, scope, {"path": str(path), "min_score": 0.5})
    assert report == Counter({"imported": 1, "realtime_new_posts": 1, ("skipped", "below_min_score"): 2})
    assert len(ids) == 1


def test_first_copies_are_found_through_the_uri_index(tmp_path):
    """Duplicates are looked up per chunk: with an index on the URI column (the feed generator's
    primary key) that must be an index search, not a scan of the whole file per chunk."""
    from services.backfill import legacy_sqlite

    path = tmp_path / "indexed.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE post (uri TEXT, text TEXT, indexedAt TEXT)")
    conn.execute("CREATE INDEX post_uri ON post (uri)")
    a, b = uri(), uri()
    conn.executemany("INSERT INTO post VALUES (?, 'x', '2024-03-01')", [(a,), (b,), (a,), (a.encode(),)])
    conn.commit()
    conn.close()
    conn = legacy_sqlite.open_readonly(str(path))
    table = legacy_sqlite.post_tables(conn)[0]
    rows = legacy_sqlite.read_rows(conn, table, 2, 10)
    assert legacy_sqlite.first_rowids(conn, table, [v["uri"] for _, v in rows]) == {a.encode(): 1}
    assert legacy_sqlite.first_rowids(conn, table, [b.encode(), b"\xff"]) == {b.encode(): 2}
    seen = []
    conn.set_trace_callback(seen.append)
    legacy_sqlite.first_rowids(conn, table, [a.encode()])
    plan = conn.execute("EXPLAIN QUERY PLAN " + seen[-1]).fetchall()
    assert any("INDEX post_uri" in row[-1] for row in plan), plan
