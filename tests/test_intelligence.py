"""Aggregates, views, trends, opportunity scores and the seven questions (services/intelligence)
against hand-computed expectations on a small seeded dataset, on real PostgreSQL; the actors
once through a real ``dramatiq tasks --queues views`` worker on Redis.

The dataset (November 2026, UTC; ``Classification`` rows written as the pipeline writes them):

=====  =====  ================  ==============================================================
post   who    created           classification (newest)
=====  =====  ================  ==============================================================
A1     alice  Sun 01 09:00      wellness/regular, edible, sleepy (+desires pain_relief), bedtime,
                                night, intent 80 shopping, +60, price, California, legal,
                                dispensary, price mentioned, parent
A2     alice  Sun 08 21:00      wellness/regular, edible, sleepy+relaxed, bedtime, night,
                                intent 40 post_purchase, +40, California, legal, microdose
A3     alice  Sun 15 13:00      medical/daily, tincture, calm, intent 20, -50, price+availability,
                                Oregon, legal, brand Papa & Barkley (an older version said
                                recreational: ignored)
A4     alice  Sun 22 09:00      not about cannabis (ignored everywhere)
B1     bob    Fri 20 15:00      connoisseur/expert, flower, premium, Cookies, Blue Dream, relaxed,
                                ritual, heavy, +80, joy, price mentioned
C1     carol  Fri 20 15:30      recreational/casual, vape, happy+giggly, "cookies sf", Blue Dream,
                                -20, quality, disappointment, intent 75 considering, "california",
                                afternoon, has media
=====  =====  ================  ==============================================================
"""

from __future__ import annotations

import itertools
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import insert, text

from models import Post, PostClassification
from services.classify.schema import Classification
from services.intelligence import (entities, metrics, opportunities, profiles, questions, runs, timeseries, trends,
                                   views)

UTC = timezone.utc
NOV = datetime(2026, 11, 1, tzinfo=UTC)
DEC = datetime(2026, 12, 1, tzinfo=UTC)
ALICE, BOB, CAROL = "did:plc:alice", "did:plc:bob", "did:plc:carol"
_serial = itertools.count(1)


def add_post(session, author, created_at, *, classify=True, model="test-1", tags=None, facets=None, likes=0,
             reposts=0, replies=0, media=False, **fields) -> int:
    n = next(_serial)
    post_id = session.execute(insert(Post).values(
        uri=f"at://{author}/app.bsky.feed.post/{n}", cid=f"cid{n}", author_did=author, text=f"post {n}",
        created_at=created_at, sort_at=created_at, indexed_time_us=n, tags=tags, facets=facets, like_count=likes,
        repost_count=reposts, reply_count=replies, has_media=media, media_count=int(media)).returning(Post.id)).scalar()
    if classify:
        add_classification(session, post_id, model, **fields)
    return post_id


def add_classification(session, post_id, model, **fields) -> None:
    session.execute(insert(PostClassification).values(post_id=post_id, model_version=model,
                                                      **Classification(**fields).row()))


def delete_posts(session, *post_ids) -> None:
    session.execute(text("DELETE FROM posts WHERE id = ANY(:ids)"), {"ids": list(post_ids)})


