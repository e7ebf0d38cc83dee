"""The LLM classifier: posts in batches to an OpenAI-compatible chat API (DeepSeek by default).

Cheap and safe by construction:

- several posts per request after one fixed system prompt (:mod:`.prompt`), so the provider's
  prefix cache bills most input tokens at the cache-hit price;
- identical texts are sent once per call, and remembered for a while (a small LRU);
- requests in flight are limited across every worker by a Redis semaphore, and spending per
  UTC day by a Redis counter (:mod:`.limits`);
- every answer is hostile input: parsed, matched to posts by id, each result validated by
  :meth:`Classification.from_answer`; posts without a valid result are asked again (alone with
  the other leftovers), 429 / 5xx / network errors are backed off, and what never succeeds
  becomes a :class:`Failure` (``retry_later`` when the service, not the post, was the problem);
- every request is one ``llm_calls`` row handed to ``record_call`` (tokens, cost, outcome).
"""

from __future__ import annotations

import collections
import email.utils
import json
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

import openai
import redis as redis_lib
from pydantic import ValidationError

from . import prompt
from .costs import Prices, TokenUsage, usage_of
from .limits import DailySpend, RedisSemaphore, SlotsBusy
from .schema import Classification, Failure, Outcome, PostText

log = logging.getLogger(__name__)

PURPOSE = "classify"
#: Output tokens allowed per post in a request (a full answer is ~150-250 tokens), and the cap
#: per request (DeepSeek's non-thinking chat models answer at most 8K tokens).
OUTPUT_TOKENS_PER_POST = 400
MAX_OUTPUT_TOKENS = 8192
#: Answers larger than this are not parsed (no honest answer to 100 posts is this big).
MAX_ANSWER_CHARS = 2_000_000
MAX_RETRY_AFTER_SECONDS = 60.0
MAX_BACKOFF_SECONDS = 30.0
MAX_ERROR_CHARS = 500
#: HTTP statuses meaning the request was fine but the service is unavailable to us right now
#: (key revoked, balance exhausted, model gone): posts are retried later, not failed.
SERVICE_REFUSALS = (401, 402, 403, 404)


@dataclass
class _Item:
    """One distinct text to classify (posts with the same text share it)."""

    key: tuple[str, str | None]
    text: str
    langs: tuple[str, ...]


@dataclass
class _Reply:
    """What one request brought back."""

    outcome: str
    answers: dict[int, Classification] = field(default_factory=dict)
    error: str | None = None
    transient: bool = False      # back off, then ask again
    stop: bool = False           # do not ask again: fail the posts now
    retry_later: bool = False    # ... and let the pipeline retry them another time
    split: bool = False          # ask again in two halves (answer truncated, or filtered)
    retry_after: float | None = None


class AnswerCache:
    """A small thread-safe LRU of classifications by (text, media), within one process."""

    def __init__(self, size: int = 4096):
        self.size = size
        self._data: collections.OrderedDict = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key) -> Classification | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key, value: Classification) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)


