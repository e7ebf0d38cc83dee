"""Admin backfill kinds: work over stored (or external) data in resumable chunks.

An admin job (``backfill_jobs`` row with ``subject_did`` NULL) names a kind and its params. The
runner (``services/backfill/admin.py``, queue ``backfill``) calls the kind one chunk at a time:
each chunk is done in the kind's own transactions, must be idempotent (a chunk may run again
after a crash, before its cursor was stored), and returns where the next chunk starts. The
runner stores the cursor, adds ``processed`` to ``done`` and merges the chunk's ``report``
counters into the job's report, then sends the next chunk's message after its commit.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, ContextManager, Protocol

from sqlalchemy.orm import Session

SessionFactory = Callable[[], ContextManager[Session]]


class InvalidParams(ValueError):
    """The params of a job request are wrong; the message says which and why (shown to the admin)."""


def require_known(params: dict, known: set[str]) -> None:
    """:class:`InvalidParams` naming the params a kind does not take (a typo must not pass silently)."""
    unknown = set(params) - known
    if unknown:
        raise InvalidParams(f"unknown params {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")


class Busy(Exception):
    """Not now: the chunk would crowd live work (e.g. the classify queue is full). Nothing was
    done; the runner sends the same chunk again after ``seconds``, without spending a retry."""

    def __init__(self, seconds: float, reason: str):
        super().__init__(reason)
        self.seconds = seconds


@dataclass
class ChunkResult:
    """What one chunk did: units processed, the next cursor (None: the job is finished), and
    counters to add to the job's report (e.g. ``{"skipped": {"bad_date": 3}}``: nested dicts of
    ints are summed key by key)."""

    processed: int
    cursor: dict | None
    report: dict = field(default_factory=dict)


#: A report key (a list of post ids) that is not a counter: the posts the chunk newly indexed.
#: The runner takes it out of the report and the worker queues them for classification.
CLASSIFY_KEY = "_classify_post_ids"
#: Another: realtime events (``read_changed``, services/realtime.py) naming what the chunk's commits
#: changed, which the worker publishes after the chunk so the web processes' read caches drop it.
REALTIME_KEY = "_realtime_events"


class AdminKind(Protocol):
    """One kind of admin job."""

    #: The job's ``kind`` column and the CLI / API name, e.g. ``"legacy_import"``.
    name: str
    #: The unit of ``done`` / ``total`` ("posts", "events", "rows").
    unit: str

    def validate(self, params: dict) -> dict:
        """The params normalized (defaults filled in, types checked); :class:`InvalidParams` if wrong."""

    def plan(self, session: Session, params: dict) -> int | None:
        """The job's total in its unit (an estimate is fine), or None when it cannot be known."""

    def run_chunk(self, sessions: SessionFactory, params: dict, cursor: dict | None) -> ChunkResult:
        """Do the next chunk from ``cursor`` (None: from the start); idempotent."""


#: Live ingest batches that may wait on the ``ingest`` queue before a bulk writer pauses.
INGEST_BACKLOG_CEILING = 1
#: A bulk writer checks again after this long, and goes on anyway after ``MAX_PAUSE_SECONDS``
#: (so that a stuck ingest worker cannot stall an import forever).
PAUSE_SECONDS, MAX_PAUSE_SECONDS = 0.1, 5.0


@dataclass
class LiveLoad:
    """How far live ingest is behind, wired by the worker (services stay free of Dramatiq)."""

    #: Messages waiting or in flight on the ``ingest`` queue; None: unknown (never pause).
    ingest_waiting: Callable[[], int] | None = None


LIVE = LiveLoad()
log = logging.getLogger(__name__)


def yield_to_live_ingest() -> float:
    """Between two slices of a bulk write (legacy import, Jetstream replay): wait while live
    batches queue up, so a backfill gives the cores back to the stream; the seconds waited."""
    if LIVE.ingest_waiting is None:
        return 0.0
    started = time.monotonic()
    while time.monotonic() - started < MAX_PAUSE_SECONDS:
        try:
            if LIVE.ingest_waiting() <= INGEST_BACKLOG_CEILING:
                break
        except Exception:  # the queue's depth is advice: without it, go on
            log.debug("backfill: ingest queue depth unknown", exc_info=True)
            break
        time.sleep(PAUSE_SECONDS)
    return time.monotonic() - started


#: Kinds by name; each kind's module registers itself with :func:`register`.
KINDS: dict[str, AdminKind] = {}


def register(kind: AdminKind) -> AdminKind:
    KINDS[kind.name] = kind
    return kind