@pytest.fixture
def data(session):
    """The dataset of the module docstring; post ids by name."""
    ids = {}
    ids["A1"] = add_post(session, ALICE, datetime(2026, 11, 1, 9, tzinfo=UTC), consumer_type="wellness",
                         experience_level="regular", product_category="edible", effects_mentioned=["sleepy"],
                         effects_desired=["pain_relief"], occasion="bedtime", lifestyle_tags=["parent"],
                         time_of_day="night", purchase_intent=80, purchase_stage="shopping", sentiment="positive",
                         sentiment_score=60, frustrations=["price"], region_hint="California", legal_context="legal",
                         dispensary_mentioned="Green Door", price_mentioned=True)
    ids["A2"] = add_post(session, ALICE, datetime(2026, 11, 8, 21, tzinfo=UTC), consumer_type="wellness",
                         experience_level="regular", product_category="edible", effects_mentioned=["sleepy", "relaxed"],
                         occasion="bedtime", time_of_day="night", purchase_intent=40, purchase_stage="post_purchase",
                         sentiment="positive", sentiment_score=40, region_hint="California", legal_context="legal",
                         dosage_pattern="microdose")
    ids["A3"] = add_post(session, ALICE, datetime(2026, 11, 15, 13, tzinfo=UTC), model="test-0",
                         consumer_type="recreational", product_category="flower", sentiment="positive",
                         sentiment_score=90)
    add_classification(session, ids["A3"], "test-1", consumer_type="medical", experience_level="daily",
                       product_category="tincture", effects_mentioned=["calm"], purchase_intent=20,
                       sentiment="negative", sentiment_score=-50, frustrations=["price", "availability"],
                       region_hint="Oregon", legal_context="legal", brand_mentioned="Papa & Barkley")
    ids["A4"] = add_post(session, ALICE, datetime(2026, 11, 22, 9, tzinfo=UTC), cannabis_related=False,
                         product_category="none", sentiment="positive", sentiment_score=100, purchase_intent=100)
    ids["B1"] = add_post(session, BOB, datetime(2026, 11, 20, 15, tzinfo=UTC), consumer_type="connoisseur",
                         experience_level="expert", product_category="flower", quality_perception="premium",
                         brand_mentioned="Cookies", strain_mentioned="Blue Dream", effects_mentioned=["relaxed"],
                         is_ritual=True, dosage_pattern="heavy", sentiment="positive", sentiment_score=80,
                         emotions=["joy"], price_mentioned=True)
    ids["C1"] = add_post(session, CAROL, datetime(2026, 11, 20, 15, 30, tzinfo=UTC), media=True,
                         consumer_type="recreational", experience_level="casual", product_category="vape",
                         effects_mentioned=["happy", "giggly"], brand_mentioned="cookies sf",
                         strain_mentioned="Blue Dream", sentiment="negative", sentiment_score=-20,
                         frustrations=["quality"], emotions=["disappointment"], purchase_intent=75,
                         purchase_stage="considering", region_hint="california", time_of_day="afternoon")
    session.commit()
    return ids


def profile(session, did):
    return session.execute(text("SELECT * FROM user_profiles WHERE author_did = :d"), {"d": did}).mappings().first()


# -- user profiles ---------------------------------------------------------------------------------

def test_profiles_aggregate_every_field_and_the_documented_scores(session, data):
    assert profiles.refresh_changed(session) == 3
    alice = profile(session, ALICE)
    assert alice["posts_analyzed"] == 3  # A4 is off topic; A3 counts once, as its newest version
    assert (alice["first_seen_at"], alice["last_seen_at"]) == (datetime(2026, 11, 1, 9, tzinfo=UTC),
                                                               datetime(2026, 11, 15, 13, tzinfo=UTC))
    assert (alice["primary_consumer_type"], alice["secondary_consumer_type"]) == ("wellness", "medical")
    assert alice["experience_level"] == "regular"
    assert alice["preferred_products"] == ["edible", "tincture"]
    assert alice["preferred_effects"] == ["sleepy", "calm", "relaxed", "pain_relief"]  # ties: most recent first
    assert alice["typical_occasions"] == ["bedtime"] and alice["lifestyle_tags"] == ["parent"]
    assert float(alice["avg_sentiment"]) == 0.17                    # (60 + 40 - 50) / 3 / 100
    assert alice["posting_frequency"] == "weekly"                   # 2 gaps in 14.2 days: 0.99 a week
    assert alice["typical_time_of_day"] == "night"
    assert alice["purchase_frequency"] == "biweekly"                # 2 purchase signals per 30 days
    assert alice["estimated_monthly_spend"] == "$50-100"            # 2 x $40
    assert alice["frustrations"] == ["price", "availability"]
    assert alice["likely_region"] == "California" and alice["legal_market"] is True
    # confidence 3/5; parts in stats_json; docs/intelligence.md gives the weights
    assert alice["dispensary_target_score"] == 34      # .6 * (.35*.4667 + .25*.6667 + .15*.3333 + .10*.3333 + .15)
    assert alice["wellness_brand_target_score"] == 52  # .6 * (.45*1 + .30*1 + .15*.3333 + .10*.6667)
    assert alice["premium_product_target_score"] == 8  # .6 * (.20*.3333 + .20*.3333)
    assert alice["accessory_target_score"] == 3        # .6 * .15*.3333
    stats = alice["stats_json"]
    assert stats["posts"] == 3 and stats["confidence"] == 0.6 and stats["purchase_signals"] == 2
    assert stats["parts"]["purchase_share"] == 0.6667 and stats["parts"]["relief_share"] == 1.0
    for name, weights in profiles.TARGET_SCORES.items():  # every score is its parts, weighted
        expected = 100 * stats["confidence"] * sum(w * stats["parts"][p] for p, w in weights.items())
        assert abs(alice[name] - expected) <= 0.51, name

    bob = profile(session, BOB)
    assert bob["posts_analyzed"] == 1 and bob["posting_frequency"] == "occasional"
    assert bob["typical_time_of_day"] == "afternoon"  # unknown in the post: its UTC hour, 15:00
    assert bob["purchase_frequency"] is None and bob["estimated_monthly_spend"] is None
    assert bob["legal_market"] is None and bob["likely_region"] is None
    assert (bob["dispensary_target_score"], bob["wellness_brand_target_score"],
            bob["premium_product_target_score"], bob["accessory_target_score"]) == (6, 13, 33, 20)  # relaxed: relief


