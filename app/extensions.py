"""Per-process clients and Flask extensions the handlers share."""

from __future__ import annotations

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
    if settings.proxy_count:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_count, x_proto=settings.proxy_count)
    proxy_check.init_app(app, settings.proxy_count)  # before the limiter's hook: sees refused requests too
    CORS(app, origins=list(settings.cors_origins), supports_credentials=False,
         expose_headers=["Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"],
         allow_headers=["Authorization", "Content-Type"], max_age=600)
    from . import ratelimit_storage  # noqa: F401  (registers cannect+redis://: headers without extra round trips)

    app.config.update(RATELIMIT_STORAGE_URI="cannect+" + settings.redis_url, RATELIMIT_STRATEGY="fixed-window",
                      RATELIMIT_STORAGE_OPTIONS={"connection_pool": pool})
    limiter.init_app(app)


def get_redis() -> redis.Redis:
    return current_app.extensions["redis"]


def settings():
    return current_app.config["SETTINGS"]
