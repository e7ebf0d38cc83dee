"""API-key access to ``/api/v1``: one check before every request under the prefix, headers and
the usage entry after it.

A client sends its key as ``Authorization: Bearer cnk_live_...`` or ``X-API-Key``. The check
(``services/b2b/access.py``) runs before routing and input validation, for matched and
unmatched paths alike, so nothing about the API's shape leaks to an unauthenticated caller:

- 401 for a missing, malformed, mistyped, unknown, revoked or expired key: one answer for all;
  429 (``limit: "auth-failures"``) once an IP sent too many of those in a minute;
- 403 for an endpoint outside the client's plan (not counted against its limits);
- 429 with ``Retry-After`` over the per-minute limit (``limit: "minute"``) or the monthly
  quota (``limit: "month"``);
- 503 when Redis (the limits) or PostgreSQL (the keys) is not answering: closed, not open.

Handlers read the caller from :func:`current_client`. Every answer under the prefix carries
``X-RateLimit-Limit/Remaining/Reset`` (the per-minute limit; Reset in Unix seconds, as the
app's other limits) and the IETF draft ``RateLimit-Policy`` / ``RateLimit`` headers (minute
and month). Calls of an identified client are logged (``Gate.log_usage``: pushed to the usage buffer
with the process's next limiter script).

A cached answer that is the same for every client is replayed before Flask
(``answer_replay.py``) after the same ``Gate.check``; a request it refuses reaches the hook here
with that decision (``CHECKED`` in the WSGI environ) and is not checked, nor counted, again.

The app-wide per-IP and per-member limits (flask-limiter) do not apply here: a key's own
limits replace them, and failed keys are limited per IP by the gate.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import datetime, timezone

from flask import Flask, g, request
from pydantic import ConfigDict
from redis import RedisError
from sqlalchemy.exc import OperationalError

from services.b2b.access import Decision, Gate
from services.b2b.clients import Credentials
from services.b2b.limits import month_start, next_month_start
from services.db import session_scope

from ...errors import ApiError
from ...extensions import client_ip, unlimited_when
from ...schemas import Problem

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
#: WSGI environ key of a :class:`Decision` already made for this request (``answer_replay.py``).
CHECKED = "cannect.b2b_decision"
B2B_SCHEME = "apiKey"
API_KEY_HEADER = "X-API-Key"
#: OpenAPI security of every /api/v1 operation: the key as a bearer token or in X-API-Key.
B2B_SECURITY = [{B2B_SCHEME: []}, {"apiKeyBearer": []}]
SECURITY_SCHEMES = {
    B2B_SCHEME: {"type": "apiKey", "in": "header", "name": API_KEY_HEADER,
                 "description": "A B2B API key, cnk_live_<key id>_<secret><checksum>"},
    "apiKeyBearer": {"type": "http", "scheme": "bearer", "bearerFormat": "cnk_live_...",
                     "description": "The same API key as Authorization: Bearer cnk_live_..."},
}
UNAUTHORIZED_DETAIL = "A valid API key is required: Authorization: Bearer cnk_live_... (or X-API-Key)"
#: The limit headers every /api/v1 answer carries, for the OpenAPI document.
LIMIT_HEADERS = {
    "X-RateLimit-Limit": {"description": "Calls allowed per minute", "schema": {"type": "integer"}},
    "X-RateLimit-Remaining": {"description": "Calls left that would pass now", "schema": {"type": "integer"}},
    "X-RateLimit-Reset": {"description": "Unix time (s) when the full minute's allowance is back",
                          "schema": {"type": "integer"}},
    "RateLimit-Policy": {"description": 'IETF draft: \'"minute";q=60;w=60, "month";q=10000;w=2678400\'',
                         "schema": {"type": "string"}},
    "RateLimit": {"description": 'IETF draft: \'"minute";r=59;t=1, "month";r=9876;t=1209600\' '
                                 "(r: remaining, t: seconds until it is whole again)",
                  "schema": {"type": "string"}},
}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}}


def _problem_response(name: str, description: str, examples: dict, headers: dict) -> type[Problem]:
    """A Problem schema whose OpenAPI response shows ``headers`` and ``examples``."""
    return type(name, (Problem,), {"__doc__": Problem.__doc__, "model_config": ConfigDict(openapi_extra={
        "description": description, "headers": headers,
        "examples": {key: {"value": {"type": "about:blank", "instance": "/api/v1/trends", **value}}
                     for key, value in examples.items()}})})


#: Error responses of every /api/v1 operation, for the OpenAPI document.
B2B_ERRORS = {
    401: _problem_response("B2BUnauthorized", "Missing, malformed, unknown, revoked or expired API key (one answer "
                           "for all)", {"unauthorized": {"title": "Unauthorized", "status": 401,
                                                         "detail": UNAUTHORIZED_DETAIL}},
                           {**LIMIT_HEADERS, "WWW-Authenticate": {"schema": {"type": "string"}}}),
    403: _problem_response("B2BForbidden", "The endpoint is not in the client's plan (not counted)",
                           {"forbidden": {"title": "Forbidden", "status": 403,
                                          "detail": "Your plan does not include the 'intents' endpoint",
                                          "allowedEndpoints": ["segments", "trends"]}}, LIMIT_HEADERS),
    422: Problem,
    429: _problem_response("B2BTooManyRequests", "Over the per-minute limit, the monthly quota, or (for invalid "
                           "keys) the failures allowed per IP: `limit` says which",
                           {"minute": {"title": "Too Many Requests", "status": 429, "limit": "minute",
                                       "detail": "Over the rate limit of 60 calls per minute"},
                            "month": {"title": "Too Many Requests", "status": 429, "limit": "month",
                                      "detail": "The monthly quota of 10,000 calls is used up; it renews at the "
                                                "start of next month (UTC)"}},
                           {**LIMIT_HEADERS, **_RETRY_AFTER}),
    503: _problem_response("B2BUnavailable", "Limits cannot be checked (Redis not answering): retry",
                           {"unavailable": {"title": "Service Unavailable", "status": 503}}, _RETRY_AFTER),
}


def current_client() -> Credentials:
    """The authenticated B2B client of this request (set by the check before the handler)."""
    client = g.get("b2b_client")
    if client is None:  # a handler reached without the check: refuse rather than serve
        raise ApiError(401, "Unauthorized", UNAUTHORIZED_DETAIL)
    return client


def _under_prefix(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def endpoint_name(path: str) -> str:
    """The endpoint plans list: the path's first segment under the prefix."""
    return path[len(PREFIX):].lstrip("/").split("/", 1)[0]


