"""Per-process clients the handlers share: one Redis connection pool."""

from __future__ import annotations

import redis
from flask import Flask, current_app


def init_app(app: Flask, settings) -> None:
    app.extensions["redis"] = redis.Redis.from_url(settings.redis_url, socket_timeout=5)


def get_redis() -> redis.Redis:
    return current_app.extensions["redis"]
