"""The Flask application factory: REST API (OpenAPI-described), health checks, metrics.

Never starts the listener or the scheduler: those are processes of their own.
"""

from __future__ import annotations

from flask_openapi3 import Info, OpenAPI

from cannect.config import ConfigError, Settings, get_settings
from cannect.logs import configure_logging

from .jsonio import OrjsonProvider


def create_app(settings: Settings | None = None) -> OpenAPI:
    configure_logging()
    settings = settings or get_settings()
    if not settings.jwt_secret:
        raise ConfigError("Invalid configuration:\n  JWT_SECRET: is not set (the web process signs sessions with it)")
    from . import errors, extensions, health, metrics, read_cache, request_guards, ws
    from . import dashboard
    from .admin import ADMIN_SCHEME, ADMIN_TOKEN_HEADER
    from .api import register_api
    from .api.v1 import register_b2b_api

    app = OpenAPI(
        __name__,
        info=Info(title="Cannect API", version="1.0",
                  description="Feeds, posts, profiles, search and actions of the Cannect community app."),
        security_schemes={"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                          ADMIN_SCHEME: {"type": "apiKey", "in": "header", "name": ADMIN_TOKEN_HEADER}},
        doc_prefix="/api", doc_url="/openapi.json",
        validation_error_status=422, validation_error_callback=errors.validation_problem,
    )
    app.url_map.merge_slashes = False  # post URIs (at://...) travel in paths
    app.config["SETTINGS"] = settings
    app.json = OrjsonProvider(app)

    extensions.init_app(app, settings)
    errors.init_app(app)
    metrics.init_app(app)
    app.register_api(health.api)
    ws.init_app(app, settings)
    read_cache.init_app(app, settings)
    register_api(app)
    register_b2b_api(app)  # its API-key check must run before request_guards' hook
    dashboard.init_app(app)  # /dashboard: HTML pages, not in the OpenAPI document
    from . import admin_pages
    admin_pages.init_app(app)  # /admin: HTML pages behind an ADMIN_TOKEN sign-in, not in the OpenAPI document
    request_guards.init_app(app, settings.max_request_bytes)  # reads the finished OpenAPI document
    extensions.trust_proxies(app, settings)  # outermost WSGI middleware
    return app
