"""Read API throughput and latency on a large index, next to the same SQL run bare.

Builds a database of ``--posts`` posts (default 1,000,000) with set-based SQL: ``--authors``
accounts (default 50,000; every tenth a Cannect member) whose activity is skewed (a few post
thousands of times), 15% of posts with a cannabis tag, 30% replies (mostly to recent posts,
some to viral ones with hundreds of replies), a fifth with images, a million likes, follows of
and by members, the members' viewer state, and one signed-in viewer who follows 300 accounts.
Counters equal the stored rows (reposts aside: there are none).

Then it starts the web app under gunicorn (``cannect/gunicorn_conf.py`` as deployed, whatever
its worker class; ``WEB_WORKER_CLASS=gthread`` etc. pass through) and, per endpoint, runs
``--clients`` concurrent keep-alive clients (asyncio, a minimal HTTP/1.1 client) for ``--seconds``, and one client
for a few seconds (the latency without queueing). With the web app stopped, it then runs the
SQL statements that the same requests execute (recorded from the app in-process, where the read
cache is never used), bare through psycopg with as many connections, each request's statements
in one transaction. API/bare is what the HTTP layer, the framework, hydration to JSON and the
HTTP client cost. The API is measured twice in the same run, with the web process's read cache
(``READ_CACHE``, services/read_cache.py) on and off; each side in two halves, in the order on,
off, bare, bare, off, on, so that a load that drifts (a shared machine) weighs on all alike. Rate limits stay on (set very high), as
their Redis round trips are part of every request.

Uses DATABASE_URL / REDIS_URL when set, else embedded servers (under .cannect/, ignored by
git); creates its own database and drops it at the end (``--keep`` keeps it, ``--reuse URL``
measures a kept one again without rebuilding). Usage:
    python bench/api.py [--posts 1000000] [--clients 64] [--seconds 10] [--explain] [--keep] [--cache on,off]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import psycopg  # noqa: E402
from harness import Web  # noqa: E402

from cannect.embedded import ensure_services  # noqa: E402

SECRET = "bench-secret-" + "x" * 32
WORDS = ("soil light water grow seed tent harvest cure trim strain terpene flower leaf root clone "
         "nutrient bloom veg week day night humidity fan pot garden sativa indica hybrid edible "
         "tea oil rosin jar smell taste smoke vape joint bong paper lighter friend weekend music "
         "coffee morning evening rain sun sky photo picture dog cat walk city park beach doctor "
         "pain sleep relax anxiety medicine card dispensary price quality organic living compost "
         "worm mulch ph runoff feed flush trichome amber cloudy clear pistil bud top branch node "
         "training bend tie scrog mainline defoliate stretch first second third grow-log update "
         "question answer thanks help advice beginner expert years love hate best worst new old").split()
TAGS = ("cannabis", "weed", "420", "thc", "cbd", "homegrow", "growyourown", "cannabiscommunity")


# --------------------------------------------------------------------------- data

def rnd(expr: str, salt: int) -> str:
    """SQL for a deterministic uniform [0, 1) number from an integer expression."""
    return f"((hashint8extended(({expr})::bigint, {salt}) & 2147483647)::float8 / 2147483648.0)"


def author_of(expr: str, salt: int) -> str:
    """SQL for an author number in 1..authors, skewed so that a few authors write a lot."""
    return f"(1 + floor(:authors * power({rnd(expr, salt)}, 2))::int)"


def did_of(expr: str) -> str:
    return f"('did:plc:bench' || lpad(({expr})::text, 19, '0'))"


def post_uri(author: str, i: str) -> str:
    return f"('at://' || {did_of(author)} || '/app.bsky.feed.post/3l' || lpad(to_hex({i}), 11, '0'))"


#: One row per post: who, when, replying to which post (by number), tagged, with images.
STAGE_POSTS = f"""
CREATE UNLOGGED TABLE stage_posts AS
SELECT i, {author_of('i', 1)} AS author,
       CASE WHEN i <= 1000 OR {rnd('i', 2)} >= :reply_share THEN NULL
            WHEN {rnd('i', 6)} < 0.1 AND (i - 1) / 4999 > 0 THEN ((i - 1) / 4999) * 4999
            ELSE i - 1 - floor(power({rnd('i', 3)}, 3) * least(i - 2, 50000))::bigint END AS parent,
       {rnd('i', 4)} < :tag_share AS tagged,
       {rnd('i', 5)} < 0.2 AS media,
       now() - interval '60 days' + (i * (60 * 86400 * 1000000::bigint / :posts)) * interval '1 microsecond' AS at
