"""Feeds: global (cannabis-tagged posts), local (Cannect members' posts), following."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flask_openapi3 import APIBlueprint, Tag
from sqlalchemy.orm import Session

from services import feeds
from services.db import session_scope
from services.pagination import InvalidCursor

from ..auth import BEARER, OPTIONAL_BEARER, optional_viewer, require_viewer
from ..errors import ApiError
from ..extensions import settings
from ..read_cache import read_cache
from ..schemas import ERRORS, FeedResponse, PageQuery, Problem

api = APIBlueprint("feeds", __name__, url_prefix="/api", abp_tags=[Tag(name="feeds")])

#: Responses of every paginated endpoint.
PAGE_ERRORS = {400: Problem, **ERRORS}


@contextmanager
def paging_session() -> Iterator[Session]:
    """``session_scope`` for paginated reads: a cursor that is not ours is a 400, not a 500."""
    try:
        with session_scope() as session:
            yield session
    except InvalidCursor:
        raise ApiError(400, "Bad Request", "The cursor is not one this API returned") from None


@api.get("/feed/global", security=OPTIONAL_BEARER, responses={200: FeedResponse, **PAGE_ERRORS})
def global_feed(query: PageQuery):
    """Posts with a cannabis hashtag, newest first."""
    viewer = optional_viewer()
    with paging_session() as session:
        posts, cursor = feeds.global_feed(session, query.limit, query.cursor, viewer, settings().avatar_cdn,
                                          read_cache())
    return {"posts": posts, "cursor": cursor}


@api.get("/feed/local", security=OPTIONAL_BEARER, responses={200: FeedResponse, **PAGE_ERRORS})
def local_feed(query: PageQuery):
    """Posts of Cannect members, newest first."""
    viewer = optional_viewer()
    with paging_session() as session:
        posts, cursor = feeds.local_feed(session, query.limit, query.cursor, viewer, settings().avatar_cdn,
                                         read_cache())
    return {"posts": posts, "cursor": cursor}


@api.get("/feed/following", security=BEARER, responses={200: FeedResponse, 401: Problem, **PAGE_ERRORS})
def following_feed(query: PageQuery):
    """Posts of the accounts the signed-in member follows, newest first."""
    viewer = require_viewer()
    with paging_session() as session:
        posts, cursor = feeds.following_feed(session, viewer, query.limit, query.cursor, settings().avatar_cdn,
                                             read_cache())
    return {"posts": posts, "cursor": cursor}
