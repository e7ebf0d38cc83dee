"""Profiles: an account, its post tabs, its likes, its followers and follows."""

from __future__ import annotations

from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, Field

from services import profiles
from services.backfill import member_progress
from services.db import session_scope

from ..auth import OPTIONAL_BEARER, optional_viewer
from ..errors import ApiError
from ..extensions import settings
from ..read_cache import read_cache
from ..schemas import ERRORS, Actor, FeedResponse, PageQuery, Problem, ProfileListResponse, ProfileView
from .feeds import PAGE_ERRORS, paging_session

api = APIBlueprint("profiles", __name__, url_prefix="/api", abp_tags=[Tag(name="profiles")])



class ActorPath(BaseModel):
    actor: Actor = Field(description="Handle (e.g. alice.cannect.space) or DID")


class RecordPageQuery(PageQuery):
    """Cursors of like and follow lists carry a record URI, which can be long with did:web."""

    cursor: str | None = Field(None, max_length=4096, description="Opaque cursor from the previous page")


class BackfillProgress(BaseModel):
    jobId: int
    kind: str
    status: str = Field(description="queued, running, done, failed or cancelled")
    done: int = Field(description="Parts fetched (the member's follows, then one per account)")
    total: int | None = Field(description="Parts known so far (grows while the follows are read)")
    records: int = Field(description="Posts and follows stored so far")
    error: str | None
    startedAt: str | None
    finishedAt: str | None
    ratePerSecond: float | None
    etaSeconds: float | None


class ProfileResponse(BaseModel):
    profile: ProfileView
    backfill: BackfillProgress | None = Field(
        None, description="Only on the signed-in member's own profile: the import of their follows and "
                          "recent posts when they joined (also pushed live as backfill_progress on /ws)")


def unknown_actor() -> ApiError:
    return ApiError(404, "Not Found", "No such account in the Cannect index")


def found(result):
    if result is None:
        raise unknown_actor()
    return result


@api.get("/profile/<actor>", security=OPTIONAL_BEARER,
         responses={200: ProfileResponse, 404: Problem, **ERRORS})
def get_profile(path: ActorPath):
    """An account's profile, counts and the viewer's follow state."""
    viewer = optional_viewer()
    with session_scope() as session:
        view = found(profiles.get_profile(session, path.actor, viewer, settings().avatar_cdn, read_cache()))
        own = viewer is not None and view["did"] == viewer
        progress = member_progress(session, viewer) if own else None
    return {"profile": view, **({"backfill": progress} if own else {})}


def _tab(actor: str, tab: str, query: PageQuery) -> dict:
    viewer = optional_viewer()
    with paging_session() as session:
        posts, cursor = found(profiles.author_posts(session, actor, tab, query.limit, query.cursor, viewer,
                                                    settings().avatar_cdn, read_cache()))
    return {"posts": posts, "cursor": cursor}


@api.get("/profile/<actor>/posts", security=OPTIONAL_BEARER,
         responses={200: FeedResponse, 404: Problem, **PAGE_ERRORS})
def get_posts(path: ActorPath, query: PageQuery):
    """The account's top-level posts, newest first."""
    return _tab(path.actor, "posts", query)


@api.get("/profile/<actor>/replies", security=OPTIONAL_BEARER,
         responses={200: FeedResponse, 404: Problem, **PAGE_ERRORS})
def get_replies(path: ActorPath, query: PageQuery):
    """The account's replies, newest first."""
    return _tab(path.actor, "replies", query)


@api.get("/profile/<actor>/media", security=OPTIONAL_BEARER,
         responses={200: FeedResponse, 404: Problem, **PAGE_ERRORS})
def get_media(path: ActorPath, query: PageQuery):
    """The account's posts with images or video, newest first."""
    return _tab(path.actor, "media", query)


@api.get("/profile/<actor>/likes", security=OPTIONAL_BEARER,
         responses={200: FeedResponse, 404: Problem, **PAGE_ERRORS})
def get_likes(path: ActorPath, query: RecordPageQuery):
    """Indexed posts the account liked, newest like first."""
    viewer = optional_viewer()
    with paging_session() as session:
        posts, cursor = found(profiles.liked_posts(session, path.actor, query.limit, query.cursor, viewer,
                                                   settings().avatar_cdn, read_cache()))
    return {"posts": posts, "cursor": cursor}


@api.get("/profile/<actor>/followers", security=OPTIONAL_BEARER,
         responses={200: ProfileListResponse, 404: Problem, **PAGE_ERRORS})
def get_followers(path: ActorPath, query: RecordPageQuery):
    """Accounts following this one (as far as the index knows), newest follow first."""
    viewer = optional_viewer()
    with paging_session() as session:
        views, cursor = found(profiles.followers(session, path.actor, query.limit, query.cursor, viewer,
                                                 settings().avatar_cdn, read_cache()))
    return {"profiles": views, "cursor": cursor}


@api.get("/profile/<actor>/following", security=OPTIONAL_BEARER,
         responses={200: ProfileListResponse, 404: Problem, **PAGE_ERRORS})
def get_following(path: ActorPath, query: RecordPageQuery):
    """Accounts this one follows (as far as the index knows), newest follow first."""
    viewer = optional_viewer()
    with paging_session() as session:
        views, cursor = found(profiles.following(session, path.actor, query.limit, query.cursor, viewer,
                                                 settings().avatar_cdn, read_cache()))
    return {"profiles": views, "cursor": cursor}