def test_profiles_recompute_only_changed_authors_and_drop_deleted_ones(session, data):
    profiles.refresh_changed(session)
    session.commit()
    assert session.scalar(text("SELECT count(*) FROM intelligence_dirty_authors")) == 0
    assert profiles.refresh_changed(session) == 0  # nothing changed
    session.commit()
    stamp = profile(session, BOB)["profile_updated_at"]

    add_post(session, ALICE, datetime(2026, 11, 16, 10, tzinfo=UTC), consumer_type="medical", sentiment="neutral",
             sentiment_score=0)
    delete_posts(session, data["C1"])  # carol's only post
    session.commit()
    assert set(session.scalars(text("SELECT author_did FROM intelligence_dirty_authors"))) == {ALICE, CAROL}
    assert profiles.refresh_changed(session) == 1
    session.commit()
    assert profile(session, ALICE)["posts_analyzed"] == 4
    assert profile(session, CAROL) is None
    assert profile(session, BOB)["profile_updated_at"] == stamp  # untouched

    session.execute(text("UPDATE post_classifications SET sentiment_score = 0 WHERE post_id = :id"),
                    {"id": data["B1"]})  # a re-classification under the same model version
    session.commit()
    assert list(session.scalars(text("SELECT author_did FROM intelligence_dirty_authors"))) == [BOB]
    profiles.refresh_changed(session)
    assert float(profile(session, BOB)["avg_sentiment"]) == 0.0

    delete_posts(session, data["A1"])
    session.commit()
    profiles.refresh_changed(session)
    alice = profile(session, ALICE)
    assert alice["posts_analyzed"] == 3 and alice["first_seen_at"] == datetime(2026, 11, 8, 21, tzinfo=UTC)
    assert profiles.recompute_all(session) == 2
    assert runs.summary(session)["profiles_full"]["rows"] == 2


# -- brands and strains ----------------------------------------------------------------------------

def test_brand_and_strain_statistics_resolve_aliases_create_names_and_forget_deleted_posts(session, data):
    session.execute(text("INSERT INTO brands (name, normalized_name, aliases) VALUES ('Cookies', 'cookies', "
                         "'{\"Cookies SF\"}')"))
    entities.recompute(session)
    brands = {r["name"]: r for r in session.execute(text("SELECT * FROM brands")).mappings()}
    assert set(brands) == {"Cookies", "Papa & Barkley"}  # "cookies sf" is an alias of Cookies
    cookies = brands["Cookies"]
    assert cookies["mention_count"] == 2 and float(cookies["avg_sentiment"]) == 0.30  # (80 - 20) / 2 / 100
    assert (cookies["first_seen_at"], cookies["last_seen_at"]) == (datetime(2026, 11, 20, 15, tzinfo=UTC),
                                                                   datetime(2026, 11, 20, 15, 30, tzinfo=UTC))
    papa = brands["Papa & Barkley"]
    assert papa["normalized_name"] == "papabarkley" and papa["mention_count"] == 1
    assert float(papa["avg_sentiment"]) == -0.5
    strain = session.execute(text("SELECT * FROM strains")).mappings().one()
    assert (strain["name"], strain["mention_count"], float(strain["avg_sentiment"])) == ("Blue Dream", 2, 0.3)
    assert sorted(strain["common_effects"]) == ["giggly", "happy", "relaxed"]

    delete_posts(session, data["B1"])
    entities.recompute(session)
    cookies = session.execute(text("SELECT * FROM brands WHERE name = 'Cookies'")).mappings().one()
    assert cookies["mention_count"] == 1 and float(cookies["avg_sentiment"]) == -0.2
    delete_posts(session, data["C1"])
    entities.recompute(session)
    cookies = session.execute(text("SELECT * FROM brands WHERE name = 'Cookies'")).mappings().one()
    assert (cookies["mention_count"], cookies["avg_sentiment"], cookies["last_seen_at"]) == (0, None, None)


# -- time series -----------------------------------------------------------------------------------

def _period(session, period_type, start):
    return session.execute(text("SELECT * FROM time_series_aggregates WHERE period_type = :t AND period_start = :s"),
                           {"t": period_type, "s": start}).mappings().first()


