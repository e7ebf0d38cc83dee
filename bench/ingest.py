"""Ingest throughput: replay -> listener -> Redis -> worker -> committed rows.

Generates (once, cached in bench/.cache) a capture of at least 200,000 events, replays it as
fast as the listener reads, and reports:
- parse-only rate: ``parse_event`` over the file in this process (the listener's ceiling);
- apply-only rate: the ingest service fed pre-parsed batches in-process (the workers' ceiling);
- end to end: the listener's connection to the last event committed, through the real
  processes (and from the listener's start, which adds its imports: a second or two);
- where the time goes: the CPU seconds each process used while streaming, and how many
  batches waited in the ingest queue (many: the worker is the bottleneck; few: the listener);
- the listener's peak resident memory.

With ``--baseline REV`` the code of that git revision (extracted with ``git archive``) runs
too, alternating with the working tree on fresh databases, ``--rounds`` times each, so that
the ratio is measured under the same load (the machine may be shared).

Uses DATABASE_URL / REDIS_URL when set, else embedded servers. Usage:
    python bench/ingest.py [--events 200000] [--batch-size 1000] [--threads 2]
                           [--baseline HEAD] [--rounds 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
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
from services.status import queue_depths  # noqa: E402


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


def export_tree(revision: str, into: Path) -> Path:
    """The repository as of git ``revision``, extracted under ``into`` (read-only for git)."""
    tree = into / "baseline"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def ingest_batch_of(tree: Path):
    """``ingest_batch`` of ``tree``'s ``services/ingest``, imported as a package of its own."""
    if tree == ROOT:
        from services.ingest import ingest_batch
        return ingest_batch
    name = f"services.ingest_{abs(hash(tree))}"
    spec = importlib.util.spec_from_file_location(name, tree / "services" / "ingest" / "__init__.py",
                                                  submodule_search_locations=[str(tree / "services" / "ingest")])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module.ingest_batch


def apply_only(db_url: str, meta: dict, events: list[dict], batch_size: int, ingest_batch) -> float:
    from sqlalchemy.orm import Session

    from services.db import make_engine

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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_group_cpu(pgid: int) -> float:
    """CPU seconds of a child started in its own session (the worker forks its processes)."""
    pids = subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True).stdout.split()
    return sum(cpu_seconds(int(pid)) for pid in pids)


def database_backends(admin_url: str, db_url: str) -> set[int]:
    """PostgreSQL server processes serving the bench database (local server only)."""
    name = db_url.split("?")[0].rsplit("/", 1)[1]
    with psycopg.connect(admin_url) as conn:
        return {pid for pid, in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (name,))}