class LlmClassifier:
    """The ``Classifier`` backed by an OpenAI-compatible chat API. One instance per process:
    it holds the HTTP connection pool, the thread pool and the answer cache."""

    def __init__(self, *, client: openai.OpenAI, model: str, redis: redis_lib.Redis,
                 record_call: Callable[[dict], None], prices: Prices, batch_size: int = 20,
                 max_concurrency: int = 8, daily_budget_usd: float | Decimal = 5.0, max_attempts: int = 4,
                 timeout_seconds: float = 60.0, disable_thinking: bool = False,
                 spend_today: Callable[[], Decimal] | None = None, backoff_seconds: float = 1.0,
                 slot_wait_seconds: float | None = None, sleep: Callable[[float], None] = time.sleep,
                 cache: AnswerCache | None = None, key_prefix: str = "cannect:llm"):
        self.client, self.model, self.prices = client, model, prices
        self.model_version = f"{model}:{prompt.PROMPT_VERSION}"
        self.record_call = record_call
        self.batch_size, self.max_attempts = batch_size, max_attempts
        self.disable_thinking = disable_thinking
        self.backoff_seconds, self.sleep = backoff_seconds, sleep
        self.slot_wait_seconds = slot_wait_seconds if slot_wait_seconds is not None else 2 * timeout_seconds + 10
        self.slots = RedisSemaphore(redis, f"{key_prefix}:slots", max_concurrency, lease_seconds=timeout_seconds + 15)
        self.spend = DailySpend(redis, f"{key_prefix}:spend", Decimal(str(daily_budget_usd)), seed=spend_today)
        self.cache = cache if cache is not None else AnswerCache()
        self._pool = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="llm-classify")

    @classmethod
    def from_settings(cls, settings, redis_client: redis_lib.Redis, record_call: Callable[[dict], None],
                      **options) -> "LlmClassifier":
        """The classifier the configuration describes. ``record_call`` receives each
        ``llm_calls`` row (``costs.db_recorder()`` writes them); ``options`` override
        constructor arguments (e.g. ``spend_today`` to seed the daily counter from the DB)."""
        if not settings.deepseek_api_key:
            raise ValueError("DEEPSEEK_API_KEY is not set: use the offline classifier")
        client = openai.OpenAI(api_key=settings.deepseek_api_key, base_url=settings.deepseek_base_url,
                               timeout=settings.llm_timeout_seconds, max_retries=0)
        arguments = dict(
            client=client, model=settings.deepseek_model, redis=redis_client, record_call=record_call,
            prices=Prices.from_settings(settings), batch_size=settings.llm_batch_size,
            max_concurrency=settings.llm_max_concurrency, daily_budget_usd=settings.llm_daily_budget_usd,
            max_attempts=settings.llm_max_attempts, timeout_seconds=settings.llm_timeout_seconds,
            disable_thinking=thinking_switch_wanted(settings))
        arguments.update(options)
        return cls(**arguments)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.client.close()

    # -- the Classifier protocol ---------------------------------------------------------------

    def classify(self, posts: Sequence[PostText]) -> Outcome:
        """A result per post, in input order; never raises for a bad post or a bad answer."""
        started = time.monotonic()
        found: dict[tuple, Classification | tuple[str, bool]] = {}
        pending: dict[tuple, _Item] = {}
        keys = []
        for post in posts:
            text, media = prompt.clean_text(post.text), _media(post)
            key = (text, media)
            keys.append(key)
            if key in found or key in pending:
                continue
            if not text:
                found[key] = _textless(media)
            elif (cached := self.cache.get(key)) is not None:
                found[key] = cached
            else:
                pending[key] = _Item(key, text, tuple(post.langs or ()))
        chunks = _chunks(list(pending.values()), self.batch_size)
        if len(chunks) == 1:
            found.update(self._classify_chunk(chunks[0]))
        else:
            for answers in self._pool.map(self._classify_chunk, chunks):
                found.update(answers)
        for key, value in found.items():
            if isinstance(value, Classification) and key in pending:
                self.cache.put(key, value)
        results: list[Classification | Failure] = []
        for post, key in zip(posts, keys):
            value = found[key]
            results.append(value if isinstance(value, Classification)
                           else Failure(post.key, value[0], retry_later=value[1]))
        return Outcome(results, self.model_version, int((time.monotonic() - started) * 1000))

    # -- one batch of distinct texts, asked until each has an answer or a reason ---------------

    def _classify_chunk(self, items: list[_Item]) -> dict[tuple, Classification | tuple[str, bool]]:
        done: dict[tuple, Classification | tuple[str, bool]] = {}
        queue = collections.deque([(items, 1)])
        while queue:
            batch, attempt = queue.popleft()
            try:
                reply = self._ask(batch, attempt)
            except Exception as exc:  # a bug or an unforeseen answer: these posts fail, the call goes on
                log.exception("LLM classification of %d posts failed", len(batch))
                reply = _Reply("invalid", error=f"unexpected error: {type(exc).__name__}: {_short(exc)}", stop=True)
            for number, classification in reply.answers.items():
                done[batch[number - 1].key] = classification
            left = [item for item in batch if item.key not in done]
            if not left:
                continue
            if reply.stop or attempt >= self.max_attempts:
                reason = reply.error if reply.stop else \
                    f"no valid LLM answer after {attempt} attempts; last: {reply.error}"
                for item in left:
                    done[item.key] = (reason, reply.retry_later or (not reply.stop and reply.transient))
                continue
            if reply.transient:
                self.sleep(self._backoff(attempt, reply.retry_after))
            if reply.split and len(left) > 1:
                middle = len(left) // 2
                queue.extend([(left[:middle], attempt + 1), (left[middle:], attempt + 1)])
            else:
                queue.append((left, attempt + 1))
        return done

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_AFTER_SECONDS)
        return min(self.backoff_seconds * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS) * random.uniform(0.5, 1.0)

    # -- one request ---------------------------------------------------------------------------

    def _ask(self, batch: list[_Item], attempt: int) -> _Reply:
        """Ask about ``batch`` once (ids 1..n), within the budget and a shared slot; log the call."""
        try:
            exhausted = self.spend.exhausted()
        except Exception as exc:  # Redis, or the database seeding today's counter
            return _Reply("network_error", error=f"cannot read today's LLM spend: {_short(exc)}", stop=True,
                          retry_later=True)
        if exhausted:
            reply = _Reply("spend_cap", error=f"daily LLM budget reached ({self.spend.budget} USD)", stop=True,
                           retry_later=True)
            self._record(len(batch), attempt, TokenUsage(), None, reply)
            return reply
        try:
            with self.slots.slot(self.slot_wait_seconds):
                started = time.monotonic()
                reply, usage = self._request(batch)
                latency_ms = int((time.monotonic() - started) * 1000)
        except SlotsBusy as busy:
            return _Reply("network_error", error=str(busy), stop=True, retry_later=True)
        except redis_lib.RedisError as exc:
            return _Reply("network_error", error=f"Redis unavailable for the LLM limits: {exc}", stop=True,
                          retry_later=True)
        cost = usage.cost(self.prices)
        try:
            self.spend.add(cost)
        except Exception as exc:  # Redis or the seeding database down: the answers still count
            log.warning("could not count %s USD of LLM spend: %s", cost, exc)
        self._record(len(batch), attempt, usage, latency_ms, reply)
        return reply

    def _request(self, batch: list[_Item]) -> tuple[_Reply, TokenUsage]:
        message = prompt.user_message([(number, item.text, item.langs, item.key[1])
                                       for number, item in enumerate(batch, start=1)])
        extra_body = {"thinking": {"type": "disabled"}} if self.disable_thinking else None
        try:
            completion = self.client.chat.completions.create(
                model=self.model, temperature=0, response_format={"type": "json_object"},
                max_tokens=min(MAX_OUTPUT_TOKENS, 256 + OUTPUT_TOKENS_PER_POST * len(batch)),
                messages=[{"role": "system", "content": prompt.SYSTEM_PROMPT},
                          {"role": "user", "content": message}],
                extra_body=extra_body)
        except openai.APITimeoutError:
            return _Reply("network_error", error="LLM request timed out", transient=True), TokenUsage()
        except openai.APIConnectionError as exc:
            return _Reply("network_error", error=f"cannot reach the LLM API: {_cause(exc)}", transient=True), \
                TokenUsage()
        except openai.APIStatusError as exc:
            return _status_reply(exc), TokenUsage()
        except (openai.OpenAIError, ValueError, TypeError) as exc:  # a 200 whose body is not a completion
            return _Reply("invalid", error=f"unreadable LLM response: {type(exc).__name__}: {_short(exc)}"), \
                TokenUsage()
        try:
            usage = usage_of(getattr(completion, "usage", None))
        except (TypeError, ValueError, AttributeError):
            usage = TokenUsage()
        choices = getattr(completion, "choices", None)
        choice = choices[0] if isinstance(choices, list) and choices else None
        message = getattr(choice, "message", None)
        if message is None:
            return _Reply("blank", error="LLM answer has no choices"), usage
        finish_reason = getattr(choice, "finish_reason", None)
        if finish_reason == "content_filter":
            return _Reply("refused", error="the LLM provider's content filter refused the request", split=True,
                          stop=len(batch) == 1), usage
        reply = read_answer(getattr(message, "content", None), len(batch))
        if finish_reason == "length" and len(reply.answers) < len(batch):
            reply.split = True
            reply.error = f"answer cut at the output token limit; {reply.error}"
        return reply, usage

    def _record(self, posts: int, attempt: int, usage: TokenUsage, latency_ms: int | None, reply: _Reply) -> None:
        row = dict(purpose=PURPOSE, model=self.model, posts=posts, attempt=min(attempt, 32767),
                   cache_hit_tokens=usage.cache_hit, cache_miss_tokens=usage.cache_miss, output_tokens=usage.output,
                   cost_usd=usage.cost(self.prices), latency_ms=latency_ms, outcome=reply.outcome,
                   error=reply.error[:MAX_ERROR_CHARS] if reply.error else None)
        try:
            self.record_call(row)
        except Exception:  # the log of a call must never cost the posts their answers
            log.exception("could not record an llm_calls row: %s", row)