def test_time_series_for_every_period_type(session, data):
    for period_type in timeseries.PERIOD_TYPES:
        timeseries.recompute_range(session, period_type, NOV, DEC)
    month = _period(session, "month", NOV)
    assert month["period_end"] == DEC
    assert (month["total_posts"], month["unique_authors"], month["posts_with_media"]) == (5, 3, 1)
    assert (month["positive_count"], month["negative_count"], month["neutral_count"]) == (3, 2, 0)
    assert float(month["avg_sentiment_score"]) == 22.0       # (60 + 40 - 50 + 80 - 20) / 5
    assert float(month["avg_purchase_intent"]) == 53.75      # (80 + 40 + 20 + 75) / 4; bob gave none
    assert month["high_intent_count"] == 2
    assert month["consumer_type_dist"] == {"wellness": 2, "medical": 1, "connoisseur": 1, "recreational": 1}
    assert month["product_dist"] == {"edible": 2, "tincture": 1, "flower": 1, "vape": 1}
    assert month["effects_dist"] == {"sleepy": 2, "relaxed": 2, "calm": 1, "happy": 1, "giggly": 1}
    assert month["top_strains"] == [{"name": "Blue Dream", "count": 2}]
    assert sorted((b["name"], b["count"]) for b in month["top_brands"]) == [
        ("Cookies", 1), ("Papa & Barkley", 1), ("cookies sf", 1)]
    assert month["top_frustrations"][0] == {"name": "price", "count": 2} and len(month["top_frustrations"]) == 3
    assert sorted(e["name"] for e in month["top_emotions"]) == ["disappointment", "joy"]

    week = _period(session, "week", datetime(2026, 11, 16, tzinfo=UTC))  # ISO week from Monday
    assert week["total_posts"] == 2 and week["period_end"] == datetime(2026, 11, 23, tzinfo=UTC)
    assert _period(session, "week", datetime(2026, 11, 9, tzinfo=UTC))["total_posts"] == 1  # A3, a Sunday
    assert _period(session, "day", datetime(2026, 11, 20, tzinfo=UTC))["unique_authors"] == 2
    hour = _period(session, "hour", datetime(2026, 11, 20, 15, tzinfo=UTC))
    assert hour["total_posts"] == 2 and hour["period_end"] == datetime(2026, 11, 20, 16, tzinfo=UTC)
    assert session.scalar(text("SELECT count(*) FROM time_series_aggregates WHERE period_type = 'hour'")) == 4

    delete_posts(session, data["C1"])
    timeseries.recompute_range(session, "hour", datetime(2026, 11, 20, 15, tzinfo=UTC),
                               datetime(2026, 11, 20, 16, tzinfo=UTC))
    timeseries.recompute_range(session, "month", NOV, DEC)
    assert _period(session, "hour", datetime(2026, 11, 20, 15, tzinfo=UTC))["total_posts"] == 1
    assert _period(session, "month", NOV)["total_posts"] == 4
    delete_posts(session, data["B1"])
    timeseries.recompute_range(session, "day", datetime(2026, 11, 20, 6, tzinfo=UTC),
                               datetime(2026, 11, 20, 7, tzinfo=UTC))  # whole days
    assert _period(session, "day", datetime(2026, 11, 20, tzinfo=UTC)) is None  # emptied period gone


def test_scheduled_time_series_covers_the_current_and_previous_periods(session, data):
    timeseries.recompute_recent(session, now=datetime(2026, 12, 1, 0, 30, tzinfo=UTC))
    stored = {(r.period_type, r.period_start) for r in session.execute(text(
        "SELECT period_type, period_start FROM time_series_aggregates"))}
    assert ("month", NOV) in stored and ("week", datetime(2026, 11, 16, tzinfo=UTC)) not in stored
    assert ("week", datetime(2026, 11, 23, tzinfo=UTC)) not in stored  # A4 off topic: nothing that week
    assert runs.summary(session)["time_series"]["rows"] == 1
    with pytest.raises(ValueError):
        timeseries.recompute_range(session, "fortnight", NOV, DEC)
    with pytest.raises(ValueError):
        timeseries.recompute_range(session, "day", DEC, NOV)


# -- materialized views ----------------------------------------------------------------------------

