"""The signed-in member's notifications: list (plain or grouped), unread count, mark read,
and push preferences. A member only ever sees and changes their own
(``services/notifications/queries.py`` documents paging and grouping)."""

from __future__ import annotations

from typing import Literal

from flask_openapi3 import APIBlueprint, Tag
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from services.db import session_scope
from services.notifications import preferences, queries

from ..auth import BEARER, require_viewer
from ..extensions import settings
from ..schemas import BODY_ERRORS, ERRORS, PostView, ProfileView, QueryModel
from .feeds import PAGE_ERRORS, paging_session

api = APIBlueprint("notifications", __name__, url_prefix="/api", abp_tags=[Tag(name="notifications")])

Reason = Literal["like", "repost", "follow", "reply", "mention", "quote"]
REASON_LIST = r"^(like|repost|follow|reply|mention|quote)(,(like|repost|follow|reply|mention|quote))*$"


class NotificationsQuery(QueryModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(50, ge=1, le=100, description="Page size, 1-100")
    cursor: str | None = Field(None, max_length=256, description="Opaque cursor from the previous page")
    reasons: str | None = Field(None, max_length=64, pattern=REASON_LIST,
                                description="Only these reasons, comma-separated (like,repost,follow,reply,mention,quote)")
    grouped: bool = Field(False, description="Fold likes and reposts of one post, and follows, into groups")


class NotificationView(BaseModel):
    id: int
    reason: Reason
    isRead: bool
    indexedAt: str
    author: ProfileView = Field(description="The actor (a bare profile, DID only, when not indexed)")
    uri: str | None = Field(description="The record that caused it: the like, repost, follow, reply, ...")
    reasonSubject: str | None = Field(description="URI of the member's post it is about (likes, reposts, replies, quotes)")
    subject: PostView | None = Field(description="That post, when indexed")
    post: PostView | None = Field(description="The reply, mention or quote itself")


class NotificationGroupView(BaseModel):
    groupKey: str = Field(description="like:<post uri>, repost:<post uri>, follow, or <reason>:<id> for single ones")
    reason: Reason
    count: int = Field(description="Notifications in the group (as of the first page)")
    isRead: bool = Field(description="All of the group are read")
    mostRecentAt: str
    mostRecentId: int
    latestActors: list[ProfileView] = Field(description="Up to 5 most recent distinct actors")
    reasonSubject: str | None
    subject: PostView | None
    notification: NotificationView | None = Field(description="The notification of a single (reply, mention, quote)")


class NotificationsResponse(BaseModel):
    notifications: list[NotificationView] | None = Field(None, description="Without grouped")
    groups: list[NotificationGroupView] | None = Field(None, description="With grouped=true")
    cursor: str | None


class CountResponse(BaseModel):
    count: int = Field(description="Unread notifications")


class ReadBody(BaseModel):
    """Exactly one of: all, before, ids."""

    model_config = ConfigDict(extra="forbid")

    all: Literal[True] | None = Field(None, description="Mark every notification read")
    before: AwareDatetime | None = Field(None, description="Mark those created at or before this time read")
    ids: list[int] | None = Field(None, min_length=1, max_length=1000,
                                  description="Mark these (of the member's) read")

    @model_validator(mode="after")
    def _exactly_one(self):
        if sum(value is not None for value in (self.all, self.before, self.ids)) != 1:
            raise ValueError("give exactly one of all, before, ids")
        if self.ids and not all(0 < value < 2**63 for value in self.ids):
            raise ValueError("ids are positive 64-bit integers")
        return self


class ReadResponse(BaseModel):
    updated: int = Field(description="Notifications that were unread and now are read")


class PreferencesBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pushReasons: list[Reason] = Field(max_length=6, description="Reasons that are pushed (the rest are only listed)")
    mutedUntil: AwareDatetime | None = Field(description="No pushes at all until then; null: not muted")

    @field_validator("mutedUntil")
    @classmethod
    def _readable_back(cls, value):
        # Any year PostgreSQL takes would do, but one beyond 9999 (in UTC) cannot be read back.
        if value is not None and not 2000 <= value.year <= 9000:
            raise ValueError("must be a time between the years 2000 and 9000")
        return value


class PreferencesResponse(BaseModel):
    pushReasons: list[Reason]
    mutedUntil: AwareDatetime | None
    updatedAt: AwareDatetime | None = Field(description="Null: never set (the defaults)")


@api.get("/notifications", security=BEARER, responses={200: NotificationsResponse, **PAGE_ERRORS})
def list_notifications(query: NotificationsQuery):
    """The member's notifications, newest first; ``grouped=true`` folds likes, reposts and follows."""
    did = require_viewer()
    reasons = query.reasons.split(",") if query.reasons else None
    with paging_session() as session:
        if query.grouped:
            groups, cursor = queries.list_groups(session, did, query.limit, query.cursor, reasons, settings().avatar_cdn)
            return {"groups": groups, "cursor": cursor}
        items, cursor = queries.list_notifications(session, did, query.limit, query.cursor, reasons,
                                                   settings().avatar_cdn)
    return {"notifications": items, "cursor": cursor}


@api.get("/notifications/count", security=BEARER, responses={200: CountResponse, **ERRORS})
def unread_count():
    """How many of the member's notifications are unread."""
    did = require_viewer()
    with session_scope() as session:
        return {"count": queries.unread_count(session, did)}


@api.post("/notifications/read", security=BEARER, responses={200: ReadResponse, **BODY_ERRORS})
def mark_read(body: ReadBody):
    """Mark the member's notifications read: ``{"all": true}``, ``{"before": <time>}`` or ``{"ids": [...]}``."""
    did = require_viewer()
    with session_scope() as session:
        updated = queries.mark_read(session, did, everything=bool(body.all), before=body.before, ids=body.ids)
    return {"updated": updated}


@api.get("/notifications/preferences", security=BEARER, responses={200: PreferencesResponse, **ERRORS})
def get_preferences():
    """Which reasons are pushed to the member, and until when pushes are muted."""
    did = require_viewer()
    with session_scope() as session:
        return PreferencesResponse(**preferences.get_preferences(session, did)).model_dump(mode="json")


@api.put("/notifications/preferences", security=BEARER, responses={200: PreferencesResponse, **BODY_ERRORS})
def put_preferences(body: PreferencesBody):
    """Replace the member's push preferences (the in-app list always shows every notification)."""
    did = require_viewer()
    with session_scope() as session:
        saved = preferences.set_preferences(session, did, list(body.pushReasons), body.mutedUntil)
    return PreferencesResponse(**saved).model_dump(mode="json")