FROM generate_series(1, :posts) AS i"""

STAGE_LIKES = f"""
CREATE UNLOGGED TABLE stage_likes AS
SELECT DISTINCT ON (actor, post) k, actor, post FROM (
    SELECT k, {author_of('k', 11)} AS actor,
           (:posts - floor(power({rnd('k', 12)}, 3) * (:posts - 1)))::bigint AS post
    FROM generate_series(1, :likes) AS k) AS l
ORDER BY actor, post, k"""

#: Members follow 40 accounts each, 100,000 others follow members, the viewer follows 300.
STAGE_FOLLOWS = f"""
CREATE UNLOGGED TABLE stage_follows AS
SELECT DISTINCT ON (follower, following) row_number() OVER () AS k, follower, following FROM (
    SELECT m * 10 AS follower, {author_of('m * 100 + j', 21)} AS following
    FROM generate_series(1, :authors / 10) AS m, generate_series(1, 40) AS j
    UNION ALL
    SELECT {author_of('k', 22)}, 10 * (1 + floor({rnd('k', 23)} * (:authors / 10)))::int
    FROM generate_series(1, 100000) AS k
    UNION ALL
    SELECT :viewer, {author_of('j', 24)} FROM generate_series(1, 400) AS j) AS f
WHERE follower <> following
ORDER BY follower, following"""

VIEWER_FOLLOWS_300 = """
DELETE FROM stage_follows WHERE follower = :viewer AND k NOT IN (
    SELECT k FROM stage_follows WHERE follower = :viewer ORDER BY k LIMIT 300)"""

WORD_ARRAY = "ARRAY[" + ",".join(f"'{w}'" for w in WORDS) + "]"
TAG_ARRAY = "ARRAY[" + ",".join(f"'{t}'" for t in TAGS) + "]"

INSERT_POSTS = f"""
INSERT INTO posts (uri, cid, author_did, text, created_at, indexed_at, sort_at, indexed_time_us,
                   reply_parent_uri, reply_root_uri, embed, embed_type, has_media, media_count, langs,
                   has_cannabis_hashtag, is_cannect_user, raw_record, like_count, reply_count)
SELECT uri, cid, {did_of('author')}, text, at, at, at, (extract(epoch FROM at) * 1000000)::bigint,
       parent_uri, parent_uri, embed, CASE WHEN media THEN 'images' END, media, CASE WHEN media THEN 2 ELSE 0 END,
       ARRAY['en'], tagged, author % 10 = 0,
       jsonb_strip_nulls(jsonb_build_object(
           '$type', 'app.bsky.feed.post', 'text', text, 'createdAt', at, 'langs', ARRAY['en'], 'embed', embed,
           'reply', CASE WHEN parent_uri IS NOT NULL THEN jsonb_build_object(
               'root', jsonb_build_object('uri', parent_uri, 'cid', 'bafyparent'),
               'parent', jsonb_build_object('uri', parent_uri, 'cid', 'bafyparent')) END)),
       coalesce(likes, 0), coalesce(replies, 0)
FROM (
    SELECT s.*, {post_uri('s.author', 's.i')} AS uri, 'bafyrei' || substr(md5(s.i::text), 1, 24) AS cid,
           CASE WHEN s.parent IS NOT NULL THEN {post_uri('p.author', 's.parent')} END AS parent_uri,
           array_to_string(ARRAY(SELECT ({WORD_ARRAY})[1 + floor({rnd('s.i * 32 + w', 7)} * {len(WORDS)})::int]
                                 FROM generate_series(1, 6 + (s.i % 12)::int) AS w), ' ')
             || CASE WHEN s.tagged THEN ' #' || ({TAG_ARRAY})[1 + (s.i % {len(TAGS)})::int] ELSE '' END AS text,
           CASE WHEN s.media THEN jsonb_build_object('$type', 'app.bsky.embed.images', 'images',
               jsonb_build_array(jsonb_build_object('alt', ''), jsonb_build_object('alt', ''))) END AS embed,
           lc.likes, rc.replies
    FROM stage_posts AS s
    LEFT JOIN stage_posts AS p ON p.i = s.parent
    LEFT JOIN (SELECT post, count(*) AS likes FROM stage_likes GROUP BY post) AS lc ON lc.post = s.i
    LEFT JOIN (SELECT parent, count(*) AS replies FROM stage_posts WHERE parent IS NOT NULL GROUP BY parent) AS rc
           ON rc.parent = s.i) AS x"""

INSERT_PROFILES = f"""
INSERT INTO profiles (did, handle, display_name, description, avatar_cid, followers_count, following_count,
                      posts_count, is_cannect_user, member_since)
