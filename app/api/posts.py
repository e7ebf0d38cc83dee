"""Reading posts: one post, its thread, its replies."""

from __future__ import annotations

from flask_openapi3 import APIBlueprint, Tag

from services.db import session_scope
from services.views import post_views

from ..auth import optional_viewer
from ..errors import ApiError
from ..extensions import settings
from ..schemas import ERRORS, PostResponse, PostUriPath, Problem

api = APIBlueprint("posts", __name__, url_prefix="/api", abp_tags=[Tag(name="posts")])


@api.get("/post/<path:uri>", responses={200: PostResponse, 404: Problem, **ERRORS})
def get_post(path: PostUriPath):
    """One post with its author, counts and the viewer's like/repost."""
    viewer = optional_viewer()
    with session_scope() as session:
        views = post_views(session, [path.uri], viewer, settings().avatar_cdn)
    if not views:
        raise ApiError(404, "Not Found", "No such post in the Cannect index")
    return {"post": views[0]}
