"""Dramatiq dead letters and worker liveness (services/queues.py, ``cannect queues``, ``cannect status``),
with a real worker process and real Redis and PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dramatiq
import orjson
import pytest
import redis as redis_lib

from harness import wait_for
from models import BackfillJob
from services import queues
from services.queues import UnknownMessage

# As in tests/queue_actors.py (not imported here: its actor needs the worker's broker).
FIXED_KEY, QUEUE = "test:queues:fixed", "opsqueue"

TESTS = Path(__file__).parent
HEARTBEAT_TIMEOUT_MS = 2000


@pytest.fixture
def redis(redis_url):
    return redis_lib.Redis.from_url(redis_url)


@pytest.fixture
def worker_env(env):
    return {**env, "WORKER_HEARTBEAT_TIMEOUT_MS": str(HEARTBEAT_TIMEOUT_MS), "dramatiq_worker_timeout": "100",
            "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])}


class Workers:
    """`dramatiq tasks queue_actors` processes consuming the test queue."""

    def __init__(self, env: dict, log_dir: Path):
        self.env, self.log_dir, self.procs = env, log_dir, []

    def start(self) -> subprocess.Popen:
        log = open(self.log_dir / f"worker{len(self.procs)}.log", "ab")
        proc = subprocess.Popen([sys.executable, "-m", "dramatiq", "tasks", "queue_actors", "--processes", "1",
                                 "--threads", "1", "--queues", QUEUE], env=self.env, cwd=TESTS.parent,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen) -> None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                self.kill(proc)


@pytest.fixture
def workers(worker_env, tmp_path):
    pool = Workers(worker_env, tmp_path)
    yield pool
    pool.stop_all()


@pytest.fixture
def broker(monkeypatch, db_url, redis_url):
    """A broker of this process (importing tasks needs the environment)."""
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("REDIS_URL", redis_url)
    from tasks.broker import CannectRedisBroker

    return CannectRedisBroker(url=redis_url, heartbeat_timeout=HEARTBEAT_TIMEOUT_MS)


def enqueue(broker, name: str, events: int = 3):
    batch = {"conn": "c1", "seq": 7, "events": [{"did": "did:plc:x", "n": i} for i in range(events)]}
    return broker.enqueue(dramatiq.Message(queue_name=QUEUE, actor_name="test.flaky", args=(name, batch),
                                           kwargs={}, options={}))


def cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cannect.cli", *args], env=env, cwd=TESTS.parent,
                          capture_output=True, text=True, timeout=60)


def test_summaries_name_a_batch_and_cap_the_rest():
    assert queues.summarize_arg({"conn": "c", "seq": 3, "events": [{}] * 1000}) == "batch c/3 (1000 events)"
    assert len(queues.summarize_arg("x" * 10_000)) == queues.ARG_SUMMARY_CHARS
    assert queues.summarize_arg(list(range(1000))) == "[1000 items]"


def test_dead_letters_are_listed_shown_replayed_once_and_dropped(redis, broker, workers, worker_env):
    worker = workers.start()
    enqueue(broker, "a", events=1000)
    enqueue(broker, "b")
    wait_for(lambda: redis.zcard(f"dramatiq:{QUEUE}.XQ") == 2, "both messages dead-lettered")

    listed = queues.dead_letters(redis)
    assert {view["args"][0] for view in listed} == {'"a"', '"b"'}
    by_name = {view["args"][0].strip('"'): view for view in listed}
    first = by_name["a"]
    assert first["queue"] == QUEUE and first["actor"] == "test.flaky" and first["retries"] == 1
    assert first["args"][1] == "batch c1/7 (1000 events)"
    assert first["error"] == "queue_actors.NotFixedYet: a: the cause is not fixed yet"
    assert queues.dead_letters(redis, queue=QUEUE, limit=1)[0]["id"] in {first["id"], by_name["b"]["id"]}
    assert queues.dead_letters(redis, queue="ingest") == []

    shown = orjson.loads(cli(worker_env, "queues", "show", first["id"]).stdout)
    assert len(shown["message"]["args"][1]["events"]) == 1000 and "NotFixedYet" in shown["message"]["options"]["traceback"]
    dead = cli(worker_env, "queues", "dead", "--json")
    assert {view["id"] for view in orjson.loads(dead.stdout)} == {first["id"], by_name["b"]["id"]}
    assert "1000 events" in cli(worker_env, "queues", "dead").stdout
    assert f"{QUEUE}" in cli(worker_env, "queues", "list").stdout

    # Liveness: the worker beats; killed, it is dead within the heartbeat timeout.
    alive = wait_for(lambda: [w["id"] for w in queues.workers(redis, HEARTBEAT_TIMEOUT_MS)
                              if w["alive"] and w["id"] != broker.broker_id], "a live worker")
    workers.kill(worker)
    wait_for(lambda: not any(w["alive"] for w in queues.workers(redis, HEARTBEAT_TIMEOUT_MS) if w["id"] in alive),
             "the killed worker seen dead", timeout=30)

    # Replayed twice with no worker running: one message on the queue, the dead copy gone.
    redis.set(FIXED_KEY, "1")
    replay = lambda fields: broker.enqueue(dramatiq.Message(**fields))  # noqa: E731
    assert queues.replay(redis, first["id"], replay)["id"] == first["id"]
    with pytest.raises(UnknownMessage):
        queues.replay(redis, first["id"], replay)
    assert redis.hlen(f"dramatiq:{QUEUE}.msgs") == 1
    assert [view["id"] for view in queues.dead_letters(redis)] == [by_name["b"]["id"]]
    requeued = orjson.loads(next(iter(redis.hvals(f"dramatiq:{QUEUE}.msgs"))))
    assert "retries" not in requeued["options"] and "traceback" not in requeued["options"]

    workers.start()
    wait_for(lambda: redis.get("test:queues:ran:a") == b"1", "the replayed message ran")
    # Through the CLI: replay b, an unknown id exits 1; then nothing is left to drop.
    result = cli(worker_env, "queues", "replay", by_name["b"]["id"], "no-such-id")
    assert result.returncode == 1 and "no dead letter no-such-id" in result.stderr
    wait_for(lambda: redis.get("test:queues:ran:b") == b"1", "b replayed from the CLI ran")
    assert cli(worker_env, "queues", "drop", "--all").stdout.strip() == "dropped 0"


def test_drop_one_and_all(redis, broker, workers, worker_env):
    workers.start()
    for name in ("c", "d", "e"):
        enqueue(broker, name)
    wait_for(lambda: redis.zcard(f"dramatiq:{QUEUE}.XQ") == 3, "three dead letters")
    one = queues.dead_letters(redis)[0]["id"]
    assert cli(worker_env, "queues", "drop", one).returncode == 0
    with pytest.raises(UnknownMessage):
        queues.show(redis, one)
    assert cli(worker_env, "queues", "drop", "--all", "--queue", QUEUE).stdout.strip() == "dropped 2"
    assert queues.dead_letters(redis) == [] and redis.exists(f"dramatiq:{QUEUE}.XQ.msgs") == 0
    assert cli(worker_env, "queues", "drop").returncode == 2  # neither IDs nor --all


def test_a_corrupt_dead_letter_is_listed_refused_for_replay_and_dropped(redis, broker, worker_env):
    redis.zadd(f"dramatiq:{QUEUE}.XQ", {"bad": time.time() * 1000})
    redis.hset(f"dramatiq:{QUEUE}.XQ.msgs", "bad", b"\xff not json")
    [view] = queues.dead_letters(redis)
    assert view["actor"] is None and view["error"].startswith("undecodable message (10 bytes)")
    with pytest.raises(queues.Unreplayable):
        queues.replay(redis, "bad", lambda fields: broker.enqueue(dramatiq.Message(**fields)))
    result = cli(worker_env, "queues", "replay", "bad")
    assert result.returncode == 1 and "not a replayable message" in result.stderr
    assert cli(worker_env, "queues", "replay", "--all").stdout.strip() == "replayed 0"
    assert [view["id"] for view in queues.dead_letters(redis)] == ["bad"]
    assert cli(worker_env, "queues", "drop", "bad").returncode == 0
    assert queues.dead_letters(redis) == []


def test_status_shows_open_backfills_with_rate_and_eta_and_workers(session, worker_env, redis):
    now = datetime.now(timezone.utc)
    session.add_all([
        BackfillJob(kind="reclassify", subject_did=None, status="running", done=50, total=150,
                    started_at=now - timedelta(seconds=100)),
        BackfillJob(kind="member", subject_did="did:plc:alice", status="queued", done=0, total=None),
        BackfillJob(kind="member", subject_did="did:plc:bob", status="done", done=9, total=9,
                    started_at=now - timedelta(seconds=10), finished_at=now),
    ])
    session.commit()
    redis.zadd("dramatiq:__heartbeats__", {"gone-worker": time.time() * 1000 - 60_000})

    report = orjson.loads(cli(worker_env, "status", "--json").stdout)
    running, queued = report["backfills"]
    assert (running["kind"], running["status"], running["done"], running["total"]) == ("reclassify", "running", 50, 150)
    assert running["rate_per_second"] == pytest.approx(0.5, rel=0.2)
    assert running["eta_seconds"] == pytest.approx(200, rel=0.2)
    assert (queued["subject"], queued["rate_per_second"], queued["eta_seconds"]) == ("did:plc:alice", None, None)
    assert report["workers"] == {"alive": 0, "dead": 1}

    text = cli(worker_env, "status").stdout
    assert "workers          0 alive, 1 dead" in text
    assert "backfills        2 open" in text and "reclassify - running 50/150" in text