def connected(port: int) -> bool:
    """Whether a client holds a TCP connection to the local ``port`` (the replay server)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as lines:
                next(lines)
                for line in lines:
                    local, state = line.split()[1], line.split()[3]
                    if state == "01" and int(local.rsplit(":", 1)[1], 16) == port:
                        return True
        except FileNotFoundError:
            continue
    return False


def end_to_end(env: dict, admin_url: str, capture: Path, meta: dict, threads: int, log_dir: Path,
               tree: Path = ROOT) -> dict:
    """The real processes, started in ``tree`` (``python -m`` imports the code found there)."""
    from harness import System, last_kept_time_us

    register_members(env["DATABASE_URL"], meta)
    last = last_kept_time_us(capture)
    system = System(env, log_dir)
    backends: set[int] = set()
    here = os.getcwd()
    os.chdir(tree)
    try:
        worker = system.start_worker(processes=1, threads=threads)
        time.sleep(2.0)  # worker booted before the stream starts
        port = system.start_replay(capture)
        start = time.perf_counter()
        listener = system.start_listener()
        while not connected(port) and listener.poll() is None and time.perf_counter() - start < 60:
            time.sleep(0.002)
        first_frame = time.perf_counter()
        cpu_at_connect = {"listener": process_group_cpu(listener.pid), "worker": process_group_cpu(worker.pid)}
        broker = redis.Redis.from_url(env["REDIS_URL"])
        queued: list[int] = []  # batches waiting for the worker, sampled: is it the worker or the listener?
        while not queued or queued[-1] or system.applied()[0] < last:
            backends |= database_backends(admin_url, env["DATABASE_URL"])
            queued.append(queue_depths(broker)["ingest"]["pending"])
            time.sleep(0.1)
            for name, proc in system.procs.items():
                if proc.poll() is not None:
                    raise AssertionError(f"{name} exited with {proc.returncode}:\n{system.log(name)}")
            if time.perf_counter() - start > 1800:
                raise AssertionError("not applied in 30 minutes")
        elapsed, streamed = time.perf_counter() - start, time.perf_counter() - first_frame
        cpu = {name: process_group_cpu(proc.pid) - cpu_at_connect.get(name, 0.0) for name, proc in system.procs.items()}
        cpu["postgres"] = sum(cpu_seconds(pid) for pid in backends)
        rss = peak_rss_mb(listener.pid)
    finally:
        system.stop_all()
        os.chdir(here)
    return {"rate": meta["events"] / streamed, "streamed": streamed, "rate_from_start": meta["events"] / elapsed,
            "elapsed": elapsed, "rss": rss, "cpu": cpu, "queued": (sum(queued) / len(queued), max(queued))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--baseline", help="git revision to time against, alternating runs (e.g. HEAD)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each version (with --baseline)")
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
    with tempfile.TemporaryDirectory() as scratch:
        trees = {f"baseline {args.baseline}": export_tree(args.baseline, Path(scratch))} if args.baseline else {}
        trees["current"] = ROOT
        results: dict[str, dict[str, list]] = {label: {"apply": [], "e2e": []} for label in trees}
        for _ in range(args.rounds if args.baseline else 1):
            for label, tree in trees.items():
                results[label]["apply"].append(timed_apply(admin_url, meta, events, args.batch_size, tree))
                results[label]["e2e"].append(timed_end_to_end(env, admin_url, capture, meta, args.threads, tree))
    report(args, len(lines), len(events), parse_rate, results)


def timed_apply(admin_url: str, meta: dict, events: list[dict], batch_size: int, tree: Path) -> float:
    db = fresh_database(admin_url)
    try:
        return apply_only(db, meta, events, batch_size, ingest_batch_of(tree))
    finally:
        drop_database(admin_url, db)


def timed_end_to_end(env: dict, admin_url: str, capture: Path, meta: dict, threads: int, tree: Path) -> dict:
    db = fresh_database(admin_url)
    redis.Redis.from_url(env["REDIS_URL"]).flushdb()
    try:
        with tempfile.TemporaryDirectory() as logs:
            return end_to_end({**env, "DATABASE_URL": db}, admin_url, capture, meta, threads, Path(logs), tree)
    finally:
        drop_database(admin_url, db)


def report(args, events: int, kept: int, parse_rate: float, results: dict[str, dict[str, list]]) -> None:
    """Best of the rounds for each code version (noise on a shared machine only slows runs down)."""
    rounds = len(next(iter(results.values()))["apply"])
    print(f"\ningest benchmark: {events:,} events ({kept:,} kept after the listener's filter), "
          f"batches of {args.batch_size}, worker 1 process x {args.threads} threads, {os.cpu_count()} cores"
          + (f", best of {rounds} alternating rounds" if rounds > 1 else ""))
    print(f"  parse only (ceiling)   {parse_rate:>10,.0f} events/s")
    for label, result in results.items():
        apply_rate = max(result["apply"])
        e2e = max(result["e2e"], key=lambda run: run["rate"])
        e2e_rates = [run["rate"] for run in result["e2e"]]
        if len(results) > 1:
            print(f"  [{label}]")
        print(f"  apply only (in-proc)   {apply_rate:>10,.0f} events/s (kept events, pre-parsed, one process"
              + (f"; runs: {', '.join(f'{r:,.0f}' for r in result['apply'])})" if rounds > 1 else ")"))
        print(f"  end to end             {e2e['rate']:>10,.0f} events/s  ({e2e['streamed']:.1f} s from the listener's "
              f"connection, {e2e['rate'] / parse_rate:.0%} of parse-only"
              + (f"; runs: {', '.join(f'{rate:,.0f}' for rate in e2e_rates)})" if rounds > 1 else ")"))
        print(f"  end to end incl. start {e2e['rate_from_start']:>10,.0f} events/s  ({e2e['elapsed']:.1f} s from "
              f"starting the listener process)")
        print("  CPU seconds while streaming: " + ", ".join(f"{name} {sec:.1f}" for name, sec in e2e["cpu"].items()))
        print(f"  ingest queue while streaming: {e2e['queued'][0]:.1f} batches on average, {e2e['queued'][1]} at most")
        print(f"  listener peak RSS      {e2e['rss']:>10,.1f} MiB")
    if len(results) > 1:
        base, current = results[f"baseline {args.baseline}"], results["current"]
        print(f"  current / baseline: apply only {max(current['apply']) / max(base['apply']):.2f}, end to end "
              f"{max(r['rate'] for r in current['e2e']) / max(r['rate'] for r in base['e2e']):.2f}")


if __name__ == "__main__":
    main()
