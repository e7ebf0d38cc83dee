"""What the B2B key check, rate limiter and usage log cost: req/s of /api/v1 with and without them.

Starts the web app under gunicorn (``cannect/gunicorn_conf.py`` as deployed) twice on a
scratch database, and loads each with 16 and then 64 concurrent keep-alive clients (the load
generator of ``bench/api.py``):

- ``full``: as in production: the key is parsed, checksummed, hashed and compared with the
  cached client row; the limiter script runs in Redis (version check, GCRA, monthly counter,
  and the RPUSH of the usage entries of calls finished since: one round trip);
- ``exact``: the same with leases off (``Gate.lease_max = 0``): one limiter script per
  request, as before leases (``services/b2b/access.py``);
- ``bare``: the same app and key check, with the limiter answering "ok" without Redis and
  the usage log switched off: what remains when limits and logging cost nothing.

Two endpoints: ``/api/v1/ping`` (a route this benchmark adds that returns ``{}``: the
overhead at its largest share) and ``/api/v1/usage`` (a real handler with one SQL query).
All servers run at once and their runs alternate (``--rounds`` each, the median counts), so
that both see the same noise from whatever else the machine does. Each run uses a new client
whose limits are far above the load. Prints req/s, p95 and the cost ratio ``1 - full/bare``;
the goal is under 10%.

Then, in this process, the CPU time per request of both modes through Flask's test client
(no waiting counted), and the Redis server's time per limiter script: on a busy shared machine
req/s swings by tens of percent between identical runs, CPU time much less.

What to expect without leases (``exact``): the limiter is one Redis round trip per request (~70 us of redis-py with
hiredis, the gevent switch, ~50 us of Redis). Next to a handler that does nothing (``ping``)
that is a quarter to a third of the work; next to one SQL query (``usage``) it is under 10%,
and next to the data endpoints' queries less still. With leases (``full``) a client calling
often needs one script per several calls (the CPU table prints how many), so the cost shrinks
to the key check and the usage entry.

``--redis-delay-ms`` puts a proxy between the servers and Redis that holds each answer that long
(``tests/harness.py``'s ``RemoteRedis``): what the limiter costs when Redis is on another host.

Usage (the database is created and dropped; DATABASE_URL is only used to reach the server):
    DATABASE_URL=postgresql://root@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/15 \\
        python bench/b2b_limits.py [--seconds 8] [--clients 16,64] [--redis-delay-ms 0.5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

import psycopg  # noqa: E402

SECRET = "bench-secret-" + "x" * 32
MODES = ("bare", "exact", "full")


def bench_app():
    """The app gunicorn serves here: the real one plus ``/api/v1/ping``; in ``bare`` mode the
    limiter answers without Redis and no usage is logged, in ``exact`` mode every call is one
    limiter script (no leases) (``B2B_BENCH_MODE``)."""
    from flask_openapi3 import APIBlueprint

    from app import create_app
    from app.api.v1 import B2B_SECURITY
    from services.b2b.limits import Verdict

    app = create_app()
    ping = APIBlueprint("bench_ping", __name__, url_prefix="/api/v1")

    @ping.get("/ping", security=B2B_SECURITY)
    def _ping():
        return {}

    app.register_api(ping)
    if os.environ.get("B2B_BENCH_MODE") == "bare":
        gate = app.extensions["b2b_gate"]
        gate.limiter.admit = lambda client_id, version, rate, quota, consume=True, usage_entries=(), extra=0: Verdict(
            "ok", rate, rate - 1, 1, 0, quota, 1, 86400, granted=1)
        gate.lease_max = 0
        gate.log_usage = lambda *call: None
    elif os.environ.get("B2B_BENCH_MODE") == "exact":
        app.extensions["b2b_gate"].lease_max = 0
    return app


def start_server(env: dict, log: Path):
    """gunicorn with the deployed config, serving :func:`bench_app` (tests/harness.py's Web)."""
    from harness import Web

    return Web(env, log, app="b2b_limits:bench_app()", pythonpath=str(ROOT / "bench"))


def new_key(env: dict) -> str:
    """A client whose limits are far above anything this machine can send."""
    os.environ.update(DATABASE_URL=env["DATABASE_URL"])
    from services import db
    from services.b2b import clients

    db.get_engine.cache_clear()
    db._session_factory.cache_clear()
    with db.session_scope() as session:
        _, key = clients.create(session, f"bench {uuid.uuid4().hex[:6]}", "custom", monthly_quota=2_000_000_000,
                                rate_limit_per_min=100_000)
    db.get_engine().dispose()  # a key per run: an engine left to the garbage collector holds its connection
    return key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per run")
    parser.add_argument("--clients", default="16,64", help="concurrent clients, comma-separated")
    parser.add_argument("--rounds", type=int, default=3, help="runs per mode, interleaved; the median counts")
    parser.add_argument("--cpu-requests", type=int, default=3000,
                        help="requests per CPU-time sample, in-process (0: skip that part)")
    parser.add_argument("--paths", default="/api/v1/ping,/api/v1/usage", help="endpoints, comma-separated")
    parser.add_argument("--redis-delay-ms", type=float, default=0.0,
                        help="added to each of Redis's answers to the servers (a Redis on another host)")
    args = parser.parse_args()
    from alembic import command
    from api import ServerWorkers, load_api
    from conftest import _with_database
    from harness import RemoteRedis

    from migrations import alembic_config

    admin_url = os.environ["DATABASE_URL"]
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
    name = f"bench_b2b_access_{uuid.uuid4().hex[:8]}"
    url = _with_database(admin_url, name)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    results: dict[tuple[str, str, int], list[dict]] = {}
    try:
        command.upgrade(alembic_config(url.replace("postgresql://", "postgresql+psycopg://", 1)), "head")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JETSTREAM_",))}
        env.update(DATABASE_URL=url, REDIS_URL=redis_url, JWT_SECRET=SECRET, LOG_LEVEL="WARNING",
                   PYTHONUNBUFFERED="1", RATE_LIMIT_IP="100000000/minute", RATE_LIMIT_USER="100000000/minute")
        env.setdefault("WEB_CONCURRENCY", "2")
        # Three servers of two workers each run at once: keep their connections under max_connections.
        env.setdefault("DB_POOL_SIZE", "5")
        cpu = cpu_per_request(env, args.cpu_requests) if args.cpu_requests else None
        concurrency = [int(c) for c in args.clients.split(",")]
        remote = RemoteRedis(redis_url, args.redis_delay_ms / 1000) if args.redis_delay_ms else None
        served = dict(env, REDIS_URL=remote.url) if remote else env
        with tempfile.TemporaryDirectory() as logs:
            servers = {}
            try:
                for mode in MODES:  # all up at once, runs interleaved: they share the machine's noise
                    servers[mode] = start_server(dict(served, B2B_BENCH_MODE=mode), Path(logs) / f"{mode}.log")
                workers = {mode: ServerWorkers(server.proc.pid) for mode, server in servers.items()}
                for path in args.paths.split(","):
                    for clients in concurrency:
                        for round_ in range(args.rounds):
                            for mode in MODES:
                                headers = {"Authorization": f"Bearer {new_key(env)}"}
                                result = asyncio.run(load_api(servers[mode].http, [path], headers, clients,
                                                              args.seconds, workers=workers[mode]))
                                results.setdefault((mode, path, clients), []).append(result)
                                print(f"  {mode:<4} {path:<14} {clients:>3} clients: {result['rps']:8.0f} req/s "
                                      f"p50 {result['p50']:6.1f} ms p95 {result['p95']:6.1f} ms"
                                      + (f"  errors {result['errors']}" if result["errors"] else ""), flush=True)
            finally:
                if remote:
                    remote.close()
                for server in servers.values():
                    server.stop()
                    if any(run["errors"] for (mode, _, _), runs in results.items() if servers.get(mode) is server
                           for run in runs):
                        print(f"--- {server.log_path.name} (errors seen) ---\n" + server.log_path.read_text()[-6000:])
        report(results, args.paths.split(","), concurrency, env, cpu, args.redis_delay_ms)
    finally:
        import redis

        redis.Redis.from_url(redis_url).delete("b2b:usage:buffer", "b2b:usage:processing")
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def cpu_per_request(env: dict, requests: int, samples: int = 5) -> dict:
    """CPU time of the web process per /api/v1/ping, every mode in this process (Flask's test
    client, one request at a time), samples interleaved, the least of each kept; and the Redis
    server's time per limiter script (INFO commandstats). CPU time does not count waiting, so
    it holds up on a busy machine where req/s does not."""
    import redis

    from cannect.config import get_settings
    from services import db

    os.environ.update({k: env[k] for k in ("DATABASE_URL", "REDIS_URL", "JWT_SECRET", "RATE_LIMIT_IP",
                                           "RATE_LIMIT_USER", "LOG_LEVEL")})
    for cached in (get_settings, db.get_engine, db._session_factory):
        cached.cache_clear()
    clients = {}
    scripts = {"calls": 0, "requests": 0}
    for mode in MODES:
        os.environ["B2B_BENCH_MODE"] = mode
        app = bench_app()
        clients[mode] = (app.test_client(), {"Authorization": f"Bearer {new_key(env)}"})
        if mode == "full":  # how many calls a script serves with leases
            limiter, admit = app.extensions["b2b_gate"].limiter, app.extensions["b2b_gate"].limiter.admit

            def counted(*args, _admit=admit, **kwargs):
                scripts["calls"] += 1
                return _admit(*args, **kwargs)

            limiter.admit = counted
    os.environ.pop("B2B_BENCH_MODE")
    server = redis.Redis.from_url(env["REDIS_URL"])
    server.config_resetstat()
    figures = {}
    for path, count in (("/api/v1/ping", requests), ("/api/v1/usage", max(1, requests // 4))):
        best = {mode: float("inf") for mode in MODES}
        for _ in range(samples):
            for mode, (client, headers) in clients.items():
                for _ in range(min(100, count)):
                    client.get(path, headers=headers)
                start = time.process_time()
                for _ in range(count):
                    client.get(path, headers=headers)
                best[mode] = min(best[mode], (time.process_time() - start) / count * 1e6)
            scripts["requests"] += (min(100, count) + count)
        figures[path] = best
    stats = server.info("commandstats")
    figures["redis_us"] = stats.get("cmdstat_evalsha", {}).get("usec_per_call", 0.0)
    figures["scripts_per_call"] = scripts["calls"] / max(1, scripts["requests"])
    return figures


def _median_run(runs: list[dict]) -> dict:
    return sorted(runs, key=lambda run: run["rps"])[len(runs) // 2]


def report(results: dict, paths: list[str], concurrency: list[int], env: dict, cpu: dict | None,
           redis_delay_ms: float) -> None:
    from api import worker_description

    print(f"\nB2B limiter + usage log cost ({worker_description(env)}, {os.cpu_count()} CPUs, "
          "load generator on the same machine"
          + (f"; Redis's answers {redis_delay_ms:g} ms late, through a proxy" if redis_delay_ms else "") + ")")
    print("exact = one limiter script per call (before leases); full = with leases; cost = 1 - mode/bare")
    costed = MODES[1:]
    print(f"{'endpoint':<15}{'clients':>8}" + "".join(f"{mode + ' req/s':>16}" for mode in MODES)
          + "".join(f"{mode + ' p95':>14}" for mode in costed) + "".join(f"{mode + ' cost':>15}" for mode in costed))
    for path in paths:
        for clients in concurrency:
            runs = {mode: _median_run(results[(mode, path, clients)]) for mode in MODES}
            bare = runs["bare"]["rps"]
            print(f"{path:<15}{clients:>8}" + "".join(f"{runs[mode]['rps']:>16.0f}" for mode in MODES)
                  + "".join(f"{runs[mode]['p95']:>14.1f}" for mode in costed)
                  + "".join(f"{1 - runs[mode]['rps'] / bare if bare else float('nan'):>15.1%}" for mode in costed))
    if cpu:
        print(f"\nCPU time per request (in-process, Flask test client, one at a time; Redis: "
              f"{cpu['redis_us']:.0f} us per limiter script)")
        print(f"(Redis time per call: a script's time x scripts per call: exact 1, full "
              f"{cpu['scripts_per_call']:.3f})")
        print(f"{'endpoint':<15}{'bare us':>10}{'exact us':>10}{'full us':>10}{'exact cost':>11}{'full cost':>10}")
        for path in ("/api/v1/ping", "/api/v1/usage"):
            bare, exact, full = (cpu[path][mode] for mode in MODES)
            redis_exact, redis_full = cpu["redis_us"], cpu["redis_us"] * cpu["scripts_per_call"]
            cost_exact = (exact - bare + redis_exact) / (exact + redis_exact)
            cost_full = (full - bare + redis_full) / (full + redis_full)
            print(f"{path:<15}{bare:>10.0f}{exact:>10.0f}{full:>10.0f}{cost_exact:>11.1%}{cost_full:>10.1%}")


if __name__ == "__main__":
    main()
