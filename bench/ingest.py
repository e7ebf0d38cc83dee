"""Ingest throughput: replay -> listener -> Redis -> worker -> committed rows.

Generates (once, cached in bench/.cache) a capture of at least 200,000 events, replays it as
fast as the listener reads, and reports:
- parse-only rate: ``parse_event`` over the file in this process (the listener's ceiling);
- apply-only rate: the ingest service fed pre-parsed batches in-process (the workers' ceiling);
- end to end: first frame sent to the last event committed, through the real processes;
- the listener's peak resident memory.

Uses DATABASE_URL / REDIS_URL when set, else embedded servers. Usage:
    python bench/ingest.py [--events 200000] [--batch-size 1000] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import psycopg  # noqa: E402
import redis  # noqa: E402

from cannect.capture import generate_capture  # noqa: E402
from cannect.config import DEFAULT_CANNABIS_TAGS  # noqa: E402
from cannect.embedded import ensure_services  # noqa: E402
from services.jetstream import Skip, parse_event  # noqa: E402


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def fresh_database(admin_url: str) -> str:
    from alembic import command

    from conftest import _with_database
    from migrations import alembic_config

    name = f"cannect_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _with_database(admin_url, name)
    command.upgrade(alembic_config(url.replace("postgresql://", "postgresql+psycopg://", 1)), "head")
    return url


def drop_database(admin_url: str, url: str) -> None:
    name = url.split("?")[0].rsplit("/", 1)[1]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def register_members(db_url: str, meta: dict) -> None:
    from sqlalchemy.orm import Session

    from services.db import make_engine
    from services.members import add_member

    engine = make_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with Session(engine) as session:
        for member in meta["members"]:
            add_member(session, member["did"], member["handle"])
        session.commit()
    engine.dispose()


def parse_only(lines: list[bytes]) -> tuple[float, list[dict]]:
    start = time.perf_counter()
    events = [e for e in map(parse_event, lines) if not isinstance(e, Skip)]
    return len(lines) / (time.perf_counter() - start), events


def apply_only(db_url: str, meta: dict, events: list[dict], batch_size: int) -> float:
    from sqlalchemy.orm import Session

    from services.db import make_engine
    from services.ingest import ingest_batch

    register_members(db_url, meta)
    engine = make_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    tags = frozenset(DEFAULT_CANNABIS_TAGS)
    start = time.perf_counter()
    with Session(engine) as session:
        for n, i in enumerate(range(0, len(events), batch_size)):
            ingest_batch(session, {"conn": 1, "seq": n + 1, "prev": None, "events": events[i:i + batch_size]}, tags)
            session.commit()
    elapsed = time.perf_counter() - start
    engine.dispose()
    return len(events) / elapsed


def end_to_end(env: dict, capture: Path, meta: dict, threads: int, log_dir: Path) -> tuple[float, float, float]:
    from harness import System, last_kept_time_us

    register_members(env["DATABASE_URL"], meta)
    last = last_kept_time_us(capture)
    system = System(env, log_dir)
    try:
        system.start_worker(processes=1, threads=threads)
        time.sleep(2.0)  # worker booted before the stream starts
        system.start_replay(capture)
        start = time.perf_counter()
        listener = system.start_listener()
        system.wait_until_applied(last, timeout=1800)
        elapsed = time.perf_counter() - start
        rss = peak_rss_mb(listener.pid)
    finally:
        system.stop_all()
    return meta["events"] / elapsed, elapsed, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    cache = ROOT / "bench" / ".cache"
    cache.mkdir(parents=True, exist_ok=True)
    capture = cache / f"capture-{args.events}.jsonl"
    if not capture.exists() or not Path(f"{capture}.meta.json").exists():
        print(f"generating {args.events:,} events ...", flush=True)
        generate_capture(str(capture), args.events, seed=1, progress=True)
    import orjson
    meta = orjson.loads(Path(f"{capture}.meta.json").read_bytes())
    lines = capture.read_bytes().splitlines()

    ensure_services(ROOT / ".cannect" / "bench")
    admin_url = os.environ["DATABASE_URL"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("JETSTREAM_")}
    env.update(LOG_LEVEL="WARNING", INGEST_BATCH_SIZE=str(args.batch_size))

    parse_rate, events = parse_only(lines)
    kept = len(events)
    db = fresh_database(admin_url)
    try:
        apply_rate = apply_only(db, meta, events, args.batch_size)
    finally:
        drop_database(admin_url, db)

    db = fresh_database(admin_url)
    redis.Redis.from_url(env["REDIS_URL"]).flushdb()
    env["DATABASE_URL"] = db
    try:
        with tempfile.TemporaryDirectory() as logs:
            e2e_rate, elapsed, rss = end_to_end(env, capture, meta, args.threads, Path(logs))
    finally:
        drop_database(admin_url, db)

    print(f"\ningest benchmark: {args.events:,} events ({kept:,} kept after the listener's filter), "
          f"batches of {args.batch_size}, worker 1 process x {args.threads} threads, {os.cpu_count()} cores")
    print(f"  parse only (ceiling)   {parse_rate:>10,.0f} events/s")
    print(f"  apply only (in-proc)   {apply_rate:>10,.0f} events/s "
          f"(kept events, pre-parsed, one process)")
    print(f"  end to end             {e2e_rate:>10,.0f} events/s  ({elapsed:.1f} s, "
          f"{e2e_rate / parse_rate:.0%} of parse-only)")
    print(f"  listener peak RSS      {rss:>10,.1f} MiB")


if __name__ == "__main__":
    main()
