"""Web push delivery: deliveries per second, and enqueue -> decrypted latency.

A fresh database gets ``--members`` members, each with one subscription to the fake push
service of tests/fakes/push.py, run in a process of its own: it verifies every VAPID JWT
(PyJWT) and decrypts every payload (http_ece, aes128gcm) as a browser would, and stamps the
time each push was decrypted. The real ``push`` worker (``dramatiq tasks --queues push``,
``--processes`` x ``--threads``) delivers through the SSRF-guarded client, as deployed, with
fewer threads than the Procfile: the local endpoint answers in under a millisecond, where a
real push service takes 50-300 ms, and idle threads only contend for the GIL here.

1. Throughput: ``--deliveries`` pushes (one per notification) are queued while the worker is
   stopped; the worker starts; deliveries/s is counted from the first decrypted push to the
   last (the worker's start-up is not counted). Twice, in the same run: one ``push.deliver``
   message per push (the baseline), then as the notify step queues them
   (``tasks.push.enqueue_notifications``: ``push.deliver_many`` batches).
2. Latency: with the worker idle and warm, ``--rate`` messages a second for ``--seconds``;
   each one's latency is its decryption time minus its enqueue time (one clock: one machine).
3. Event -> decrypted push (``--pipeline-rate`` > 0): the whole chain as deployed. The replay
   server (``cannect replay``) follows a capture file that this script appends Jetstream like
   events of the members' posts to, ``--pipeline-rate`` a second for ``--seconds``; the real
   listener, ``ingest``, ``notify`` and ``push`` workers carry each to a notification, its
   fan-out and its push. Latency is the decryption time minus the time the line was appended:
   it includes the replay server's file polling (up to ``cannect.replay.POLL_INTERVAL_S``,
   0.2 s) and the listener's micro-batching (``INGEST_BATCH_MS``), so it is an upper bound of
   the time from the event entering the listener.

Uses DATABASE_URL / REDIS_URL when set, else embedded servers; creates its own database and
drops it at the end. It clears the ``push`` queue and push counters of that Redis (and, for
phase 3, the ``ingest`` and ``notify`` queues and the listener's state): never
point it at a Redis that serves a deployment. Usage:
    python bench/push.py [--deliveries 10000] [--processes 2] [--threads 2] [--rate 200]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import psycopg  # noqa: E402
import redis  # noqa: E402

from cannect.embedded import ensure_services  # noqa: E402
from ingest import drop_database, fresh_database  # noqa: E402


# -- the push service, in its own process ------------------------------------------------------

def push_service_process(vapid_public: str, subscribers: int, conn) -> None:
    from fakes.push import FakePushService

    with FakePushService(vapid_public_key=vapid_public) as service:
        conn.send((service.origin, [service.subscriber().as_json() for _ in range(subscribers)]))
        while True:
            command = conn.recv()
            if command == "stop":
                return
            with service._lock:
                received = [(r.payload.get("id"), r.at, r.status) for r in service.received]
                errors = list(service.errors)
            conn.send((received, errors))


class PushService:
    def __init__(self, vapid_public: str, subscribers: int):
        self.conn, theirs = multiprocessing.Pipe()
        self.proc = multiprocessing.get_context("fork").Process(
            target=push_service_process, args=(vapid_public, subscribers, theirs), daemon=True)
        self.proc.start()
        self.origin, self.subscriptions = self.conn.recv()

    def received(self) -> tuple[list[tuple[str, float, int]], list[str]]:
        self.conn.send("report")
        return self.conn.recv()

    def wait_for(self, count: int, timeout: float) -> list[tuple[str, float, int]]:
        deadline = time.monotonic() + timeout
        while True:
            received, errors = self.received()
            if errors:
                raise RuntimeError(f"the push service refused pushes: {errors[:3]}")
            if len(received) >= count:
                return received
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(received)} of {count} pushes arrived in {timeout:.0f} s")
            time.sleep(0.25)

    def stop(self) -> None:
        self.conn.send("stop")
        self.proc.join(timeout=10)


# -- database ----------------------------------------------------------------------------------

def seed(url: str, subscriptions: list[dict]) -> list[tuple[int, str]]:
    """One member per subscription, an actor with a profile and a post; (subscription id, member DID)."""
    actor = "did:plc:" + "a" * 24
    now = datetime.now(timezone.utc)
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO profiles (did, handle, display_name, avatar_cid) "
                     "VALUES (%s, 'grower.bench', 'Bench Grower', 'bafkreiavatar')", (actor,))
        members = []
        for n, sub in enumerate(subscriptions):
            did = f"did:plc:{n:024d}"
            conn.execute("INSERT INTO profiles (did, handle, is_cannect_user, member_since) VALUES (%s, %s, true, %s)",
                         (did, f"member{n}.bench", now))
            conn.execute("INSERT INTO posts (uri, cid, author_did, text, created_at, sort_at, indexed_time_us) "
                         "VALUES (%s, 'bafyreibench', %s, 'My first grow tent is set up #cannabis', %s, %s, 1)",
                         (f"at://{did}/app.bsky.feed.post/3kbench", did, now, now))
            [(sub_id,)] = conn.execute(
                "INSERT INTO push_subscriptions (user_did, endpoint, p256dh, auth) VALUES (%s, %s, %s, %s) RETURNING id",
                (did, sub["endpoint"], sub["keys"]["p256dh"], sub["keys"]["auth"])).fetchall()
            members.append((sub_id, did))
    return members


def new_notifications(url: str, members: list[tuple[int, str]], count: int) -> list[tuple[int, int]]:
    """``count`` likes of the members' posts, round robin; (subscription id, notification id) each."""
    actor = "did:plc:" + "a" * 24
    pairs = []
    with psycopg.connect(url) as conn:
        for n in range(count):
            sub_id, did = members[n % len(members)]
            [(notification_id,)] = conn.execute(
                "INSERT INTO notifications (recipient_did, type, actor_did, subject_uri, reason_uri) "
                "VALUES (%s, 'like', %s, %s, %s) RETURNING id",
                (did, actor, f"at://{did}/app.bsky.feed.post/3kbench",
                 f"at://{actor}/app.bsky.feed.like/{uuid.uuid4().hex[:13]}")).fetchall()
            pairs.append((sub_id, notification_id))
    return pairs


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    kids = [int(p) for p in path.read_text().split()] if path.exists() else []
    return [pid] + [grandchild for kid in kids for grandchild in process_tree(kid)]


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deliveries", type=int, default=10_000)
    parser.add_argument("--members", type=int, default=500, help="members, one subscription each")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rate", type=float, default=200.0, help="latency phase: messages per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="latency phase: how long")
    parser.add_argument("--pipeline-rate", type=float, default=20.0,
                        help="event -> push phase: like events a second (0: skip it)")
    args = parser.parse_args()

    ensure_services(ROOT / ".cannect" / "bench")
    from services.push.keys import generate_vapid_keys

    vapid_public, vapid_private = generate_vapid_keys()
    service = PushService(vapid_public, args.members)
    admin_url = os.environ["DATABASE_URL"]
    url = fresh_database(admin_url)
    env = dict(os.environ, DATABASE_URL=url, LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1",
               VAPID_PUBLIC_KEY=vapid_public, VAPID_PRIVATE_KEY=vapid_private, VAPID_EMAIL="mailto:bench@cannect.space",
               PUSH_INSECURE_TEST_ORIGINS=service.origin)
    env.setdefault("dramatiq_worker_timeout", "100")  # as `cannect worker` and compose run the workers
    os.environ.update(env)
    queue = redis.Redis.from_url(env["REDIS_URL"])
    for key in list(queue.scan_iter("dramatiq:push*")) + list(queue.scan_iter("cannect:push:*")):
        queue.delete(key)
    worker = None
    phases = {}
    try:
        members = seed(url, service.subscriptions)
        with tempfile.TemporaryDirectory() as logs:
            log = open(Path(logs) / "worker.log", "ab")

            def start_worker():
                return subprocess.Popen([sys.executable, "-m", "dramatiq", "tasks", "--queues", "push",
                                         "--processes", str(args.processes), "--threads", str(args.threads)],
                                        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

            # Throughput, the same deliveries two ways: a message per push (the baseline, as
            # before batching), and the notify step's batches (push.deliver_many).
            already = 0
            for mode in ("one message per push", "batches (deliver_many)"):
                pairs = new_notifications(url, members, args.deliveries)
                started = time.perf_counter()
                enqueue(mode, pairs)
                enqueue_s = time.perf_counter() - started
                worker = start_worker()
                service.wait_for(already + 1, timeout=120)
                workers = process_tree(worker.pid)
                cpu_before = {pid: cpu_seconds(pid) for pid in workers + [service.proc.pid]}
                received = service.wait_for(already + args.deliveries, timeout=600)
                cpu_used = {pid: cpu_seconds(pid) - before for pid, before in cpu_before.items()}
                mine = {str(n) for _, n in pairs}
                times = sorted(at for nid, at, _ in received if nid in mine)
                phases[mode] = dict(
                    enqueue=args.deliveries / enqueue_s, throughput=(len(times) - 1) / (times[-1] - times[0]),
                    worker_cpu_ms=sum(v for pid, v in cpu_used.items() if pid != service.proc.pid) * 1000 / len(times),
                    service_cpu_ms=cpu_used[service.proc.pid] * 1000 / len(times))
                already += args.deliveries
                if mode.startswith("one"):
                    stop(worker)

            # Latency: paced notifications to the warm, idle worker, as the notify step sends them.
            paced = new_notifications(url, members, int(args.rate * args.seconds))
            sent_at: dict[str, float] = {}
            start = time.perf_counter()
            for n, pair in enumerate(paced):
                delay = start + n / args.rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                sent_at[str(pair[1])] = time.time()
                enqueue("batches", [pair])
            received = service.wait_for(already + len(paced), timeout=300)
            latencies = sorted((at - sent_at[pid]) * 1000 for pid, at, _ in received if pid in sent_at)
            if worker.poll() is not None:
                raise RuntimeError("the worker died:\n" + (Path(logs) / "worker.log").read_text()[-3000:])
            pipeline = (pipeline_latency(env, url, members, service, args.pipeline_rate, args.seconds,
                                         already + len(paced), Path(logs))
                        if args.pipeline_rate > 0 else None)
    finally:
        if worker is not None:
            stop(worker)
        service.stop()
        drop_database(admin_url, url)

    print(f"\nweb push benchmark: {args.deliveries:,} deliveries to {args.members} subscriptions, worker "
          f"{args.processes} process(es) x {args.threads} threads, {os.cpu_count()} cores "
          f"(worker, push service, PostgreSQL and Redis share them)")
    for mode, figures in phases.items():
        print(f"  {mode}:")
        print(f"    enqueue                {figures['enqueue']:,.0f} pushes/s")
        print(f"    deliveries             {figures['throughput']:,.0f} per second (first to last decrypted push)")
        print(f"    CPU per delivery       worker {figures['worker_cpu_ms']:.2f} ms, "
              f"push service {figures['service_cpu_ms']:.2f} ms")
    baseline, batched = phases.values()
    print(f"  batched / one per push   {batched['throughput'] / baseline['throughput']:.2f}x deliveries per second")
    print(f"  enqueue -> decrypted     p50 {percentile(latencies, 0.5):.1f} ms, p95 {percentile(latencies, 0.95):.1f} ms, "
          f"p99 {percentile(latencies, 0.99):.1f} ms, max {latencies[-1]:.1f} ms "
          f"({len(latencies):,} pushes at {args.rate:g}/s)")
    if pipeline:
        print(f"  event -> decrypted       p50 {percentile(pipeline, 0.5):.1f} ms, p95 {percentile(pipeline, 0.95):.1f} ms, "
              f"max {pipeline[-1]:.1f} ms ({len(pipeline):,} like events at {args.pipeline_rate:g}/s through "
              f"replay -> listener -> ingest -> notify -> push)")


def enqueue(mode: str, pairs: list[tuple[int, int]]) -> None:
    from tasks.push import deliver, enqueue_notifications

    if mode.startswith("one"):
        for pair in pairs:
            deliver.send(*pair)
    else:
        enqueue_notifications(pairs)


def stop(worker: subprocess.Popen) -> None:
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=60)


