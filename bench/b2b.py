"""B2B intelligence endpoints under load: req/s and p50/p95 next to the same SQL run bare, with
and without the answer cache, with and without the limiter.

A scratch database gets ``--posts`` classified posts (default 1,000,000; ``bench/aggregates.py``'s
seeding, with post texts drawn from a vocabulary so that full-text search has words to find),
then the jobs behind the endpoints run once (the three materialized views, trends, opportunity
scores). Four gunicorn servers (``cannect/gunicorn_conf.py`` as deployed, ``DB_POOL_SIZE=3`` so that
all fit in PostgreSQL's connections), all running at once, serve the app:

- ``api``: as in production (key check, limiter script in Redis with leases, usage log, answer
  cache, cached answers the same for every client replayed before Flask: ``segments`` here);
- ``no-replay``: the same with ``B2B_ANSWER_REPLAY=0``: every request goes through Flask
  (``app/api/v1/answer_replay.py``'s before/after);
- ``no-limiter``: the same, with the limiter answering "ok" without Redis and no usage log
  (``bench/b2b_limits.py``'s ``B2B_BENCH_MODE=bare``): what limits and logging cost;
- ``no-cache``: the same as ``api`` with the answer cache off: every request computes.

With ``--parts``, two more: ``api`` with one part of the limiter switched off
(``B2B_BENCH_PARTS``): ``no-change-check`` (leased calls used without first checking for client
changes, ``Changes.poll``) and ``no-usage-log``; a table prints what each part costs.

Each of ``/api/v1/segments``, ``trends``, ``intents``, ``opportunities`` and ``search`` (a few
URLs each, cycled) is loaded by ``--clients`` concurrent keep-alive clients (``bench/api.py``'s :func:`load_api`: a
minimal HTTP client, where httpx cost more CPU per request than the server) on each server in
turn, then *bare SQL*: the statements the app executes for the same URLs when nothing is cached
(recorded in-process), replayed through psycopg with as many connections, one by one in
autocommit as the app runs them. Runs of the five sides alternate, ``--rounds`` times (merged),
so that the noise of the shared machine falls on all of them alike. Ratios printed: api / bare
SQL, limiter cost = 1 - api / no-limiter, and api / no-replay.

Each server run also reads the CPU time its processes and the Redis server spent (``bench/api.py``'s
``serving_cpu``), printed per request: the cost of a part (the limiter and usage log: api against
no-limiter) as a figure the shared machine's noise moves far less than req/s.

For ``segments``, whose answer comes from memory, two more servers with the same config answer
its bytes without any of our code (``bench/stack_ceiling.py``: a bare WSGI function, and a
one-route Flask app): the ceiling of the web stack on this machine, next to its bare SQL.

Last, one client in-process (Flask's test client) with the cache on and off, interleaved: the
latency each request saves, without queueing.

Goals (issue 9): p95 under 50 ms at 16 clients; throughput at least half of bare SQL, or above
it where answers come from the cache.

Usage (the database is created and dropped; DATABASE_URL only reaches the server):
    DATABASE_URL=postgresql://root@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/6 \\
        .venv/bin/python bench/b2b.py [--posts 1000000] [--seconds 8] [--clients 16,64] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]


SECRET = "bench-secret-" + "x" * 32
MODES = ("api", "no-replay", "no-limiter", "no-cache")
PARTS = ("no-change-check", "no-usage-log")  # --parts: api without one part of the limiter
#: Words of the seeded texts: each post gets two, so a word is in about 1 post in 20.
WORDS = ("sleep relax anxiety pain dispensary price quality edible gummies flower vape cart rosin tincture "
         "terpene strain indica sativa hybrid morning evening weekend friend music coffee doctor medical card "
         "organic grow harvest jar smell taste joint bong paper lighter beach park walk").split()
ENDPOINTS = {
    "segments": ["/api/v1/segments", "/api/v1/segments?consumer_type=wellness",
                 "/api/v1/segments?experience_level=daily"],
    "trends": ["/api/v1/trends", "/api/v1/trends?kind=effect&window=7d", "/api/v1/trends?kind=hashtag"],
    "intents": ["/api/v1/intents", "/api/v1/intents?region=California", "/api/v1/intents?product=edible"],
    "opportunities": ["/api/v1/opportunities", "/api/v1/opportunities?kind=effect",
                      "/api/v1/opportunities?region=Oregon"],
    "search": ["/api/v1/search?q=sleep", "/api/v1/search?q=dispensary&min_intent=70",
               "/api/v1/search?q=rosin&region=California", "/api/v1/search?q=%22indica%20morning%22",
               "/api/v1/search?q=gummies&product=edible&sentiment=positive"],
}


def bench_app():
    """The app gunicorn serves: ``bench/b2b_limits.py``'s (limiter off when ``B2B_BENCH_MODE=bare``),
    with the answer cache off when ``B2B_BENCH_CACHE=off``."""
    from b2b_limits import bench_app as limits_app

    from services.b2b.queries import cache

    if os.environ.get("B2B_BENCH_CACHE") == "off":
        cache.MAX_ENTRIES = 0
    app = limits_app()
    gate = app.extensions["b2b_gate"]
    for part in filter(None, os.environ.get("B2B_BENCH_PARTS", "").split(",")):
        if part == "no-change-check":  # no client changes during a benchmark: the check finds none
            gate.changes.poll = lambda: True
        elif part == "no-usage-log":
            gate.log_usage = lambda *call: None
        else:
            raise ValueError(f"unknown B2B_BENCH_PARTS part {part!r}")
    return app


def start_server(env: dict, log: Path, tree: Path = ROOT):
    """gunicorn with the deployed config, serving :func:`bench_app` (tests/harness.py's Web) of
    this checkout, or of ``tree`` (another checkout of the code: its modules come first)."""
    from harness import Web

    path = str(ROOT / "bench") if tree == ROOT else f"{tree},{tree / 'bench'}"
    return Web(env, log, app="b2b:bench_app()", pythonpath=path)


def seed(url: str, posts: int) -> None:
    """bench/aggregates.py's corpus, the texts drawn from :data:`WORDS`; then the jobs once."""
    import aggregates
    from sqlalchemy import text
    from sqlalchemy.orm import Session

    from services.db import make_engine
    from services.intelligence import opportunities, trends, views

    words = "ARRAY[" + ",".join(f"'{w}'" for w in WORDS) + "]"
    plain = "'bench post ' || g"
    assert plain in aggregates._POSTS, "bench/aggregates.py's post text changed"
    aggregates._POSTS = aggregates._POSTS.replace(
        plain, f"'post ' || g || ' ' || ({words})[1 + g % {len(WORDS)}] || ' ' || "
               f"({words})[1 + (g * 7 + g / {len(WORDS)}) % {len(WORDS)}]")
    engine = make_engine(url.replace("postgresql://", "postgresql+psycopg://", 1), pool_size=2)
    try:
        started = time.perf_counter()
        aggregates.seed(engine, posts, max(1, posts // 20))
        print(f"  seeded {posts:,} classified posts in {time.perf_counter() - started:.0f} s", flush=True)
        jobs = [*(lambda s, v=v: views.refresh(s, v) for v in views.VIEWS), trends.compute, opportunities.compute]
        for job in jobs:
            started = time.perf_counter()
            with Session(engine) as session, session.begin():
                job(session)
            print(f"  job {getattr(job, '__name__', 'view refresh')}: {time.perf_counter() - started:.1f} s",
                  flush=True)
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
    finally:
        engine.dispose()


def record(env: dict, key: str) -> dict:
    """Per endpoint, per URL: the statements the app runs when nothing is cached."""
    from api import record_statements

    from services.b2b.queries import cache

    cache.MAX_ENTRIES = 0
    plan = [("warm-up", ["/api/v1/usage"], True)] + [(name, urls, True) for name, urls in ENDPOINTS.items()]
    recordings = record_statements(env, key, plan)
    recordings.pop("warm-up")
    cache.MAX_ENTRIES = 2048
    return recordings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per run")
    parser.add_argument("--clients", default="16,64", help="concurrent clients, comma-separated")
    parser.add_argument("--endpoints", default=",".join(ENDPOINTS))
    parser.add_argument("--keep", action="store_true", help="keep the scratch database (its URL is printed)")
    parser.add_argument("--reuse", metavar="URL", help="measure a kept database again instead of seeding one")
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE of the recorded statements")
    parser.add_argument("--before", metavar="DIR", type=Path,
                        help="also serve another checkout (e.g. `git worktree add DIR HEAD~1`) as mode 'before', "
                             "interleaved with the others: a before/after inside one run")
    parser.add_argument("--parts", action="store_true",
                        help="also serve api without the check for client changes, and without the usage log")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved runs per endpoint and mode (merged)")
    parser.add_argument("--requests", type=int, default=200, help="requests per URL set in the one-client run")
    parser.add_argument("--single-only", action="store_true",
                        help="only the one-client in-process run (with --reuse: seconds instead of minutes)")
    args = parser.parse_args()
    import httpx
    import stack_ceiling
    from api import ServerWorkers, load_api, load_bare, merge, serving_cpu
    from b2b_limits import new_key
    from ingest import drop_database, fresh_database

    admin_url = os.environ["DATABASE_URL"]
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/6")
    concurrency = [int(c) for c in args.clients.split(",")]
    chosen = args.endpoints.split(",")
    url = args.reuse or fresh_database(admin_url)
    results: dict[tuple[str, str, int], dict] = {}
    try:
        if not args.reuse:
            seed(url, args.posts)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JETSTREAM_",))}
        env.update(DATABASE_URL=url, REDIS_URL=redis_url, JWT_SECRET=SECRET, LOG_LEVEL="WARNING",
                   PYTHONUNBUFFERED="1", RATE_LIMIT_IP="100000000/minute", RATE_LIMIT_USER="100000000/minute")
        env.setdefault("WEB_CONCURRENCY", "2")
        # Up to five servers at once, 2 workers each: (3 + 5) connections at most per worker, 3 kept when
        # idle; PostgreSQL's 100 connections are shared with the bare side's (up to --clients).
        env.setdefault("DB_POOL_SIZE", "3")
        if args.single_only:
            single_client(env, [new_key(env), new_key(env)], chosen, args.requests)
            return
        recordings = record(env, new_key(env))
        if args.explain:
            from api import explain

            explain(url, {name: recordings[name] for name in chosen})
        modes = {"api": {}, "no-replay": {"B2B_ANSWER_REPLAY": "0"}, "no-limiter": {"B2B_BENCH_MODE": "bare"},
                 "no-cache": {"B2B_BENCH_CACHE": "off"}}
        if args.parts:
            modes.update({part: {"B2B_BENCH_PARTS": part} for part in PARTS})
        runs: dict[tuple[str, str, int], list[dict]] = {}
        with tempfile.TemporaryDirectory() as logs, contextlib.ExitStack() as stack:
            servers = {}
            for mode, extra in modes.items():  # all at once, their runs interleaved: the same noise for each
                servers[mode] = start_server(dict(env, **extra), Path(logs) / f"{mode}.log")
                stack.callback(servers[mode].stop)
            if args.before:
                servers["before"] = start_server(env, Path(logs) / "before.log", args.before.resolve())
                stack.callback(servers["before"].stop)
            cpu = {mode: serving_cpu(server.proc.pid, redis_url) for mode, server in servers.items()}
            workers = {mode: ServerWorkers(server.proc.pid) for mode, server in servers.items()}
            ceilings = {}
            if "segments" in chosen:  # the stack alone, answering segments' bytes (bench/stack_ceiling.py)
                body = httpx.get(servers["api"].http + ENDPOINTS["segments"][0],
                                 headers={"Authorization": f"Bearer {new_key(env)}"}).raise_for_status().content
                for kind in stack_ceiling.KINDS:
                    ceilings[kind] = stack_ceiling.start(kind, env, body, Path(logs))
                    stack.callback(ceilings[kind].stop)
            ceiling_workers = {kind: ServerWorkers(server.proc.pid) for kind, server in ceilings.items()}
            for _ in range(args.rounds):
                for name in chosen:
                    for clients in concurrency:
                        for mode, server in servers.items():
                            headers = {"Authorization": f"Bearer {new_key(env)}"}
                            result = asyncio.run(load_api(server.http, ENDPOINTS[name], headers, clients,
                                                           args.seconds, cpu=cpu[mode], workers=workers[mode]))
                            runs.setdefault((name, mode, clients), []).append(result)
                            show(name, mode, clients, result)
                        for kind, server in ceilings.items() if name == "segments" else ():
                            result = asyncio.run(load_api(server.http, ENDPOINTS[name], {}, clients, args.seconds,
                                                           workers=ceiling_workers[kind]))
                            runs.setdefault((name, f"stack {kind}", clients), []).append(result)
                            show(name, f"stack {kind}", clients, result)
                        result = asyncio.run(load_bare(url, recordings[name], clients, args.seconds, autocommit=True))
                        runs.setdefault((name, "bare SQL", clients), []).append(result)
                        show(name, "bare SQL", clients, result)
        results = {key: merge(parts) for key, parts in runs.items()}
        report(results, chosen, concurrency, _posts_in(url) if args.reuse else args.posts)
        report_cpu(results, chosen, concurrency, list(servers))
        if args.parts:
            report_parts(results, chosen, concurrency)
        if ceilings:
            report_ceiling(results, concurrency, len(body))
        single_client(env, [new_key(env), new_key(env)], chosen, args.requests)
    finally:
        import redis

        redis.Redis.from_url(redis_url).delete("b2b:usage:buffer", "b2b:usage:processing")
        if args.keep or args.reuse:
            print(f"kept {url}")
        else:
            drop_database(admin_url, url)


def _posts_in(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM posts").fetchone()[0]


def single_client(env: dict, keys: list[str], names: list[str], requests: int) -> None:
    """One request at a time, in-process (Flask's test client), interleaved: cache on with
    leases (as deployed), cache on with one limiter script per call (``exact``: before leases),
    cache off. What the cache and the leases save per request, without queueing behind other
    clients; CPU time (not counting waits) is the steadier figure on a busy machine. ``exact``
    runs with the second key (another client): a lease is per client."""
    import statistics

    from app import create_app
    from cannect.config import get_settings
    from services import db
    from services.b2b.access import LEASE_MAX
    from services.b2b.queries import cache

    os.environ.update(env)
    for cached in (get_settings, db.get_engine, db._session_factory):
        cached.cache_clear()
    app = create_app()
    client, gate = app.test_client(), app.extensions["b2b_gate"]
    headers = [{"Authorization": f"Bearer {key}"} for key in keys]
    # mode: (cache entries, lease max, key)
    settings = {"cached": (2048, LEASE_MAX, 0), "exact": (2048, 0, 1), "uncached": (0, LEASE_MAX, 0)}
    print(f"\none client in-process, {requests} requests each: median / p95 ms, mean CPU us")
    for name in names:
        times: dict[str, list[float]] = {mode: [] for mode in settings}
        cpu = dict.fromkeys(settings, 0.0)
        for i in range(requests):
            for mode in times:
                cache.MAX_ENTRIES, gate.lease_max, which = settings[mode]
                url = ENDPOINTS[name][i % len(ENDPOINTS[name])]
                started, started_cpu = time.perf_counter(), time.process_time()
                assert client.get(url, headers=headers[which]).status_code == 200, url
                times[mode].append((time.perf_counter() - started) * 1000)
                cpu[mode] += time.process_time() - started_cpu
        cells = []
        for mode, values in times.items():
            values.sort()
            cells.append(f"{mode} {statistics.median(values):6.2f} / {values[int(0.95 * len(values))]:6.2f} "
                         f"{cpu[mode] / len(values) * 1e6:5.0f} us")
        print(f"  {name:<13} " + "   ".join(cells), flush=True)
    gate.lease_max = LEASE_MAX
    cache.MAX_ENTRIES = 2048
    db.get_engine().dispose()


def show(name: str, mode: str, clients: int, result: dict) -> None:
    errors = f"  errors {result['errors']}" if result.get("errors") else ""
    print(f"  {name:<13} {mode:<10} {clients:>3} clients: {result['rps']:8.0f} req/s  p50 {result['p50']:6.1f} ms  "
          f"p95 {result['p95']:6.1f} ms{errors}", flush=True)


def report(results: dict, names: list[str], concurrency: list[int], posts: int) -> None:
    print(f"\n{posts:,} classified posts; req/s (p95 ms)")
    before = ("before",) if any(mode == "before" for _, mode, _ in results) else ()
    columns = (*MODES, "bare SQL", *before)
    head = f"{'endpoint':<13} {'clients':>7} " + " ".join(f"{m:>18}" for m in columns)
    print(head + f" {'api/bare':>9} {'no-replay/bare':>15} {'limiter cost':>13} {'api/no-replay':>14}"
          + (f" {'api/before':>11}" if before else ""))
    for name in names:
        for clients in concurrency:
            row = [results[(name, mode, clients)] for mode in columns]
            cells = " ".join(f"{r['rps']:>9.0f} ({r['p95']:>5.1f})" for r in row)
            api, no_replay, no_limiter, bare = row[0]["rps"], row[1]["rps"], row[2]["rps"], row[4]["rps"]
            print(f"{name:<13} {clients:>7} {cells} {api / bare:>9.2f} {no_replay / bare:>15.2f} "
                  f"{1 - api / no_limiter:>13.1%} {api / no_replay:>14.2f}"
                  + (f" {api / row[5]['rps']:>11.2f}" if before else ""))


def report_cpu(results: dict, names: list[str], concurrency: list[int], modes: list[str]) -> None:
    """CPU per request of each server (its processes and Redis): the cost of a part, apart from the
    swings of req/s on a shared machine."""
    print("\nCPU per request, us: the server's processes + Redis (bench/api.py's serving_cpu)")
    print(f"{'endpoint':<13} {'clients':>7} " + " ".join(f"{m:>10}" for m in modes)
          + f" {'limiter cost':>13} {'replay saves':>13}")
    for name in names:
        for clients in concurrency:
            spent = {mode: results[(name, mode, clients)].get("cpu_us", float("nan")) for mode in modes}
            print(f"{name:<13} {clients:>7} " + " ".join(f"{spent[m]:>10.0f}" for m in modes)
                  + f" {1 - spent['no-limiter'] / spent['api']:>13.1%} {1 - spent['api'] / spent['no-replay']:>13.1%}")


def report_parts(results: dict, names: list[str], concurrency: list[int]) -> None:
    """What each part of the limiter costs: 1 - api / api without it, in req/s and in CPU per request."""
    print("\nparts of the limiter (--parts): req/s (CPU us per request), and the part's cost = 1 - api / without it")
    print(f"{'endpoint':<13} {'clients':>7} {'api':>16} " + " ".join(f"{part:>18}" for part in PARTS)
          + " " + " ".join(f"{'cost of ' + part.removeprefix('no-'):>25}" for part in PARTS))
    for name in names:
        for clients in concurrency:
            api = results[(name, "api", clients)]
            without = [results[(name, part, clients)] for part in PARTS]
            nan = float("nan")
            cells = " ".join(f"{r['rps']:>9.0f} ({r.get('cpu_us', nan):>5.0f})" for r in without)
            costs = " ".join(f"{1 - api['rps'] / r['rps']:>13.1%} / "
                             f"{1 - r.get('cpu_us', nan) / api.get('cpu_us', nan):>7.1%}" for r in without)
            print(f"{name:<13} {clients:>7} {api['rps']:>9.0f} ({api.get('cpu_us', nan):>5.0f}) {cells} {costs}")


def report_ceiling(results: dict, concurrency: list[int], size: int) -> None:
    """segments next to the stack alone answering its bytes: how much of the gap to bare SQL is ours."""
    print(f"\nthe stack alone (bench/stack_ceiling.py), answering segments' {size:,} bytes; req/s (p95 ms)")
    columns = ("stack wsgi", "stack flask", "api", "bare SQL")
    print(f"{'clients':>7} " + " ".join(f"{c:>18}" for c in columns)
          + f" {'flask/bare':>11} {'api/flask':>10} {'api/wsgi':>9}")
    for clients in concurrency:
        wsgi, flask, api, bare = (results[("segments", c, clients)] for c in columns)
        cells = " ".join(f"{r['rps']:>9.0f} ({r['p95']:>5.1f})" for r in (wsgi, flask, api, bare))
        print(f"{clients:>7} {cells} {flask['rps'] / bare['rps']:>11.2f} "
              f"{api['rps'] / flask['rps']:>10.2f} {api['rps'] / wsgi['rps']:>9.2f}")


if __name__ == "__main__":
    main()
