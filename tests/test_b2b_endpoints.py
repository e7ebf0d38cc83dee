"""The B2B intelligence endpoints (/api/v1 segments ... search: app/api/v1/market.py, explore.py,
services/b2b/queries) on real PostgreSQL and Redis: seeded posts and classifications, the
intelligence jobs run as the worker runs them, every endpoint's numbers checked against the
seeded data; deleted posts leave intents, samples, trend sources, insights and search at once;
filters, validation (422), signed cursors (400 when altered), stable pages, SQL-injection-shaped
input, plans (403) and the refresh-keyed cache.

The dataset, relative to now (UTC); ``text`` is the post's text:

====  =====  =======  =====================================================================
post  who    age      classification
====  =====  =======  =====================================================================
P1    alice  2 h      wellness/regular, edible, sleepy, intent 90 shopping, California, +60, Kiva,
                      "looking for sleepy gummies near LA", parent
P2    bob    3 h      connoisseur/expert, flower, relaxed, intent 80 considering, Oregon, +80, Cookies,
                      Blue Dream, "Blue Dream flower from Cookies is premium"
P3    carol  5 h      recreational/casual, vape, happy, intent 75, California, -40, Stiiizy, price
                      frustration, "need a new vape cart, prices are crazy"
P4    alice  3 d      wellness/regular, edible, sleepy, intent 40, California, +50, "sleepy gummies worked"
P5    dave   30 h     recreational/casual, flower, intent 95 (older than 24 h), "buying flower today"
P6    eve    1 h      not about cannabis, "my dog is sleepy"
P7    eve    20 h     wellness/regular, edible, sleepy, intent 50, California, +30, parent, "sleepy edible"
====  =====  =======  =====================================================================
"""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from services.b2b import clients
from services.b2b.queries import cache
from services.intelligence import entities, opportunities, profiles, timeseries, trends, views
from test_intelligence import add_post as add_classified_post

UTC = timezone.utc
ALICE, BOB, CAROL, DAVE, EVE = (f"did:plc:{n}" for n in ("alice", "bob", "carol", "dave", "eve"))
ADMIN_TOKEN = "admin-token-" + "b" * 32


def add_post(session, author, created_at, body, **fields) -> int:
    post_id = add_classified_post(session, author, created_at, **fields)
    session.execute(text("UPDATE posts SET text = :t WHERE id = :id"), {"t": body, "id": post_id})
    return post_id


def run_jobs(session) -> None:
    """Every intelligence job once, each in its own transaction, as the views worker runs them."""
    now = session.scalar(text("SELECT now()"))
    for job in (profiles.refresh_changed, entities.recompute, trends.compute, opportunities.compute,
                timeseries.recompute_recent,
                lambda s: timeseries.recompute_on_demand(s, "day", now - timedelta(days=10), now + timedelta(hours=1)),
                lambda s: timeseries.recompute_on_demand(s, "hour", now - timedelta(days=2), now + timedelta(hours=1)),
                *(lambda s, v=v: views.refresh(s, v) for v in views.VIEWS)):
        job(session)
        session.commit()


