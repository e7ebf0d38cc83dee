"""The app's own access tokens: short-lived JWTs (HS256, ``JWT_SECRET``) naming a DID and session."""

from __future__ import annotations

import time
import uuid

import jwt

ISSUER = "cannect"
AUDIENCE = "cannect-app"
#: How long an ended session's access tokens stay refused: the longest lifetime one can
#: have (``JWT_TTL_SECONDS`` is at most a day), so no token of the session outlives the mark.
REVOKED_SESSION_TTL_SECONDS = 86_400


class InvalidToken(ValueError):
    """The token is missing, malformed, expired or not ours."""


def issue_access_token(did: str, session_id: str, secret: str, ttl_seconds: int) -> str:
    now = int(time.time())
    claims = {"sub": did, "sid": session_id, "iat": now, "exp": now + ttl_seconds, "iss": ISSUER,
              "aud": AUDIENCE, "jti": uuid.uuid4().hex}
    return jwt.encode(claims, secret, algorithm="HS256")


def decode_access_token(token: str, secret: str) -> dict:
    """The token's claims; raises InvalidToken (never a library error) for anything wrong with it."""
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER,
                            options={"require": ["sub", "sid", "exp"]})
    except jwt.ExpiredSignatureError:
        raise InvalidToken("token expired") from None
    except jwt.PyJWTError:
        raise InvalidToken("token invalid") from None
    return claims


def revoked_session_key(session_id: str) -> str:
    """The Redis key marking an ended session: its access tokens are refused everywhere."""
    return f"cannect:revoked-session:{session_id}"
