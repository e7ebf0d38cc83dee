"""Time ranges of B2B queries: defaults relative to now, and the longest span one call may ask.

A range left open (``until`` not given) means "up to now", evaluated when the answer is
computed; the cache keys such answers by the open range, so they are reused until the job
behind them runs again instead of being recomputed for every new "now".
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from services.intelligence.base import utcnow

#: Times a query may name (older or later ones cannot hold posts, and would overflow date arithmetic).
EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(2200, 1, 1, tzinfo=timezone.utc)

#: The longest range one call may ask (the aggregates' questions scan the posts of the range).
MAX_SPAN = timedelta(days=366)


def resolve(since: datetime | None, until: datetime | None, default_span: timedelta) -> tuple[datetime, datetime]:
    """``[since, until)`` with the defaults filled in: until now, since ``default_span`` before until."""
    until = until or utcnow()
    return since or until - min(default_span, MAX_SPAN), until


def check(since: datetime | None, until: datetime | None, max_span: timedelta = MAX_SPAN) -> None:
    """Raises ValueError for a naive time, an empty range or one longer than ``max_span``."""
    for moment in (since, until):
        if moment is not None and moment.tzinfo is None:
            raise ValueError("times need a zone (e.g. 2026-12-01T00:00:00Z)")
        if moment is not None and not EARLIEST <= moment <= LATEST:
            raise ValueError(f"times between {EARLIEST.year} and {LATEST.year}")
    if since is not None and (until or utcnow()) <= since:
        raise ValueError("'until' (default: now) must be after 'since'")
    if since is not None and (until or utcnow()) - since > max_span:
        raise ValueError(f"a range spans at most {max_span.days} days")
