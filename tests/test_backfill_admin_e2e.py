"""Admin legacy import end to end (issue 10): real processes, the CLI, a crash and a resume.

A real worker (``cannect worker --queues backfill,classify``, offline classifier) runs a
``legacy_import`` that an admin starts with ``cannect backfill start ... --detach``; the
imported posts are classified (the runner queues each chunk's new posts); ``cannect backfill
show`` prints the report. A run whose worker is SIGKILLed in the middle of a chunk, then
restarted, ends exactly as a run without the kill. A job failed on a vanished file is resumed
with ``cannect backfill resume`` once the file is back and goes on from its stored cursor.

Chunks are stepped without clocks: the test holds the ingest lock (each legacy chunk applies
its rows under it, services/backfill/legacy.py), so the worker's chunk waits inside its
transaction where the test wants it. Timeouts below are failure guards only.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager

import orjson
import psycopg
import pytest
import redis as redis_lib
from sqlalchemy import text
from sqlalchemy.orm import Session

from harness import System
from legacy_rows import ODD, write_posts_db
from services.db import make_engine
from services.ingest import lock_index
from snapshot import db_snapshot

ROWS, CHUNK = 600, 20


@pytest.fixture
def other_db_url(servers, template_db):
    """A second migrated database (the run without the kill), dropped after the test."""
    from conftest import _with_database

    name = f"cannect_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(servers[0], autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    yield _with_database(servers[0], name)
    with psycopg.connect(servers[0], autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Farm:
    """One database's processes (a backfill+classify worker), the CLI and the ingest lock."""

    def __init__(self, env: dict, db_url: str, log_dir):
        env = {k: v for k, v in env.items() if k != "DEEPSEEK_API_KEY"}
        env.update(DATABASE_URL=db_url, CLASSIFIER="offline", WORKER_HEARTBEAT_TIMEOUT_MS="2000",
                   LEGACY_IMPORT_DIR=str(log_dir.parent))  # the test's posts.db is beside the logs
        log_dir.mkdir(parents=True, exist_ok=True)
        self.system = System(env, log_dir)
        self.engine = make_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1), pool_size=2)
        self.locker: Session | None = None

    def close(self) -> None:
        self.unlock()
        self.system.stop_all()
        self.engine.dispose()

    def start_worker(self) -> None:
        self.system.start("worker", "worker", "--queues", "backfill,classify", "--processes", "1", "--threads", "2")

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "cannect.cli", *args], env=self.system.env,
                              capture_output=True, text=True, timeout=120)
        assert not check or done.returncode == 0, (args, done.stdout, done.stderr)
        return done

    def start_import(self, path) -> int:
        out = self.cli("backfill", "start", "legacy_import", "-p", f"path={path}", "-p", f"chunk_size={CHUNK}",
                       "--detach")
        return int(out.stdout.strip())

    def job(self, job_id: int) -> dict:
        with Session(self.engine) as session:
            row = session.execute(text("SELECT status, chunks_done, done, total, error FROM backfill_jobs "
                                       "WHERE id = :id"), {"id": job_id}).one()
        return row._asdict()

    def wait(self, predicate, what: str, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"not {what} within {timeout}s\n{self.system.log('worker')}")
            time.sleep(0.02)

    def lock(self) -> None:
        """Hold the ingest lock: the next chunk waits for it inside its transaction."""
        with Session(self.engine) as session:
            lock_index(session)  # the row exists from now on
            session.commit()
        self.locker = Session(self.engine)
        lock_index(self.locker)

    def unlock(self) -> None:
        if self.locker is not None:
            self.locker.rollback()
            self.locker.close()
            self.locker = None

    def import_paused_after(self, path, chunks: int) -> int:
        """Start an import and hold it, once ``chunks`` chunks are done, with the next chunk
        waiting inside its transaction (the ingest lock held until :meth:`unlock`)."""
        self.lock()
        job_id = self.start_import(path)
        self.wait(self.waiting_on_lock, "chunk 0 waiting on the ingest lock")
        self.unlock()
        self.wait(lambda: self.job(job_id)["chunks_done"] >= chunks, f"{chunks} chunks done")
        self.lock()
        job = self.job(job_id)
        assert job["status"] == "running" and job["done"] < ROWS, "the job ended before the pause"
        self.wait(self.waiting_on_lock, "a chunk waiting on the ingest lock")
        return job_id

    def waiting_on_lock(self) -> bool:
        with Session(self.engine) as session:
            return bool(session.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                            "AND wait_event_type = 'Lock' "
                                            "AND query ILIKE '%ingest_state%'")))

    def wait_done(self, job_id: int) -> dict:
        self.wait(lambda: self.job(job_id)["status"] not in ("queued", "running"), f"job {job_id} over")
        self.wait(self.all_classified, "every imported post classified")
        return self.job(job_id)

    def all_classified(self) -> bool:
        with Session(self.engine) as session:
            return session.execute(text("SELECT (SELECT count(*) FROM posts), "
                                        "(SELECT count(DISTINCT post_id) FROM post_classifications)")).one() == \
                (ROWS_EXPECTED[0], ROWS_EXPECTED[0])

    def result(self, job_id: int) -> dict:
        """Everything a run leaves: the index, the classified posts, the job as ``show`` prints it."""
        shown = orjson.loads(self.cli("backfill", "show", str(job_id)).stdout)
        with Session(self.engine) as session:
            classified = session.execute(text("SELECT p.uri, count(*) FROM post_classifications c "
                                              "JOIN posts p ON p.id = c.post_id GROUP BY p.uri")).all()
            index = db_snapshot(session)
        job = {k: shown[k] for k in ("status", "done", "total", "report", "chunksDone", "unit", "error")}
        return {"index": index, "classified": dict(classified), "job": job}


