"""Admin backfill jobs through the real worker, and what they cost live ingest (issue 10).

While a live stream flows at ``--rate`` events a second (replay server tailing a live file,
listener, one ingest worker with 2 threads, a classify worker: the Procfile's processes), one
admin job of each kind runs on a fresh ``cannect worker --queues backfill --threads 8``:

- ``legacy_import`` of a generated ``posts.db`` (``--rows``, an odd row every 25 as in
  tests/legacy_rows.py), started with ``cannect backfill start ... --detach``: rows/s, chunks,
  imported/skipped, and how long after the job its posts were all classified;
- ``jetstream_replay`` of a window (``--window`` of its time span) of a generated capture
  (``cannect generate-capture``, ``--capture-events``) served by a second replay server:
  events/s and chunks;
- ``reclassify`` of ``--reclassify`` imported posts (forced, by time range) ``mode=inline``
  (classified in the backfill worker) and ``mode=queue`` (sent to the classify queue, at most
  50 messages waiting): posts/s until every one is classified again.

For each: the live ingest lag (now - time_us of the last applied event, sampled every 50 ms)
p50 / p95 / p99 / max while it runs, next to the lag with no backfill running (baseline in
the same run), their p95 ratio and whether the p95 rose by no more than ``--lag-bound-ms``
(250 ms, the bound bench/backfill.py states; exit 1 beyond it), and the peak RSS (VmHWM) of
the backfill worker's process. A job not over after ``--phase-timeout`` is reported NOT DONE
and cancelled (``reclassify mode=queue`` waits while the classify queue holds > 50 messages).
Needs a scratch database: ``DATABASE_URL`` names the server (a database is created and
dropped) and ``REDIS_URL`` a Redis database this bench may flush. Usage:
    python bench/admin_backfill.py [--rows 20000] [--capture-events 30000] [--reclassify 2000]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

import orjson  # noqa: E402
import psycopg  # noqa: E402
import redis  # noqa: E402

from backfill import Live, did_of, sample_lag  # noqa: E402
from cannect.embedded import free_port  # noqa: E402
from harness import System  # noqa: E402
from ingest import drop_database, fresh_database, peak_rss_mb  # noqa: E402
from legacy_rows import write_posts_db  # noqa: E402
from services.status import queue_depths  # noqa: E402


def percentiles(lags: list[float]) -> str:
    if not lags:
        return "no samples"
    ordered = sorted(lags)
    at = lambda q: ordered[int(q * (len(ordered) - 1))] * 1000  # noqa: E731
    return (f"p50 {at(0.5):.0f} ms, p95 {at(0.95):.0f} ms, p99 {at(0.99):.0f} ms, max {ordered[-1] * 1000:.0f} ms "
            f"({len(ordered)} samples)")


def p95(lags: list[float]) -> float:
    return sorted(lags)[int(0.95 * (len(lags) - 1))] if lags else float("nan")


def group_peak_rss_mb(pgid: int) -> float:
    """The largest peak RSS among the processes of a process group (Dramatiq forks its workers)."""
    peaks = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[2]) == pgid:
                        peaks.append(peak_rss_mb(int(entry)))
            except (OSError, ValueError, IndexError):
                continue
    return max(peaks, default=float("nan"))


class Sampler:
    """Live ingest lag samples while a ``with`` block runs."""

    def __init__(self, db_url: str):
        self.db_url, self.lags, self.stop = db_url, [], threading.Event()

    def __enter__(self):
        self.thread = threading.Thread(target=sample_lag, args=(self.db_url, self.stop, self.lags), daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


class Bench:
    def __init__(self, system: System, db_url: str, baseline: list[float], timeout: float, bound_ms: float):
        self.system, self.db_url, self.baseline, self.timeout = system, db_url, baseline, timeout
        self.bound_ms, self.beyond = bound_ms, False
        self.conn = psycopg.connect(db_url, autocommit=True)
        self.redis = redis.Redis.from_url(system.redis_url)
        self.lines: list[str] = []

    def worker(self, name: str) -> None:
        self.system.start(name, "worker", "--queues", "backfill", "--processes", "1", "--threads", "8")
        time.sleep(3)  # booted before the job is sent

    def start(self, kind: str, **params) -> int:
        args = [a for key, value in params.items() for a in ("-p", f"{key}={value}")]
        done = subprocess.run([sys.executable, "-m", "cannect.cli", "backfill", "start", kind, *args, "--detach"],
                              env=self.system.env, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"backfill start {kind} failed: {done.stderr}")
        return int(done.stdout.strip())

    def wait(self, job_id: int, name: str) -> tuple:
        """The job's row once it is over, or after ``timeout`` seconds (then cancelled, as it was)."""
        deadline = time.monotonic() + self.timeout
        while True:
            row = self.conn.execute("SELECT status, done, total, chunks_done, report, started_at, finished_at, error "
                                    "FROM backfill_jobs WHERE id = %s", (job_id,)).fetchone()
            if row[0] not in ("queued", "running"):
                break
            if time.monotonic() > deadline:
                subprocess.run([sys.executable, "-m", "cannect.cli", "backfill", "cancel", str(job_id)],
                               env=self.system.env, capture_output=True)
                return row
            time.sleep(0.2)
        if row[0] != "done":
            raise SystemExit(f"job {job_id} {row[0]}: {row[7]}\n{self.system.log(name)}")
        return row

    def classified(self, since, count: int):
        """When the last of ``count`` posts classified at or after ``since`` was (None: not within the timeout)."""
        deadline = time.monotonic() + self.timeout
        while True:
            n, last = self.conn.execute("SELECT count(*), max(classified_at) FROM post_classifications "
                                        "WHERE classified_at >= %s", (since,)).fetchone()
            if n >= count:
                return last
            if time.monotonic() > deadline:
                return None
            time.sleep(0.2)

    def report(self, title: str, unit: str, row: tuple, lags: list[float], worker: str, extra: str = "") -> None:
        status, done, total, chunks, report, started, finished, _ = row
        rss = group_peak_rss_mb(self.system.procs[worker].pid)
        ratio = p95(lags) / p95(self.baseline)
        if status == "done":
            seconds = (finished - started).total_seconds()
            head = f"{title}: {done:,} {unit} in {seconds:.1f} s = {done / seconds:,.0f} {unit}/s, {chunks} chunks"
        else:
            head = (f"{title}: NOT DONE after {self.timeout:.0f} s ({status}, {done:,}/{total:,} {unit}, {chunks} "
                    f"chunks; classify queue {queue_depths(self.redis)['classify']['pending']} messages), cancelled")
        raised = (p95(lags) - p95(self.baseline)) * 1000
        verdict = "within" if raised <= self.bound_ms else "BEYOND"
        self.beyond |= raised > self.bound_ms
        lines = [f"{head}, backfill worker peak RSS {rss:.0f} MB",
                 f"  report: {orjson.dumps(report).decode()}"] + ([f"  {extra}"] if extra else []) + [
                 f"  live ingest lag during it: {percentiles(lags)}; p95 x{ratio:.2f} the baseline, "
                 f"+{raised:.0f} ms: {verdict} the stated bound of {self.bound_ms:.0f} ms"]
        self.lines += lines
        print("\n".join(lines), flush=True)
        self.stop(worker)

    def stop(self, name: str) -> None:
        proc = self.system.procs.pop(name)
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def capture_window(path: Path, fraction: float) -> tuple[int, int, int]:
    """(first time_us, the window's end, events in it) of a generated capture."""
    times = []
    with open(path, "rb") as lines:
        for line in lines:
            try:
                times.append(orjson.loads(line)["time_us"])
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue
    first, last = min(times), max(times)
    end = first + int((last - first) * fraction)
    return first, end, sum(1 for t in times if t <= end)


