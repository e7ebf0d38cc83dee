"""Intelligence jobs on a large classified corpus: the time of each scheduled recompute, the
materialized view refreshes and the seven time-analysis questions.

A fresh scratch database gets ``--posts`` posts (default 200,000) by ``--authors`` authors,
spread over the last 365 days, a third with hashtags and a quarter with facet tags, each with
one classification (one in ten off topic) drawn deterministically from the schema's
vocabularies, in set-based SQL. Then each job of ``tasks/views.py`` runs once in its own
transaction, as the worker runs it, and the script prints its wall time, the rows it wrote and
the temporary bytes PostgreSQL spilled to disk; then the seven questions over the last 90
days; then this process's peak memory. The incremental profile run starts with every author
marked (the triggers mark them as the classifications are inserted) and takes one batch
(``profiles.BATCH``), the worst a one-minute run meets.

Uses DATABASE_URL's server (admin database) when set, else embedded servers; creates its own
database and drops it at the end (``--keep`` keeps it). Usage:

    .venv/bin/python bench/aggregates.py [--posts 200000] [--authors 10000] [--keep]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from sqlalchemy import text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from ingest import drop_database, fresh_database  # noqa: E402
from services.db import make_engine  # noqa: E402
from services.intelligence import (entities, metrics, opportunities, profiles, questions, timeseries,  # noqa: E402
                                   trends, views)
from services.intelligence.base import utcnow  # noqa: E402

_POSTS = """
INSERT INTO posts (uri, cid, author_did, text, created_at, sort_at, indexed_time_us, tags, facets, like_count,
                   repost_count, reply_count, has_media, media_count)
SELECT 'at://did:plc:bench' || (g % :authors) || '/app.bsky.feed.post/' || g, 'cid' || g,
       'did:plc:bench' || (g % :authors), 'bench post ' || g, t, t, g,
       CASE WHEN g % 3 = 0 THEN ARRAY['weed', 'tag' || (g * 13 % 50)] END,
       CASE WHEN g % 4 = 0 THEN jsonb_build_array(jsonb_build_object('features', jsonb_build_array(
           jsonb_build_object('$type', 'app.bsky.richtext.facet#tag', 'tag', 'Kush' || (g * 17 % 20)))))
       END,
       g * 7 % 30, g * 3 % 5, g * 11 % 4, g % 5 = 0, CASE WHEN g % 5 = 0 THEN 1 ELSE 0 END
FROM generate_series(CAST(1 AS bigint), :n) AS g
CROSS JOIN LATERAL (SELECT now() - (g * 7919 % 31536000) * interval '1 second' AS t) AS x
"""

_CLASSIFICATIONS = """
INSERT INTO post_classifications (post_id, model_version, confidence, cannabis_related, consumer_type,
    experience_level, lifestyle_tags, occasion, time_of_day, is_ritual, intent_type, purchase_intent, purchase_stage,
    product_category, effects_mentioned, effects_desired, quality_perception, dosage_pattern, post_type, sentiment,
    sentiment_score, emotions, brand_mentioned, strain_mentioned, dispensary_mentioned, price_mentioned,
    price_sentiment, frustrations, region_hint, legal_context)
SELECT id, 'bench-1', 80, (id * 31 + id / 97) % 10 <> 0,
    (ARRAY['wellness','recreational','medical','social','connoisseur','spiritual','unknown'])[1 + id % 7],
    (ARRAY['curious','newbie','casual','regular','daily','expert','unknown'])[1 + id * 3 % 7],
    (ARRAY[ARRAY['active','creative'],ARRAY['parent','professional'],ARRAY['student','gamer'],
           ARRAY['outdoors','musician']])[1 + id % 4:1 + id % 4][1:2],
    (ARRAY['wake_bake','after_work','weekend','bedtime',NULL])[1 + id * 7 % 5],
    (ARRAY['morning','afternoon','evening','night','late_night','unknown'])[1 + id * 5 % 6],
    id % 9 = 0,
    (ARRAY['sharing','asking','recommending','complaining','celebrating','informing','venting'])[1 + id % 7],
    (id * 37 % 101)::smallint,
    (ARRAY['unaware','considering','shopping','post_purchase','loyal','unknown'])[1 + id * 11 % 6],
    (ARRAY['flower','pre_roll','edible','vape','concentrate','tincture','topical','beverage','accessory','unknown'])
        [1 + id * 13 % 10],
    ARRAY[(ARRAY['relaxed','sleepy','creative','focused','energetic','euphoric','happy','hungry'])[1 + id % 8],
          (ARRAY['calm','giggly','uplifted','pain_relief'])[1 + id * 3 % 4]],
    ARRAY[(ARRAY['pain_relief','anxiety_relief','sleepy','focused'])[1 + id * 5 % 4]],
    (ARRAY['premium','good','average','poor','unknown'])[1 + id * 17 % 5],
    (ARRAY['microdose','light','moderate','heavy','unknown'])[1 + id * 19 % 5],
    (ARRAY['experience','review','question','recommendation','meme','photo','vent'])[1 + id * 23 % 7],
    (ARRAY['positive','negative','neutral','mixed'])[1 + id * 29 % 4],
    (id * 41 % 201 - 100)::smallint,
    ARRAY[(ARRAY['joy','relief','excitement','frustration','disappointment'])[1 + id * 31 % 5]],
    CASE WHEN id % 3 = 0 THEN (ARRAY['Cookies','Stiiizy','Raw','Wyld','Kiva','Jeeter','Cresco','Select'])
        [1 + id * 43 % 8] END,
    CASE WHEN id % 2 = 0 THEN 'Strain ' || (id * 47 % 300) END,
    CASE WHEN id % 11 = 0 THEN 'Dispensary ' || (id % 40) END,
    id % 6 = 0,
    CASE WHEN id % 6 = 0 THEN (ARRAY['fair','expensive','cheap','deal'])[1 + id % 4] END,
    CASE WHEN id % 4 = 0 THEN ARRAY[(ARRAY['price','availability','quality','legality','potency'])[1 + id * 53 % 5]]
         ELSE '{}' END,
    (ARRAY['California','Colorado','Oregon','Washington','Michigan','Ontario','Berlin',NULL])[1 + id * 59 % 8],
    (ARRAY['legal','medical_only','illegal','unknown'])[1 + id * 61 % 4]
