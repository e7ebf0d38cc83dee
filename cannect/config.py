"""Configuration from environment variables, validated once at start.

Variable names follow the design seeds (``DATABASE_URL``, ``REDIS_URL``, ``JETSTREAM_URL``,
``DEEPSEEK_API_KEY``, ...). A bad value stops the process with a message that names the
variable, instead of failing later somewhere deep in a worker.
"""

from __future__ import annotations

import functools
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from typing_extensions import Annotated

DEFAULT_CANNABIS_TAGS = (
    "cannabis", "weed", "420", "thc", "cbd", "cannabiscommunity", "marijuana", "mmj",
    "medicalcannabis", "medicalmarijuana", "stoner", "stoners", "ganja", "kush", "hemp",
    "edibles", "dispensary", "cannabisculture", "weedsky", "cannabissky", "growyourown",
    "homegrow", "terpenes", "thca", "sativa", "indica", "smokeweed",
)

#: Collections the listener asks Jetstream for; everything else is dropped on arrival.
WANTED_COLLECTIONS = (
    "app.bsky.feed.post",
    "app.bsky.feed.like",
    "app.bsky.feed.repost",
    "app.bsky.graph.follow",
    "app.bsky.actor.profile",
)


class ConfigError(SystemExit):
    """Raised (and exits with status 2) when an environment variable is invalid."""

    def __init__(self, message: str):
        super().__init__(2)
        self.message = message

    def __str__(self) -> str:
        return self.message


class DatabaseSettings(BaseSettings):
    """Just ``DATABASE_URL``: what migrations and database-only commands need."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    database_url: str = Field(description="PostgreSQL URL, postgresql://user:pass@host:port/db")

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str) -> str:
        scheme = urlsplit(value).scheme
        if scheme not in ("postgres", "postgresql", "postgresql+psycopg"):
            raise ValueError("must be a postgresql:// URL")
        return value

    @property
    def sqlalchemy_url(self) -> str:
        """The DATABASE_URL with the psycopg 3 driver named, as SQLAlchemy wants it."""
        scheme, rest = self.database_url.split("://", 1)
        return "postgresql+psycopg://" + rest if scheme != "postgresql+psycopg" else self.database_url


class Settings(DatabaseSettings):
    """Everything a process of the system reads from its environment."""

    redis_url: str = Field(description="Redis URL, redis://host:port/db")
    jetstream_url: str = "wss://jetstream2.us-east.bsky.network/subscribe"
    cannabis_tags: Annotated[tuple[str, ...], NoDecode] = DEFAULT_CANNABIS_TAGS

    # Listener micro-batching: flush after this many kept events or this many milliseconds.
    ingest_batch_size: int = Field(default=1000, ge=1, le=20000)
    ingest_batch_ms: int = Field(default=250, ge=1, le=60000)
    # On (re)connect the listener resumes this many seconds before its saved cursor.
    listener_rewind_seconds: float = Field(default=5.0, ge=0, le=3600)
    # Events larger than this are rejected (and counted) rather than forwarded.
    max_event_bytes: int = Field(default=1_000_000, ge=1024)
    # A worker that has not sent a heartbeat for this long is dead; its messages are requeued.
    worker_heartbeat_timeout_ms: int = Field(default=20_000, ge=1000)
    # A staged ingest batch whose predecessor never arrives is applied anyway after this long.
    ingest_gap_timeout_seconds: float = Field(default=300.0, ge=1)

    deepseek_api_key: str | None = None
    deepseek_base_url: str = "https://api.deepseek.com"
    deepseek_model: str = "deepseek-v4-flash"
    # The app's own session tokens (JWT, HS256). Required by the web process.
    jwt_secret: str | None = Field(default=None, min_length=32)
    jwt_ttl_seconds: int = Field(default=3600, ge=60, le=86400)
    refresh_ttl_days: int = Field(default=30, ge=1, le=365)
    # Key for PDS tokens at rest (Fernet, urlsafe base64 of 32 bytes); derived from JWT_SECRET if unset.
    token_encryption_key: str | None = None
    # Where users' accounts live; createSession/createRecord go here.
    pds_url: str = "https://bsky.social"
    # Browser origins allowed to call the API (comma-separated); the web app runs on its own domain.
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ("https://cannect.space", "http://localhost:8081")
    rate_limit_ip: str = "600/minute"
    rate_limit_user: str = "300/minute"
    rate_limit_login: str = "10/minute"
    # Reverse proxies in front of the web process whose X-Forwarded-For is trusted (nginx: 1).
    proxy_count: int = Field(default=0, ge=0, le=5)
    avatar_cdn: str = "https://cdn.bsky.app/img"
    vapid_public_key: str | None = None
    vapid_private_key: str | None = None
    vapid_email: str | None = None
    port: int = Field(default=3000, ge=1, le=65535)

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("jetstream_url")
    @classmethod
    def _ws_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("ws", "wss") or not parts.netloc:
            raise ValueError("must be a ws:// or wss:// URL such as wss://host/subscribe")
        return value

    @field_validator("pds_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http(s):// URL such as https://bsky.social")
        return value.rstrip("/")

    @field_validator("token_encryption_key")
    @classmethod
    def _fernet_keys(cls, value: str | None) -> str | None:
        if value:
            from cryptography.fernet import Fernet

            try:
                for key in value.split(","):
                    Fernet(key.strip())
            except ValueError:
                raise ValueError("must be urlsafe base64 of 32 bytes, comma-separated for rotation "
                                 "(python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key())')")
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, value):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        return tuple(value)

    @field_validator("cannabis_tags", mode="before")
    @classmethod
    def _tags(cls, value):
        if isinstance(value, str):
            value = value.split(",")
        tags = tuple(sorted({t.strip().lstrip("#").lower() for t in value if t.strip()}))
        if not tags:
            raise ValueError("must list at least one tag, comma-separated")
        return tags


def load_settings(cls: type[DatabaseSettings] = None, **overrides) -> Settings:
    """Read and validate the environment; raise ConfigError naming each bad variable."""
    try:
        return (cls or Settings)(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = str(err["loc"][0]).upper() if err["loc"] else "?"
            reason = "is not set" if err["type"] == "missing" else err["msg"].removeprefix("Value error, ")
            lines.append(f"  {name}: {reason}")
        raise ConfigError("Invalid configuration:\n" + "\n".join(lines)) from None


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, validated on first use."""
    return load_settings()
