"""Backfills run on their own queue: live ingest never waits behind them (issue 10).

The real processes (replay server tailing a live capture, listener, an ingest worker, a
backfill worker) run while two backfills are stuck mid-work on the backfill worker: a member's
onboarding page that the fake AppView holds open, and an admin job's chunk that waits on a
Redis switch. Live events emitted meanwhile are applied, and their posts indexed, while both
are still held: structurally, not by the clock.

The bound: live ingest lag is independent of backfills. While a backfill is held, live events
are applied within the ingest path's own latency (listener batch + one ``ingest`` message); a
backfill adds at most the length of one page's commit under the ingest lock (milliseconds,
services/backfill/pages.py) and never a message ahead of an ingest batch (own queue and
workers). The test waits up to 120 s only as a failure guard.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest
from sqlalchemy import text

from admin_kinds import HELD, HOLD, RELEASE, Jobs
from fakes.appview import FakeAtproto
from fakes.identity import FakePlc, did_document
from fakes.pds import make_cid, make_tid
from harness import System
from services.backfill import admin
from services.db import session_scope
from services.members import NEW_BACKFILL_JOBS, add_member

TESTS = Path(__file__).resolve().parent
JWT_SECRET = "test-secret-" + "x" * 32
MEMBER = "did:plc:" + "isolatedmember" + "z" * 10
POST = "app.bsky.feed.post"


class HeldAppView(FakeAtproto):
    """An AppView whose getAuthorFeed answers wait until :attr:`release` is set."""

    def __init__(self):
        super().__init__("held-appview")
        self.release = threading.Event()
        self.holding = 0

    def answer(self, path: str, query: dict):
        if path == "/xrpc/app.bsky.feed.getAuthorFeed" and not self.release.is_set():
            with self._lock:
                self.holding += 1
            self.release.wait(180)
        return super().answer(path, query)


def _frame(did: str, rkey: str, body: str) -> dict:
    record = {"$type": POST, "text": body, "langs": ["en"], "createdAt": "2026-12-01T06:00:00.000Z"}
    return {"did": did, "time_us": 0, "kind": "commit",
            "commit": {"rev": "x", "operation": "create", "collection": POST, "rkey": rkey, "record": record,
                       "cid": make_cid(record)}}


@pytest.fixture
def jobs(monkeypatch, db_url, redis_url):
    jobs = Jobs(monkeypatch, db_url, redis_url, JWT_SECRET)
    yield jobs
    jobs.close()


def test_live_events_are_applied_while_a_member_and_an_admin_backfill_are_held(jobs, env, tmp_path, session):
    from tasks.backfill import start_jobs

    plc, pds, appview = FakePlc(), FakeAtproto("fake-pds"), HeldAppView()
    plc.start(), pds.start(), appview.start()
    capture = tmp_path / "live.jsonl"
    capture.touch()
    system = System(env, tmp_path)
    last_us = 0

    def emit(frame: dict) -> int:
        nonlocal last_us
        frame["time_us"] = last_us = max(time.time_ns() // 1000, last_us + 1)
        with open(capture, "ab") as out:
            out.write(orjson.dumps(frame) + b"\n")
        return last_us

    try:
        plc.publish(MEMBER, document=did_document(MEMBER, None, pds.url))
        pds.repos[MEMBER], appview.repos[MEMBER] = {}, {}
        system.env.update(INGEST_BATCH_MS="50", BACKFILL_APPVIEW_URL=appview.url, BACKFILL_TIMEOUT_SECONDS="120",
                          BACKFILL_INSECURE_TEST_ORIGINS=f"{pds.url},{appview.url}")
        system.start_replay(capture)
        system.env["PLC_DIRECTORY_URL"] = plc.url
        system.start_listener()
        system.start_worker(threads=2)  # queue ingest only
        backfill_env = {**system.env, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])}
        log = open(tmp_path / "worker-backfill.log", "ab")
        system.procs["worker-backfill"] = subprocess.Popen(
            [sys.executable, "-m", "dramatiq", "tasks", "admin_kinds", "--processes", "1", "--threads", "4",
             "--queues", "backfill"], env=backfill_env, cwd=TESTS.parent, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)

        # The stream flows before anything is held: the ingest path is up.
        system.wait_until_applied(emit(_frame("did:plc:" + "a" * 24, make_tid(time.time_ns() // 1000, 1),
                                              "warm up #weed")), timeout=120)
        # A member joins (their onboarding page is held by the AppView) and an admin job starts
        # (its first chunk is held by a Redis switch).
        add_member(session, MEMBER, "isolated.test")
        member_jobs = session.info.get(NEW_BACKFILL_JOBS, [])
        session.commit()
        start_jobs(member_jobs)
        jobs.redis.set(HOLD, 0)
        with session_scope() as scope:
            admin_job = admin.create(scope, "test_items", {"n": 4, "size": 2}, "test")
        assert jobs.actors.send_admin_chunk(admin_job, 0)
        jobs.wait_for(lambda: appview.holding >= 1 and jobs.redis.llen(HELD) == 1, "both backfills held", 120)

        # Live events while both are held.
        rkeys = [make_tid(time.time_ns() // 1000, 10 + i) for i in range(5)]
        for i, rkey in enumerate(rkeys):
            last = emit(_frame(MEMBER, rkey, f"live post {i}"))
        system.wait_until_applied(last, timeout=120)
        session.rollback()
        indexed = set(session.scalars(text("SELECT split_part(uri, '/', 5) FROM posts WHERE author_did = :d"),
                                      {"d": MEMBER}))
        assert indexed == set(rkeys)
        # ... and both backfills were still held when the events were applied.
        assert not appview.release.is_set() and appview.answers == []
        with session_scope() as scope:
            held = admin.show(scope, admin_job)
        assert (held["status"], held["chunksDone"]) == ("running", 0)
        member_status = session.execute(text("SELECT status FROM backfill_jobs WHERE kind = 'member'")).scalar()
        assert member_status == "running"

        # Released, both finish.
        appview.release.set()
        jobs.redis.rpush(RELEASE, 1)

        def settled():
            session.rollback()
            return session.scalar(text("SELECT count(*) FROM backfill_jobs WHERE status <> 'done'")) == 0
        jobs.wait_for(settled, "both backfills done", 120)
    finally:
        system.stop_all()
        plc.stop(), pds.stop(), appview.stop()
