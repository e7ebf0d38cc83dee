"""Configuration from environment variables, validated once at start.

Variable names follow the design seeds (``DATABASE_URL``, ``REDIS_URL``, ``JETSTREAM_URL``,
``DEEPSEEK_API_KEY``, ...). A bad value stops the process with a message that names the
variable, instead of failing later somewhere deep in a worker.
"""

from __future__ import annotations

import functools
from typing import NamedTuple
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from typing_extensions import Annotated, Literal

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
    # Which classifier labels posts (services/classify): "auto" = the LLM when DEEPSEEK_API_KEY
    # is set, else the offline one; "llm" or "offline" force one.
    classifier: Literal["auto", "llm", "offline"] = "auto"
    # Posts per classify message (after ingest, from the sweep and the backfill); unset: one
    # LLM request's worth (LLM_BATCH_SIZE) with the LLM, 100 offline (no request to fill).
    classify_batch_size: int | None = Field(default=None, ge=1, le=500)
    # Posts whose classification failed for a passing reason (Failure.retry_later) are tried
    # again by the sweep at most once per this many seconds.
    classify_retry_delay_seconds: int = Field(default=900, ge=10, le=7 * 86400)
    # Offline classifier: a directory of extra lexicon *.toml files merged over the shipped ones
    # (services/classify/lexicons/; same section and name replaces an entry, extend = true adds to it).
    classifier_lexicon_dir: str | None = None
    # LLM classifier (services/classify/llm.py): posts per request; requests in flight across
    # ALL workers (a Redis semaphore); spend per UTC day after which posts wait for tomorrow
    # (0: no LLM calls); seconds per request; requests per post before it fails; prices in USD
    # per million tokens (DeepSeek's published chat prices) for llm_calls.cost_usd and the cap.
    llm_batch_size: int = Field(default=20, ge=1, le=100)
    llm_max_concurrency: int = Field(default=8, ge=1, le=512)
    llm_daily_budget_usd: float = Field(default=5.0, ge=0)
    llm_timeout_seconds: float = Field(default=60.0, gt=0, le=600)
    llm_max_attempts: int = Field(default=4, ge=1, le=10)
    llm_price_input_cache_hit: float = Field(default=0.028, ge=0)
    llm_price_input_cache_miss: float = Field(default=0.28, ge=0)
    llm_price_output: float = Field(default=0.42, ge=0)
    # Send DeepSeek's {"thinking": {"type": "disabled"}}: "auto" when the model or base URL
    # names deepseek (OpenAI itself rejects unknown body fields), "always", or "never".
    llm_disable_thinking: Literal["auto", "always", "never"] = "auto"
    # The app's own session tokens (JWT, HS256). Required by the web process.
    jwt_secret: str | None = Field(default=None, min_length=32)
    jwt_ttl_seconds: int = Field(default=3600, ge=60, le=86400)
    refresh_ttl_days: int = Field(default=30, ge=1, le=365)
    # An app session ends this long after sign-in however often it is refreshed.
    session_max_age_days: int = Field(default=90, ge=1, le=3650)
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
    # Largest request body the API reads (bodies are small JSON; no uploads pass through it).
    max_request_bytes: int = Field(default=256 * 1024, ge=1024, le=16 * 1024 * 1024)
    avatar_cdn: str = "https://cdn.bsky.app/img"
    # Web push (services/push): the VAPID key pair (`cannect vapid generate`) and the contact
    # push services see (mailto: or https:). All three, or none: push is then off.
    vapid_public_key: str | None = None
    vapid_private_key: str | None = Field(default=None, validate_default=True)
    vapid_email: str | None = Field(default=None, validate_default=True)
    # A notification older than this is not pushed (also the TTL push services keep it).
    push_ttl_seconds: int = Field(default=86400, ge=60, le=28 * 86400)
    # Seconds to connect to a push service, and to get its whole answer.
    push_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    # Retries of a push that failed for a transient reason (408, 429, 5xx, network).
    push_max_retries: int = Field(default=8, ge=0, le=20)
    # Subscriptions kept per member (browsers, devices); a new one beyond drops the oldest.
    push_max_subscriptions_per_user: int = Field(default=20, ge=1, le=1000)
    # Subscriptions one broadcast fan-out message covers.
    push_broadcast_batch_size: int = Field(default=500, ge=1, le=10_000)
    # Deliveries one `push` message carries (read, sent and settled together).
    push_delivery_batch: int = Field(default=50, ge=1, le=1000)
    # Pushes of one message sent at once, per worker process (push services take 50-300 ms).
    push_send_concurrency: int = Field(default=16, ge=1, le=256)
    # Tests only: origins (scheme://host:port) push may call although they are not https or
    # not public addresses. Empty in production.
    push_insecure_test_origins: Annotated[tuple[str, ...], NoDecode] = ()
    # B2B webhooks (services/webhooks): seconds between a failed attempt and the next, one per
    # retry (Standard Webhooks' schedule; a delivery is given up after the last); an endpoint
    # failing without a success for this many seconds is disabled; seconds to connect and to
    # get the whole answer; bytes of an answer read; the old secret stays valid this long after
    # a rotation; thresholds of the sentiment_shift and trend_spike events.
    webhook_retry_schedule: Annotated[tuple[float, ...], NoDecode] = (5, 300, 1800, 7200, 18000, 36000, 36000)
    webhook_disable_after_seconds: int = Field(default=3 * 86400, ge=0, le=90 * 86400)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    webhook_max_response_bytes: int = Field(default=16 * 1024, ge=256, le=1024 * 1024)
    webhook_secret_overlap_seconds: int = Field(default=86400, ge=0, le=30 * 86400)
    # Delivered and given-up deliveries (the clients' delivery logs) are deleted after this many days.
    webhook_log_retention_days: int = Field(default=30, ge=1, le=3650)
    webhook_high_intent_threshold: int = Field(default=70, ge=0, le=100)
    webhook_sentiment_shift_points: float = Field(default=15.0, gt=0, le=200)
    webhook_sentiment_min_posts: int = Field(default=50, ge=1)
    webhook_trend_spike_velocity: float = Field(default=1.0, gt=0)
    webhook_trend_spike_min_posts: int = Field(default=10, ge=1)
    # Tests only: origins webhooks may call although they are not https or not public. Empty in production.
    webhook_insecure_test_origins: Annotated[tuple[str, ...], NoDecode] = ()
    # Admin endpoints (POST /api/push/broadcast): signed-in members with these DIDs, or any
    # client sending ADMIN_TOKEN in the X-Admin-Token header.
    admin_dids: Annotated[tuple[str, ...], NoDecode] = ()
    admin_token: str | None = Field(default=None, min_length=32)
    # Admin pages (/admin, app/admin_pages): a signed-in session ends after this many seconds
    # without a request (and at most 12 hours after sign-in); wrong ADMIN_TOKENs accepted per
    # client IP per 15 minutes before the sign-in form answers 429.
    admin_session_idle_seconds: int = Field(default=1800, ge=60, le=43_200)
    admin_signin_failures: int = Field(default=10, ge=1, le=10_000)
    # B2B API (/api/v1, services/b2b): seconds a rotated key keeps working by default; failed
    # API-key authentications allowed per client IP per minute (then 429).
    b2b_key_overlap_seconds: int = Field(default=86400, ge=0, le=30 * 86400)
    b2b_auth_failures_per_minute: int = Field(default=60, ge=1, le=100_000)
    # B2B answers cached until their job runs again: how often (seconds) a web process asks
    # intelligence_runs whether it did (0: at every request).
    b2b_cache_check_seconds: float = Field(default=1.0, ge=0, le=60)
    # B2B search matches kept per process (seconds; 0: every search runs): a repeated search
    # within them may miss posts classified meanwhile; deleted posts leave at once regardless.
    b2b_search_cache_seconds: float = Field(default=10.0, ge=0, le=3600)
    # B2B answers the same for every client (segments, brands, strains, time series) replayed
    # from memory before Flask, after the same key check (app/api/v1/answer_replay.py). Off:
    # every request goes through Flask.
    b2b_answer_replay: bool = True
    # Read cache of each web process (services/read_cache.py): post and profile views and first
    # pages, dropped by the realtime events that change them. Off: every read goes to PostgreSQL.
    # Entries at most (oldest dropped first); seconds an entry is kept at most (a bound for
    # changes nobody announces).
    read_cache: bool = True
    read_cache_max_entries: int = Field(default=50_000, ge=100, le=10_000_000)
    read_cache_max_age_seconds: float = Field(default=300.0, gt=0, le=86_400)
    # Client dashboard (/dashboard, app/dashboard): a signed-in session ends after this many seconds
    # without a request (and at most DASHBOARD_SESSION_MAX_SECONDS after sign-in); sign-in
    # attempts allowed per client IP per minute (then 429).
    dashboard_session_idle_seconds: int = Field(default=1800, ge=60, le=43_200)
    dashboard_session_max_seconds: int = Field(default=43_200, ge=300, le=7 * 86400)
    dashboard_signin_per_minute: int = Field(default=10, ge=1, le=10_000)
    port: int = Field(default=3000, ge=1, le=65535)

    # Identity verification (services/identity): DID documents of did:plc come from the PLC
    # directory; with HANDLE_RESOLVER_URL set, handles resolve through that XRPC service
    # (com.atproto.identity.resolveHandle) instead of DNS TXT + https://<handle>/.well-known.
    plc_directory_url: str = "https://plc.directory"
    handle_resolver_url: str | None = None
    # DNS servers for _atproto TXT and for the addresses of handle / did:web hosts, "ip[:port]"
    # comma-separated; empty: the system's resolver configuration.
    dns_nameservers: Annotated[tuple[str, ...], NoDecode] = ()
    # Seconds for one lookup (DNS query, or one HTTPS fetch from connect to last byte).
    identity_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # How long a resolved DID document / handle is trusted; a failed lookup (no such DID or
    # handle) for the shorter negative TTL. An identity event bypasses both.
    identity_cache_ttl_seconds: int = Field(default=3600, ge=0, le=7 * 86400)
    identity_negative_cache_ttl_seconds: int = Field(default=300, ge=0, le=86400)
    # Handles are verified again after this long, even without an identity event.
    identity_reverify_hours: float = Field(default=168.0, gt=0, le=24 * 365)
    # Tests only: let handle / did:web hosts resolve to private or loopback addresses, trust
    # this CA bundle (PEM) for their HTTPS, and reach them on this port instead of 443.
    identity_allow_private_addresses: bool = False
    identity_ca_bundle: str | None = None
    identity_https_port: int = Field(default=443, ge=1, le=65535)

    # Member onboarding (services/backfill): a new member's follows (from their PDS) and the
    # recent posts of them and of every account they follow: posts of the last
    # BACKFILL_WINDOW_DAYS, at most BACKFILL_MAX_POSTS_PER_ACCOUNT per account, read from the
    # AppView's getAuthorFeed (with counts) or each account's PDS (listRecords, no counts).
    backfill_window_days: float = Field(default=7.0, gt=0, le=365)
    backfill_max_posts_per_account: int = Field(default=100, ge=1, le=10_000)
    backfill_appview_url: str = "https://public.api.bsky.app"
    backfill_posts_source: Literal["appview", "pds"] = "appview"
    # Records per request (listRecords and getAuthorFeed allow 1-100).
    backfill_page_size: int = Field(default=100, ge=1, le=100)
    # Seconds per request; attempts per page (429 and 5xx wait Retry-After or back off); the
    # longest Retry-After waited in place (longer: the page is retried later by the queue).
    backfill_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    backfill_max_attempts: int = Field(default=4, ge=1, le=20)
    backfill_max_retry_wait_seconds: float = Field(default=30.0, ge=0, le=600)
    # Requests in flight per remote host, across ALL backfill workers (a Redis semaphore).
    backfill_host_concurrency: int = Field(default=4, ge=1, le=256)
    # Tests only: origins (scheme://host:port) backfill may call although they are not https
    # or not public addresses. Empty in production.
    backfill_insecure_test_origins: Annotated[tuple[str, ...], NoDecode] = ()
    # Admin job legacy_import (services/backfill/legacy.py) reads SQLite files inside this
    # directory only (relative paths are taken from it; symlinks out of it are refused), so
    # an admin request cannot make the server read any other file it can open.
    legacy_import_dir: str = "data/imports"

    # /ws limits (app/ws.py): sockets per client IP in one web process, client messages per
    # second per socket (and the burst allowed), the largest client message, posts one socket
    # follows, and history replays (resumes with "since"): per socket and per IP per minute,
    # and how many stream events one replay may scan.
    ws_max_connections_per_ip: int = Field(default=100, ge=1, le=100_000)
    ws_messages_per_second: float = Field(default=10.0, gt=0, le=1000)
    ws_message_burst: int = Field(default=30, ge=1, le=10_000)
    ws_max_message_bytes: int = Field(default=64 * 1024, ge=1024, le=4 * 1024 * 1024)
    ws_max_subscriptions: int = Field(default=500, ge=1, le=10_000)
    ws_replays_per_minute: int = Field(default=10, ge=1, le=10_000)
    ws_ip_replays_per_minute: int = Field(default=120, ge=1, le=100_000)
    ws_replay_max_events: int = Field(default=5000, ge=100, le=50_000)

    # Scheduled email reports (services/reports, queue ``reports``): the SMTP server as a URL
    # (smtp://user:pass@host:587 with STARTTLS, smtp://host:25?starttls=false for a local relay,
    # smtps://user:pass@host:465 for TLS from the first byte; unset: reports are not sent), the
    # From address, and the UTC hour after which the daily (and, on Mondays, the weekly) report
    # of the period just ended is sent.
    smtp_url: str | None = None
    reports_from: str = "Cannect Reports <reports@cannect.space>"
    reports_hour_utc: int = Field(default=6, ge=0, le=23)

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("smtp_url", mode="before")
    @classmethod
    def _smtp_url(cls, value):
        if isinstance(value, str) and not value.strip():
            return None
        if value is not None:
            parse_smtp_url(value)
        return value

    @field_validator("reports_from")
    @classmethod
    def _reports_from(cls, value: str) -> str:
        from email.headerregistry import HeaderRegistry

        try:
            addresses = HeaderRegistry()("from", value).addresses
        except Exception:  # the parser raises several kinds on garbage
            addresses = ()
        if "\r" in value or "\n" in value or len(addresses) != 1 or "." not in addresses[0].domain:
            raise ValueError("must be one email address, optionally with a name: Cannect <reports@example.com>")
        return value

    @field_validator("jetstream_url")
    @classmethod
    def _ws_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("ws", "wss") or not parts.netloc:
            raise ValueError("must be a ws:// or wss:// URL such as wss://host/subscribe")
        return value

    @field_validator("pds_url", "plc_directory_url", "handle_resolver_url", "backfill_appview_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
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

    @field_validator("handle_resolver_url", "identity_ca_bundle", mode="before")
    @classmethod
    def _blank_is_unset(cls, value):
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("dns_nameservers", mode="before")
    @classmethod
    def _nameservers(cls, value):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        for server in value:
            try:
                parse_nameserver(server)
            except ValueError:
                raise ValueError("must be IP addresses with an optional :port, comma-separated "
                                 "(e.g. 1.1.1.1,127.0.0.1:5353,[::1]:53)") from None
        return tuple(value)

    @field_validator("vapid_public_key", "vapid_private_key", "vapid_email", "admin_token", mode="before")
    @classmethod
    def _blank_is_none(cls, value):
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("vapid_private_key")
    @classmethod
    def _vapid_pair(cls, value: str | None, info) -> str | None:
        from services.push.keys import InvalidKey, check_vapid_pair

        public = info.data.get("vapid_public_key")
        if (value is None) != (public is None):
            raise ValueError("set both VAPID_PUBLIC_KEY and VAPID_PRIVATE_KEY, or neither")
        if value is not None:
            try:
                check_vapid_pair(public, value)
            except InvalidKey as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("vapid_email")
    @classmethod
    def _vapid_contact(cls, value: str | None, info) -> str | None:
        if value is None:
            if info.data.get("vapid_private_key"):
                raise ValueError("is required with the VAPID keys (mailto:you@example.org)")
            return None
        value = value.strip()
        if "@" in value and not value.startswith(("mailto:", "https:")):
            value = "mailto:" + value
        if not (value.startswith("mailto:") and "@" in value or value.startswith("https://")):
            raise ValueError("must be a mailto: address (or an https:// URL) push services can contact")
        return value

    @field_validator("webhook_retry_schedule", mode="before")
    @classmethod
    def _retry_schedule(cls, value):
        if isinstance(value, str):
            try:
                value = [float(v) for v in value.split(",") if v.strip()]
            except ValueError:
                raise ValueError("must be seconds between attempts, comma-separated (e.g. 5,300,1800)") from None
        if not all(0 <= float(v) <= 7 * 86400 for v in value):
            raise ValueError("each delay must be between 0 and 604800 seconds")
        return tuple(float(v) for v in value)

    @field_validator("push_insecure_test_origins", "webhook_insecure_test_origins", "backfill_insecure_test_origins",
                     mode="before")
    @classmethod
    def _test_origins(cls, value):
        from services.outbound import origin_of

        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        for origin in value:
            try:
                parts = urlsplit(origin)
                parts.port  # noqa: B018  (raises on a bad port)
            except ValueError:
                parts = None
            if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("must be origins such as http://127.0.0.1:8080, comma-separated")
        return tuple(origin_of(origin) for origin in value)

    @field_validator("admin_dids", mode="before")
    @classmethod
    def _admin_dids(cls, value):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not all(str(v).startswith("did:") for v in value):
            raise ValueError("must be DIDs (did:plc:..., did:web:...), comma-separated")
        return tuple(value)

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


def parse_nameserver(value: str) -> tuple[str, int]:
    """``ip``, ``ip:port`` or ``[ipv6]:port`` -> (ip, port); ValueError when it is none of them."""
    import ipaddress

    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest.removeprefix(":") if rest else ""
        if rest and not rest.startswith(":"):
            raise ValueError(value)
    elif value.count(":") == 1:
        host, _, port = value.partition(":")
    else:
        host, port = value, ""
    ipaddress.ip_address(host)
    number = int(port) if port else 53
    if not 0 < number < 65536:
        raise ValueError(value)
    return host, number


class SmtpServer(NamedTuple):
    """``SMTP_URL`` taken apart (the password is left out of the repr: it is a provider's API key)."""

    host: str
    port: int
    username: str | None
    password: str | None
    tls: Literal["starttls", "implicit", "none"]
    timeout: float

    def __repr__(self) -> str:
        return f"SmtpServer({self.host}:{self.port}, tls={self.tls}, user={self.username!r})"


_SMTP_PORTS = {"smtp": 587, "smtps": 465}
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def parse_smtp_url(value: str) -> SmtpServer:
    """``smtp://[user:pass@]host[:port][?starttls=true|false&timeout=S]`` or
    ``smtps://[user:pass@]host[:port][?timeout=S]`` -> SmtpServer; ValueError says what is wrong
    (never repeating the password). Resend: ``smtps://resend:KEY@smtp.resend.com:465``;
    SendGrid: ``smtp://apikey:KEY@smtp.sendgrid.net:587``; user and password percent-encoded."""
    from urllib.parse import parse_qsl, unquote

    parts = urlsplit(value.strip())
    if parts.scheme not in _SMTP_PORTS:
        raise ValueError("must be an smtp:// or smtps:// URL such as smtp://user:password@smtp.example.com:587")
    try:
        host, port = parts.hostname, parts.port or _SMTP_PORTS[parts.scheme]
    except ValueError:
        raise ValueError("has a bad port (smtp://host:587)") from None
    if not host:
        raise ValueError("names no host (smtp://user:password@smtp.example.com:587)")
    if parts.path not in ("", "/") or parts.fragment:
        raise ValueError("takes no path: smtp://user:password@host:port?starttls=true")
    if (parts.username is None) != (parts.password is None) or parts.username == "":
        raise ValueError("needs both a user and a password (user:password@host), or neither")
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(options) - {"starttls", "timeout"})
    if unknown:
        raise ValueError(f"has unknown options {', '.join(unknown)}: only starttls=true|false and timeout=seconds")
    tls: Literal["starttls", "implicit", "none"] = "implicit" if parts.scheme == "smtps" else "starttls"
    if "starttls" in options:
        flag = options["starttls"].lower()
        if flag not in _TRUE + _FALSE:
            raise ValueError("starttls must be true or false")
        if parts.scheme == "smtps":
            raise ValueError("smtps:// is TLS from the first byte: starttls applies to smtp:// only")
        tls = "starttls" if flag in _TRUE else "none"
    try:
        timeout = float(options.get("timeout", 30))
    except ValueError:
        timeout = -1.0
    if not 0 < timeout <= 600:
        raise ValueError("timeout must be seconds between 0 and 600")
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return SmtpServer(host, port, username, password, tls, timeout)


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