def caught_up(db_url: str, system: System) -> None:
    """Until the live stream is applied within a second of now (the processes are up)."""
    deadline = time.monotonic() + 120
    with psycopg.connect(db_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute("SELECT applied_time_us FROM ingest_state").fetchone()
            if row and row[0] and time.time_ns() // 1000 - row[0] < 1_000_000:
                time.sleep(2)  # and a little more, for the workers' start-up to settle
                return
            time.sleep(0.2)
    raise SystemExit("the live stream is not applied:\n" + system.log("listener") + system.log("worker"))


def wait_for_port(port: int, what: str, system: System) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not start:\n{system.log(what)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000, help="legacy posts.db rows")
    parser.add_argument("--chunk-size", type=int, default=500, help="legacy_import rows per chunk")
    parser.add_argument("--capture-events", type=int, default=30_000, help="generated capture for jetstream_replay")
    parser.add_argument("--window", type=float, default=0.5, help="fraction of the capture's time span replayed")
    parser.add_argument("--max-events", type=int, default=5000, help="jetstream_replay events per chunk")
    parser.add_argument("--reclassify", type=int, default=2000, help="posts reclassified in each mode (0: skip)")
    parser.add_argument("--rate", type=float, default=200.0, help="live events per second")
    parser.add_argument("--baseline-seconds", type=float, default=10.0)
    parser.add_argument("--classify-threads", type=int, default=2)
    parser.add_argument("--lag-bound-ms", type=float, default=250.0,
                        help="the stated bound (as bench/backfill.py): p95 live lag during a job - p95 before; "
                             "exit 1 beyond it")
    parser.add_argument("--phase-timeout", type=float, default=300.0,
                        help="seconds a job may take before it is reported NOT DONE and cancelled")
    args = parser.parse_args()

    admin_url, redis_url = os.environ["DATABASE_URL"], os.environ["REDIS_URL"]
    redis.Redis.from_url(redis_url).flushdb()
    db_url = fresh_database(admin_url)
    workdir = Path(tempfile.mkdtemp(prefix="bench-admin-backfill-"))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DATABASE_", "REDIS_", "JETSTREAM_")) and k != "DEEPSEEK_API_KEY"}
    env.update(DATABASE_URL=db_url, REDIS_URL=redis_url, LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1",
               INGEST_BATCH_MS="100", CLASSIFIER="offline", LEGACY_IMPORT_DIR=str(workdir))
    system = System(env, workdir)
    live = None
    try:
        started = time.perf_counter()
        expected = write_posts_db(workdir / "posts.db", args.rows, seed=1)
        capture = workdir / "window.jsonl"
        subprocess.run([sys.executable, "-m", "cannect.cli", "generate-capture", "--out", str(capture),
                        "--events", str(args.capture_events), "--seed", "7"], env=env, check=True,
                       capture_output=True)
        first_us, end_us, in_window = capture_window(capture, args.window)
        print(f"inputs: posts.db {args.rows:,} rows ({len(expected):,} importable), capture "
              f"{args.capture_events:,} events ({in_window:,} in the window), built in "
              f"{time.perf_counter() - started:.0f} s", flush=True)

        live_file = workdir / "live.jsonl"
        live_file.write_bytes(orjson.dumps({"did": did_of(999_999), "time_us": time.time_ns() // 1000,
                                            "kind": "identity", "identity": {"did": did_of(999_999)}}) + b"\n")
        system.start_replay(live_file)
        system.start_worker(threads=2)
        system.start("worker-classify", "worker", "--queues", "classify", "--processes", "1",
                     "--threads", str(args.classify_threads))
        system.start_listener()
        authors = [did_of(n) for n in range(1, 51)]
        live = Live(live_file, authors, [f"at://{authors[0]}/app.bsky.feed.post/3kaaaaaaaaaaa"], args.rate)
        threading.Thread(target=live.run, daemon=True).start()
        caught_up(db_url, system)

        with Sampler(db_url) as sampler:
            time.sleep(args.baseline_seconds)
        baseline = sampler.lags
        bench = Bench(system, db_url, baseline, args.phase_timeout, args.lag_bound_ms)
        print(f"live stream {args.rate:.0f} events/s; ingest lag with no backfill running: {percentiles(baseline)}",
              flush=True)

        # legacy_import through the CLI, its posts classified by the classify worker as chunks commit.
        bench.worker("worker-legacy")
        with Sampler(db_url) as sampler:
            job = bench.start("legacy_import", path=workdir / "posts.db", chunk_size=args.chunk_size)
            row = bench.wait(job, "worker-legacy")
        last = bench.classified(row[5], len(expected)) if row[0] == "done" else None
        after = f"{(last - row[6]).total_seconds():.1f} s after the job ended" if last else "NOT within the timeout"
        bench.report("legacy_import", "rows", row, sampler.lags, "worker-legacy",
                     f"{len(expected):,} imported posts all classified {after}")

        # jetstream_replay of a window of the capture, from a second replay server.
        port = free_port()
        system.start("replay-window", "replay", "--file", str(capture), "--port", str(port), "--speed", "0")
        wait_for_port(port, "replay-window", system)
        live_url = system.env["JETSTREAM_URL"]  # the listener's; the job reads from the operator's own
        system.env["JETSTREAM_URL"] = f"ws://127.0.0.1:{port}/subscribe"
        bench.worker("worker-replay")
        with Sampler(db_url) as sampler:
            job = bench.start("jetstream_replay", cursor_from_us=first_us, cursor_to_us=end_us,
                              max_events=args.max_events, idle_seconds=2)
            row = bench.wait(job, "worker-replay")
        system.env["JETSTREAM_URL"] = live_url
        bench.report("jetstream_replay", "events", row, sampler.lags, "worker-replay")
        bench.stop("replay-window")

        for mode in ("inline", "queue") if args.reclassify else ():
            name = f"worker-reclassify-{mode}"
            bench.worker(name)
            with Sampler(db_url) as sampler:
                job = bench.start("reclassify", since="2024-01-01", until="2025-01-01", limit=args.reclassify,
                                  mode=mode)
                row = bench.wait(job, name)
                last = bench.classified(row[5], row[1]) if row[0] == "done" else None
            took = (last - row[5]).total_seconds() if last else None
            extra = (f"{row[1]:,} posts classified again {took:.1f} s after the job started = {row[1] / took:,.0f} "
                     f"posts/s" if took else "not all classified again within the timeout") + (
                     " (the job itself only queues them)" if mode == "queue" else "")
            bench.report(f"reclassify mode={mode}", "posts", row, sampler.lags, name, extra)
        print(f"(whole bench {time.perf_counter() - started:.0f} s)")
        if bench.beyond:
            raise SystemExit(1)
    finally:
        if live is not None:
            live.stop.set()
        system.stop_all()
        time.sleep(1)
        drop_database(admin_url, db_url)


if __name__ == "__main__":
    main()