SELECT {did_of('a')},
       CASE WHEN a % 10 = 0 THEN 'member' || a || '.cannect.space' ELSE 'user' || a || '.bsky.social' END,
       initcap(({WORD_ARRAY})[1 + (a % {len(WORDS)})]) || ' ' || initcap(({WORD_ARRAY})[1 + (a / 7 % {len(WORDS)})]),
       'Bench account ' || a, 'bafkavatar' || a,
       coalesce(fin.n, 0), coalesce(fout.n, 0), coalesce(pc.n, 0), a % 10 = 0,
       CASE WHEN a % 10 = 0 THEN now() - interval '90 days' END
FROM generate_series(1, :authors) AS a
LEFT JOIN (SELECT following AS a, count(*) AS n FROM stage_follows GROUP BY 1) AS fin USING (a)
LEFT JOIN (SELECT follower AS a, count(*) AS n FROM stage_follows GROUP BY 1) AS fout USING (a)
LEFT JOIN (SELECT author AS a, count(*) AS n FROM stage_posts GROUP BY 1) AS pc USING (a)"""

INSERT_LIKES = f"""
INSERT INTO likes (uri, actor_did, subject_uri, subject_cid, created_at)
SELECT 'at://' || {did_of('l.actor')} || '/app.bsky.feed.like/3k' || lpad(to_hex(l.k), 11, '0'),
       {did_of('l.actor')}, {post_uri('p.author', 'p.i')}, 'bafyrei' || substr(md5(p.i::text), 1, 24),
       p.at + (1 + {rnd('l.k', 13)} * 86400) * interval '1 second'
FROM stage_likes AS l JOIN stage_posts AS p ON p.i = l.post"""

INSERT_FOLLOWS = f"""
INSERT INTO follows (uri, follower_did, following_did, created_at)
SELECT 'at://' || {did_of('follower')} || '/app.bsky.graph.follow/3j' || lpad(to_hex(k), 11, '0'),
       {did_of('follower')}, {did_of('following')}, now() - {rnd('k', 25)} * interval '300 days'
