"""Signing in with a Bluesky account (its PDS checks the password), refreshing, signing out.

Also what the other write endpoints share: :func:`current_member` (the bearer token's member
and app session) and :func:`pds_problems` (PDS and session failures as problem+json).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

from flask import g, request
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, ConfigDict, Field

from services import auth
from services.db import session_scope
from services.members import NEW_BACKFILL_JOBS
from services.pds import PdsError, PdsUnavailable
from services.realtime import read_changed_event, try_publish

from ..auth import BEARER, end_sessions, require_viewer
from ..errors import ApiError
from ..extensions import client_ip, get_redis, limiter, settings
from ..schemas import ERRORS, Problem

log = logging.getLogger(__name__)

api = APIBlueprint("auth", __name__, url_prefix="/api", abp_tags=[Tag(name="auth")])

#: Seconds a client should wait when the PDS is down and did not say.
PDS_RETRY_AFTER = 30


class LoginBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    identifier: str = Field(min_length=1, max_length=2048, description="Handle, DID or email of a Bluesky account")
    password: str = Field(min_length=1, max_length=1024, description="Its password (an app password is best)")


class RefreshBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refreshToken: str = Field(min_length=1, max_length=512)


class TokenResponse(BaseModel):
    accessToken: str = Field(description="Bearer token for the API (JWT)")
    refreshToken: str = Field(description="Single use: POST /api/auth/refresh returns a new one. Sending one "
                                           "that was already used signs the whole session out (theft)")
    did: str
    handle: str | None
    expiresIn: int = Field(description="Seconds the access token lives (never past the session's end)")


class LogoutResponse(BaseModel):
    signedOut: bool


def current_member() -> auth.Member:
    """The member named by the bearer token (401 without one); their session is checked by the service."""
    did = require_viewer()
    return auth.Member(did, g.session_id)


def _unauthorized(detail: str) -> ApiError:
    return ApiError(401, "Unauthorized", detail, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


@contextmanager
def pds_problems():
    """Service failures of sessions and PDS calls, as the problems a client can act on."""
    try:
        yield
    except auth.AuthFailed as exc:
        raise _unauthorized(str(exc)) from None
    except auth.AccountInactive as exc:
        raise ApiError(403, "Account not active", str(exc)) from None
    except PdsUnavailable as exc:
        raise ApiError(503, "PDS unavailable", f"Your PDS could not be reached: {exc}",
                       headers={"Retry-After": str(PDS_RETRY_AFTER)}) from None
    except PdsError as exc:
        if exc.status == 429:
            raise ApiError(429, "Too Many Requests", "Your PDS is rate limiting this account: try again later",
                           headers={"Retry-After": str(exc.retry_after or 60)}) from None
        if exc.server_side:
            raise ApiError(503, "PDS unavailable", f"Your PDS failed ({exc.status} {exc.error})",
                           headers={"Retry-After": str(exc.retry_after or PDS_RETRY_AFTER)}) from None
        if exc.status == 401:
            raise _unauthorized("Your PDS no longer accepts our session: sign in again") from None
        raise ApiError(422, "Rejected by your PDS", exc.message or exc.error, pdsError=exc.error) from None


@api.post("/auth/login", responses={200: TokenResponse, 401: Problem, 403: Problem, 503: Problem, **ERRORS})
@limiter.limit(lambda: settings().rate_limit_login, key_func=client_ip)
def login(body: LoginBody):
    """Sign in with a Bluesky account: its PDS checks the password; the account becomes a member."""
    with pds_problems(), session_scope() as session:
        tokens = auth.login(session, settings(), body.identifier, body.password, request.headers.get("User-Agent"))
        jobs = session.info.get(NEW_BACKFILL_JOBS, [])
    try_publish(get_redis(), read_changed_event(profiles=[tokens.did]))  # it may have just become a member
    if jobs:  # after the commit: a new member's follows and recent posts (queue backfill)
        try:
            from tasks.backfill import start_jobs  # the broker lives with the actors

            start_jobs(jobs)
        except Exception:  # signed in all the same; the job stays queued
            log.exception("could not queue the backfill of %s", tokens.did)
    return tokens.as_json()


@api.post("/auth/refresh", responses={200: TokenResponse, 401: Problem, **ERRORS})
def refresh(body: RefreshBody):
    """A new token pair; the refresh token sent stops working.

    Refresh one at a time: a refresh token already used (a copy someone else holds) revokes
    the whole session, and its sockets close. A session ends SESSION_MAX_AGE_DAYS after sign-in.
    """
    with pds_problems():
        try:
            with session_scope() as session:
                tokens = auth.refresh(session, settings(), body.refreshToken)
        except auth.RefreshTokenReused as exc:
            end_sessions(exc.session_id)
            raise
    return tokens.as_json()


@api.post("/auth/logout", security=BEARER, responses={200: LogoutResponse, 401: Problem, **ERRORS})
def logout():
    """End this app session: its access and refresh tokens stop working, its sockets close."""
    member = current_member()
    with pds_problems(), session_scope() as session:
        auth.logout(session, member)
    end_sessions(member.session_id)
    return {"signedOut": True}
