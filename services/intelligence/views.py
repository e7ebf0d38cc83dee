"""The seed's materialized views, refreshed concurrently (readers never wait for a refresh).

Each view has a unique index (migration 0010), which ``REFRESH ... CONCURRENTLY`` needs. The
views filter on ``now()`` (30 days, 7 days, 24 hours), so a refresh also ages old posts out;
deleted posts leave at the next refresh.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from . import runs
from .base import roomy, try_job_lock

#: View name → seconds between refreshes (the seed's cadence).
VIEWS = {
    "mv_consumer_segments": 3600,
    "mv_trending_effects": 3600,
    "mv_high_intent_users": 900,
}


def refresh(session: Session, view: str) -> int:
    """Refresh one view concurrently; its row count afterwards (0 if another refresh runs)."""
    if view not in VIEWS:
        raise ValueError(f"unknown materialized view {view!r}; known: {', '.join(VIEWS)}")
    if not try_job_lock(session, view):
        return 0
    with runs.recorded(session, view) as tally:
        roomy(session)
        session.execute(text(f"REFRESH MATERIALIZED VIEW CONCURRENTLY {view}"))
        tally.rows = session.execute(text(f"SELECT count(*) FROM {view}")).scalar()
    return tally.rows
