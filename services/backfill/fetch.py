"""GET XRPC queries from other people's servers: PDSes named by DID documents, and the AppView.

A PDS URL comes from a DID document, which its owner writes: the calls go through
:class:`services.outbound.GuardedClient` (https only, public addresses only, no redirects,
capped answers, timeouts). Each call holds a slot of its host's Redis semaphore
(``BACKFILL_HOST_CONCURRENCY`` across every backfill worker), so a hundred new members do not
hammer one PDS. 429 and 5xx answers, timeouts and connection failures are retried in place
(``Retry-After`` honoured, else exponential backoff) up to ``BACKFILL_MAX_ATTEMPTS``; a wait
longer than ``BACKFILL_MAX_RETRY_WAIT_SECONDS`` is not slept here but raised as
:class:`TryLater`, for the queue to retry the page later without holding a worker thread.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import urlencode, urlsplit

import orjson
from redis import Redis

from services.classify.limits import RedisSemaphore, SlotsBusy
from services.outbound import GuardedClient, Policy, RefusedDestination, Unreachable

#: An XRPC page of 100 records with their views stays well under this.
MAX_ANSWER_BYTES = 4 * 1024 * 1024
SEMAPHORE_PREFIX = "cannect:backfill:host:"


class TryLater(Exception):
    """The host cannot answer now (rate limited, failing, unreachable): retry in ``seconds``."""

    def __init__(self, message: str, seconds: float):
        super().__init__(message)
        self.seconds = seconds


class Gone(Exception):
    """The host answered that the repository or actor is not there (4xx): nothing to fetch."""


@dataclass(frozen=True)
class FetchSettings:
    timeout: float
    max_attempts: int
    max_retry_wait: float
    host_concurrency: int
    test_origins: frozenset[str] = frozenset()

    @classmethod
    def of(cls, settings) -> "FetchSettings":
        return cls(settings.backfill_timeout_seconds, settings.backfill_max_attempts,
                   settings.backfill_max_retry_wait_seconds, settings.backfill_host_concurrency,
                   frozenset(settings.backfill_insecure_test_origins))


class XrpcFetcher:
    """Thread-safe; one per worker process."""

    def __init__(self, config: FetchSettings, redis: Redis, sleep=time.sleep):
        self.config, self.redis, self.sleep = config, redis, sleep
        self.client = GuardedClient(Policy(exempt_origins=config.test_origins, connect_timeout=config.timeout,
                                           read_timeout=config.timeout, max_response_bytes=MAX_ANSWER_BYTES))

    def query(self, base_url: str, nsid: str, params: dict) -> dict:
        """The JSON object ``GET base_url/xrpc/nsid?params`` answers, retrying what may pass."""
        url = f"{base_url.rstrip('/')}/xrpc/{nsid}?{urlencode({k: v for k, v in params.items() if v is not None})}"
        host = urlsplit(base_url).netloc.lower()
        semaphore = RedisSemaphore(self.redis, SEMAPHORE_PREFIX + host, self.config.host_concurrency,
                                   lease_seconds=2 * self.config.timeout + 5)
        problem = "no attempt"
        for attempt in range(1, self.config.max_attempts + 1):
            wait = None
            try:
                with semaphore.slot(wait_seconds=2 * self.config.timeout + 5):
                    answer = self.client.request("GET", url, headers={"Accept": "application/json",
                                                                      "User-Agent": "cannect-backfill/1"})
            except RefusedDestination as exc:
                raise Gone(f"{host}: refused ({exc})") from None
            except SlotsBusy:
                raise TryLater(f"{host}: every request slot stayed busy", 5.0) from None
            except Unreachable as exc:  # TimedOut too
                problem = f"{host}: {exc}"
            else:
                if answer.status == 200:
                    return _json_object(host, nsid, answer.body)
                problem = f"{host}: {nsid} answered {answer.status}"
                if answer.status == 429 or answer.status >= 500:
                    wait = _retry_after(answer.headers)
                elif 400 <= answer.status < 500:
                    raise Gone(problem + _error_name(answer.body))
            if attempt == self.config.max_attempts:
                break
            wait = wait if wait is not None else min(8.0, 0.25 * 2 ** (attempt - 1)) * (0.5 + random.random())
            if wait > self.config.max_retry_wait:
                raise TryLater(problem, wait)
            self.sleep(wait)
        raise TryLater(problem, 30.0)

    def close(self) -> None:
        self.client.close()


def _json_object(host: str, nsid: str, body: bytes) -> dict:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise Gone(f"{host}: {nsid} answered something that is not JSON") from None
    if not isinstance(payload, dict):
        raise Gone(f"{host}: {nsid} answered JSON that is not an object")
    return payload


def _error_name(body: bytes) -> str:
    try:
        error = orjson.loads(body).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return ""
    return f" ({error[:80]})" if isinstance(error, str) else ""


def _retry_after(headers) -> float | None:
    """Seconds from ``Retry-After`` (seconds or a date) or ``RateLimit-Reset`` (epoch seconds)."""
    value = headers.get("Retry-After")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
            except (TypeError, ValueError):
                pass
    reset = headers.get("RateLimit-Reset")
    if reset and reset.isdigit():
        return max(0.0, int(reset) - time.time())
    return None