@pytest.fixture
def data(session):
    now = session.scalar(text("SELECT now()"))
    for did, handle in ((ALICE, "alice.test"), (BOB, "bob.test"), (CAROL, "carol.test"), (DAVE, "dave.test"),
                        (EVE, "eve.test")):
        session.execute(text("INSERT INTO profiles (did, handle) VALUES (:d, :h)"), {"d": did, "h": handle})
    ids = {
        "P1": add_post(session, ALICE, now - timedelta(hours=2), "looking for sleepy gummies near LA",
                       consumer_type="wellness", experience_level="regular", product_category="edible",
                       effects_mentioned=["sleepy"], purchase_intent=90, purchase_stage="shopping",
                       region_hint="California", sentiment="positive", sentiment_score=60, brand_mentioned="Kiva",
                       lifestyle_tags=["parent"], likes=5),
        "P2": add_post(session, BOB, now - timedelta(hours=3), "Blue Dream flower from Cookies is premium",
                       consumer_type="connoisseur", experience_level="expert", product_category="flower",
                       effects_mentioned=["relaxed"], purchase_intent=80, purchase_stage="considering",
                       region_hint="Oregon", sentiment="positive", sentiment_score=80, brand_mentioned="Cookies",
                       strain_mentioned="Blue Dream", quality_perception="premium"),
        "P3": add_post(session, CAROL, now - timedelta(hours=5), "need a new vape cart, prices are crazy",
                       consumer_type="recreational", experience_level="casual", product_category="vape",
                       effects_mentioned=["happy"], purchase_intent=75, region_hint="California",
                       sentiment="negative", sentiment_score=-40, brand_mentioned="Stiiizy", frustrations=["price"]),
        "P4": add_post(session, ALICE, now - timedelta(days=3), "sleepy gummies worked great",
                       consumer_type="wellness", experience_level="regular", product_category="edible",
                       effects_mentioned=["sleepy"], purchase_intent=40, region_hint="California",
                       sentiment="positive", sentiment_score=50, likes=2),
        "P5": add_post(session, DAVE, now - timedelta(hours=30), "buying flower today",
                       consumer_type="recreational", experience_level="casual", product_category="flower",
                       purchase_intent=95, sentiment="neutral", sentiment_score=0),
        "P6": add_post(session, EVE, now - timedelta(hours=1), "my dog is sleepy", cannabis_related=False,
                       product_category="none", purchase_intent=100),
        "P7": add_post(session, EVE, now - timedelta(hours=20), "sleepy edible before bed",
                       consumer_type="wellness", experience_level="regular", product_category="edible",
                       effects_mentioned=["sleepy"], purchase_intent=50, region_hint="California",
                       sentiment="positive", sentiment_score=30, lifestyle_tags=["parent"], likes=1),
    }
    session.commit()
    run_jobs(session)
    cache.clear()
    return ids


@pytest.fixture
def b2b(make_api):
    return make_api(ADMIN_TOKEN=ADMIN_TOKEN, B2B_AUTH_FAILURES_PER_MINUTE="1000", B2B_CACHE_CHECK_SECONDS="0")


def new_key(tier="enterprise", **plan) -> str:
    from services.db import session_scope

    with session_scope() as session:
        _, key = clients.create(session, f"test {tier}", tier, **plan)
    return key


@pytest.fixture
def key(b2b):
    return new_key()


def get(api, key, path, **params):
    return api.get(path, query_string=params, headers={"Authorization": f"Bearer {key}"})


def ok(api, key, path, **params) -> dict:
    answer = get(api, key, path, **params)
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def uris(posts) -> list[str]:
    return [p["uri"] for p in posts]


def post_uri(session, post_id) -> str:
    return session.scalar(text("SELECT uri FROM posts WHERE id = :id"), {"id": post_id})


def delete_post(session, post_id) -> None:
    session.execute(text("DELETE FROM posts WHERE id = :id"), {"id": post_id})
    session.commit()


# -- numbers --------------------------------------------------------------------------------------

def test_segments_count_the_last_30_days_by_type_and_experience(b2b, key, data):
    answer = ok(b2b, key, "/api/v1/segments")
    by_key = {(s["consumer_type"], s["experience_level"]): s for s in answer["segments"]}
    assert set(by_key) == {("wellness", "regular"), ("connoisseur", "expert"), ("recreational", "casual")}
    wellness = by_key[("wellness", "regular")]
    assert (wellness["user_count"], wellness["post_count"]) == (2, 3)  # alice P1 P4, eve P7
    assert wellness["avg_intent"] == 60.0 and wellness["avg_sentiment"] == pytest.approx(46.67)
    assert wellness["common_lifestyles"] == ["parent"]
    assert by_key[("recreational", "casual")]["post_count"] == 2  # P3, P5; P6 is off topic
    assert answer["total_posts"] == 6 and answer["segments"][0] == wellness  # most posts first
    only = ok(b2b, key, "/api/v1/segments", consumer_type="connoisseur")["segments"]
    assert [(s["consumer_type"], s["post_count"]) for s in only] == [("connoisseur", 1)]


