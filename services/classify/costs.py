"""What LLM calls cost: tokens from a provider's ``usage``, dollars at configured prices, and
the sums ``cannect status`` and ``/metrics`` show (spend today, cost per 1,000 posts).

Every request is one ``llm_calls`` row (see :func:`db_recorder`), retries and refusals
included, so the sums are what the provider bills, not what a happy path would cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable

from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session

from models.intelligence import LlmCall

MILLION = Decimal(1_000_000)
#: ``cost_usd`` is NUMERIC(12, 6): a millionth of a dollar.
MICRO_USD = Decimal("0.000001")


@dataclass(frozen=True)
class Prices:
    """USD per million tokens."""

    input_cache_hit: Decimal
    input_cache_miss: Decimal
    output: Decimal

    @classmethod
    def from_settings(cls, settings) -> "Prices":
        return cls(Decimal(str(settings.llm_price_input_cache_hit)), Decimal(str(settings.llm_price_input_cache_miss)),
                   Decimal(str(settings.llm_price_output)))


@dataclass(frozen=True)
class TokenUsage:
    cache_hit: int = 0
    cache_miss: int = 0
    output: int = 0

    def cost(self, prices: Prices) -> Decimal:
        total = (self.cache_hit * prices.input_cache_hit + self.cache_miss * prices.input_cache_miss
                 + self.output * prices.output) / MILLION
        return total.quantize(MICRO_USD)


#: Largest token count believed (an INTEGER column; a server reporting more is broken).
MAX_TOKENS = 2_147_483_647


def _count(value: Any) -> int:
    return min(value, MAX_TOKENS) if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def usage_of(usage: Any) -> TokenUsage:
    """Tokens of an answer's ``usage`` (an SDK object or a dict), whichever provider sent it.

    DeepSeek reports ``prompt_cache_hit_tokens`` / ``prompt_cache_miss_tokens``; OpenAI (and
    most compatible servers) ``prompt_tokens_details.cached_tokens`` within ``prompt_tokens``.
    """
    if usage is None:
        return TokenUsage()
    if not isinstance(usage, dict):
        usage = usage.model_dump() if hasattr(usage, "model_dump") else dict(vars(usage))
    prompt = _count(usage.get("prompt_tokens"))
    output = _count(usage.get("completion_tokens"))
    if "prompt_cache_hit_tokens" in usage or "prompt_cache_miss_tokens" in usage:
        hit = _count(usage.get("prompt_cache_hit_tokens"))
        miss = _count(usage.get("prompt_cache_miss_tokens")) if "prompt_cache_miss_tokens" in usage \
            else max(prompt - hit, 0)
        return TokenUsage(hit, miss, output)
    details = usage.get("prompt_tokens_details") or {}
    hit = min(_count(details.get("cached_tokens") if isinstance(details, dict) else 0), prompt)
    return TokenUsage(hit, prompt - hit, output)


def db_recorder(session_factory: Callable[[], Any] | None = None) -> Callable[[dict], None]:
    """A ``record_call`` for :class:`~services.classify.llm.LlmClassifier` that writes each
    ``llm_calls`` row in its own short transaction (``session_scope`` by default): the log of
    spend must not depend on whether the caller's transaction commits."""
    if session_factory is None:
        from services.db import session_scope as session_factory

    def record_call(row: dict) -> None:
        with session_factory() as session:
            session.execute(insert(LlmCall).values(**row))

    return record_call


def db_spend_today(session_factory: Callable[[], Any] | None = None) -> Callable[[], Decimal]:
    """A ``spend_today`` for :class:`~services.classify.llm.LlmClassifier`: seeds the day's
    Redis spend counter from ``llm_calls`` when the counter is missing (Redis restarted)."""
    if session_factory is None:
        from services.db import session_scope as session_factory

    def read() -> Decimal:
        with session_factory() as session:
            return spend_today(session)

    return read


def spend_today(session: Session, purpose: str | None = None) -> Decimal:
    """USD spent since midnight UTC (by ``llm_calls``)."""
    query = select(func.coalesce(func.sum(LlmCall.cost_usd), 0)).where(
        LlmCall.called_at >= text("date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"))
    if purpose:
        query = query.where(LlmCall.purpose == purpose)
    return Decimal(session.scalar(query))


@dataclass(frozen=True)
class LlmUsage:
    """Sums over ``llm_calls`` since a time: for ``cannect status``, ``/metrics`` and benchmarks."""

    calls: int
    failed_calls: int
    posts: int              # posts of the requests fully answered (outcome ok)
    cache_hit_tokens: int
    cache_miss_tokens: int
    output_tokens: int
    cost_usd: Decimal

    @property
    def cost_per_1000_posts(self) -> Decimal | None:
        return (self.cost_usd * 1000 / self.posts).quantize(MICRO_USD) if self.posts else None

    @property
    def cache_hit_ratio(self) -> float | None:
        total = self.cache_hit_tokens + self.cache_miss_tokens
        return self.cache_hit_tokens / total if total else None


def usage_since(session: Session, since: datetime, purpose: str = "classify") -> LlmUsage:
    """Totals of the calls made for ``purpose`` since ``since`` (all of them, failures too:
    they are billed)."""
    ok = LlmCall.outcome == "ok"
    row = session.execute(
        select(func.count(), func.count().filter(~ok), func.coalesce(func.sum(LlmCall.posts).filter(ok), 0),
               func.coalesce(func.sum(LlmCall.cache_hit_tokens), 0),
               func.coalesce(func.sum(LlmCall.cache_miss_tokens), 0),
               func.coalesce(func.sum(LlmCall.output_tokens), 0), func.coalesce(func.sum(LlmCall.cost_usd), 0))
        .where(LlmCall.called_at >= since, LlmCall.purpose == purpose)).one()
    return LlmUsage(int(row[0]), int(row[1]), int(row[2]), int(row[3]), int(row[4]), int(row[5]), Decimal(row[6]))


def cost_per_1000_posts(session: Session, since: datetime, purpose: str = "classify") -> Decimal | None:
    """USD per 1,000 posts classified since ``since``: every call's cost (failed and retried
    ones too) over the posts of the answered calls. ``None`` before the first answer."""
    return usage_since(session, since, purpose).cost_per_1000_posts
