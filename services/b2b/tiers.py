"""Plans: what each tier may call and how much, and the endpoint names a plan can list.

An endpoint name is the first path segment after ``/api/v1/`` (``/api/v1/trends/effects`` is
``trends``). ``usage`` is not listed: every client may read its own usage. A client's row
holds its effective quota, rate and endpoints, copied from its tier when created or moved to
a tier and overridable one by one: a change of these defaults never silently changes a
contract already sold.

| tier       | calls per month | calls per minute | endpoints |
|------------|-----------------|------------------|-----------|
| starter    | 10,000          | 60               | segments, trends, brands, strains, timeseries |
| growth     | 100,000         | 300              | starter's + intents, opportunities, insights, search, webhooks |
| enterprise | 1,000,000       | 1,200            | all, profiles included |
| custom     | given           | given            | given (all when not given) |
"""

from __future__ import annotations

from dataclasses import dataclass

ENDPOINTS = ("segments", "trends", "intents", "opportunities", "profiles", "brands", "strains",
             "timeseries", "insights", "search", "webhooks")
#: Endpoints every authenticated client may call whatever its plan.
ALWAYS_ALLOWED = frozenset({"usage"})

_STARTER = ("segments", "trends", "brands", "strains", "timeseries")
_GROWTH = _STARTER + ("intents", "opportunities", "insights", "search", "webhooks")


@dataclass(frozen=True)
class Plan:
    monthly_quota: int
    rate_limit_per_min: int
    allowed_endpoints: tuple[str, ...]


TIERS: dict[str, Plan | None] = {
    "starter": Plan(10_000, 60, _STARTER),
    "growth": Plan(100_000, 300, _GROWTH),
    "enterprise": Plan(1_000_000, 1_200, ENDPOINTS),
    "custom": None,  # quota and rate must be given
}

MAX_QUOTA = 2_000_000_000  # fits the INTEGER column
MAX_RATE = 100_000  # per minute; see limits.py on precision


class PlanError(ValueError):
    """A tier, quota, rate or endpoint list that cannot be sold: the message says which."""


def resolve_plan(tier: str, monthly_quota: int | None = None, rate_limit_per_min: int | None = None,
                 allowed_endpoints: list[str] | tuple[str, ...] | None = None) -> Plan:
    """The tier's defaults with the given overrides applied, validated."""
    if tier not in TIERS:
        raise PlanError(f"unknown tier {tier!r}: one of {', '.join(TIERS)}")
    base = TIERS[tier]
    if base is None and (monthly_quota is None or rate_limit_per_min is None):
        raise PlanError("a custom tier needs both a monthly quota and a rate limit per minute")
    quota = monthly_quota if monthly_quota is not None else base.monthly_quota
    rate = rate_limit_per_min if rate_limit_per_min is not None else base.rate_limit_per_min
    if not 1 <= quota <= MAX_QUOTA:
        raise PlanError(f"monthly quota must be between 1 and {MAX_QUOTA:,}")
    if not 1 <= rate <= MAX_RATE:
        raise PlanError(f"rate limit must be between 1 and {MAX_RATE:,} calls per minute")
    if allowed_endpoints is None:
        endpoints = base.allowed_endpoints if base is not None else ENDPOINTS
    else:
        unknown = sorted(set(allowed_endpoints) - set(ENDPOINTS))
        if unknown:
            raise PlanError(f"unknown endpoints {', '.join(map(repr, unknown))}: choose from {', '.join(ENDPOINTS)}")
        endpoints = tuple(e for e in ENDPOINTS if e in set(allowed_endpoints))  # canonical order, no repeats
    return Plan(quota, rate, endpoints)
