"""What a signed-in member does: written to their PDS, then shown at once from our index.

Undoing what is not there (unlike a post not liked, unfollow someone not followed) answers
200 with ``uri: null``; doing what is already done answers 200 with the existing record.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, ConfigDict, Field, field_validator

from services import actions, atproto_syntax
from services.db import session_scope
from services.members import NEW_BACKFILL_JOBS
from services.jetstream import POST, uri_collection
from services.realtime import try_publish

from ..auth import BEARER
from ..errors import ApiError
from ..extensions import get_redis, settings
from ..schemas import BODY_ERRORS, AtUri, Did, PostUriPath, PostView, Problem, ProfileView
from .auth import current_member, pds_problems

log = logging.getLogger(__name__)

api = APIBlueprint("actions", __name__, url_prefix="/api", abp_tags=[Tag(name="actions")])

#: What a write can answer besides success, for the OpenAPI document.
WRITE_ERRORS = {401: Problem, 403: Problem, 404: Problem, 503: Problem, **BODY_ERRORS}


def _post_uri(value: str) -> str:
    if uri_collection(value) != POST:
        raise ValueError("must be the AT-URI of a post (app.bsky.feed.post)")
    return value


class NewPostBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=3000, description="At most 300 characters (graphemes)")
    langs: list[str] | None = Field(None, max_length=3, description="BCP-47 language tags, e.g. ['en']")

    @field_validator("text")
    @classmethod
    def _text(cls, value: str) -> str:
        problem = actions.text_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("langs")
    @classmethod
    def _langs(cls, value: list[str] | None) -> list[str] | None:
        for tag in value or ():
            if not atproto_syntax.is_language(tag):  # what the ingest edge accepts of our own post
                raise ValueError(f"not a language tag: {tag[:20]!r}")
        return value


class ReplyBody(NewPostBody):
    parent: AtUri = Field(description="AT-URI of the indexed post replied to")

    @field_validator("parent")
    @classmethod
    def _parent(cls, value: str) -> str:
        return _post_uri(value)


class SubjectBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    uri: AtUri = Field(description="AT-URI of an indexed post")

    @field_validator("uri")
    @classmethod
    def _uri(cls, value: str) -> str:
        return _post_uri(value)


class AccountBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    did: Did = Field(description="DID of the account")


class CreatedPostResponse(BaseModel):
    uri: str
    cid: str
    post: PostView | None = Field(description="The post as feeds show it (null only if it is not indexed)")


class PostActionResponse(BaseModel):
    uri: str | None = Field(description="The like/repost record created or deleted; null when nothing was there")
    cid: str | None
    post: PostView | None = Field(description="The post with its new counts and the viewer's state")


class FollowActionResponse(BaseModel):
    uri: str | None = Field(description="The follow record created or deleted; null when nothing was there")
    cid: str | None
    profile: ProfileView | None = Field(description="The account with its new counts and the viewer's state")


class DeletedPostResponse(BaseModel):
    uri: str
    deleted: bool


@contextmanager
def action_problems():
    with pds_problems():
        try:
            yield
        except actions.NotFound as exc:
            raise ApiError(404, "Not Found", str(exc)) from None
        except actions.Forbidden as exc:
            raise ApiError(403, "Forbidden", str(exc)) from None
        except actions.InvalidAction as exc:
            raise ApiError(422, "Invalid request", str(exc)) from None


def _announce(notification_ids: list[int]) -> None:
    """After the commit: the notifications the action created go live and to push (queue notify)."""
    try:
        from tasks import notify  # the broker lives with the actors

        notify.request(notification_ids)
    except Exception:  # the action is committed; the notifications stay listed, unannounced
        log.exception("could not queue the announcement of %d notifications", len(notification_ids))


def _act(action, *args):
    """Run one action for the signed-in member in one transaction."""
    member = current_member()
    with action_problems(), session_scope() as session:
        result = action(session, settings(), member, *args)
        events = session.info.get(actions.REALTIME_EVENTS, [])
        notification_ids = session.info.get(actions.NEW_NOTIFICATIONS, [])
        backfills = session.info.get(NEW_BACKFILL_JOBS, [])
    try_publish(get_redis(), events)  # only after the commit, so nobody hears of a rolled-back change
    if notification_ids:
        _announce(notification_ids)
    if backfills:
        _start_backfills(backfills)
    return result


def _start_backfills(job_ids: list[int]) -> None:
    """After the commit: the recent posts of an account the member is the first to follow."""
    try:
        from tasks.backfill import start_jobs  # the broker lives with the actors

        start_jobs(job_ids)
    except Exception:  # the follow is committed; that account fills in from the stream only
        log.exception("could not queue %d backfill jobs", len(job_ids))


@api.post("/post", security=BEARER, responses={201: CreatedPostResponse, **WRITE_ERRORS})
def create_post(body: NewPostBody):
    """Publish a post on the member's PDS."""
    return _act(actions.create_post, body.text, body.langs), 201


@api.post("/reply", security=BEARER, responses={201: CreatedPostResponse, **WRITE_ERRORS})
def create_reply(body: ReplyBody):
    """Reply to an indexed post (the thread root is the parent's root, or the parent)."""
    return _act(actions.create_post, body.text, body.langs, body.parent), 201


@api.delete("/post/<path:uri>", security=BEARER, responses={200: DeletedPostResponse, **WRITE_ERRORS})
def delete_post(path: PostUriPath):
    """Delete one of the member's own posts."""
    return _act(actions.delete_post, path.uri)


@api.post("/like", security=BEARER, responses={200: PostActionResponse, **WRITE_ERRORS})
def like(body: SubjectBody):
    """Like an indexed post."""
    return _act(actions.like, body.uri)


@api.post("/unlike", security=BEARER, responses={200: PostActionResponse, **WRITE_ERRORS})
def unlike(body: SubjectBody):
    """Remove the member's like of a post."""
    return _act(actions.unlike, body.uri)


@api.post("/repost", security=BEARER, responses={200: PostActionResponse, **WRITE_ERRORS})
def repost(body: SubjectBody):
    """Repost an indexed post."""
    return _act(actions.repost, body.uri)


@api.post("/unrepost", security=BEARER, responses={200: PostActionResponse, **WRITE_ERRORS})
def unrepost(body: SubjectBody):
    """Remove the member's repost of a post."""
    return _act(actions.unrepost, body.uri)


@api.post("/follow", security=BEARER, responses={200: FollowActionResponse, **WRITE_ERRORS})
def follow(body: AccountBody):
    """Follow an account."""
    return _act(actions.follow, body.did)


@api.post("/unfollow", security=BEARER, responses={200: FollowActionResponse, **WRITE_ERRORS})
def unfollow(body: AccountBody):
    """Stop following an account."""
    return _act(actions.unfollow, body.did)