def test_materialized_views_refresh_concurrently_and_forget_deleted_posts(session):
    now = session.scalar(text("SELECT now()"))
    session.execute(text("INSERT INTO profiles (did, handle) VALUES (:d, 'alice.test')"), {"d": ALICE})
    hot = add_post(session, ALICE, now - timedelta(hours=1), consumer_type="wellness", experience_level="regular",
                   lifestyle_tags=["parent", "active"], effects_mentioned=["sleepy"], purchase_intent=90,
                   purchase_stage="shopping", product_category="edible", region_hint="Ohio", sentiment_score=50)
    add_post(session, BOB, now - timedelta(hours=2), consumer_type="wellness", experience_level="regular",
             lifestyle_tags=["parent"], effects_mentioned=["sleepy", "calm"], purchase_intent=10, sentiment_score=-10)
    add_post(session, BOB, now - timedelta(days=40), consumer_type="wellness", experience_level="regular")
    session.commit()
    for view in views.VIEWS:
        views.refresh(session, view)
    session.commit()
    indexes = set(session.scalars(text("SELECT tablename FROM pg_indexes WHERE indexdef LIKE 'CREATE UNIQUE%' "
                                       "AND tablename LIKE 'mv\\_%'")))
    assert indexes == set(views.VIEWS)
    segment = session.execute(text("SELECT * FROM mv_consumer_segments")).mappings().one()
    assert (segment["consumer_type"], segment["experience_level"], segment["user_count"], segment["post_count"]) == (
        "wellness", "regular", 2, 2)
    assert float(segment["avg_sentiment"]) == 20.0 and float(segment["avg_intent"]) == 50.0
    assert segment["common_lifestyles"] == ["parent", "active"]
    effects = {r.effect: r.mention_count for r in session.execute(text("SELECT * FROM mv_trending_effects"))}
    assert effects == {"sleepy": 2, "calm": 1}
    high = session.execute(text("SELECT * FROM mv_high_intent_users")).mappings().one()
    assert (high["post_id"], high["author_handle"], high["purchase_intent"], high["region_hint"]) == (
        hot, "alice.test", 90, "Ohio")

    delete_posts(session, hot)
    session.commit()
    for view in views.VIEWS:
        views.refresh(session, view)
    assert session.scalar(text("SELECT count(*) FROM mv_high_intent_users")) == 0
    assert session.scalar(text("SELECT post_count FROM mv_consumer_segments")) == 1
    assert set(runs.summary(session)) == set(views.VIEWS)
    with pytest.raises(ValueError):
        views.refresh(session, "posts")


# -- trends ----------------------------------------------------------------------------------------

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


def test_trends_velocity_sources_and_deleted_posts(session):
    tag = lambda name: [{"features": [{"$type": "app.bsky.richtext.facet#tag", "tag": name}]}]  # noqa: E731
    weed = [add_post(session, ALICE, NOW - timedelta(hours=h), tags=["Weed"], likes=h, strain_mentioned="Blue Dream",
                     effects_mentioned=["happy"]) for h in range(1, 7)]
    add_post(session, BOB, NOW - timedelta(hours=30), tags=["#weed"], strain_mentioned="Blue Dream")
    for h in range(1, 4):
        add_post(session, BOB, NOW - timedelta(hours=h), facets=tag("#Kush"))
        add_post(session, BOB, NOW - timedelta(hours=h), tags=["dogs"], cannabis_related=False)  # off topic
    add_post(session, CAROL, NOW - timedelta(hours=2), tags=["rare"], facets=tag("rare"))  # one post: too few
    trends.compute(session, now=NOW)

    hashtags = {t["name"]: t for t in trends.rising(session, "hashtag", "24h")}
    assert set(hashtags) == {"weed", "kush"}
    assert (hashtags["weed"]["current_count"], hashtags["weed"]["previous_count"]) == (6, 1)
    assert hashtags["weed"]["velocity"] == pytest.approx((6 + 5) / (1 + 5) - 1)
    assert hashtags["kush"]["velocity"] == pytest.approx(trends.velocity(3, 0)) == pytest.approx(0.6)
    assert hashtags["weed"]["post_ids"] == [weed[5], weed[4], weed[3], weed[2], weed[1], weed[0]]  # most liked first
    assert trends.rising(session, "hashtag", "24h")[0]["name"] == "weed"
    strain = trends.rising(session, "strain", "7d")[0]
    assert (strain["name"], strain["current_count"], strain["previous_count"]) == ("Blue Dream", 7, 0)
    assert trends.rising(session, "effect", "24h")[0]["name"] == "happy"
    relevance = session.scalar(text("SELECT max(relevance_score) FROM trend_sources"))
    assert relevance == 1.0

    delete_posts(session, weed[5])  # the best source goes at once, before any recompute
    assert weed[5] not in trends.rising(session, "hashtag", "24h")[0]["post_ids"]
    delete_posts(session, *weed[:4])
    trends.compute(session, now=NOW)
    assert "weed" not in {t["name"] for t in trends.rising(session, "hashtag", "24h")}  # 1 + 1 posts: too few
    assert session.scalar(text("SELECT count(*) FROM trend_sources s LEFT JOIN posts p ON p.id = s.post_id "
                               "WHERE p.id IS NULL")) == 0