FROM stage_follows"""

VIEWER_STATE = [
    """INSERT INTO user_post_state (user_did, post_uri, liked, like_uri)
       SELECT DISTINCT ON (l.actor_did, l.subject_uri) l.actor_did, l.subject_uri, true, l.uri
       FROM likes AS l JOIN profiles AS p ON p.did = l.actor_did AND p.is_cannect_user
       ORDER BY l.actor_did, l.subject_uri, l.uri""",
    """INSERT INTO user_follow_state (user_did, target_did, following, follow_uri)
       SELECT DISTINCT ON (f.follower_did, f.following_did) f.follower_did, f.following_did, true, f.uri
       FROM follows AS f JOIN profiles AS p ON p.did = f.follower_did AND p.is_cannect_user
       ORDER BY f.follower_did, f.following_did, f.uri""",
    """INSERT INTO user_follow_state (user_did, target_did, followed_by)
       SELECT DISTINCT f.following_did, f.follower_did, true
       FROM follows AS f JOIN profiles AS p ON p.did = f.following_did AND p.is_cannect_user
       ON CONFLICT (user_did, target_did) DO UPDATE SET followed_by = true""",
]


def build_index(url: str, posts: int, authors: int, likes: int, viewer: int) -> None:
    """Fill the database; secondary indexes are dropped during the load and rebuilt as migrated."""
    params = {"posts": posts, "authors": authors, "likes": likes, "viewer": viewer,
              "reply_share": 0.3, "tag_share": 0.15}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '512MB'")
        conn.execute("SET work_mem = '256MB'")
        indexes = conn.execute("""
            SELECT i.indexname, i.indexdef FROM pg_indexes AS i
            WHERE i.schemaname = 'public' AND i.tablename IN ('posts', 'likes', 'follows', 'profiles')
              AND NOT EXISTS (SELECT 1 FROM pg_constraint AS c WHERE c.conname = i.indexname)""").fetchall()
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        steps = [("stage posts", STAGE_POSTS), ("stage likes", STAGE_LIKES), ("stage follows", STAGE_FOLLOWS),
                 ("viewer follows", VIEWER_FOLLOWS_300), ("index stage", "CREATE INDEX ON stage_posts (i)"),
                 ("analyze stage", "ANALYZE stage_posts, stage_likes, stage_follows"),
                 ("posts", INSERT_POSTS), ("profiles", INSERT_PROFILES), ("likes", INSERT_LIKES),
                 ("follows", INSERT_FOLLOWS)]
        steps += [(f"indexes ({len(indexes)})", ";".join(definition for _, definition in indexes))]
        steps += [("viewer state", ";".join(VIEWER_STATE))]
        steps += [("drop stage", "DROP TABLE stage_posts, stage_likes, stage_follows"),
                  ("vacuum analyze", "VACUUM ANALYZE")]
        for label, sql in steps:
            start = time.perf_counter()
            for statement in sql.split(";"):
                if ":" in statement and re.search(r"(?<![:\w]):[a-z_]+", statement):
                    conn.execute(_pyformat(statement), params)
                elif statement.strip():
                    conn.execute(statement)
            print(f"  {label:<18} {time.perf_counter() - start:6.1f} s", flush=True)


def _pyformat(sql: str) -> str:
    """``:name`` parameters (as in SQLAlchemy text) to psycopg's ``%(name)s``, sparing ``::`` casts."""
    return re.sub(r"(?<![:\w]):([a-z_]+)\b", r"%(\1)s", sql.replace("%", "%%"))


# --------------------------------------------------------------------------- what to request

def pick_targets(url: str, viewer: int) -> dict:
    """Thread anchors and profiles to request: posts people open and accounts people visit."""
    with psycopg.connect(url) as conn:
        hot = conn.execute("SELECT uri FROM posts WHERE reply_count >= 50 ORDER BY md5(uri) LIMIT 8").fetchall()
        busy = conn.execute("""SELECT uri FROM posts WHERE reply_count BETWEEN 1 AND 49 AND sort_at > now() - interval '7 days'
                               ORDER BY md5(uri) LIMIT 24""").fetchall()
        replies = conn.execute("""SELECT uri FROM posts WHERE reply_parent_uri IS NOT NULL
                                  AND sort_at > now() - interval '7 days' ORDER BY md5(uri) LIMIT 16""").fetchall()
        authors = conn.execute("""SELECT p.handle FROM (SELECT author_did FROM posts WHERE has_cannabis_hashtag
                                  ORDER BY sort_at DESC LIMIT 2000) AS a JOIN profiles AS p ON p.did = a.author_did
                                  GROUP BY p.handle ORDER BY md5(p.handle) LIMIT 32""").fetchall()
        viewer_did = conn.execute("SELECT 'did:plc:bench' || lpad(%s::text, 19, '0')", (viewer,)).fetchone()[0]
    threads = [row[0] for row in hot + busy + replies]
    random.Random(1).shuffle(threads)
    return {"threads": threads, "handles": [row[0] for row in authors], "viewer": viewer_did}


def endpoints(targets: dict) -> list[tuple[str, list[str], bool]]:
    """(name, URLs cycled through, signed in?) per benchmarked endpoint."""
    return [
        ("feed global", ["/api/feed/global"], False),
        ("feed local", ["/api/feed/local"], False),
        ("feed following", ["/api/feed/following"], True),
        ("post", [f"/api/post/{uri}" for uri in targets["threads"]], False),
        ("thread", [f"/api/post/{uri}/thread" for uri in targets["threads"]], False),
        ("profile", [f"/api/profile/{handle}" for handle in targets["handles"]], False),
        ("profile posts", [f"/api/profile/{handle}/posts" for handle in targets["handles"]], False),
    ]


# --------------------------------------------------------------------------- recording the SQL

