"""Request and response models shared by the API's blueprints (they are also its OpenAPI)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from services.atproto_syntax import at_uri_parts, require_did, require_handle


def _require_record_uri(value: str) -> str:
    """The AT-URI of one record (``at://did/collection/rkey``), not of a repo or a collection."""
    parts = at_uri_parts(value)
    if parts is None or not parts[0].startswith("did:"):
        raise ValueError("not the AT-URI of a record (at://did/collection/rkey)")
    return value


#: Identifiers in requests, checked by the atproto SDK's syntax rules (services.atproto_syntax);
#: the OpenAPI document names their format.
AtUri = Annotated[str, Field(max_length=8192, json_schema_extra={"format": "at-uri"}),
                  AfterValidator(_require_record_uri)]
Did = Annotated[str, Field(max_length=2048, json_schema_extra={"format": "did"}), AfterValidator(require_did)]


def _require_actor(value: str) -> str:
    """A DID, or a handle with an optional leading ``@``."""
    return require_did(value) if value.startswith("did:") else require_handle(value.removeprefix("@"))


Actor = Annotated[str, Field(max_length=2048, json_schema_extra={"format": "at-identifier"}),
                  AfterValidator(_require_actor)]


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
    uri: AtUri = Field(description="AT-URI of a post, at://did/app.bsky.feed.post/rkey (URL-encoded or not)")


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


#: Error responses most endpoints can give, for the OpenAPI document (401: a token was sent and
#: is not valid, or the endpoint needs one; it is checked before the input, so never a 422 first).
ERRORS = {401: Problem, 422: Problem, 429: Problem}
#: ... and those of endpoints that take a JSON body (413: larger than MAX_REQUEST_BYTES).
BODY_ERRORS = {413: Problem, **ERRORS}