def test_intents_list_the_last_24_hours_by_intent_with_filters_and_pages(b2b, key, data, session):
    answer = ok(b2b, key, "/api/v1/intents")
    p1, p2, p3 = (post_uri(session, data[n]) for n in ("P1", "P2", "P3"))
    assert uris(answer["posts"]) == [p1, p2, p3]  # P5 is 30 h old, P6 off topic
    assert answer["total"] == 3 and answer["by_product"] == {"edible": 1, "flower": 1, "vape": 1}
    first = answer["posts"][0]
    assert (first["purchase_intent"], first["purchase_stage"], first["product_category"], first["region"],
            first["author_handle"], first["text"]) == (90, "shopping", "edible", "California", "alice.test",
                                                        "looking for sleepy gummies near LA")
    assert uris(ok(b2b, key, "/api/v1/intents", region="california")["posts"]) == [p1, p3]
    assert uris(ok(b2b, key, "/api/v1/intents", product="flower")["posts"]) == [p2]
    assert uris(ok(b2b, key, "/api/v1/intents", min_intent=85)["posts"]) == [p1]
    pages, cursor = [], None
    while True:
        page = ok(b2b, key, "/api/v1/intents", limit=1, **({"cursor": cursor} if cursor else {}))
        pages += uris(page["posts"])
        cursor = page["cursor"]
        if not cursor:
            break
    assert pages == [p1, p2, p3]


def test_trends_report_velocity_supporting_posts_and_live_sources(b2b, key, data, session):
    answer = ok(b2b, key, "/api/v1/trends", kind="effect", window="7d")
    assert set(answer["trends"]) == {"effect"}
    sleepy = {t["name"]: t for t in answer["trends"]["effect"]}["sleepy"]
    assert (sleepy["current_count"], sleepy["previous_count"], sleepy["supporting_posts"]) == (3, 0, 3)
    assert sleepy["velocity"] == pytest.approx(trends.velocity(3, 0))
    # most engaging first: P1 (5 likes), P4 (2), P7 (1)
    assert uris(sleepy["sources"]) == [post_uri(session, data[n]) for n in ("P1", "P4", "P7")]
    every = ok(b2b, key, "/api/v1/trends", window="7d")["trends"]
    assert set(every) == set(trends.KINDS)
    delete_post(session, data["P1"])
    sleepy = {t["name"]: t for t in ok(b2b, key, "/api/v1/trends", kind="effect", window="7d")["trends"]["effect"]}[
        "sleepy"]
    assert uris(sleepy["sources"]) == [post_uri(session, data[n]) for n in ("P4", "P7")]


def test_opportunities_show_scores_parts_and_samples(b2b, key, data, session):
    answer = ok(b2b, key, "/api/v1/opportunities", kind="product")
    edible = {o["subject"]: o for o in answer["opportunities"]}["edible"]
    stored = session.execute(text("SELECT score, demand_score, unmet_need_score, saturation_score, parts "
                                  "FROM opportunity_scores WHERE kind = 'product' AND subject = 'edible' "
                                  "AND region = 'all'")).one()
    assert edible["score"] == float(stored.score) and edible["demand_score"] == float(stored.demand_score)
    assert edible["unmet_need_score"] == float(stored.unmet_need_score)
    assert edible["parts"]["posts"] == 3 and edible["parts"] == stored.parts
    c = edible["parts"]["contributions"]
    assert c["demand"] + c["unmet_need"] + c["openness"] == pytest.approx(edible["score"], abs=0.01)
    assert uris(edible["samples"]) == [post_uri(session, data[n]) for n in ("P1", "P7", "P4")]  # by intent
    california = ok(b2b, key, "/api/v1/opportunities", kind="product", region="CALIFORNIA")["opportunities"]
    assert [o["region"] for o in california] == ["California"]
    assert ok(b2b, key, "/api/v1/opportunities", region="Atlantis")["opportunities"] == []
    delete_post(session, data["P7"])
    edible = {o["subject"]: o for o in ok(b2b, key, "/api/v1/opportunities")["opportunities"]}["edible"]
    assert uris(edible["samples"]) == [post_uri(session, data[n]) for n in ("P1", "P4")]