def usage_name(rule: str | None, endpoint: str) -> str:
    """What ``api_usage`` records as the endpoint: the route under the prefix (its URL rule,
    ``/posts/<id>``), or the first segment of a path no route matched."""
    name = rule[len(PREFIX):] if rule and rule.startswith(PREFIX) else "/" + endpoint[:64]
    return name or "/"


def presented_key(environ: dict) -> str | None:
    """The key from ``Authorization: Bearer`` or ``X-API-Key``; ``""`` (refused) when both
    are sent and differ or the Authorization scheme is not Bearer. (Read from the WSGI environ:
    EnvironHeaders.get costs ~10x a dict lookup, and replays run before Flask.)"""
    header = environ.get("HTTP_AUTHORIZATION")
    alternative = environ.get("HTTP_X_API_KEY")
    bearer = None
    if header is not None:
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            return ""
        bearer = value.strip()
    if bearer is not None and alternative is not None and bearer != alternative.strip():
        return ""
    return bearer if bearer is not None else (alternative.strip() if alternative is not None else None)


def limit_headers(decision: Decision) -> dict[str, str]:
    verdict = decision.verdict
    if verdict is None:
        return {}
    name = "minute" if decision.client is not None else "auth-failures"
    headers = {"X-RateLimit-Limit": str(verdict.limit), "X-RateLimit-Remaining": str(verdict.remaining),
               "X-RateLimit-Reset": str(math.ceil(time.time()) + verdict.reset_seconds)}
    policies = [f'"{name}";q={verdict.limit};w=60']
    states = [f'"{name}";r={verdict.remaining};t={verdict.reset_seconds}']
    if decision.client is not None and verdict.quota is not None:
        month_seconds = verdict.quota_reset_seconds  # the window left is what the draft's t means
        policies.append(f'"month";q={verdict.quota};w={_month_window()}')
        states.append(f'"month";r={verdict.quota_remaining};t={month_seconds}')
    headers["RateLimit-Policy"] = ", ".join(policies)
    headers["RateLimit"] = ", ".join(states)
    return headers