def test_engagement_snapshots_rate_and_velocity(session):
    session.execute(text("INSERT INTO profiles (did, followers_count) VALUES (:d, 4)"), {"d": ALICE})
    post = add_post(session, ALICE, NOW - timedelta(hours=2))
    add_post(session, ALICE, NOW - timedelta(days=3), likes=50)  # not recent: never snapshotted
    assert metrics.snapshot(session, now=NOW) == 1
    assert metrics.snapshot(session, now=NOW + timedelta(minutes=15)) == 0  # unchanged
    session.execute(text("UPDATE posts SET like_count = 10, repost_count = 2 WHERE id = :id"), {"id": post})
    assert metrics.snapshot(session, now=NOW + timedelta(minutes=30)) == 1
    rows = session.execute(text("SELECT * FROM post_metrics_history ORDER BY captured_at")).mappings().all()
    assert [(r["like_count"], r["engagement_rate"], r["velocity"]) for r in rows] == [(0, 0.0, 0.0), (10, 3.0, 24.0)]
    assert metrics.accelerating(session, NOW)[0]["velocity"] == 24.0
    delete_posts(session, post)
    assert session.scalar(text("SELECT count(*) FROM post_metrics_history")) == 0


# -- opportunity scores ----------------------------------------------------------------------------

def test_opportunity_scores_are_explained_by_their_parts(session):
    day = timedelta(days=1)
    common = dict(product_category="edible", region_hint="California")
    hot = add_post(session, ALICE, NOW - 2 * day, purchase_intent=90, frustrations=["price"], sentiment="mixed",
                   brand_mentioned="A", **common)
    warm = add_post(session, BOB, NOW - 3 * day, purchase_intent=80, frustrations=["availability"],
                    sentiment="negative", brand_mentioned="A", **common)
    cold = add_post(session, CAROL, NOW - 4 * day, purchase_intent=10, sentiment="positive", brand_mentioned="B",
                    **common)
    quiet = add_post(session, CAROL, NOW - 5 * day, sentiment="positive", **common)
    add_post(session, CAROL, NOW - 40 * day, sentiment="positive", **common)  # the previous window
    add_post(session, CAROL, NOW - 2 * day, product_category="vape", region_hint="Texas")  # too few posts
    assert opportunities.compute(session, now=NOW) == 2  # edible in California, and in all regions

    best = opportunities.top(session, "product", "California")
    assert len(best) == 1
    o = best[0]
    parts = o["parts"]
    assert (parts["posts"], parts["previous_posts"], parts["high_intent_posts"]) == (4, 1, 2)
    # demand = 100 * (.5 * 4/24 + .3 * 2/4 + .2 * (clamp(9/6 - 1) + 1)/2)
    assert float(o["demand_score"]) == pytest.approx(38.33, abs=0.01)
    # unmet = 100 * (.4 * 1/4 + .3 * 1/4 + .3 * (1 + .5)/4)
    assert float(o["unmet_need_score"]) == pytest.approx(28.75, abs=0.01)
    # saturation = 100 * 3/4 * ((2/3)^2 + (1/3)^2)
    assert float(o["saturation_score"]) == pytest.approx(41.67, abs=0.01)
    assert float(o["score"]) == pytest.approx(38.98, abs=0.01)
    assert sum(parts["contributions"].values()) == pytest.approx(float(o["score"]), abs=0.01)
    w = opportunities.WEIGHTS
    assert parts["contributions"]["openness"] == pytest.approx(w["openness"] * (100 - 41.6667), abs=0.01)
    demand = 100 * sum(opportunities.DEMAND[k] * parts[k] for k in opportunities.DEMAND)
    unmet = 100 * sum(opportunities.UNMET[k] * parts[k] for k in opportunities.UNMET)
    assert demand == pytest.approx(float(o["demand_score"]), abs=0.02)
    assert unmet == pytest.approx(float(o["unmet_need_score"]), abs=0.02)
    assert 100 * parts["branded_share"] * parts["hhi"] == pytest.approx(float(o["saturation_score"]), abs=0.02)
    assert parts["top_brands"] == [{"name": "A", "count": 2}, {"name": "B", "count": 1}]
    assert o["sample_post_ids"] == [hot, warm, cold, quiet]
    assert opportunities.top(session, "product")[0]["score"] == o["score"]  # "all" regions

    delete_posts(session, hot)
    assert hot not in opportunities.top(session, "product", "California")[0]["sample_post_ids"]