def test_brands_strains_and_their_weekly_sentiment(b2b, key, data):
    brands = {b["name"]: b for b in ok(b2b, key, "/api/v1/brands")["brands"]}
    assert {n: (b["mention_count"], b["avg_sentiment"]) for n, b in brands.items()} == {
        "Kiva": (1, 0.6), "Cookies": (1, 0.8), "Stiiizy": (1, -0.4)}
    strains = ok(b2b, key, "/api/v1/strains")["strains"]
    assert [(s["name"], s["mention_count"], s["avg_sentiment"], s["common_effects"]) for s in strains] == [
        ("Blue Dream", 1, 0.8, ["relaxed"])]
    assert [(w["mentions"], w["avg_sentiment_score"]) for w in strains[0]["weeks"]] == [(1, 80.0)]
    old = ok(b2b, key, "/api/v1/strains", since="2020-01-01T00:00:00Z", until="2020-06-01T00:00:00Z")
    assert old["strains"][0]["weeks"] == []


def test_timeseries_sum_to_the_counted_posts(b2b, key, data):
    days = ok(b2b, key, "/api/v1/timeseries", period="day")
    assert sum(p["total_posts"] for p in days["points"]) == 6  # P6 is off topic
    assert sum(p["high_intent_count"] for p in days["points"]) == 4  # P1 P2 P3 P5
    hours = ok(b2b, key, "/api/v1/timeseries", period="hour")
    assert sum(p["total_posts"] for p in hours["points"]) == 5  # P4 is 3 days old
    assert all(p["period_start"] < p["period_end"] for p in hours["points"])


def test_the_seven_insights(b2b, key, data, session):
    times = ok(b2b, key, "/api/v1/insights/consumption-times")
    assert times["question"] == "consumption-times" and times["answer"]["posts"] == 6
    assert ok(b2b, key, "/api/v1/insights/consumption-times", region="oregon")["answer"]["posts"] == 1
    week = ok(b2b, key, "/api/v1/insights/weekend-vs-weekday")["answer"]
    assert week["weekday"]["posts"] + week["weekend"]["posts"] == 6
    effects = ok(b2b, key, "/api/v1/insights/effect-trends", names="sleepy")["answer"]["effects"]
    assert [(e["effect"], e["total"]) for e in effects] == [("sleepy", 3)]
    assert sum(m["posts"] for m in ok(b2b, key, "/api/v1/insights/seasonality")["answer"]["months"]) == 6
    now = ok(b2b, key, "/api/v1/insights/purchase-intent-now")["answer"]
    assert now["total"] == 3 and uris(now["posts"]) == [post_uri(session, data[n]) for n in ("P1", "P2", "P3")]
    assert ok(b2b, key, "/api/v1/insights/complaint-times")["answer"]["complaints"] == 1
    brands = ok(b2b, key, "/api/v1/insights/brand-sentiment")["answer"]["brands"]
    assert {b["brand"]: b["mentions"] for b in brands} == {"Kiva": 1, "Cookies": 1, "Stiiizy": 1}
    delete_post(session, data["P2"])
    now = ok(b2b, key, "/api/v1/insights/purchase-intent-now")["answer"]
    assert uris(now["posts"]) == [post_uri(session, data[n]) for n in ("P1", "P3")]
    assert get(b2b, key, "/api/v1/insights/who-knows").status_code == 422


