"""Who is asking: the member named by the ``Authorization: Bearer <app JWT>`` header."""

from __future__ import annotations

from flask import current_app, g, request

from services.tokens import InvalidToken, decode_access_token

from .errors import ApiError
from .extensions import get_redis

#: OpenAPI security requirement for endpoints that need a signed-in member.
BEARER = [{"bearer": []}]


def optional_viewer() -> str | None:
    """The signed-in member's DID, None when anonymous; a bad token is a 401, not anonymity."""
    if "viewer" in g:
        return g.viewer
    header = request.headers.get("Authorization", "")
    if not header:
        g.viewer = g.session_id = None
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "Unauthorized", "Authorization must be 'Bearer <token>'",
                       headers={"WWW-Authenticate": "Bearer"})
    try:
        claims = decode_access_token(token.strip(), current_app.config["SETTINGS"].jwt_secret)
    except InvalidToken as exc:
        raise ApiError(401, "Unauthorized", str(exc), headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    if get_redis().exists(_revoked_key(claims["sid"])):
        raise ApiError(401, "Unauthorized", "This session has been signed out: sign in again",
                       headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    g.viewer, g.session_id = claims["sub"], claims["sid"]
    return g.viewer


def _revoked_key(session_id: str) -> str:
    return f"cannect:revoked-session:{session_id}"


def revoke_access_tokens(session_id: str) -> None:
    """Refuse the session's access tokens on every endpoint until they would have expired anyway."""
    get_redis().set(_revoked_key(session_id), 1, ex=current_app.config["SETTINGS"].jwt_ttl_seconds)


def require_viewer() -> str:
    viewer = optional_viewer()
    if viewer is None:
        raise ApiError(401, "Unauthorized", "Sign in first (POST /api/auth/login)",
                       headers={"WWW-Authenticate": "Bearer"})
    return viewer
