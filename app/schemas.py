"""Request and response models shared by the API's blueprints (they are also its OpenAPI)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

AT_URI = r"^at://did:[a-z]+:[A-Za-z0-9._:%-]+/[a-zA-Z0-9.]+/[A-Za-z0-9._~:-]{1,512}$"
DID = r"^did:[a-z]+:[A-Za-z0-9._:%-]{1,2048}$"


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None


_QUERY_SCHEMAS: dict[type, dict] = {}


class QueryModel(BaseModel):
    """A query-string model whose JSON schema is computed once.

    flask-openapi3 reads the query model's JSON schema on every request to tell list
    parameters apart; generating it costs about a millisecond each time.
    """

    @classmethod
    def model_json_schema(cls, *args, **kwargs):
        if args or kwargs:
            return super().model_json_schema(*args, **kwargs)
        if cls not in _QUERY_SCHEMAS:
            _QUERY_SCHEMAS[cls] = super().model_json_schema()
        return _QUERY_SCHEMAS[cls]


class PageQuery(QueryModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(50, ge=1, le=100, description="Page size, 1-100")
    cursor: str | None = Field(None, max_length=256, description="Opaque cursor from the previous page")


class PostUriPath(BaseModel):
    uri: str = Field(pattern=AT_URI, max_length=2048, description="AT-URI of a post (URL-encoded or not)")


class Author(BaseModel):
    did: str
    handle: str | None
    displayName: str | None
    avatar: str | None
    isCannectUser: bool


class PostViewer(BaseModel):
    like: str | None
    repost: str | None


class PostView(BaseModel):
    uri: str
    cid: str
    author: Author
    record: dict[str, Any] | None
    embedType: str | None
    hasMedia: bool
    likeCount: int
    repostCount: int
    replyCount: int
    createdAt: str | None
    indexedAt: str | None
    viewer: PostViewer
    reply: dict[str, str | None] | None = None
    quote: str | None = None


class ProfileViewer(BaseModel):
    following: str | None
    followedBy: bool


class ProfileView(BaseModel):
    did: str
    handle: str | None
    displayName: str | None
    description: str | None
    avatar: str | None
    banner: str | None
    followersCount: int
    followingCount: int
    postsCount: int
    isCannectUser: bool
    indexedAt: str | None
    viewer: ProfileViewer


class PostResponse(BaseModel):
    post: PostView


class FeedResponse(BaseModel):
    posts: list[PostView]
    cursor: str | None


class ProfileListResponse(BaseModel):
    profiles: list[ProfileView]
    cursor: str | None


#: Error responses most endpoints can give, for the OpenAPI document.
ERRORS = {422: Problem, 429: Problem}