def record_statements(env: dict, token: str, plan: list) -> dict[str, list[list[tuple[str, dict]]]]:
    """For each URL, the statements (psycopg form) the app executes to answer it, in order."""
    os.environ.update(env)
    from sqlalchemy import event

    from app import create_app
    from cannect.config import get_settings
    from services import db

    for cached in (get_settings, db.get_engine, db._session_factory):
        cached.cache_clear()
    client = create_app().test_client()
    recorded: list[tuple[str, dict]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        recorded.append((statement, dict(parameters or {})))

    event.listen(db.get_engine(), "before_cursor_execute", capture)
    out = {}
    for name, urls, signed_in in plan:
        out[name] = []
        for url in urls:
            recorded.clear()
            response = client.get(url, headers={"Authorization": f"Bearer {token}"} if signed_in else {})
            assert response.status_code == 200, (url, response.status_code, response.get_data(as_text=True)[:300])
            out[name].append(list(recorded))
    event.remove(db.get_engine(), "before_cursor_execute", capture)
    db.get_engine().dispose()
    return out


def explain(url: str, recordings: dict) -> None:
    with psycopg.connect(url) as conn:
        for name, runs in recordings.items():
            for statement, params in runs[0]:
                plan = conn.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + statement, params).fetchall()
                print(f"\n--- {name}\n{statement.strip()[:300]}\n" + "\n".join(row[0] for row in plan))


# --------------------------------------------------------------------------- load

def summary(latencies: list[float], elapsed: float) -> dict:
    ordered = sorted(latencies)

    def pct(p):
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000 if ordered else float("nan")
    return {"rps": len(ordered) / elapsed, "p50": pct(0.50), "p95": pct(0.95), "p99": pct(0.99), "n": len(ordered),
            "latencies": latencies, "elapsed": elapsed}


def merge(parts: list[dict]) -> dict:
    """One summary of several measured slices of the same side and endpoint."""
    merged = summary([x for part in parts for x in part["latencies"]], sum(part["elapsed"] for part in parts))
    if all("cpu" in part for part in parts) and merged["n"]:
        merged["cpu_us"] = sum(part["cpu"] for part in parts) / merged["n"] * 1e6
    merged["errors"] = {}
    for part in parts:
        for name, count in part.get("errors", {}).items():
            merged["errors"][name] = merged["errors"].get(name, 0) + count
    return merged


def serving_cpu(server_pid: int, redis_url: str | None = None) -> Callable[[], float]:
    """A reading of the CPU seconds (user + system) spent so far by a server's process tree, and
    by the Redis server when given: what serving costs, apart from the load generator. Read
    before and after a run, it gives the CPU per request, a figure the noise of a shared machine
    moves far less than req/s."""
    import psutil
    import redis

    server = psutil.Process(server_pid)
    store = redis.Redis.from_url(redis_url) if redis_url else None

    def read() -> float:
        total = 0.0
        for process in (server, *server.children(recursive=True)):
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        if store is not None:
            info = store.info("cpu")
            total += info["used_cpu_user"] + info["used_cpu_sys"]
        return total

    return read


class ServerWorkers:
    """Which worker process of a server accepted each of our connections. Each gunicorn worker
    listens on its own socket (``SO_REUSEPORT``) and the kernel spreads connections between them
    by a hash of the addresses: 16 connections fell 5/11, 6/10 or 7/9 as often as 8/8 between two
    workers, so each run measured another split (16-client req/s swung by ±10-20% with it).
    :func:`load_api` keeps connecting until the split is even, as many connections would be."""

    def __init__(self, server_pid: int):
        import psutil

        self.workers = psutil.Process(server_pid).children(recursive=True) or [psutil.Process(server_pid)]

    def owners(self) -> dict[int, int]:
        """Our side's port -> the pid of the worker holding the connection (accepted ones only)."""
        found = {}
        for worker in self.workers:
            for connection in worker.net_connections("tcp"):
                if connection.raddr and connection.status == "ESTABLISHED":
                    found[connection.raddr.port] = worker.pid
        return found


