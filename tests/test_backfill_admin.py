"""Admin backfill jobs (services/backfill/admin.py, tasks/backfill.py, cannect backfill) on real
PostgreSQL and Redis, with a real Dramatiq worker in this process.

The runner is driven with the test kind of tests/admin_kinds.py (chunks that fail, crash after
their work or wait in flight on a Redis switch); the real kinds ``reclassify`` and
``recompute`` run over posts indexed through the ingest path.
"""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest
from click.testing import CliRunner
from sqlalchemy import text

from admin_kinds import CRASH, FAIL, HELD, HOLD, RELEASE, Jobs
from cannect.cli import main
from cannect.config import DEFAULT_CANNABIS_TAGS
from services.backfill import admin
from services.classify import CLASSIFICATION_VERSION
from services.db import session_scope
from services.ingest import ingest_batch
from services.jetstream import parse_event
from services.members import add_member

JWT_SECRET = "test-secret-" + "x" * 32
MEMBER = "did:plc:" + "m" * 24
CID = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"
T = 1_783_173_600_000_000


@pytest.fixture
def jobs(monkeypatch, db_url, redis_url):
    jobs = Jobs(monkeypatch, db_url, redis_url, JWT_SECRET)
    yield jobs
    jobs.close()


def create(kind: str, **params) -> int:
    with session_scope() as session:
        return admin.create(session, kind, params, "test")


def show(job_id: int) -> dict:
    with session_scope() as session:
        return admin.show(session, job_id)


def start(jobs: Jobs, kind: str = "test_items", **params) -> int:
    job_id = create(kind, **params)
    assert jobs.actors.send_admin_chunk(job_id, 0)
    return job_id


def test_a_job_runs_chunk_by_chunk_to_done_with_progress(jobs):
    job_id = create("test_items", n=10, size=3)
    queued = show(job_id)
    assert (queued["status"], queued["done"], queued["total"], queued["unit"]) == ("queued", 0, 10, "items")
    with jobs.worker():
        assert jobs.actors.send_admin_chunk(job_id, 0)
        jobs.wait_for(lambda: show(job_id)["status"] == "done", "done")
    job = show(job_id)
    assert (job["done"], job["total"], job["chunksDone"], job["cursor"], job["error"]) == (10, 10, 4, None, None)
    assert job["report"] == {"items": 10}  # summed over the chunks
    assert job["ratePerSecond"] > 0 and job["etaSeconds"] is None and job["finishedAt"]
    assert jobs.runs() == [0, 3, 6, 9] and jobs.items() == set(range(10))


def test_cancel_takes_effect_before_the_next_chunk(jobs):
    jobs.redis.set(HOLD, 3)  # the second chunk waits in flight
    with jobs.worker():
        job_id = start(jobs, n=10, size=3)
        jobs.wait_for(lambda: jobs.redis.llen(HELD) == 1, "holding chunk 2")
        with session_scope() as session:
            assert admin.cancel(session, job_id)["status"] == "cancelled"
        jobs.redis.rpush(RELEASE, 1)
        jobs.drain()
    job = show(job_id)
    assert job["status"] == "cancelled"
    assert job["done"] == 6 and job["chunksDone"] == 2  # the chunk in flight counts; no third one ran
    assert jobs.runs() == [0, 3]
    with session_scope() as session, pytest.raises(admin.Conflict):
        admin.resume(session, job_id)


def test_a_chunk_run_again_after_a_crash_or_delivered_twice_counts_once(jobs):
    jobs.redis.set(CRASH, 3)  # chunk 2 does its work, then dies before its outcome is recorded
    with jobs.worker():
        job_id = start(jobs, n=9, size=3)
        jobs.wait_for(lambda: show(job_id)["status"] == "done", "done")
        # A stale redelivery of every chunk (a replayed message) runs nothing.
        for chunk in range(4):
            jobs.actors.admin_chunk.send(job_id, chunk)
        jobs.drain()
    job = show(job_id)
    assert jobs.runs() == [0, 3, 3, 6]  # chunk 2 ran twice ...
    assert (job["done"], job["report"], job["chunksDone"]) == (9, {"items": 9}, 3)  # ... and counted once
    assert jobs.items() == set(range(9))


