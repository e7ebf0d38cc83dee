"""Classification throughput: posts/s through the ``classify`` queue, and what the LLM costs.

A scratch database gets ``--posts`` realistic posts (distinct texts: slang, strains, brands,
prices, a few posts about dogs), then a real worker process (``cannect worker --queues
classify``) classifies them from messages enqueued as ingest sends them:

- LLM path: the LLM classifier against tests/fakes/llm.py's FakeLLM, answering every request
  after ``--delay`` seconds (default 0.8, a DeepSeek-like latency); tokens and dollars per
  1,000 posts come from ``llm_calls`` at the configured prices (``LLM_PRICE_*``, DeepSeek's
  published ones by default);
- offline path: ``--offline-posts`` new posts through the same queue with ``CLASSIFIER=offline``
  (larger messages: ``--offline-batch``, there is no request to fill).

Goal: at least 50 posts/s on the LLM path. Uses DATABASE_URL (only to create and drop a
scratch database) and REDIS_URL (flushed) when set, else embedded servers. Usage:
    python bench/classify.py [--posts 3000] [--offline-posts 20000] [--threads 8] [--delay 0.8]
                             [--batch 20] [--offline-batch 100]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

import psycopg  # noqa: E402
import redis  # noqa: E402

from cannect.embedded import ensure_services  # noqa: E402
from ingest import drop_database, fresh_database  # noqa: E402  (bench/ingest.py)

OPENERS = ["ngl", "honestly", "just picked up", "finally tried", "anyone else love", "wake n bake with",
           "smh at", "cant believe", "ok so", "update:", "lowkey", "first time with", "review:"]
SUBJECTS = ["some blue dream", "gsc", "sour d", "an eighth of og kush", "stiiizy pods", "wyld gummies",
            "a cookies sf pack", "jungle boys flower", "raw papers", "granddaddy purple", "a 1g cart",
            "rosin from the dispensary", "cbd tincture", "pre rolls", "wedding cake", "gelato 41"]
ENDINGS = ["so relaxed rn", "way too expensive at $60", "helped my back pain a lot", "made me paranoid af",
           "perfect for movie night", "where can i buy this near denver?", "best high ever", "meh, average",
           "sleeping like a baby", "creative juices flowing", "dispensary was out again smh",
           "cheap and good", "munchies hit hard lol"]
OFF_TOPIC = ["took the dog to the beach today, he loved it", "anyone watching the game tonight?",
             "made a blueberry pie, recipe below", "rainy monday, coffee time", "my cat knocked over a plant"]


def post_texts(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for n in range(count):
        if rng.random() < 0.15:
            texts.append(f"{rng.choice(OFF_TOPIC)} ({n})")
        else:
            texts.append(f"{rng.choice(OPENERS)} {rng.choice(SUBJECTS)}, {rng.choice(ENDINGS)} #weed #{n}")
    return texts


def insert_posts(db_url: str, texts: list[str]) -> None:
    now = datetime.now(timezone.utc)
    with psycopg.connect(db_url) as conn, conn.cursor() as cur:
        with cur.copy("COPY posts (uri, cid, author_did, text, created_at, sort_at, indexed_time_us, langs, "
                      "has_cannabis_hashtag) FROM STDIN") as copy:
            for n, body in enumerate(texts):
                did = f"did:plc:bench{n % 500:019d}"
                at = now - timedelta(seconds=len(texts) - n)
                copy.write_row((f"at://{did}/app.bsky.feed.post/p{n}", "bafy", did, body, at, at, n, ["en"],
                                "#weed" in body))


def post_ids(db_url: str) -> list[int]:
    with psycopg.connect(db_url) as conn:
        return [row[0] for row in conn.execute("SELECT id FROM posts ORDER BY id")]


def processed(db_url: str) -> tuple[int, int]:
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT count(*) FILTER (WHERE processed_at IS NOT NULL), "
                            "count(*) FILTER (WHERE processing_error IS NOT NULL) FROM posts").fetchone()


def run_queue(env: dict, db_url: str, ids: list[int], threads: int, log_dir: Path, name: str,
              timeout: float = 1800) -> tuple[float, int]:
    """Enqueue ``ids`` as ingest would and time a real worker process until all are processed."""
    from harness import System

    system = System(env, log_dir)
    try:
        system.start(name, "worker", "--queues", "classify", "--processes", "1", "--threads", str(threads))
        _wait_until_booted(env, db_url, ids[:20], system, name)
        rest = ids[20:]
        start = time.perf_counter()
        _send(env, rest)
        deadline = time.monotonic() + timeout
        while True:
            done, failed = processed(db_url)
            if done + failed >= len(ids):
                break
            if system.procs[name].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker stopped or too slow ({done}/{len(ids)}):\n{system.log(name)}")
            time.sleep(0.1)
        elapsed = time.perf_counter() - start
    finally:
        system.stop_all()
    return len(rest) / elapsed, failed


def _wait_until_booted(env, db_url, warmup, system, name) -> None:
    """The worker's first message builds its classifier and seeds the entity tables: not timed."""
    _send(env, warmup)
    deadline = time.monotonic() + 120
    while processed(db_url)[0] + processed(db_url)[1] < len(warmup):
        if system.procs[name].poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker did not start:\n{system.log(name)}")
        time.sleep(0.1)


