"""Admin kind ``recompute``: rebuild intelligence from the stored posts, one step per chunk.

``what`` picks the steps: ``profiles`` (every author's profile from scratch), ``aggregates``
(brand/strain statistics, the time series of every period type over [``since``, ``until``),
by default the last :data:`DEFAULT_DAYS` days up to when the job was asked, trends, metric
snapshots, opportunities), ``views`` (the materialized views) or ``all``. Each step is the
function the scheduler's periodic job calls (tasks/views.py), in its own transaction, so it
recomputes from the posts as they are: a step run twice writes the same rows. A step whose
periodic run holds its lock at that moment is skipped by that function (the periodic run
computes the same thing); a full profile pass that finds one raises, and the chunk is retried.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Callable

from sqlalchemy.orm import Session

from services.intelligence import entities, metrics, opportunities, profiles, timeseries, trends, views

from .kinds import ChunkResult, InvalidParams, SessionFactory, register, require_known
from .reclassify import parse_time

DEFAULT_DAYS = 30
WHATS = ("profiles", "aggregates", "views", "all")
_KEYS = {"what", "since", "until"}


def _steps(params: dict) -> list[tuple[str, Callable[[Session], int]]]:
    since, until = datetime.fromisoformat(params["since"]), datetime.fromisoformat(params["until"])
    groups = {
        "profiles": [("profiles", profiles.recompute_all)],
        "aggregates": [("entities", entities.recompute),
                       *[(f"time_series_{period}",
                          lambda session, period=period: timeseries.recompute_on_demand(session, period, since, until))
                         for period in timeseries.PERIOD_TYPES],
                       ("trends", trends.compute), ("post_metrics", metrics.snapshot),
                       ("opportunities", opportunities.compute)],
        "views": [(view, lambda session, view=view: views.refresh(session, view)) for view in views.VIEWS],
    }
    chosen = ("profiles", "aggregates", "views") if params["what"] == "all" else (params["what"],)
    return [step for name in chosen for step in groups[name]]


class Recompute:
    name = "recompute"
    unit = "steps"

    def validate(self, params: dict) -> dict:
        require_known(params, _KEYS)
        what = params.get("what", "all")
        if what not in WHATS:
            raise InvalidParams(f"what must be one of {', '.join(WHATS)}")
        until = parse_time("until", params.get("until")) or datetime.now(timezone.utc)
        since = parse_time("since", params.get("since")) or until - timedelta(days=DEFAULT_DAYS)
        if since >= until:
            raise InvalidParams("since must be before until")
        return {"what": what, "since": since.isoformat(), "until": until.isoformat()}

    def plan(self, session: Session, params: dict) -> int | None:
        return len(_steps(params))

    def run_chunk(self, sessions: SessionFactory, params: dict, cursor: dict | None) -> ChunkResult:
        steps = _steps(params)
        index = (cursor or {}).get("step", 0)
        if index >= len(steps):
            return ChunkResult(0, None)
        name, work = steps[index]
        with sessions() as session:
            rows = work(session)
        following = {"step": index + 1} if index + 1 < len(steps) else None
        return ChunkResult(1, following, {"rows": {name: int(rows or 0)}})


KIND = register(Recompute())