def test_a_failed_job_resumes_from_its_cursor(jobs):
    jobs.redis.set(FAIL, 3)
    with jobs.worker():
        job_id = start(jobs, n=9, size=3)
        jobs.wait_for(lambda: show(job_id)["status"] == "failed", "failed")
        job = show(job_id)
        assert job["cursor"] == {"next": 3} and job["done"] == 3
        assert "gave up on chunk 1" in job["error"] and "fails on purpose" in job["error"]
        jobs.redis.delete(FAIL)
        result = CliRunner().invoke(main, ["backfill", "resume", str(job_id)])
        assert result.exit_code == 0, result.output
    job = show(job_id)
    assert (job["status"], job["done"], job["error"]) == ("done", 9, None)
    assert jobs.runs() == [0, 3, 3, 3, 6]  # 3 failed twice (one retry), then went on from there


def test_a_job_whose_first_message_could_not_be_sent_stays_queued_and_resume_starts_it(jobs, env):
    env = {**env, "REDIS_URL": "redis://127.0.0.1:1/0"}  # nothing listens there
    failed = subprocess.run([sys.executable, "-m", "cannect.cli", "backfill", "start", "recompute", "-p",
                             "what=views", "--detach"], env=env, capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1 and "resume" in failed.stderr, failed.stderr
    with session_scope() as session:
        [job] = admin.list_jobs(session)[0]
    assert (job["status"], job["chunksDone"]) == ("queued", 0)
    with jobs.worker():
        result = CliRunner().invoke(main, ["backfill", "resume", str(job["jobId"])])
    assert result.exit_code == 0, result.output
    job = show(job["jobId"])
    assert (job["status"], job["done"], job["total"]) == ("done", 3, 3)  # the three materialized views


def test_invalid_params_are_refused_with_the_reason(jobs):
    runner = CliRunner()
    unknown = runner.invoke(main, ["backfill", "start", "no_such_kind"])
    assert unknown.exit_code == 2 and "unknown kind 'no_such_kind'" in unknown.output
    for args, says in ((["-p", "mode=fast"], "mode must be one of"),
                       (["-p", "since=yesterday"], "since must be an ISO date"),
                       (["-p", "below_version=99"], "below_version must be an integer"),
                       (["-p", "since=2026-02-01", "-p", "until=2026-01-01"], "since must be before until"),
                       (["-p", "colour=red"], "unknown params colour"),
                       (["-p", "nokey"], "is not key=value")):
        result = runner.invoke(main, ["backfill", "start", "reclassify", *args])
        assert result.exit_code == 2 and says in result.output, (args, result.output)
    bad = runner.invoke(main, ["backfill", "start", "recompute", "-p", "what=everything"])
    assert bad.exit_code == 2 and "what must be one of" in bad.output
    with session_scope() as session:
        assert admin.list_jobs(session)[0] == []  # nothing was saved


def test_the_cli_starts_follows_lists_shows_and_cancels(jobs):
    runner = CliRunner()
    with jobs.worker():
        followed = runner.invoke(main, ["backfill", "start", "test_items", "-p", "n=5", "-p", "size=2"])
        assert followed.exit_code == 0, followed.output
        assert "\tdone\t5/5 items" in followed.output
        jobs.redis.set(HOLD, 0)
        detached = runner.invoke(main, ["backfill", "start", "test_items", "-p", "n=4", "--detach"])
        assert detached.exit_code == 0, detached.output
        held = int(detached.stdout.strip().splitlines()[-1])
        jobs.wait_for(lambda: jobs.redis.llen(HELD) == 1, "holding")
        listed = runner.invoke(main, ["backfill", "list", "--json"])
        assert [(j["jobId"], j["status"]) for j in orjson.loads(listed.stdout)][0] == (held, "running")
        assert runner.invoke(main, ["backfill", "list", "--status", "done"]).output.count("\tdone\t") == 1
        shown = orjson.loads(runner.invoke(main, ["backfill", "show", str(held)]).stdout)
        assert shown["params"] == {"n": 4, "size": 3} and shown["requestedBy"].startswith("cli:")
        cancelled = runner.invoke(main, ["backfill", "cancel", str(held)])
        assert cancelled.exit_code == 0 and "\tcancelled\t" in cancelled.output
        jobs.redis.rpush(RELEASE, 1)
        jobs.drain()
    again = runner.invoke(main, ["backfill", "cancel", str(held)])
    assert again.exit_code == 1 and "already cancelled" in again.output
    missing = runner.invoke(main, ["backfill", "show", "999999"])
    assert missing.exit_code == 1 and "no admin backfill job 999999" in missing.output


# -- the real kinds ------------------------------------------------------------------------------

def _post(t: int, rkey: str, body: str, created: str = "2026-07-04T14:00:00Z") -> dict:
    return {"did": MEMBER, "time_us": T + t, "kind": "commit",
            "commit": {"rev": f"3l{t}", "operation": "create", "collection": "app.bsky.feed.post", "rkey": rkey,
                       "cid": CID, "record": {"$type": "app.bsky.feed.post", "text": body, "langs": ["en"],
                                              "createdAt": created}}}


def _index_posts(session, count: int, seq: int = 1, created: str = "2026-07-04T14:00:00Z") -> None:
    add_member(session, MEMBER, "member.test")
    events = [parse_event(orjson.dumps(_post(seq * 1000 + i, f"3k{seq}{i:04d}", f"Blue Dream #{i} #weed", created)))
              for i in range(count)]
    ingest_batch(session, {"conn": 1, "seq": seq, "prev": None, "events": events}, frozenset(DEFAULT_CANNABIS_TAGS))
    session.commit()


def _versions(session) -> dict[int, int]:
    session.rollback()
    return dict(session.execute(text("SELECT classification_version, count(*) FROM posts GROUP BY 1")).all())


def test_reclassify_queues_posts_in_chunks_and_they_are_classified(jobs, session):
    _index_posts(session, 7)
    _index_posts(session, 3, seq=2, created="2026-09-01T00:00:00Z")
    with jobs.worker(queues=("backfill", "classify")):
        job_id = start(jobs, "reclassify", chunk_size=3)  # below the current version: all ten
        jobs.wait_for(lambda: show(job_id)["status"] == "done", "done")
        jobs.drain(("backfill", "classify"))
        assert _versions(session) == {CLASSIFICATION_VERSION: 10}
        job = show(job_id)
        assert (job["done"], job["total"], job["report"], job["chunksDone"]) == (10, 10, {"queued": 10}, 4)

        # A time range alone classifies again even posts at the current version; inline here.
        ranged = start(jobs, "reclassify", since="2026-08-01", until="2026-10-01", mode="inline", limit=2)
        jobs.wait_for(lambda: show(ranged)["status"] == "done", "done")
    job = show(ranged)
    assert (job["total"], job["done"]) == (2, 2) and job["report"]["classified"] == 2
    assert job["params"]["below_version"] is None


def test_recompute_runs_every_step_of_what_was_asked(jobs, session):
    _index_posts(session, 4)
    with jobs.worker(queues=("backfill", "classify")):
        jobs.drain(("classify",))
        job_id = start(jobs, "recompute", what="all")
        jobs.wait_for(lambda: show(job_id)["status"] in ("done", "failed"), "finished")
        profiles_only = start(jobs, "recompute", what="profiles")
        jobs.wait_for(lambda: show(profiles_only)["status"] in ("done", "failed"), "finished")
    job = show(job_id)
    assert job["status"] == "done", job["error"]
    assert set(job["report"]["rows"]) >= {"profiles", "entities", "time_series_day", "trends",
                                          "mv_high_intent_users"}
    assert job["done"] == job["total"] == len(job["report"]["rows"])
    assert show(profiles_only)["report"]["rows"].keys() == {"profiles"}
    session.rollback()
    assert session.scalar(text("SELECT runs FROM intelligence_runs WHERE job = 'profiles_full'")) == 2


def test_reclassify_holds_back_while_the_classify_queue_is_full(jobs, session):
    from services.backfill.reclassify import QUEUE_CEILING
    from tasks import classify

    _index_posts(session, 3)
    jobs.broker.flush("classify")
    for _ in range(QUEUE_CEILING + 1):  # fresh posts' work, waiting (no classify worker here)
        classify.classify_posts.send([1])
    with jobs.worker():
        job_id = start(jobs, "reclassify")
        # The chunk found the queue full: it waits in the delay queue, spending no retry.
        jobs.wait_for(lambda: jobs.redis.hlen("dramatiq:backfill.DQ.msgs") == 1, "deferred")
        deferred = show(job_id)
        assert (deferred["status"], deferred["chunksDone"], deferred["done"]) == ("running", 0, 0)
        assert jobs.redis.hlen("dramatiq:classify.msgs") == QUEUE_CEILING + 1  # nothing added ahead of them
        jobs.broker.flush("classify")  # drained
        jobs.wait_for(lambda: show(job_id)["status"] == "done", "done")
    assert show(job_id)["report"] == {"queued": 3}


def test_a_crash_between_a_chunks_commit_and_the_next_send_does_not_stall_the_job(jobs):
    """At least once: the worker died after recording chunk 0 and before sending chunk 1. The
    redelivered message of chunk 0 sends chunk 1 (once), and the job finishes."""
    job_id = create("test_items", n=9, size=3)
    step = admin.run_next(session_scope, job_id, 0)  # chunk 0 as the actor runs it, then "the crash"
    assert step.chunk == 1 and show(job_id)["chunksDone"] == 1
    with jobs.worker():
        jobs.actors.admin_chunk.send(job_id, 0)  # the broker redelivers the unacknowledged message
        jobs.wait_for(lambda: show(job_id)["status"] == "done", "done")
        jobs.drain()
    job = show(job_id)
    assert (job["done"], job["chunksDone"], job["report"]) == (9, 3, {"items": 9})
    assert jobs.runs() == [0, 3, 6]


def test_a_duplicate_of_a_committed_chunk_does_not_start_a_second_chain(jobs):
    jobs.redis.set(HOLD, 3)  # chunk 1 waits in flight: chunk 0 is the last committed
    with jobs.worker():
        job_id = start(jobs, n=9, size=3)
        jobs.wait_for(lambda: jobs.redis.llen(HELD) == 1, "holding chunk 1")
        jobs.actors.admin_chunk.fn(job_id, 0)  # a duplicate, run here: chunk 1's message was sent already
        jobs.redis.rpush(RELEASE, 1)
        jobs.wait_for(lambda: show(job_id)["status"] == "done", "done")
        jobs.drain()
    assert jobs.runs() == [0, 3, 6]  # each chunk once: no second chain of messages


def test_bulk_writers_pause_while_live_ingest_has_a_backlog(monkeypatch):
    """yield_to_live_ingest waits while more than INGEST_BACKLOG_CEILING live batches queue up,
    goes on once they are down (or when the depth cannot be read), and never waits unwired."""
    from services.backfill import kinds

    monkeypatch.setattr(kinds, "PAUSE_SECONDS", 0.001)
    depths = iter([5, 3, kinds.INGEST_BACKLOG_CEILING])
    asked = []
    monkeypatch.setattr(kinds.LIVE, "ingest_waiting", lambda: asked.append(1) or next(depths))
    kinds.yield_to_live_ingest()
    assert len(asked) == 3  # two looks over the ceiling, then on

    def unreadable():
        asked.append(1)
        raise ConnectionError("redis away")

    asked.clear()
    monkeypatch.setattr(kinds.LIVE, "ingest_waiting", unreadable)
    kinds.yield_to_live_ingest()
    assert len(asked) == 1

    monkeypatch.setattr(kinds.LIVE, "ingest_waiting", None)
    assert kinds.yield_to_live_ingest() == 0.0


def test_the_worker_wires_the_pause_to_the_real_ingest_queue(jobs):
    """In a backfill worker, the depth the bulk writers look at is the ``ingest`` queue's in Redis:
    live batches waiting are counted there, and gone once the queue is drained."""
    from services.backfill import kinds
    from tasks import backfill, ingest

    backfill._wire_admin_kinds()  # as at the worker's import (another test may have unwired it since)
    jobs.broker.flush("ingest")  # no ingest worker here: what is sent stays waiting
    for _ in range(kinds.INGEST_BACKLOG_CEILING + 2):
        ingest.drain.send()
    assert kinds.LIVE.ingest_waiting() == kinds.INGEST_BACKLOG_CEILING + 2
    jobs.broker.flush("ingest")
    assert kinds.LIVE.ingest_waiting() == 0
