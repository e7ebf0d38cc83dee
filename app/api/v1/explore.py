"""``/api/v1`` exploration endpoints: profiles (audiences by target score) and post search.

Both read live tables with signed keyset cursors (search's matches are kept a few seconds,
``B2B_SEARCH_CACHE_SECONDS``); deleted posts never show, and a purged account's profile is
hidden at once.
"""

from __future__ import annotations

from flask_openapi3 import APIBlueprint, Tag

from cannect.config import get_settings
from services.b2b.queries import audience, search

from ...read_cache import read_cache
from .access import B2B_SECURITY
from .answers import ProfilesQuery, ProfilesResponse, SearchQuery, SearchResponse
from .paging import PAGE_ERRORS, answer_session, cursor_key

api = APIBlueprint("b2b_explore", __name__, url_prefix="/api/v1",
                   abp_tags=[Tag(name="b2b: intelligence", description="Segments, trends, intents, opportunities, "
                                                                       "entities, time series and insights")])


@api.get("/profiles", security=B2B_SECURITY, responses={200: ProfilesResponse, **PAGE_ERRORS})
def get_profiles(query: ProfilesQuery):
    """Aggregated user profiles with their target scores, highest chosen score first; cursor-paginated."""
    with answer_session() as session:
        return audience.profiles(session, cursor_key(), score=query.score, min_score=query.min_score,
                                 consumer_type=query.consumer_type, experience_level=query.experience_level,
                                 region=query.region, limit=query.limit, cursor=query.cursor)


@api.get("/search", security=B2B_SECURITY, responses={200: SearchResponse, **PAGE_ERRORS})
def search_posts(query: SearchQuery):
    """Classified cannabis posts matching words and classification filters, newest first.

    Full text (web-search syntax) over the last 30 days by default; cursor-paginated.
    """
    with answer_session() as session:
        return search.search(session, cursor_key(), query.q, query.since, query.until, product=query.product,
                             sentiment=query.sentiment, min_intent=query.min_intent, region=query.region,
                             strain=query.strain, brand=query.brand, limit=query.limit, cursor=query.cursor,
                             fresh_seconds=get_settings().b2b_search_cache_seconds, live=read_cache())
