"""Per-process clients and Flask extensions the handlers share."""

from __future__ import annotations

import functools
from typing import Callable

import redis
from flask import Flask, current_app, request
from flask_cors import CORS
from flask_limiter import ApplicationLimit, Limiter
from werkzeug.middleware.proxy_fix import ProxyFix

from . import proxy_check


def client_ip() -> str:
    return request.remote_addr or "unknown"


def _viewer_key() -> str:
    from .auth import optional_viewer

    try:
        return f"user:{optional_viewer()}"
    except Exception:  # a bad token is reported by the handler, not by the limiter
        return f"ip:{client_ip()}"


def _anonymous() -> bool:
    return not request.headers.get("Authorization")


def _exempt_path() -> bool:
    return request.path.startswith(("/health", "/metrics"))


def _setting(name: str):
    return lambda: getattr(current_app.config["SETTINGS"], name)


#: Every request counts against its IP's limit, and a signed-in member's against theirs.
limiter = Limiter(key_func=client_ip, headers_enabled=True, key_prefix="cannect", application_limits=[
    ApplicationLimit(_setting("rate_limit_ip"), key_function=client_ip, scope="ip", exempt_when=_exempt_path),
    ApplicationLimit(_setting("rate_limit_user"), key_function=_viewer_key, scope="user",
                     exempt_when=lambda: _anonymous() or _exempt_path()),
])


def init_app(app: Flask, settings) -> None:
    # One bounded pool per process that waits for a free connection: under gevent a worker can
    # have far more requests in flight than redis-py's default pool lets open (it raises).
    pool = redis.BlockingConnectionPool.from_url(settings.redis_url, max_connections=50, timeout=5,
                                                 socket_timeout=5)
    app.extensions["redis"] = redis.Redis(connection_pool=pool)
    proxy_check.init_app(app, settings.proxy_count)  # before the limiter's hook: sees refused requests too
    CORS(app, origins=list(settings.cors_origins), supports_credentials=False,
         expose_headers=["Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"],
         allow_headers=["Authorization", "Content-Type"], max_age=600)
    _remember_cors_headers(app)
    # Registers cannect+redis:// (headers without extra round trips) and the leased fixed window
    # (most requests make no rate-limit round trip; never admits past a limit).
    from . import ratelimit_storage  # noqa: F401

    app.config.update(RATELIMIT_STORAGE_URI="cannect+" + settings.redis_url,
                      RATELIMIT_STRATEGY="cannect-leased-fixed-window",
                      RATELIMIT_STORAGE_OPTIONS={"connection_pool": pool})
    limiter.init_app(app)
    _skip_limiter_when_unlimited(app)


#: Predicates of requests the app-wide limits never apply to (``unlimited_when``).
_unlimited: list[Callable[[], bool]] = []


def unlimited_when(predicate: Callable[[], bool]) -> None:
    """Requests for which ``predicate()`` is true skip flask-limiter altogether (its before, after
    and teardown hooks): parts of the app with limits of their own (``/api/v1``'s API keys).
    A request filter alone would still run the hooks, about 7% of a short request."""
    if predicate not in _unlimited:
        _unlimited.append(predicate)
    if predicate not in limiter._request_filters:  # (limits a view declares itself, too)
        limiter.request_filter(predicate)


def _skip_limiter_when_unlimited(app: Flask) -> None:
    """Wrap the three hooks ``limiter.init_app`` registered so that they return at once for
    requests ``unlimited_when`` names."""
    def is_limiter_hook(hook) -> bool:
        return getattr(hook, "__self__", None) is limiter or (
            isinstance(hook, functools.partial) and hook.args[:1] == (limiter,))

    def skipping(hook, hands_back_response: bool):
        @functools.wraps(hook)
        def run(*args):
            if any(predicate() for predicate in _unlimited):
                return args[0] if hands_back_response else None
            return hook(*args)
        run.__self__ = limiter  # (recognised again if init_app runs twice)
        return run

    for hooks, hands_back in ((app.before_request_funcs, False), (app.after_request_funcs, True),
                              (app.teardown_request_funcs, False)):
        chain = hooks.get(None, [])
        chain[:] = [skipping(hook, hands_back) if is_limiter_hook(hook) and not hasattr(hook, "__wrapped__")
                    else hook for hook in chain]


#: Answers with the CORS headers flask-cors computed, per request Origin (bounded).
_CORS_REMEMBERED_MAX = 64


def _remember_cors_headers(app: Flask) -> None:
    """flask-cors's after-request hook, remembered per ``Origin``.

    For a request other than a preflight its headers depend only on the request's ``Origin`` (the
    app has one CORS resource, every path, so the path plays no part): they are computed once
    per origin (a request without one included) by flask-cors itself, then copied. Preflights,
    Private Network Access requests and origins past the bound still go through flask-cors.
    """
    from flask_cors.core import ACL_ORIGIN, FLASK_CORS_EVALUATED

    chain = app.after_request_funcs.get(None, [])
    original = next((hook for hook in chain if getattr(hook, "__name__", "") == "cors_after_request"), None)
    if original is None:
        return
    remembered: dict[str | None, list[tuple[str, str]]] = {}

    def cors_after_request(response):
        environ = request.environ
        if (environ.get("REQUEST_METHOD") == "OPTIONS" or "HTTP_ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK" in environ
                or hasattr(response, FLASK_CORS_EVALUATED) or ACL_ORIGIN in response.headers):
            return original(response)
        origin = environ.get("HTTP_ORIGIN")
        headers = remembered.get(origin)
        if headers is None:
            if len(remembered) >= _CORS_REMEMBERED_MAX:
                return original(response)
            probe = app.response_class()
            probe.headers.clear()
            headers = remembered[origin] = list(original(probe).headers.items())
        response.headers.extend(headers)
        return response

    chain[chain.index(original)] = cors_after_request


def trust_proxies(app: Flask, settings) -> None:
    """The client's address and scheme from ``PROXY_COUNT`` proxies' headers, for everything
    the app runs (its WSGI middleware included): call last, to wrap it all."""
    if settings.proxy_count:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_count, x_proto=settings.proxy_count)


def get_redis() -> redis.Redis:
    return current_app.extensions["redis"]


def settings():
    return current_app.config["SETTINGS"]
