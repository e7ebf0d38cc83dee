"""Who is asking: the member named by the ``Authorization: Bearer <app JWT>`` header."""

from __future__ import annotations

from flask import current_app, g, request

from services import realtime
from services.tokens import InvalidToken, decode_access_token, revoked_session_key

from .errors import ApiError
from .extensions import get_redis

#: OpenAPI security requirement for endpoints that need a signed-in member.
BEARER = [{"bearer": []}]
#: ... and for endpoints open to anonymous clients that answer a signed-in member differently
#: (its viewer state): a token is optional, but one that is sent must be valid.
OPTIONAL_BEARER = [{"bearer": []}, {}]


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
    if get_redis().exists(revoked_session_key(claims["sid"])):
        raise ApiError(401, "Unauthorized", "This session has been signed out: sign in again",
                       headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    g.viewer, g.session_id = claims["sub"], claims["sid"]
    return g.viewer


def end_sessions(*session_ids: str) -> None:
    """Refuse the sessions' access tokens on every endpoint and close their sockets in every
    web process (one ``session_ended`` realtime event each, see ``services/realtime.py``)."""
    realtime.publish(get_redis(), [realtime.session_ended_event(session_id) for session_id in session_ids])


def require_viewer() -> str:
    viewer = optional_viewer()
    if viewer is None:
        raise ApiError(401, "Unauthorized", "Sign in first (POST /api/auth/login)",
                       headers={"WWW-Authenticate": "Bearer"})
    return viewer
