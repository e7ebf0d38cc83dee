"""Member onboarding throughput, and what it costs live ingest.

A member following ``--accounts`` accounts of ``--posts`` recent posts each signs in (``cannect
members add``) while a live stream flows at ``--rate`` events a second. The fake PDS and
AppView (tests/fakes/appview.py, real local HTTP) answer every request after ``--delay``
seconds. Reported:

- backfill: records stored per second from the job's start to its end (follows and posts,
  through fetch, edge checks, the indexing rules and the commit under the ingest lock), pages
  and requests;
- live ingest lag (now - time_us of the last applied event, sampled every 50 ms while the
  stream flows) before the sign-in and while the backfill runs: p50 / p95 / max, and whether
  the p95 rose by no more than the stated bound (``--lag-bound-ms``, 250 ms: about one
  listener batch window plus a few page commits under the ingest lock); exit 1 beyond it.

Processes are the real ones (replay server tailing a live file, listener, one ingest worker
with 2 threads, one backfill worker ``--processes 1 --threads 8`` as in the Procfile). Needs
a scratch database: ``DATABASE_URL`` names the server (a database is created and dropped)
and ``REDIS_URL`` a Redis database this bench may flush. Usage:
    python bench/backfill.py [--accounts 200] [--posts 40] [--delay 0.05] [--rate 300]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

import orjson  # noqa: E402
import psycopg  # noqa: E402
import redis  # noqa: E402

from fakes.appview import FakeAtproto  # noqa: E402
from fakes.identity import FakePlc, did_document  # noqa: E402
from fakes.pds import make_cid, make_tid  # noqa: E402
from harness import System  # noqa: E402
from ingest import drop_database, fresh_database  # noqa: E402

POST, LIKE, FOLLOW = "app.bsky.feed.post", "app.bsky.feed.like", "app.bsky.graph.follow"
BASE32 = "abcdefghijklmnopqrstuvwxyz234567"


def did_of(n: int) -> str:
    digits = "".join(BASE32[(n >> (5 * i)) & 31] for i in range(8))
    return "did:plc:bench" + "a" * 11 + digits


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Live:
    """Writes a live Jetstream file at a steady rate: new posts of followed accounts, and likes."""

    def __init__(self, path: Path, authors: list[str], posts: list[str], rate: float):
        self.file, self.authors, self.posts, self.rate = open(path, "ab"), authors, posts, rate
        self.stop = threading.Event()
        self.last = 0
        self.written = 0
        self.random = random.Random(5)

    def run(self) -> None:
        clock = 0
        while not self.stop.is_set():
            started = time.monotonic()
            for _ in range(max(1, int(self.rate / 20))):
                clock += 1
                self.last = max(time.time_ns() // 1000, self.last + 1)
                if self.random.random() < 0.3:
                    author = self.random.choice(self.authors)
                    record = {"$type": POST, "text": f"live {clock} #cannabis",
                              "createdAt": iso(datetime.now(timezone.utc))}
                    rkey, collection = make_tid(self.last, clock & 1023), POST
                    self.posts.append(f"at://{author}/{POST}/{rkey}")
                else:
                    author = did_of(1_000_000 + self.random.randrange(5000))
                    subject = self.random.choice(self.posts)
                    record = {"$type": LIKE, "subject": {"uri": subject, "cid": make_cid({"u": subject})},
                              "createdAt": iso(datetime.now(timezone.utc))}
                    rkey, collection = make_tid(self.last, clock & 1023), LIKE
                frame = {"did": author, "time_us": self.last, "kind": "commit",
                         "commit": {"rev": "x", "operation": "create", "collection": collection, "rkey": rkey,
                                    "cid": make_cid(record), "record": record}}
                self.file.write(orjson.dumps(frame) + b"\n")
                self.written += 1
            self.file.flush()
            time.sleep(max(0.0, 0.05 - (time.monotonic() - started)))


def sample_lag(db_url: str, until: threading.Event, into: list[float]) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        while not until.is_set():
            row = conn.execute("SELECT applied_time_us FROM ingest_state").fetchone()
            if row and row[0]:
                into.append((time.time_ns() // 1000 - row[0]) / 1e6)
            time.sleep(0.05)


def summary(lags: list[float]) -> str:
    if not lags:
        return "no samples"
    ordered = sorted(lags)
    p95 = ordered[int(0.95 * (len(ordered) - 1))]
    return (f"p50 {statistics.median(ordered) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
            f"max {ordered[-1] * 1000:.0f} ms ({len(ordered)} samples)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--posts", type=int, default=40)
    parser.add_argument("--delay", type=float, default=0.05)
    parser.add_argument("--rate", type=float, default=300.0, help="live events per second")
    parser.add_argument("--baseline-seconds", type=float, default=8.0)
    parser.add_argument("--host-concurrency", type=int, default=8)
    parser.add_argument("--lag-bound-ms", type=float, default=250.0,
                        help="the stated bound: p95 live lag during the backfill - p95 before it")
    args = parser.parse_args()

    admin_url, redis_url = os.environ["DATABASE_URL"], os.environ["REDIS_URL"]
    redis.Redis.from_url(redis_url).flushdb()
    db_url = fresh_database(admin_url)
    plc, pds, appview = FakePlc(), FakeAtproto("bench-pds", args.delay), FakeAtproto("bench-appview", args.delay)
    plc.start(), pds.start(), appview.start()
    workdir = Path(tempfile.mkdtemp(prefix="bench-backfill-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_", "JETSTREAM_"))}
    env.update(DATABASE_URL=db_url, REDIS_URL=redis_url, LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1",
               BACKFILL_APPVIEW_URL=appview.url, BACKFILL_INSECURE_TEST_ORIGINS=f"{pds.url},{appview.url}",
               BACKFILL_HOST_CONCURRENCY=str(args.host_concurrency), BACKFILL_MAX_POSTS_PER_ACCOUNT=str(args.posts),
               INGEST_BATCH_MS="100")
    system = System(env, workdir)
    stop_sampling = threading.Event()
    try:
        now = datetime.now(timezone.utc)
        member, accounts = did_of(0), [did_of(n) for n in range(1, args.accounts + 1)]
        posts: list[str] = []
        for n, did in enumerate([member, *accounts]):
            plc.publish(did, document=did_document(did, None, pds.url))
            pds.repos[did], appview.repos[did] = {}, {}
            for p in range(args.posts):
                when = now - timedelta(minutes=10 + 30 * p + n)
                record = {"$type": POST, "text": f"post {p} of {n}", "createdAt": iso(when)}
                rkey = make_tid(int(when.timestamp() * 1e6), (n * 7 + p) & 1023)
                posts.append(appview.put(did, POST, rkey, make_cid(record), record, (p % 7, p % 3, 0)))
        for n, did in enumerate(accounts):
            record = {"$type": FOLLOW, "subject": did, "createdAt": iso(now - timedelta(days=30))}
            pds.put(member, FOLLOW, make_tid(int((now - timedelta(days=30)).timestamp() * 1e6), n & 1023),
                    make_cid(record), record)

        capture = workdir / "live.jsonl"
        capture.write_bytes(orjson.dumps({"did": did_of(999_999), "time_us": time.time_ns() // 1000,
                                          "kind": "identity", "identity": {"did": did_of(999_999)}}) + b"\n")
        system.start_replay(capture)
        system.env["PLC_DIRECTORY_URL"] = plc.url
        system.start_worker(threads=2)
        system.start("worker-backfill", "worker", "--queues", "backfill", "--processes", "1", "--threads", "8")
        system.start_listener()
        live = Live(capture, accounts, posts, args.rate)
        threading.Thread(target=live.run, daemon=True).start()
        time.sleep(3)  # processes up, stream flowing

        before: list[float] = []
        sampler = threading.Thread(target=sample_lag, args=(db_url, stop_sampling, before), daemon=True)
        sampler.start()
        time.sleep(args.baseline_seconds)
        stop_sampling.set()
        sampler.join()

        during: list[float] = []
        stop_sampling = threading.Event()
        sampler = threading.Thread(target=sample_lag, args=(db_url, stop_sampling, during), daemon=True)
        sampler.start()
        subprocess.run([sys.executable, "-m", "cannect.cli", "members", "add", member], env=system.env, check=True,
                       capture_output=True)
        with psycopg.connect(db_url, autocommit=True) as conn:
            deadline = time.monotonic() + 1800
            while True:
                row = conn.execute("SELECT status, records, started_at, finished_at, done, total FROM backfill_jobs "
                                   "WHERE kind = 'member'").fetchone()
                if row and row[0] not in ("queued", "running"):
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"backfill not done: {row}\n{system.log('worker-backfill')}")
                time.sleep(0.2)
            pages = conn.execute("SELECT sum(pages) FROM backfill_chunks").fetchone()[0]
        stop_sampling.set()
        sampler.join()
        live.stop.set()
        status, records, started, finished, done, total = row
        seconds = (finished - started).total_seconds()
        requests = len(pds.requests) + len(appview.requests)
        print(f"accounts {args.accounts}, posts each {args.posts}, fake delay {args.delay * 1000:.0f} ms, "
              f"per-host limit {args.host_concurrency}, live stream {args.rate:.0f} events/s")
        print(f"backfill: {status}, {done}/{total} parts, {records} records in {seconds:.1f} s = "
              f"{records / seconds:.0f} records/s ({pages} pages, {requests} requests, "
              f"max in flight: pds {pds.max_in_flight}, appview {appview.max_in_flight})")
        print(f"live ingest lag before the sign-in: {summary(before)}")
        print(f"live ingest lag during the backfill: {summary(during)}")
        p95 = lambda lags: sorted(lags)[int(0.95 * (len(lags) - 1))] * 1000  # noqa: E731
        raised = p95(during) - p95(before)
        verdict = "within" if raised <= args.lag_bound_ms else "BEYOND"
        print(f"p95 lag raised by {raised:.0f} ms: {verdict} the stated bound of {args.lag_bound_ms:.0f} ms")
        if raised > args.lag_bound_ms:
            raise SystemExit(1)
    finally:
        stop_sampling.set()
        system.stop_all()
        plc.stop(), pds.stop(), appview.stop()
        time.sleep(1)
        drop_database(admin_url, db_url)


if __name__ == "__main__":
    main()