# -- the seven questions ---------------------------------------------------------------------------

def test_what_times_people_consume(session, data):
    answer = questions.consumption_times(session, NOV, DEC)
    assert answer["posts"] == 5 and answer["peak_hour"] == 15
    assert {r["hour"]: r["posts"] for r in answer["by_hour"] if r["posts"]} == {9: 1, 21: 1, 13: 1, 15: 2}
    assert answer["by_time_of_day"] == {"morning": 0, "afternoon": 1, "evening": 0, "night": 2, "late_night": 0}
    assert answer["peak_time_of_day"] == "night"
    assert questions.consumption_times(session, NOV, DEC, region="CALIFORNIA")["posts"] == 3  # A1, A2, C1


def test_weekend_versus_weekday(session, data):
    answer = questions.weekend_vs_weekday(session, NOV, DEC)
    assert [d["posts"] for d in answer["by_weekday"]] == [0, 0, 0, 0, 2, 0, 3]  # Friday 2, Sunday 3
    assert (answer["weekday"]["days"], answer["weekend"]["days"]) == (21, 9)
    assert answer["weekend"]["posts_per_day"] == 0.33 and answer["weekday"]["posts_per_day"] == 0.1
    assert answer["weekend_lift"] == pytest.approx((3 / 9) / (2 / 21) - 1, abs=1e-4)
    assert answer["weekend"]["avg_sentiment"] == 16.67 and answer["weekday"]["avg_sentiment"] == 30.0
    assert answer["weekend"]["top_occasions"] == [{"name": "bedtime", "posts": 2}]


def test_effect_trends(session, data):
    answer = questions.effect_trends(session, NOV, DEC)
    assert answer["weeks"] == ["2026-10-26", "2026-11-02", "2026-11-09", "2026-11-16"]
    assert answer["posts"] == [1, 1, 1, 2]
    effects = {e["effect"]: e for e in answer["effects"]}
    assert effects["sleepy"]["counts"] == [1, 1, 0, 0] and effects["sleepy"]["slope_per_week"] == -40.0
    assert effects["sleepy"]["direction"] == "down"
    assert effects["relaxed"]["shares"] == [0.0, 100.0, 0.0, 50.0] and effects["relaxed"]["slope_per_week"] == 5.0
    assert effects["relaxed"]["direction"] == "up"
    focused = questions.effect_trends(session, NOV, DEC, effects=["focused"])["effects"]
    assert focused == [{"effect": "focused", "counts": [0, 0, 0, 0], "shares": [0.0, 0.0, 0.0, 0.0], "total": 0,
                        "slope_per_week": 0.0, "direction": "flat"}]


def test_seasonality(session, data):
    answer = questions.seasonality(session, datetime(2026, 1, 1, tzinfo=UTC), DEC)
    assert answer["months"] == [{"month": "2026-11", "posts": 5, "avg_sentiment": 22.0, "avg_purchase_intent": 53.75,
                                 "top_products": [{"name": "edible", "posts": 2}, {"name": "flower", "posts": 1},
                                                  {"name": "tincture", "posts": 1}]}]
    assert answer["by_calendar_month"] == {11: 5.0} and answer["peak_month"] == "2026-11"


def test_real_time_purchase_intent(session, data):
    answer = questions.purchase_intent_now(session, NOV, DEC)
    assert [p["post_id"] for p in answer["posts"]] == [data["A1"], data["C1"]]  # 80, then 75; A4 is off topic
    assert answer["total"] == 2 and answer["by_product"] == {"edible": 1, "vape": 1}
    assert questions.purchase_intent_now(session, end=DEC)["total"] == 0  # the last 24 hours before DEC
    with pytest.raises(ValueError):
        questions.purchase_intent_now(session, NOV, DEC, threshold=101)


def test_when_people_complain(session, data):
    answer = questions.complaint_times(session, NOV, DEC)
    assert answer["complaints"] == 3
    assert {r["hour"]: r["complaints"] for r in answer["by_hour"] if r["complaints"]} == {9: 1, 13: 1, 15: 1}
    assert answer["by_hour"][15]["share"] == 0.5  # B1 and C1 at 15h, C1 complains
    assert answer["peak_hour"] == 9 and answer["peak_weekday"] == "Sunday"
    assert answer["top_frustrations"][0] == {"name": "price", "posts": 2}


