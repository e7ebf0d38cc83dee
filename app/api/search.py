"""Search: posts by full text, accounts by handle or display-name prefix."""

from __future__ import annotations

from typing import Literal

from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, ConfigDict, Field

from services import search

from ..auth import OPTIONAL_BEARER, optional_viewer
from ..extensions import settings
from ..schemas import PostView, ProfileView, QueryModel
from .feeds import PAGE_ERRORS, paging_session

api = APIBlueprint("search", __name__, url_prefix="/api", abp_tags=[Tag(name="search")])


class SearchQuery(QueryModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    q: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00]*$",
                   description="Words to find (web-search syntax: \"phrase\", or, -word) or an account prefix")
    type: Literal["posts", "users"] = "posts"
    limit: int = Field(50, ge=1, le=100, description="Page size, 1-100")
    cursor: str | None = Field(None, max_length=4096, description="Opaque cursor from the previous page")


class SearchResponse(BaseModel):
    """``posts`` for type=posts, ``profiles`` for type=users."""

    posts: list[PostView] | None = None
    profiles: list[ProfileView] | None = None
    cursor: str | None


@api.get("/search", security=OPTIONAL_BEARER, responses={200: SearchResponse, **PAGE_ERRORS})
def search_endpoint(query: SearchQuery):
    """Posts newest first, or accounts best known first."""
    viewer = optional_viewer()
    find = search.search_posts if query.type == "posts" else search.search_users
    with paging_session() as session:
        items, cursor = find(session, query.q, query.limit, query.cursor, viewer, settings().avatar_cdn)
    return {"posts" if query.type == "posts" else "profiles": items, "cursor": cursor}