def test_profiles_filter_sort_page_and_hide_purged_accounts(b2b, key, data, session):
    stored = {r.author_did: r for r in session.execute(text("SELECT * FROM user_profiles"))}
    answer = ok(b2b, key, "/api/v1/profiles")
    assert {p["author_did"] for p in answer["profiles"]} == {ALICE, BOB, CAROL, DAVE, EVE}
    scores = [p["target_scores"]["dispensary"] for p in answer["profiles"]]
    assert scores == sorted(scores, reverse=True)
    alice = {p["author_did"]: p for p in answer["profiles"]}[ALICE]
    assert alice["target_scores"] == {"dispensary": stored[ALICE].dispensary_target_score,
                                      "wellness_brand": stored[ALICE].wellness_brand_target_score,
                                      "premium_product": stored[ALICE].premium_product_target_score,
                                      "accessory": stored[ALICE].accessory_target_score}
    assert (alice["posts_analyzed"], alice["primary_consumer_type"], alice["likely_region"]) == (
        2, "wellness", "California")
    wellness = ok(b2b, key, "/api/v1/profiles", consumer_type="wellness", score="wellness_brand")["profiles"]
    assert {p["author_did"] for p in wellness} == {ALICE, EVE}
    high = ok(b2b, key, "/api/v1/profiles", min_score=stored[ALICE].dispensary_target_score)["profiles"]
    assert all(p["target_scores"]["dispensary"] >= stored[ALICE].dispensary_target_score for p in high)
    assert {p["author_did"] for p in ok(b2b, key, "/api/v1/profiles", region="oregon")["profiles"]} == {BOB}
    pages, cursor = [], None
    while True:
        page = ok(b2b, key, "/api/v1/profiles", limit=2, **({"cursor": cursor} if cursor else {}))
        pages += [p["author_did"] for p in page["profiles"]]
        cursor = page["cursor"]
        if not cursor:
            break
    assert pages == [p["author_did"] for p in answer["profiles"]]
    delete_post(session, data["P5"])  # dave's only post: his account is purged
    assert DAVE not in {p["author_did"] for p in ok(b2b, key, "/api/v1/profiles")["profiles"]}


def test_search_matches_text_and_classification_filters_newest_first(b2b, key, data, session):
    p = {n: post_uri(session, data[n]) for n in data}
    answer = ok(b2b, key, "/api/v1/search", q="sleepy")
    assert uris(answer["posts"]) == [p["P1"], p["P7"], p["P4"]]  # P6 (off topic) never
    assert answer["posts"][0]["classification"]["purchase_intent"] == 90
    assert uris(ok(b2b, key, "/api/v1/search", q="sleepy", min_intent=60)["posts"]) == [p["P1"]]
    assert uris(ok(b2b, key, "/api/v1/search", q="sleepy -gummies")["posts"]) == [p["P7"]]
    assert uris(ok(b2b, key, "/api/v1/search", q="flower", product="flower", region="OREGON")["posts"]) == [p["P2"]]
    assert uris(ok(b2b, key, "/api/v1/search", q="flower", strain="blue dream", brand="COOKIES")["posts"]) == [p["P2"]]
    assert uris(ok(b2b, key, "/api/v1/search", q="prices", sentiment="negative")["posts"]) == [p["P3"]]
    assert ok(b2b, key, "/api/v1/search", q="sleepy", since="2020-01-01T00:00:00Z",
              until="2020-02-01T00:00:00+01:00")["posts"] == []
    pages, cursor = [], None
    while True:
        page = ok(b2b, key, "/api/v1/search", q="sleepy", limit=1, **({"cursor": cursor} if cursor else {}))
        pages += uris(page["posts"])
        cursor = page["cursor"]
        if not cursor:
            break
    assert pages == [p["P1"], p["P7"], p["P4"]]
    delete_post(session, data["P7"])
    assert uris(ok(b2b, key, "/api/v1/search", q="sleepy")["posts"]) == [p["P1"], p["P4"]]


def test_deleted_post_leaves_intents_at_once(b2b, key, data, session):
    delete_post(session, data["P1"])
    answer = ok(b2b, key, "/api/v1/intents")
    assert uris(answer["posts"]) == [post_uri(session, data[n]) for n in ("P2", "P3")]


# -- validation, cursors, injection, plans --------------------------------------------------------