def test_brand_sentiment_over_time(session, data):
    answer = questions.brand_sentiment(session, NOV, DEC)
    assert {b["brand"]: b["mentions"] for b in answer["brands"]} == {"Papa & Barkley": 1, "Cookies": 1,
                                                                      "cookies sf": 1}
    cookies = questions.brand_sentiment(session, NOV, DEC, brands=["Cookies"])["brands"]
    assert cookies == [{"brand": "Cookies", "mentions": 1, "avg_sentiment": 80.0,
                        "weeks": [{"week": "2026-11-16", "mentions": 1, "avg_sentiment": 80.0}]}]
    delete_posts(session, data["B1"])
    assert questions.brand_sentiment(session, NOV, DEC, brands=["Cookies"])["brands"][0]["mentions"] == 0


# -- scheduler and worker --------------------------------------------------------------------------

@pytest.fixture
def task_settings(monkeypatch, db_url, redis_url):
    from cannect.config import get_settings
    from conftest import JWT_SECRET

    for name, value in dict(DATABASE_URL=db_url, REDIS_URL=redis_url, JWT_SECRET=JWT_SECRET).items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_the_scheduler_keeps_stable_job_ids_and_coalesces_missed_runs(task_settings):
    from tasks import scheduler, views as view_tasks

    built = scheduler.build_scheduler()
    jobs = {job.id: job for job in built.get_jobs()}
    assert len(jobs) == len(scheduler.JOBS)  # ids unique
    expected = {"views.refresh_profiles", "views.recompute_entities", "views.refresh_time_series",
                "views.refresh_consumer_segments", "views.refresh_trending_effects", "views.refresh_high_intent_users",
                "views.compute_trends", "views.snapshot_metrics", "views.compute_opportunities"}
    assert expected <= set(jobs)
    assert "views.recompute_all_profiles" not in jobs  # an admin's, never scheduled
    for job in jobs.values():
        assert job.coalesce is True and job.max_instances == 1
    cadence = {actor.actor_name: seconds for actor, seconds in view_tasks.SCHEDULE}
    assert cadence["views.refresh_high_intent_users"] == 900
    assert cadence["views.refresh_consumer_segments"] == cadence["views.refresh_trending_effects"] == 3600


def test_the_actors_run_in_a_real_worker(session, data, env, tmp_path, redis_url):
    from dramatiq import Message
    from dramatiq.brokers.redis import RedisBroker

    from harness import System

    names = ["refresh_profiles", "recompute_entities", "refresh_time_series", "refresh_consumer_segments",
             "refresh_trending_effects", "refresh_high_intent_users", "compute_trends", "snapshot_metrics",
             "compute_opportunities"]
    broker = RedisBroker(url=redis_url)
    for name in names:
        broker.enqueue(Message(queue_name="views", actor_name=f"views.{name}", args=(), kwargs={}, options={}))
    broker.enqueue(Message(queue_name="views", actor_name="views.recompute_time_series",
                           args=("month", NOV.isoformat(), DEC.isoformat()), kwargs={}, options={}))
    system = System(env, tmp_path)
    system.start("worker-views", "worker", "--queues", "views", "--processes", "1", "--threads", "2")
    jobs = {"profiles", "entities", "time_series", "mv_consumer_segments", "mv_trending_effects",
            "mv_high_intent_users", "trends", "post_metrics", "opportunities", "time_series_range"}
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            session.rollback()
            done = set(runs.summary(session))
            if done >= jobs and _period(session, "month", NOV):
                break
            time.sleep(0.3)
        else:
            raise AssertionError(f"jobs run: {set(runs.summary(session))}\n{system.log('worker-views')}")
    finally:
        system.stop_all()
        broker.close()
    assert profile(session, ALICE)["posts_analyzed"] == 3
    assert _period(session, "month", NOV)["total_posts"] == 5
    assert session.scalar(text("SELECT mention_count FROM strains WHERE name = 'Blue Dream'")) == 2


def test_status_shows_the_last_run_of_each_job(session, data, redis_url):
    import redis as redis_lib

    from services.status import gather

    assert gather(redis_lib.Redis.from_url(redis_url), session)["intelligence"] == {}
    profiles.refresh_changed(session)
    views.refresh(session, "mv_high_intent_users")
    session.commit()
    report = gather(redis_lib.Redis.from_url(redis_url), session)
    assert set(report["intelligence"]) == {"profiles", "mv_high_intent_users"}
    assert report["intelligence"]["profiles"]["rows"] == 3 and report["intelligence"]["profiles"]["runs"] == 1
    assert "views" in report["queues"]
