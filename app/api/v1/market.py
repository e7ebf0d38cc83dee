"""``/api/v1`` market endpoints: segments, intents, trends, opportunities, brands, strains,
time series and the seven insights questions.

Thin handlers over ``services/b2b/queries``: answers come from the intelligence tables and
views and are cached until the job behind them runs again; posts they name are read live
(deleted posts never appear), from the process's read cache when the request may use it.
Answers that are the same for every client and name no posts (segments, brands, strains, time
series) are returned as :func:`replayable`: replayed before Flask until their job runs again
(``answer_replay.py``). Access (key, plan, limits) is checked before the handler runs.
"""

from __future__ import annotations

from flask_openapi3 import APIBlueprint, Tag

from services.b2b.queries import entities, insights, market
from services.intelligence.trends import KINDS

from ...read_cache import read_cache
from .access import B2B_ERRORS, B2B_SECURITY
from .answers import (BrandsQuery, BrandsResponse, InsightPath, InsightQuery, InsightResponse, IntentsQuery,
                      IntentsResponse, OpportunitiesQuery, OpportunitiesResponse, SegmentsQuery, SegmentsResponse,
                      StrainsQuery, StrainsResponse, TimeseriesQuery, TimeseriesResponse, TrendsQuery, TrendsResponse)
from .answer_replay import replayable
from .paging import PAGE_ERRORS, answer_session, cursor_key

api = APIBlueprint("b2b_market", __name__, url_prefix="/api/v1",
                   abp_tags=[Tag(name="b2b: intelligence", description="Segments, trends, intents, opportunities, "
                                                                       "entities, time series and insights")])


@api.get("/segments", security=B2B_SECURITY, responses={200: SegmentsResponse, **B2B_ERRORS})
def get_segments(query: SegmentsQuery):
    """Consumer type × experience level over the last 30 days: users, posts, sentiment, intent, lifestyles.

    From the hourly view mv_consumer_segments; cached until its next refresh (and replayed
    before Flask meanwhile: the answer is the same for every client).
    """
    with answer_session() as session:
        return replayable(market.segments_json(session, query.consumer_type, query.experience_level,
                                              query.lifestyles))


@api.get("/intents", security=B2B_SECURITY, responses={200: IntentsResponse, **PAGE_ERRORS})
def get_intents(query: IntentsQuery):
    """High-intent posts (purchase intent 70+) of the last 24 hours, highest intent then newest first.

    From mv_high_intent_users (refreshed every 15 minutes); deleted posts and posts older than 24
    hours are left out at every request. Cursor-paginated.
    """
    with answer_session() as session:
        return market.intents(session, cursor_key(), min_intent=query.min_intent, product=query.product,
                              region=query.region, since=query.since, limit=query.limit, cursor=query.cursor,
                              live=read_cache())


@api.get("/trends", security=B2B_SECURITY, responses={200: TrendsResponse, **B2B_ERRORS})
def get_trends(query: TrendsQuery):
    """Rising hashtags, strains, brands and effects with velocity and supporting posts (every 15 minutes)."""
    with answer_session() as session:
        return market.trends(session, (query.kind,) if query.kind else KINDS, query.window, query.limit,
                             query.sources, read_cache())


@api.get("/opportunities", security=B2B_SECURITY, responses={200: OpportunitiesResponse, **B2B_ERRORS})
def get_opportunities(query: OpportunitiesQuery):
    """Opportunity scores (0-100) of product categories or effects, with their parts and sample posts (hourly)."""
    with answer_session() as session:
        return market.opportunities(session, query.kind, query.region, query.limit, query.samples, read_cache())


@api.get("/brands", security=B2B_SECURITY, responses={200: BrandsResponse, **B2B_ERRORS})
def get_brands(query: BrandsQuery):
    """Brands by mentions, with mean sentiment (-1..1) and first/last mention (every 5 minutes)."""
    with answer_session() as session:
        return replayable(entities.brands_json(session, query.min_mentions, query.limit))


@api.get("/strains", security=B2B_SECURITY, responses={200: StrainsResponse, **B2B_ERRORS})
def get_strains(query: StrainsQuery):
    """Strains by mentions, each with its sentiment week by week over the range (default: 12 weeks)."""
    with answer_session() as session:
        return replayable(entities.strains_json(session, query.since, query.until, query.strain_type,
                                                query.min_mentions, query.limit))


@api.get("/timeseries", security=B2B_SECURITY, responses={200: TimeseriesResponse, **B2B_ERRORS})
def get_timeseries(query: TimeseriesQuery):
    """Per hour, day, week or month: posts, authors, sentiment, intent and distributions.

    Hours over at most 31 days, other periods over at most 366; default ranges: 2 days of hours,
    30 days, 26 weeks, 12 months.
    """
    with answer_session() as session:
        return replayable(entities.timeseries_json(session, query.period, query.since, query.until))


@api.get("/insights/<question>", security=B2B_SECURITY, responses={200: InsightResponse, **B2B_ERRORS})
def get_insight(path: InsightPath, query: InsightQuery):
    """One of the seven time-analysis questions over a range, optionally in one region.

    consumption-times, weekend-vs-weekday, effect-trends, seasonality, purchase-intent-now,
    complaint-times, brand-sentiment (docs/intelligence.md). Cached until the next time-series run.
    """
    with answer_session() as session:
        return insights.answer(session, path.question, query.since, query.until, query.region, query.name_list(),
                               read_cache())