@pytest.mark.parametrize("path, params", [
    ("/api/v1/search", {"q": "x", "since": "2026-11-01T00:00:00"}),  # no zone
    ("/api/v1/search", {"q": "x", "since": "2026-11-02T00:00:00Z", "until": "2026-11-01T00:00:00Z"}),
    ("/api/v1/search", {"q": "x", "since": "2020-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}),  # too long
    ("/api/v1/search", {"q": ""}),
    ("/api/v1/search", {"q": "x", "min_intent": "101"}),
    ("/api/v1/search", {"q": "x", "product": "'; DROP TABLE posts; --"}),
    ("/api/v1/search", {"q": "x", "region": "a\x00b"}),
    ("/api/v1/search", {"q": "a\x00b"}),
    ("/api/v1/segments", {"consumer_type": "alien"}),
    ("/api/v1/segments", {"unknown": "1"}),
    ("/api/v1/trends", {"kind": "people"}),
    ("/api/v1/timeseries", {"period": "hour", "since": "2026-01-01T00:00:00Z", "until": "2026-03-01T00:00:00Z"}),
    ("/api/v1/timeseries", {"period": "decade"}),
    ("/api/v1/intents", {"min_intent": "10"}),
    ("/api/v1/profiles", {"score": "credit"}),
    ("/api/v1/profiles", {"limit": "0"}),
])
def test_bad_input_is_a_422_problem(b2b, key, path, params):
    answer = get(b2b, key, path, **params)
    assert answer.status_code == 422, answer.get_json()
    assert answer.mimetype == "application/problem+json" and answer.get_json()["status"] == 422


def test_sql_injection_shaped_input_is_just_data(b2b, key, data, session):
    for q in ("'; DROP TABLE posts; --", "\\", "!!! & | :*", "\"unterminated", "1=1) OR (1=1"):
        assert ok(b2b, key, "/api/v1/search", q=q)["posts"] == [], q
    # quotes are punctuation to the web-search parser: this is "sleepy or 1", nothing more
    assert ok(b2b, key, "/api/v1/search", q="sleepy' OR '1'='1")["posts"] == ok(b2b, key, "/api/v1/search",
                                                                                  q="sleepy")["posts"]
    assert ok(b2b, key, "/api/v1/search", q="sleepy", region="California' OR '1'='1")["posts"] == []
    assert ok(b2b, key, "/api/v1/intents", region="x'); DELETE FROM posts; --")["posts"] == []
    assert ok(b2b, key, "/api/v1/profiles", region="' OR 1=1 --")["profiles"] == []
    assert ok(b2b, key, "/api/v1/opportunities", region="all' --")["opportunities"] == []
    assert session.scalar(text("SELECT count(*) FROM posts")) == 7


def test_cursors_are_signed_and_bound_to_their_query(b2b, key, data):
    cursor = ok(b2b, key, "/api/v1/search", q="sleepy", limit=1)["cursor"]
    body, signature = cursor.split(".")
    scope, sort_key = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    forged = base64.urlsafe_b64encode(json.dumps([scope, ["2099-01-01T00:00:00+00:00", 1]]).encode()
                                      ).decode().rstrip("=") + "." + signature
    for bad in (forged, cursor[:-2], "not-a-cursor", "e30.AAAA", "'; DROP TABLE posts; --"):
        answer = get(b2b, key, "/api/v1/search", q="sleepy", cursor=bad)
        assert answer.status_code == 400 and answer.mimetype == "application/problem+json", bad
    assert get(b2b, key, "/api/v1/search", q="gummies", cursor=cursor).status_code == 400  # another query
    assert get(b2b, key, "/api/v1/intents", cursor=cursor).status_code == 400  # another endpoint
    profiles_cursor = ok(b2b, key, "/api/v1/profiles", limit=1)["cursor"]
    assert get(b2b, key, "/api/v1/profiles", limit=1, score="accessory", cursor=profiles_cursor).status_code == 400


def test_pages_stay_stable_while_new_posts_arrive(b2b, key, data, session):
    first = ok(b2b, key, "/api/v1/search", q="sleepy", limit=1)
    now = session.scalar(text("SELECT now()"))
    add_post(session, EVE, now, "sleepy again", consumer_type="wellness", product_category="edible")
    session.commit()
    rest = ok(b2b, key, "/api/v1/search", q="sleepy", limit=5, cursor=first["cursor"])
    assert uris(first["posts"] + rest["posts"]) == [post_uri(session, data[n]) for n in ("P1", "P7", "P4")]


def test_a_plan_without_the_endpoint_gets_403(b2b, data):
    starter = new_key("starter")
    assert ok(b2b, starter, "/api/v1/segments")["segments"]
    for path in ("/api/v1/intents", "/api/v1/search?q=x", "/api/v1/profiles", "/api/v1/opportunities",
                 "/api/v1/insights/seasonality"):
        answer = b2b.get(path, headers={"Authorization": f"Bearer {starter}"})
        assert answer.status_code == 403, path
        assert answer.get_json()["detail"].startswith("Your plan does not include")
    assert b2b.get("/api/v1/segments").status_code == 401


# -- cache ----------------------------------------------------------------------------------------

def test_answers_are_cached_until_their_job_runs_again(b2b, key, data, session):
    before = ok(b2b, key, "/api/v1/segments")
    hits = cache.stats["hits"]
    assert ok(b2b, key, "/api/v1/segments") == before and cache.stats["hits"] == hits + 1
    now = session.scalar(text("SELECT now()"))
    add_post(session, BOB, now, "another", consumer_type="connoisseur", experience_level="expert",
             product_category="flower", purchase_intent=10, sentiment_score=0)
    session.commit()
    assert ok(b2b, key, "/api/v1/segments") == before  # the view has not been refreshed
    views.refresh(session, "mv_consumer_segments")
    session.commit()
    after = ok(b2b, key, "/api/v1/segments")
    assert after["total_posts"] == before["total_posts"] + 1


def test_search_matches_are_kept_a_few_seconds_but_a_deleted_post_leaves_at_once(b2b, key, data, session):
    p = {n: post_uri(session, data[n]) for n in data}
    assert uris(ok(b2b, key, "/api/v1/search", q="sleepy")["posts"]) == [p["P1"], p["P7"], p["P4"]]
    hits = cache.stats["hits"]
    newer = add_post(session, EVE, session.scalar(text("SELECT now()")), "sleepy again", consumer_type="wellness",
                     product_category="edible")
    session.execute(text("UPDATE posts SET like_count = 7 WHERE id = :id"), {"id": data["P4"]})
    session.commit()
    delete_post(session, data["P7"])
    kept = ok(b2b, key, "/api/v1/search", q="sleepy")["posts"]
    assert cache.stats["hits"] == hits + 1
    assert uris(kept) == [p["P1"], p["P4"]]  # the new post waits; the deleted one is gone
    assert kept[1]["engagement"] == 7  # the posts themselves are read at each request
    assert uris(ok(b2b, key, "/api/v1/search", q="sleepy", limit=2)["posts"])[0] == post_uri(session, newer)


def test_recent_answers_are_computed_again_when_older_than_their_seconds():
    computed = []
    for wait in (0, 0.2):
        time.sleep(wait)
        cache.recent("unit", {"q": 1}, 0.1, lambda: computed.append(1) or len(computed))
    assert computed == [1, 1]
    assert cache.recent("unit", {"q": 2}, 0, lambda: "off") == "off"


def test_no_generated_input_makes_an_endpoint_fail(b2b, key, data):
    """Schemathesis over the documented parameters of these endpoints, with a valid key."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error

    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", b2b.application)
    operations = [op for op in (r.ok() for r in schema.get_all_operations()) if op.path in ENDPOINTS]
    assert len(operations) == len(ENDPOINTS)
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def fuzz(case):
            case.call_and_validate(headers={"Authorization": f"Bearer {key}"}, checks=[not_a_server_error])

        fuzz()


# -- OpenAPI --------------------------------------------------------------------------------------

ENDPOINTS = ["/api/v1/segments", "/api/v1/intents", "/api/v1/trends", "/api/v1/opportunities", "/api/v1/profiles",
             "/api/v1/brands", "/api/v1/strains", "/api/v1/timeseries", "/api/v1/insights/{question}",
             "/api/v1/search"]


def test_openapi_documents_every_endpoint_with_key_parameters_examples_and_problems(b2b):
    spec = b2b.get("/api/openapi.json").get_json()
    for path in ENDPOINTS:
        operation = spec["paths"][path]["get"]
        assert {"apiKey": []} in operation["security"], path
        assert {"200", "401", "403", "422", "429"} <= set(operation["responses"]), path
        assert operation["responses"]["200"]["content"]["application/json"]["examples"], path
        assert operation.get("parameters"), path
    search = {p["name"] for p in spec["paths"]["/api/v1/search"]["get"]["parameters"]}
    assert {"q", "since", "until", "product", "sentiment", "min_intent", "region", "strain", "brand", "limit",
            "cursor"} <= search
