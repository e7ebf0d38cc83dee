"""The Flask application factory: REST API, health checks, metrics.

Never starts the listener or the scheduler: those are processes of their own.
"""

from __future__ import annotations

from flask import Flask

from cannect.config import Settings, get_settings
from cannect.logs import configure_logging


def create_app(settings: Settings | None = None) -> Flask:
    configure_logging()
    settings = settings or get_settings()
    app = Flask(__name__)
    app.config["SETTINGS"] = settings

    from . import errors, extensions, health, metrics

    extensions.init_app(app, settings)
    errors.init_app(app)
    metrics.init_app(app)
    app.register_blueprint(health.bp)
    return app
