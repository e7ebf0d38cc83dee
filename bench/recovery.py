"""Crash recovery: how long until a SIGKILLed worker's unacknowledged batches run again.

Dramatiq's Redis broker only requeues a dead worker's messages during "maintenance", which by
default runs on 0.1% of broker calls once the worker's heartbeat is 60 s old. Cannect's worker
heartbeat thread (tasks/broker.py) forces maintenance every few seconds, so the bound is about
``WORKER_HEARTBEAT_TIMEOUT_MS`` (default 20 s). This measures it with the real processes.

Usage: python bench/recovery.py [--batches 40]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

import redis  # noqa: E402

from cannect.capture import generate_capture  # noqa: E402
from cannect.embedded import ensure_services  # noqa: E402
from ingest import drop_database, fresh_database, register_members  # noqa: E402
from services.jetstream import Skip, parse_event  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=40)
    args = parser.parse_args()
    ensure_services(ROOT / ".cannect" / "bench")
    admin = os.environ["DATABASE_URL"]
    db = fresh_database(admin)
    env = {**os.environ, "DATABASE_URL": db, "LOG_LEVEL": "WARNING",
           "JWT_SECRET": os.environ.get("JWT_SECRET", "bench-" + "x" * 40)}
    broker_redis = redis.Redis.from_url(env["REDIS_URL"])
    broker_redis.flushdb()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            capture = Path(tmp) / "capture.jsonl"
            meta = generate_capture(str(capture), args.batches * 500, seed=3)
            register_members(db, meta)
            events = [e for e in map(parse_event, capture.read_bytes().splitlines()) if not isinstance(e, Skip)]
            os.environ.update(DATABASE_URL=db)
            from tasks.ingest import apply_batch  # configures the broker from REDIS_URL

            for n, i in enumerate(range(0, len(events), 500)):
                apply_batch.send({"conn": 1, "seq": n + 1, "prev": None, "events": events[i:i + 500]})
            from harness import System

            system = System(env, Path(tmp))
            system.start_worker("doomed", processes=1, threads=1)
            while not any(broker_redis.scan_iter("dramatiq:__acks__.*")):
                time.sleep(0.05)
            time.sleep(0.5)  # it has prefetched and started on a batch
            system.kill("doomed")
            held = sum(broker_redis.scard(k) for k in broker_redis.scan_iter("dramatiq:__acks__.*"))
            killed_at = time.perf_counter()
            system.start_worker("rescuer", processes=1, threads=2)
            while system.queue_empty() is False:
                time.sleep(0.1)
            elapsed = time.perf_counter() - killed_at
            system.stop_all()
    finally:
        drop_database(admin, db)
    timeout = int(env.get("WORKER_HEARTBEAT_TIMEOUT_MS", "20000")) / 1000
    print(f"\nworker crash recovery: {held} unacknowledged messages held by the killed worker")
    print(f"  all {args.batches} batches applied {elapsed:.1f} s after the kill "
          f"(WORKER_HEARTBEAT_TIMEOUT_MS = {timeout:g} s; Dramatiq's default recovery is minutes)")


if __name__ == "__main__":
    main()