# -- answers --------------------------------------------------------------------------------------

def read_answer(content: Any, posts: int) -> _Reply:
    """Valid classifications by request id (1..posts) from an answer's text; what was wrong."""
    if not isinstance(content, str) or not content.strip():
        return _Reply("blank", error="blank LLM answer")
    if len(content) > MAX_ANSWER_CHARS:
        return _Reply("invalid", error=f"LLM answer of {len(content)} characters")
    try:
        data = json.loads(content)
    except (ValueError, RecursionError):
        return _Reply("invalid", error=f"LLM answer is not JSON: {_short(content)!r}")
    results = data.get("results") if isinstance(data, dict) else data
    if not isinstance(results, list):
        return _Reply("invalid", error="LLM answer has no results list")
    answers: dict[int, Classification] = {}
    for entry in results[: posts * 4 + 32]:  # bounded work, whatever the answer's length
        number = _request_id(entry.get("id")) if isinstance(entry, dict) else None
        if number is None or not 1 <= number <= posts or number in answers:
            continue
        if any(name not in entry for name in prompt.REQUIRED_FIELDS):
            continue
        try:
            answers[number] = Classification.from_answer(entry)
        except (ValueError, ValidationError):
            continue
    if len(answers) == posts:
        return _Reply("ok", answers)
    return _Reply("invalid", answers, error=f"{posts - len(answers)} of {posts} posts missing or invalid in the answer")