def pipeline_latency(env: dict, url: str, members: list[tuple[int, str]], service: PushService, rate: float,
                     seconds: float, already: int, logs: Path) -> list[float]:
    """Append like events to a followed capture; each one's time from the append to its decrypted push."""
    import orjson

    queue = redis.Redis.from_url(env["REDIS_URL"])  # a listener of an earlier run must not be resumed
    for key in ["cannect:listener:state", *queue.scan_iter("dramatiq:ingest*"), *queue.scan_iter("dramatiq:notify*")]:
        queue.delete(key)
    capture = logs / "live.jsonl"
    fan = "did:plc:" + "b" * 24
    start_us = time.time_ns() // 1000
    capture.write_bytes(orjson.dumps({"did": fan, "time_us": start_us, "kind": "identity",
                                      "identity": {"did": fan, "seq": 1, "time": "2026-07-04T14:00:00Z"}}) + b"\n")
    port = _free_port()
    env = dict(env, JETSTREAM_URL=f"ws://127.0.0.1:{port}/subscribe")
    commands = {"replay": ["cannect.cli", "replay", "--file", str(capture), "--port", str(port)],
                "listener": ["cannect.cli", "listen"],
                "ingest": ["dramatiq", "tasks", "--queues", "ingest", "--processes", "1", "--threads", "2"],
                "notify": ["dramatiq", "tasks", "--queues", "notify", "--processes", "1", "--threads", "2"]}
    procs = []
    try:
        for name, argv in commands.items():
            procs.append(subprocess.Popen([sys.executable, "-m", *argv], env=env, start_new_session=True,
                                          stdout=open(logs / f"{name}.log", "wb"), stderr=subprocess.STDOUT))
            if name == "replay":
                time.sleep(1.0)
        _wait_applied(url, start_us, timeout=60)
        count = int(rate * seconds)
        appended: dict[str, float] = {}
        with open(capture, "ab") as out:
            begin = time.perf_counter()
            for n in range(count):
                delay = begin + n / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                _, did = members[n % len(members)]
                rkey = f"3kbenchlike{n:06d}"
                line = orjson.dumps({"did": fan, "time_us": time.time_ns() // 1000, "kind": "commit", "commit": {
                    "rev": f"3kbenchrev{n:06d}", "operation": "create", "collection": "app.bsky.feed.like",
                    "rkey": rkey, "cid": "bafyreibenchlike", "record": {
                        "$type": "app.bsky.feed.like", "createdAt": "2026-07-04T14:00:00Z",
                        "subject": {"uri": f"at://{did}/app.bsky.feed.post/3kbench", "cid": "bafyreibench"}}}})
                out.write(line + b"\n")
                out.flush()
                appended[f"at://{fan}/app.bsky.feed.like/{rkey}"] = time.time()
        received = service.wait_for(already + count, timeout=120)
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=60)
    with psycopg.connect(url) as conn:
        reasons = dict(conn.execute("SELECT id::text, reason_uri FROM notifications WHERE actor_did = %s", (fan,)))
    return sorted((at - appended[reasons[nid]]) * 1000 for nid, at, _ in received if nid in reasons)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_applied(url: str, time_us: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute("SELECT applied_time_us FROM ingest_state").fetchone()
            if row and row[0] and row[0] >= time_us:
                return
            time.sleep(0.1)
    raise RuntimeError("the listener and ingest worker did not start within the timeout")


if __name__ == "__main__":
    main()