async def _connect(host: str, port: int, clients: int, workers: ServerWorkers | None) -> list:
    """``clients`` connections; with ``workers``, as many on each worker (extras closed, others made)."""
    connections: list = []
    for _ in range(200):
        while len(connections) < clients:
            connections.append(await asyncio.open_connection(host, port))
        if workers is None:
            return connections
        await asyncio.sleep(0.02)  # accepted by then, as a rule; not yet accepted ones are kept
        owners, share, held = workers.owners(), -(-clients // len(workers.workers)), {}
        for connection in list(connections):
            owner = owners.get(connection[1].get_extra_info("sockname")[1])
            held[owner] = held.get(owner, 0) + 1
            if owner is not None and held[owner] > share:
                connection[1].close()
                connections.remove(connection)
        if len(connections) == clients and None not in held:
            return connections
    raise RuntimeError("could not spread the connections evenly between the server's workers")


async def load_api(base: str, urls: list[str], headers: dict, clients: int, seconds: float,
                   cpu: Callable[[], float] | None = None, workers: ServerWorkers | None = None) -> dict:
    """``clients`` keep-alive connections of a minimal HTTP/1.1 client. httpx spent about 1.5 ms
    of CPU per request (7 ms with one pool of 64 connections) on the same two cores as the
    server, so the load generator, not the server, set the pace of cached answers; this one
    spends a few tens of microseconds. Answers must carry a Content-Length (the app's JSON
    answers do). With ``cpu`` (:func:`serving_cpu`), the result's ``cpu`` is what it read
    over the measured part; with ``workers``, the connections are spread evenly between them."""
    host, port = base.removeprefix("http://").split(":")
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    requests = [f"GET {url} HTTP/1.1\r\nHost: {host}\r\n{head}\r\n".encode() for url in urls]
    errors: dict[str, int] = {}

    async def worker(connection, offset: int, until: float, out: list | None):
        reader, writer = connection
        n = offset
        while time.perf_counter() < until:
            start = time.perf_counter()
            writer.write(requests[n % len(requests)])
            n += 1
            status, length = await _read_head(reader)
            await reader.readexactly(length)
            if status != 200:
                errors[str(status)] = errors.get(str(status), 0) + 1
            elif out is not None:
                out.append(time.perf_counter() - start)

    connections = await _connect(host, int(port), clients, workers)
    try:
        warm_until = time.perf_counter() + min(2.0, seconds / 4)
        await asyncio.gather(*(worker(c, i, warm_until, None) for i, c in enumerate(connections)))
        latencies: list[float] = []
        spent = cpu() if cpu else 0.0
        start = time.perf_counter()
        await asyncio.gather(*(worker(c, i, start + seconds, latencies) for i, c in enumerate(connections)))
        result = summary(latencies, time.perf_counter() - start)
    finally:
        for _, writer in connections:
            writer.close()
    if cpu:
        result["cpu"] = cpu() - spent
    result["errors"] = errors
    return result


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, int]:
    """Status and Content-Length of the next answer on a keep-alive connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            return status, int(value)
    raise RuntimeError("an answer without Content-Length: " + head.decode(errors="replace"))



async def load_bare(url: str, runs: list[list[tuple[str, dict]]], clients: int, seconds: float,
                    autocommit: bool = False) -> dict:
    """Each client replays one request's statements in one transaction, as the app's session does
    (or one by one in autocommit, as the B2B answers run them)."""
    conns = [await psycopg.AsyncConnection.connect(url, autocommit=autocommit) for _ in range(clients)]
    try:
        async def replay(conn, statements):
            for statement, params in statements:
                await (await conn.execute(statement, params)).fetchall()

        async def worker(conn, offset: int, until: float, out: list | None):
            n = offset
            while time.perf_counter() < until:
                statements = runs[n % len(runs)]
                n += 1
                start = time.perf_counter()
                if autocommit:
                    await replay(conn, statements)
                else:
                    async with conn.transaction():
                        await replay(conn, statements)
                if out is not None:
                    out.append(time.perf_counter() - start)

        warm_until = time.perf_counter() + min(2.0, seconds / 4)
        await asyncio.gather(*(worker(c, i, warm_until, None) for i, c in enumerate(conns)))
        latencies: list[float] = []
        start = time.perf_counter()
        await asyncio.gather(*(worker(c, i, start + seconds, latencies) for i, c in enumerate(conns)))
        return summary(latencies, time.perf_counter() - start)
    finally:
        for conn in conns:
            await conn.close()


# --------------------------------------------------------------------------- processes

def worker_description(env: dict) -> str:
    """The worker model gunicorn runs with, read from the same config module."""
    code = ("import cannect.gunicorn_conf as c; print(getattr(c, 'worker_class', 'sync'), getattr(c, 'workers', 1), "
            "getattr(c, 'threads', 1), getattr(c, 'worker_connections', '-'))")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True).stdout.split()
    if len(out) != 4:
        return "gunicorn (config unreadable)"
    kind, workers, threads, connections = out
    per = f"{threads} threads" if "thread" in kind else f"{connections} connections" if "gevent" in kind else "1"
    return f"gunicorn {kind}, {workers} workers x {per}"


# --------------------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=1_000_000)
    parser.add_argument("--authors", type=int, default=50_000)
    parser.add_argument("--likes", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per endpoint and side")
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE of every recorded statement")
    parser.add_argument("--keep", action="store_true", help="keep the database (its URL is printed)")
    parser.add_argument("--reuse", metavar="URL", help="measure a database kept by --keep (not dropped)")
    parser.add_argument("--cache", default="on,off", help="read cache settings to measure, in this order (on,off)")
    args = parser.parse_args()
    viewer = 10  # a member (every tenth account is one)

    ensure_services(ROOT / ".cannect" / "bench")
    from alembic import command
    from conftest import _with_database

    from migrations import alembic_config

    admin_url = os.environ["DATABASE_URL"]
    name = f"cannect_bench_api_{uuid.uuid4().hex[:8]}"
    url = args.reuse or _with_database(admin_url, name)
    if not args.reuse:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    web = None
    try:
        if not args.reuse:
            command.upgrade(alembic_config(url.replace("postgresql://", "postgresql+psycopg://", 1)), "head")
            print(f"building {args.posts:,} posts, {args.authors:,} authors, {args.likes:,} likes ...", flush=True)
            start = time.perf_counter()
            build_index(url, args.posts, args.authors, args.likes, viewer)
            print(f"  built in {time.perf_counter() - start:.0f} s", flush=True)
        facts = database_facts(url)

        env = {k: v for k, v in os.environ.items() if not k.startswith(("JETSTREAM_",))}
        env.update(DATABASE_URL=url, JWT_SECRET=SECRET, LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1",
                   RATE_LIMIT_IP="100000000/minute", RATE_LIMIT_USER="100000000/minute")
        env.setdefault("WEB_CONCURRENCY", "2")
        targets = pick_targets(url, viewer)
        from services.tokens import issue_access_token
        token = issue_access_token(targets["viewer"], str(uuid.uuid4()), SECRET, 3600)
        plan = endpoints(targets)
        recordings = record_statements(env, token, plan)
        if args.explain:
            explain(url, recordings)

        # Each side is measured in two halves, in the order on, off, bare, bare, off, on: the
        # machine's load drifts (other processes), and a drift that is linear in time then
        # costs every side the same.
        modes = [mode.strip() for mode in args.cache.split(",") if mode.strip()]
        order = modes + ["bare", "bare"] + modes[::-1]
        parts = {side: {label: [] for label, _, _ in plan} for side in modes + ["bare"]}
        alone_parts = {mode: {label: [] for label, _, _ in plan} for mode in modes}
        half = args.seconds / 2
        with tempfile.TemporaryDirectory() as logs:
            for side in order:
                if side == "bare":
                    for label, _, _ in plan:
                        parts["bare"][label].append(asyncio.run(load_bare(url, recordings[label], args.clients, half)))
                    print("  measured bare SQL", flush=True)
                    continue
                web = Web(dict(env, READ_CACHE="true" if side == "on" else "false"), Path(logs) / f"web-{side}.log")
                base, workers = f"http://127.0.0.1:{web.port}", ServerWorkers(web.proc.pid)
                for label, urls, signed_in in plan:
                    headers = {"Authorization": f"Bearer {token}"} if signed_in else {}
                    alone_parts[side][label].append(asyncio.run(load_api(base, urls, headers, 1, min(half, 2.0))))
                    parts[side][label].append(asyncio.run(load_api(base, urls, headers, args.clients, half,
                                                                   workers=workers)))
                print(f"  measured the API, cache {side}", flush=True)
                web.stop()  # its pooled connections would count against max_connections of the bare side
                web = None
        api = {mode: {label: merge(parts[mode][label]) for label, _, _ in plan} for mode in modes}
        alone = {mode: {label: merge(alone_parts[mode][label]) for label, _, _ in plan} for mode in modes}
        bare = {label: merge(parts["bare"][label]) for label, _, _ in plan}
        report(args, facts, worker_description(env), plan, modes, api, bare, alone)
    finally:
        if web is not None:
            web.stop()
        if args.keep or args.reuse:
            print(f"database kept: {url}")
        else:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_facts(url: str) -> dict:
    with psycopg.connect(url) as conn:
        row = conn.execute("""SELECT count(*), count(*) FILTER (WHERE has_cannabis_hashtag),
                                     count(*) FILTER (WHERE is_cannect_user), count(*) FILTER (WHERE reply_parent_uri IS NOT NULL),
                                     max(reply_count) FROM posts""").fetchone()
        counts = conn.execute("""SELECT (SELECT count(*) FROM profiles), (SELECT count(*) FROM profiles WHERE is_cannect_user),
                                        (SELECT count(*) FROM likes), (SELECT count(*) FROM follows)""").fetchone()
    return {"posts": row[0], "tagged": row[1], "member_posts": row[2], "replies": row[3], "max_replies": row[4],
            "profiles": counts[0], "members": counts[1], "likes": counts[2], "follows": counts[3]}


def report(args, facts: dict, workers: str, plan: list, modes: list[str], api: dict, bare: dict, alone: dict) -> None:
    f = facts
    print(f"\nread API benchmark: {f['posts']:,} posts ({f['tagged'] / f['posts']:.0%} tagged, "
          f"{f['member_posts'] / f['posts']:.0%} by members, {f['replies'] / f['posts']:.0%} replies, "
          f"busiest thread {f['max_replies']} direct replies), {f['profiles']:,} profiles ({f['members']:,} members), "
          f"{f['likes']:,} likes, {f['follows']:,} follows")
    print(f"{workers}; {args.clients} concurrent clients, {args.seconds:g} s per endpoint and side (two halves, "
          f"in the order {', '.join(modes)}, bare, bare, {', '.join(modes[::-1])}), "
          f"{os.cpu_count()} cores shared by the clients, the web workers and PostgreSQL\n")
    cols = f"{'req/s':>8}{'p50':>7}{'p95':>7}{'p99':>7}"
    sides = [(f"API, cache {mode}", api[mode]) for mode in modes] + [("bare SQL", bare)]
    print(f"{'':<16}" + "".join(f"{'--- ' + name + ' ---':^29}   " for name, _ in sides)
          + "".join(f"{'/bare ' + mode:>10}" for mode in modes)
          + "".join(f"{'1 client p95 ' + mode:>17}" for mode in modes))
    print(f"{'endpoint':<16}" + "".join(cols + "   " for _ in sides) + "    (req/s ratio; ms)")
    print("-" * (16 + 32 * len(sides) + 27 * len(modes)))
    for label, _, _ in plan:
        line = f"{label:<16}"
        for _, side in sides:
            r = side[label]
            line += f"{r['rps']:>8,.0f}{r['p50']:>7.1f}{r['p95']:>7.1f}{r['p99']:>7.1f}   "
        line += "".join(f"{api[mode][label]['rps'] / bare[label]['rps']:>10.0%}" for mode in modes)
        line += "".join(f"{alone[mode][label]['p95']:>17.1f}" for mode in modes)
        errors = {f"{mode}:{k}": v for mode in modes for k, v in {**api[mode][label]["errors"],
                                                                   **alone[mode][label]["errors"]}.items()}
        if errors:
            line += f"   errors: {errors}"
        print(line)
    for mode in modes:
        ratios = [api[mode][label]["rps"] / bare[label]["rps"] for label, _, _ in plan]
        worst = max(alone[mode][label]["p95"] for label, _, _ in plan)
        print(f"cache {mode}: API/bare throughput median {statistics.median(ratios):.0%} "
              f"(min {min(ratios):.0%}, max {max(ratios):.0%}; goal >= 100%), one-client p95 at worst "
              f"{worst:.1f} ms (goal < 10 ms)")
    if "on" in modes and "off" in modes:
        gains = [api["on"][label]["rps"] / api["off"][label]["rps"] for label, _, _ in plan]
        print(f"cache on/off throughput: median {statistics.median(gains):.2f}x "
              f"(min {min(gains):.2f}x, max {max(gains):.2f}x)")

if __name__ == "__main__":
    main()