def _request_id(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) < 6:
        return int(value.strip())
    return None


def _status_reply(exc: openai.APIStatusError) -> _Reply:
    status = exc.status_code
    what = f"LLM API answered {status}: {_short(_error_message(exc))}"
    if status == 429:
        return _Reply("rate_limited", error=what, transient=True, retry_after=_retry_after(exc.response))
    if status >= 500 or status in (408, 409):
        return _Reply("server_error", error=what, transient=True, retry_after=_retry_after(exc.response))
    return _Reply("refused", error=what, stop=True, retry_later=status in SERVICE_REFUSALS)


def _retry_after(response) -> float | None:
    value = response.headers.get("retry-after") if response is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


def _error_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return inner["message"]
    return str(exc.message)


def _cause(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    return f"{type(cause).__name__}: {_short(cause)}" if cause else _short(exc)


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 200 else text[:200] + "..."


# -- helpers ---------------------------------------------------------------------------------------

def thinking_switch_wanted(settings) -> bool:
    """Whether to send ``{"thinking": {"type": "disabled"}}``: DeepSeek's models think unless told
    not to (slow and billed as output); OpenAI rejects unknown body fields, so only for DeepSeek."""
    if settings.llm_disable_thinking != "auto":
        return settings.llm_disable_thinking == "always"
    host = urlsplit(settings.deepseek_base_url).hostname or ""
    return "deepseek" in settings.deepseek_model.lower() or "deepseek" in host.lower()


def _media(post: PostText) -> str | None:
    if post.embed_type:
        return post.embed_type.rsplit(".", 1)[-1][:40]
    return "media" if post.has_media else None


def _textless(media: str | None) -> Classification:
    """A post with no text: nothing to ask a model; an honest, zero-confidence answer."""
    return Classification(confidence=0, post_type="photo" if media in ("images", "media") else "other",
                          sentiment="neutral",
                          media_type=media, data_richness=1)


def _chunks(items: list, size: int) -> list[list]:
    return [items[start:start + size] for start in range(0, len(items), size)]
