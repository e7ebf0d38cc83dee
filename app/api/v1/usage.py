"""``GET /api/v1/usage``: a client's own calls per day and endpoint, and its quota this month.

The caller is the key's client and nobody else: there is no client parameter to change.
Calls reach the table through the usage buffer within seconds (``tasks/b2b.py``); the quota
figures are live.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

from flask import current_app
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.b2b import usage
from services.db import session_scope

from ...extensions import get_redis
from ...schemas import QueryModel
from .access import B2B_ERRORS, B2B_SECURITY, LIMIT_HEADERS, current_client

api = APIBlueprint("b2b_usage", __name__, url_prefix="/api/v1",
                   abp_tags=[Tag(name="b2b", description="B2B intelligence API (API keys)")])

MAX_DAYS = 366


class UsageQuery(QueryModel):
    model_config = ConfigDict(extra="forbid")

    start: date | None = Field(None, alias="from", description="First UTC day (YYYY-MM-DD); default: the 1st of this month")
    end: date | None = Field(None, alias="to", description="Last UTC day, included (YYYY-MM-DD); default: today")

    @model_validator(mode="after")
    def _range(self):
        if self.start and self.end and self.end < self.start:
            raise ValueError("'to' is before 'from'")
        if self.start and self.end and (self.end - self.start).days >= MAX_DAYS:
            raise ValueError(f"at most {MAX_DAYS} days at a time")
        if self.start and not 2000 <= self.start.year <= 9000 or self.end and not 2000 <= self.end.year <= 9000:
            raise ValueError("days between the years 2000 and 9000")
        return self


class UsageDay(BaseModel):
    day: str = Field(description="UTC day, YYYY-MM-DD")
    endpoint: str = Field(description="Route under /api/v1, e.g. /trends")
    calls: int
    errors: int = Field(description="Calls answered with a status of 400 or more")
    avgResponseMs: float | None


class Quota(BaseModel):
    month: str = Field(description="YYYY-MM (UTC)")
    limit: int | None = Field(description="Calls per month; null: no monthly cap")
    used: int = Field(description="Calls counted this month (403 and 429 answers do not count)")
    remaining: int | None
    resetsAt: str


class UsageResponse(BaseModel):
    model_config = ConfigDict(openapi_extra={"headers": LIMIT_HEADERS, "examples": {"thisMonth": {"value": {
        "from": "2026-12-01T00:00:00+00:00", "to": "2026-12-02T00:00:00+00:00",
        "days": [{"day": "2026-12-01", "endpoint": "/trends", "calls": 120, "errors": 2, "avgResponseMs": 14.5}],
        "totalCalls": 120,
        "quota": {"month": "2026-12", "limit": 10000, "used": 121, "remaining": 9879,
                  "resetsAt": "2027-01-01T00:00:00+00:00"},
        "rateLimitPerMinute": 60}}}})

    from_: str = Field(alias="from")
    to: str
    days: list[UsageDay]
    totalCalls: int
    quota: Quota
    rateLimitPerMinute: int


def day_range(start: date | None, end: date | None) -> tuple[datetime | None, datetime | None]:
    """``[first day 00:00, day after the last 00:00)`` in UTC (None: the report's default)."""
    lo = datetime.combine(start, time(), timezone.utc) if start else None
    hi = datetime.combine(end + timedelta(days=1), time(), timezone.utc) if end else None
    return lo, hi


@api.get("/usage", security=B2B_SECURITY, responses={200: UsageResponse, **B2B_ERRORS})
def get_usage(query: UsageQuery):
    """Your own calls per UTC day and endpoint, and your monthly quota: used and remaining.

    Always allowed, whatever the plan. Calls appear here within seconds.
    """
    client = current_client()
    start, end = day_range(query.start, query.end)
    held = current_app.extensions["b2b_gate"].held(client.client_id)  # leased here, not used yet
    with session_scope() as session:
        return usage.report(session, get_redis(), client.client_id, client.monthly_quota,
                            client.rate_limit_per_min, start, end, held=held)
