"""Answers kept until the job behind them runs again.

Aggregates and materialized views change only when their job runs, and each run bumps the
job's row in ``intelligence_runs`` (``runs`` counter and ``finished_at``, written in the job's
own transaction). An answer is cached under (endpoint, parameters, those rows), and the first
request after a run computes it again. The version is read *before* computing, so a cached answer is never older
than its key says.

Whether a job ran is asked at most every ``B2B_CACHE_CHECK_SECONDS`` (default 1 s) per
process and set of jobs, so a hit usually costs no database round trip at all, and a refresh
shows within that second.

Search has no job: its answers are kept for ``B2B_SEARCH_CACHE_SECONDS`` (:func:`recent`).

The cache lives in process memory (each web worker its own, LRU-bounded, ``MAX_ENTRIES``).
Posts an answer names are not part of what is
trusted from the cache: callers look them up live (``posts.alive``), so a deleted post leaves
at once.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from typing import Callable, NamedTuple, TypeVar

import orjson
from sqlalchemy import text
from sqlalchemy.orm import Session

T = TypeVar("T")

MAX_ENTRIES = 2048

_VERSION = text("""SELECT coalesce(string_agg(job || '@' || runs || '@' || extract(epoch FROM finished_at), ','
                                              ORDER BY job), '')
                   FROM intelligence_runs WHERE job = ANY(CAST(:jobs AS text[]))""")

_entries: OrderedDict[tuple, object] = OrderedDict()
_versions: dict[tuple[str, ...], tuple[float, str]] = {}
_lock = threading.Lock()
stats = {"hits": 0, "misses": 0}


def _recent_reading(jobs: tuple[str, ...], max_age: float) -> str | None:
    """The last :func:`version` read for these jobs, if read less than ``max_age`` seconds ago."""
    seen = _versions.get(jobs)
    return seen[1] if seen is not None and time.monotonic() - seen[0] < max_age else None


def version(session: Session, jobs: tuple[str, ...], max_age: float = 0.0) -> str:
    """The runs of these jobs so far, as one string (empty before any ran); read again when the
    last reading is older than ``max_age`` seconds."""
    recent = _recent_reading(jobs, max_age)
    if recent is not None:
        return recent
    value = session.execute(_VERSION, {"jobs": list(jobs)}).scalar() or ""
    _versions[jobs] = (time.monotonic(), value)
    return value


def _check_seconds() -> float:
    from cannect.config import get_settings

    return get_settings().b2b_cache_check_seconds


def unchanged(jobs: tuple[str, ...], seen: str) -> bool:
    """Whether ``jobs`` have not run since ``seen`` (a :func:`version`), as this process last
    read it within the check interval; no database round trip (the reading is not renewed)."""
    return MAX_ENTRIES > 0 and _recent_reading(jobs, _check_seconds()) == seen


def answer(session: Session, name: str, params: dict, jobs: tuple[str, ...], compute: Callable[[Session], T]) -> T:
    """``compute(session)``, or its cached result while ``jobs`` have not run again.

    The result is shared between requests: callers build new objects from it, never change it.
    ``MAX_ENTRIES = 0`` turns the cache off (benchmarks measure what it saves).
    """
    return _answer(session, name, params, jobs, compute)[0]


def _answer(session: Session, name: str, params: dict, jobs: tuple[str, ...], compute: Callable[[Session], T]
            ) -> tuple[T, str | None]:
    """:func:`answer` and the version it is cached under (None: the cache is off)."""
    if MAX_ENTRIES <= 0:
        return compute(session), None
    current = version(session, jobs, _check_seconds())
    key = (name, json.dumps(params, sort_keys=True, default=str), current)
    found = _lookup(key)
    if found is not None:
        stats["hits"] += 1
        return found[0], current  # type: ignore[return-value]
    result = compute(session)
    _store(key, (result,))
    return result, current


def recent(name: str, params: dict, seconds: float, compute: Callable[[], T]) -> T:
    """``compute()``, or its result computed at most ``seconds`` ago (0: not cached).

    For answers over tables that change all the time, where no job run marks a change (search
    over every classified post): an answer may miss what arrived in its last ``seconds``.
    """
    if MAX_ENTRIES <= 0 or seconds <= 0:
        return compute()
    key = (name, json.dumps(params, sort_keys=True, default=str), "recent")
    found = _lookup(key)
    if found is not None and time.monotonic() - found[1] < seconds:
        stats["hits"] += 1
        return found[0]  # type: ignore[return-value]
    computed_at = time.monotonic()  # before computing: the age counts what it may have missed
    result = compute()
    _store(key, (result, computed_at))
    return result


def _lookup(key: tuple) -> tuple | None:
    with _lock:
        found = _entries.get(key)
        if found is not None:
            _entries.move_to_end(key)
        return found  # type: ignore[return-value]


def _store(key: tuple, entry: tuple) -> None:
    with _lock:
        stats["misses"] += 1
        _entries[key] = entry
        while len(_entries) > MAX_ENTRIES:
            _entries.popitem(last=False)


class JsonAnswer(NamedTuple):
    """An answer's JSON body, the jobs behind it and the :func:`version` of their runs it is
    cached under (None when the cache is off). While :func:`unchanged` says so, the same
    parameters give the same body: the web process may replay it without asking again."""

    body: bytes
    jobs: tuple[str, ...]
    version: str | None


def answer_json(session: Session, name: str, params: dict, jobs: tuple[str, ...],
                compute: Callable[[Session], object]) -> JsonAnswer:
    """:func:`answer` for an answer served as it is: kept as its JSON body (what Flask's JSON
    provider sends, orjson and a newline), so that a hit serializes nothing."""
    body, current = _answer(session, name + ".json", params, jobs, lambda s: orjson.dumps(compute(s)) + b"\n")
    return JsonAnswer(body, jobs, current)


def clear() -> None:
    with _lock:
        _entries.clear()
        _versions.clear()