def _send(env: dict, ids: list[int]) -> None:
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "REDIS_URL", "JWT_SECRET", "CLASSIFY_BATCH_SIZE")})
    from cannect.config import get_settings

    get_settings.cache_clear()
    from tasks import classify

    classify.request(ids)


def llm_costs(db_url: str) -> dict:
    from datetime import datetime as dt

    from sqlalchemy.orm import Session

    from services.classify import costs
    from services.db import make_engine

    engine = make_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1), pool_size=1)
    with Session(engine) as session:
        usage = costs.usage_since(session, dt(1970, 1, 1, tzinfo=timezone.utc))
    engine.dispose()
    return {"usage": usage}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=3000)
    parser.add_argument("--offline-posts", type=int, default=20000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--delay", type=float, default=0.8)
    parser.add_argument("--batch", type=int, default=20, help="CLASSIFY_BATCH_SIZE on the LLM path")
    parser.add_argument("--offline-batch", type=int, default=100, help="CLASSIFY_BATCH_SIZE offline")
    args = parser.parse_args()

    from fakes.llm import FakeLLM

    ensure_services(ROOT / ".cannect" / "bench")
    admin_url = os.environ["DATABASE_URL"]
    redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEEPSEEK_", "LLM_", "CLASSIFIER"))}
    env.update(LOG_LEVEL="WARNING", JWT_SECRET="bench-secret-" + "x" * 32)

    db_url = fresh_database(admin_url)
    env["DATABASE_URL"] = db_url
    try:
        with tempfile.TemporaryDirectory() as logs, FakeLLM(delay=args.delay) as fake:
            insert_posts(db_url, post_texts(args.posts))
            llm_env = dict(env, CLASSIFIER="llm", DEEPSEEK_API_KEY="bench-key", DEEPSEEK_BASE_URL=fake.base_url,
                           CLASSIFY_BATCH_SIZE=str(args.batch), LLM_BATCH_SIZE=str(min(args.batch, 100)),
                           LLM_MAX_CONCURRENCY=str(max(args.threads, 8)))
            llm_rate, llm_failed = run_queue(llm_env, db_url, post_ids(db_url), args.threads, Path(logs), "llm")
            usage = llm_costs(db_url)["usage"]
            requests, peak = len(fake.requests), fake.max_concurrent

            with psycopg.connect(db_url) as conn:
                conn.execute("DELETE FROM posts")           # their classifications go by cascade
            insert_posts(db_url, post_texts(args.offline_posts, seed=8))
            offline_env = dict(env, CLASSIFIER="offline", CLASSIFY_BATCH_SIZE=str(args.offline_batch))
            offline_rate, offline_failed = run_queue(offline_env, db_url, post_ids(db_url), args.threads,
                                                     Path(logs), "offline")
    finally:
        drop_database(admin_url, db_url)

    from cannect.config import load_settings

    settings = load_settings(database_url=db_url, redis_url=env["REDIS_URL"])
    per_post = 1000 / usage.posts if usage.posts else float("nan")
    print(f"\nclassify benchmark: worker 1 process x {args.threads} threads, messages of {args.batch} posts "
          f"(LLM) / {args.offline_batch} (offline), {os.cpu_count()} cores")
    print(f"  LLM path (fake, {args.delay * 1000:.0f} ms)  {llm_rate:>8,.1f} posts/s  ({args.posts:,} posts, "
          f"{requests:,} requests, {peak} at once, {llm_failed} failed)")
    print(f"  tokens per 1,000 posts     cache hit {usage.cache_hit_tokens * per_post:>9,.0f}  "
          f"cache miss {usage.cache_miss_tokens * per_post:>9,.0f}  output {usage.output_tokens * per_post:>9,.0f}")
    cost = usage.cost_per_1000_posts
    print(f"  dollars per 1,000 posts    ${float(cost or 0):.4f}  (USD per M tokens: hit "
          f"{settings.llm_price_input_cache_hit}, miss {settings.llm_price_input_cache_miss}, "
          f"output {settings.llm_price_output})")
    print(f"  offline path               {offline_rate:>8,.1f} posts/s  ({args.offline_posts:,} posts, "
          f"{offline_failed} failed)")
    print(f"  goal: LLM path >= 50 posts/s: {'met' if llm_rate >= 50 else 'NOT met'}")


if __name__ == "__main__":
    main()