FROM posts
"""


def seed(engine, n: int, authors: int) -> float:
    started = time.perf_counter()
    with Session(engine) as session, session.begin():
        session.execute(text(_POSTS), {"n": n, "authors": authors})
        session.execute(text(_CLASSIFICATIONS))
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
    return time.perf_counter() - started


def timed(engine, name: str, work) -> None:
    with Session(engine) as session:
        spilled_before = _temp_bytes(session)
        started = time.perf_counter()
        with session.begin():
            rows = work(session)
        elapsed = time.perf_counter() - started
        spilled = _temp_bytes(session) - spilled_before
    count = rows if isinstance(rows, int) else len(rows) if hasattr(rows, "__len__") else "-"
    print(f"  {name:<40} {elapsed:8.2f} s   rows {count!s:>8}   temp spilled {spilled / 2**20:7.1f} MB",
          flush=True)


def _temp_bytes(session) -> int:
    """Bytes of temporary files PostgreSQL wrote for this database so far (statistics lag a little)."""
    spilled = session.scalar(text("SELECT temp_bytes FROM pg_stat_database WHERE datname = current_database()"))
    session.rollback()
    return spilled or 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=200_000)
    parser.add_argument("--authors", type=int, default=None, help="default: posts / 20")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()
    authors = args.authors or max(1, args.posts // 20)

    admin = os.environ.get("DATABASE_URL")
    if not admin:
        from cannect.embedded import ensure_services

        admin = ensure_services(ROOT / ".cannect" / "bench")[0]
    url = fresh_database(admin)
    engine = make_engine(url.replace("postgresql://", "postgresql+psycopg://", 1), pool_size=2)
    try:
        print(f"seeding {args.posts:,} classified posts by {authors:,} authors ...", flush=True)
        print(f"  seeded in {seed(engine, args.posts, authors):.1f} s", flush=True)
        print("scheduled jobs (each in its own transaction):")
        timed(engine, f"profiles incremental ({profiles.BATCH} authors)", profiles.refresh_changed)
        timed(engine, "profiles incremental, next batch", profiles.refresh_changed)
        timed(engine, "entities (brands, strains)", entities.recompute)
        timed(engine, "time series (current + previous x4)", timeseries.recompute_recent)
        for view in views.VIEWS:
            timed(engine, f"refresh {view}", lambda session, v=view: views.refresh(session, v))
        timed(engine, "trends (4 kinds x 2 windows)", trends.compute)
        timed(engine, "post metrics snapshot", metrics.snapshot)
        timed(engine, "post metrics snapshot (unchanged)", metrics.snapshot)
        timed(engine, "opportunity scores", opportunities.compute)
        print("admin jobs:")
        timed(engine, "profiles full recompute", profiles.recompute_all)
        now = utcnow()
        timed(engine, "time series, one year of days", lambda s: timeseries.recompute_range(
            s, "day", now - timedelta(days=365), now))
        print("the seven questions (last 90 days, all regions):")
        lo, hi = now - timedelta(days=90), now
        for name, ask in [
            ("consumption_times", lambda s: questions.consumption_times(s, lo, hi)),
            ("weekend_vs_weekday", lambda s: questions.weekend_vs_weekday(s, lo, hi)),
            ("effect_trends", lambda s: questions.effect_trends(s, lo, hi)),
            ("seasonality (365 days)", lambda s: questions.seasonality(s, now - timedelta(days=365), hi)),
            ("purchase_intent_now (24 h)", lambda s: questions.purchase_intent_now(s)),
            ("complaint_times", lambda s: questions.complaint_times(s, lo, hi)),
            ("brand_sentiment", lambda s: questions.brand_sentiment(s, lo, hi)),
            ("consumption_times, one region", lambda s: questions.consumption_times(s, lo, hi, "Oregon")),
        ]:
            timed(engine, name, ask)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak memory of this process: {peak:.0f} MB (the work runs in PostgreSQL)")
    finally:
        engine.dispose()
        if args.keep:
            print(f"kept {url}")
        else:
            drop_database(admin, url)


if __name__ == "__main__":
    main()