_window = [0.0, 0]  # [this month's end (Unix s), its length (s)]: computed again when it ends


def _month_window() -> int:
    if time.time() >= _window[0]:
        now = datetime.now(timezone.utc)
        ends = next_month_start(now)
        _window[:] = [ends.timestamp(), int((ends - month_start(now)).total_seconds())]
    return _window[1]


def _refusal(decision: Decision) -> ApiError:
    headers = limit_headers(decision)
    outcome = decision.outcome
    if outcome == "unauthorized":
        headers["WWW-Authenticate"] = 'Bearer realm="cannect-b2b"'
        return ApiError(401, "Unauthorized", UNAUTHORIZED_DETAIL, headers)
    verdict = decision.verdict
    if outcome == "auth_throttled":
        headers["Retry-After"] = str(verdict.retry_after)
        return ApiError(429, "Too Many Requests", "Too many requests with invalid API keys from this address",
                        headers, limit="auth-failures")
    client = decision.client
    if outcome == "forbidden":
        return ApiError(403, "Forbidden", f"Your plan does not include the {decision.endpoint!r} endpoint",
                        headers, allowedEndpoints=sorted(client.allowed_endpoints))
    headers["Retry-After"] = str(verdict.retry_after)
    if outcome == "quota":
        return ApiError(429, "Too Many Requests",
                        f"The monthly quota of {client.monthly_quota:,} calls is used up; it renews at the start "
                        "of next month (UTC)", headers, limit="month")
    return ApiError(429, "Too Many Requests",
                    f"Over the rate limit of {client.rate_limit_per_min:,} calls per minute", headers, limit="minute")


def init_access(app: Flask) -> None:
    """Install the check (call before ``request_guards.init_app``: it must run first)."""
    app.security_schemes.update(SECURITY_SCHEMES)
    app.extensions["b2b_gate"] = Gate(app.extensions["redis"], session_scope,
                                      app.config["SETTINGS"].b2b_auth_failures_per_minute)
    unlimited_when(_exempt_from_app_limits)

    @app.before_request
    def _check_api_key():
        if not _under_prefix(request.path) or request.method == "OPTIONS":
            return None
        g.b2b_started = time.perf_counter()
        decision = request.environ.get(CHECKED)  # made by answer_replay.py before Flask: not again
        if decision is None:
            try:
                decision = app.extensions["b2b_gate"].check(presented_key(request.environ),
                                                            endpoint_name(request.path), client_ip)
            except (RedisError, OperationalError):
                log.exception("B2B access check failed: Redis or PostgreSQL not answering")
                raise ApiError(503, "Service Unavailable", "Keys and limits cannot be checked right now: try again "
                               "shortly", {"Retry-After": "1"})
        g.b2b_decision = decision
        if decision.outcome == "ok":
            g.b2b_client = decision.client
            return None
        raise _refusal(decision)

    @app.after_request
    def _headers_and_usage(response):
        decision = g.get("b2b_decision")
        if decision is None:
            return response
        if "X-RateLimit-Limit" not in response.headers:  # a refusal carries them already
            response.headers.extend(limit_headers(decision))  # (setdefault each: 5 scans, ~4x the time)
        if decision.client is not None:
            latency_ms = round((time.perf_counter() - g.b2b_started) * 1000)
            rule = request.url_rule.rule if request.url_rule is not None else None
            app.extensions["b2b_gate"].log_usage(decision.client.client_id, usage_name(rule, decision.endpoint),
                                                 request.method, response.status_code, latency_ms)
        return response


def _exempt_from_app_limits() -> bool:
    return _under_prefix(request.path)
