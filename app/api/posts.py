"""Reading posts: one post, its thread, its replies.

The post's AT-URI travels in the path, slashes and all (URL-encoded or not: the server decodes
``%2F`` before routing). ``/thread`` and ``/replies`` name those endpoints only after a complete
AT-URI (``at://authority/collection/rkey``, exactly three parts, none with a slash), so a post
whose record key is literally ``thread`` or ``replies`` is still ``GET /api/post/<its uri>``.
"""

from __future__ import annotations

from typing import Literal

from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, ConfigDict, Field
from werkzeug.routing import BaseConverter

from services.db import session_scope
from services.threads import post_replies, post_thread
from services.views import post_views

from ..auth import OPTIONAL_BEARER, optional_viewer
from ..errors import ApiError
from ..extensions import settings
from ..read_cache import read_cache
from ..schemas import ERRORS, FeedResponse, PageQuery, PostResponse, PostUriPath, PostView, Problem, QueryModel
from .feeds import PAGE_ERRORS, paging_session

api = APIBlueprint("posts", __name__, url_prefix="/api", abp_tags=[Tag(name="posts")])


class AtUriConverter(BaseConverter):
    """``<aturi:uri>``: a whole AT-URI, three slash-free parts after ``at://``.

    Only the routes with a suffix use it; ``/post/<path:uri>`` takes anything else, so a
    malformed URI is still a 422 naming the field, not a 404 from the router.
    """

    regex = r"at://[^/]+/[^/]+/[^/]+"
    part_isolating = False


class ThreadQuery(QueryModel):
    """Defaults are the AppView's. The maxima are lower than its lexicon's 1000: every level
    is a level of JSON nesting, and deeper documents break common decoders (Python's json
    near 1000 levels, orjson at 255) long before a screen could show them."""

    model_config = ConfigDict(extra="forbid")

    depth: int = Field(6, ge=0, le=100, description="Levels of replies below the post, 0-100")
    parentHeight: int = Field(80, ge=0, le=200, description="Parents above the post, 0-200")


class NotFoundPost(BaseModel):
    """A parent the index does not hold (deleted, or never indexed)."""

    uri: str
    notFound: Literal[True]


class ThreadParent(BaseModel):
    post: PostView
    parent: ThreadParent | NotFoundPost | None = None


class ThreadReply(BaseModel):
    post: PostView
    replies: list[ThreadReply]


class ThreadView(BaseModel):
    post: PostView
    parent: ThreadParent | NotFoundPost | None
    replies: list[ThreadReply] = Field(description="Oldest first; at most 500 posts in the whole tree")


class ThreadResponse(BaseModel):
    thread: ThreadView


def not_indexed() -> ApiError:
    return ApiError(404, "Not Found", "No such post in the Cannect index")


@api.get("/post/<path:uri>", security=OPTIONAL_BEARER, responses={200: PostResponse, 404: Problem, **ERRORS})
def get_post(path: PostUriPath):
    """One post with its author, counts and the viewer's like/repost.

    The record key may be anything the lexicon allows, ``thread`` and ``replies`` included:
    ``/api/post/at://did:plc:x/app.bsky.feed.post/thread`` is that post, and
    ``.../app.bsky.feed.post/thread/thread`` its thread.
    """
    viewer = optional_viewer()
    with session_scope() as session:
        views = post_views(session, [path.uri], viewer, settings().avatar_cdn, read_cache())
    if not views:
        raise not_indexed()
    return {"post": views[0]}


@api.get("/post/<aturi:uri>/thread", security=OPTIONAL_BEARER,
         responses={200: ThreadResponse, 404: Problem, **ERRORS})
def get_thread(path: PostUriPath, query: ThreadQuery):
    """The post, its parents (nearest first, nested) and its replies (oldest first, nested)."""
    viewer = optional_viewer()
    with session_scope() as session:
        thread = post_thread(session, path.uri, query.depth, query.parentHeight, viewer, settings().avatar_cdn,
                             read_cache())
    if thread is None:
        raise not_indexed()
    return {"thread": thread}


@api.get("/post/<aturi:uri>/replies", security=OPTIONAL_BEARER,
         responses={200: FeedResponse, 404: Problem, **PAGE_ERRORS})
def get_replies(path: PostUriPath, query: PageQuery):
    """Direct replies to the post, oldest first."""
    viewer = optional_viewer()
    with paging_session() as session:
        result = post_replies(session, path.uri, query.limit, query.cursor, viewer, settings().avatar_cdn,
                              read_cache())
    if result is None:
        raise not_indexed()
    posts, cursor = result
    return {"posts": posts, "cursor": cursor}