ROWS_EXPECTED: list[int] = [0]  # len(expected URIs), set by the legacy_db fixture


@pytest.fixture
def legacy_db(tmp_path):
    path = tmp_path / "posts.db"
    expected = write_posts_db(path, ROWS, seed=3)
    ROWS_EXPECTED[0] = len(expected)
    return path, expected


@contextmanager
def farm(env, db_url, log_dir):
    farm = Farm(env, db_url, log_dir)
    try:
        yield farm
    finally:
        farm.close()


def expected_report(imported: int) -> dict:
    odd = ROWS // 25  # one odd row every 25, the kinds of tests/legacy_rows.py's ODD in turn
    skipped = {reason: sum(1 for i in range(odd) if ODD[i % len(ODD)][0] == reason)
               for reason, kept in ODD if not kept}
    return {"imported": imported, "skipped": skipped, "cleaned": {"nul_in_text": odd // len(ODD)}}


def check_run(result: dict, expected: set[str]) -> None:
    assert set(result["index"]["posts"]) == expected
    assert set(result["classified"]) == expected and set(result["classified"].values()) == {1}
    job = result["job"]
    assert (job["status"], job["done"], job["total"], job["unit"], job["error"]) == ("done", ROWS, ROWS, "rows", None)
    assert job["report"] == expected_report(len(expected))
    posts_by_author = {}
    for post in result["index"]["posts"].values():
        posts_by_author[post["author_did"]] = posts_by_author.get(post["author_did"], 0) + 1
    assert {did: p["posts_count"] for did, p in result["index"]["profiles"].items()} == posts_by_author
    assert result["index"]["notifications"] == {}


def test_cli_import_is_classified_and_a_killed_worker_ends_as_an_unkilled_run(env, db_url, other_db_url, legacy_db,
                                                                                tmp_path):
    path, expected = legacy_db
    # Without the kill.
    with farm(env, other_db_url, tmp_path / "plain") as plain:
        plain.start_worker()
        job_id = plain.start_import(path)
        assert plain.wait_done(job_id)["status"] == "done"
        listed = plain.cli("backfill", "list").stdout
        assert f"{job_id}\tlegacy_import\tdone\t{ROWS:,}/{ROWS:,} rows" in listed
        without_kill = plain.result(job_id)
    check_run(without_kill, expected)

    # With the worker SIGKILLed while a chunk (not the first) waits inside its transaction.
    with farm(env, db_url, tmp_path / "killed") as killed:
        killed.start_worker()
        job_id = killed.import_paused_after(path, 3)
        killed.system.kill("worker")
        at_kill = killed.job(job_id)
        killed.unlock()
        assert at_kill["status"] == "running" and 3 <= at_kill["chunks_done"] < ROWS // CHUNK
        killed.start_worker()  # requeues the dead worker's messages (WORKER_HEARTBEAT_TIMEOUT_MS)
        assert killed.wait_done(job_id)["status"] == "done"
        with_kill = killed.result(job_id)
    check_run(with_kill, expected)
    assert with_kill == without_kill


def test_failed_job_resumes_from_its_cursor(env, db_url, legacy_db, tmp_path):
    path, expected = legacy_db
    away = path.with_name("posts.db.away")
    with farm(env, db_url, tmp_path / "resume") as f:
        f.start_worker()
        job_id = f.import_paused_after(path, 2)
        os.rename(path, away)  # the file vanishes: the next chunk cannot open it
        f.unlock()
        f.wait(lambda: f.job(job_id)["error"] is not None, "a chunk failing")
        failing = f.job(job_id)
        assert "no such file" in failing["error"] and failing["status"] == "running"
        # The chunk's retries back off for minutes (8 retries, up to 2 min apart): stop the worker
        # and its retry, and run the actor Dramatiq runs once they are spent.
        f.system.kill("worker")
        client = redis_lib.Redis.from_url(f.system.redis_url)
        for key in client.scan_iter("dramatiq:*backfill*"):
            client.delete(key)
        chunk = failing["chunks_done"]
        subprocess.run([sys.executable, "-c", "from tasks.backfill import admin_gave_up; "
                        f"admin_gave_up.fn({{'args': [{job_id}, {chunk}]}}, {{'retries': 8}})"],
                       env=f.system.env, check=True, timeout=60)
        failed = f.job(job_id)
        assert failed["status"] == "failed" and failed["chunks_done"] == chunk and "no such file" in failed["error"]
        shown = orjson.loads(f.cli("backfill", "show", str(job_id)).stdout)
        assert shown["status"] == "failed" and shown["cursor"]["rowid"] == chunk * CHUNK

        # The file back, an admin resumes: the job goes on from its cursor, nothing is done twice.
        os.rename(away, path)
        resumed = f.cli("backfill", "resume", str(job_id), "--detach")
        assert f"job {job_id} resumed at chunk {chunk}" in resumed.stderr
        f.start_worker()
        assert f.wait_done(job_id)["status"] == "done"
        result = f.result(job_id)
        assert f.cli("backfill", "resume", str(job_id), "--detach", check=False).returncode == 1  # done: no resume
    check_run(result, expected)  # no "already_indexed": no row was read twice
