"""Apply listener batches to the index exactly once and in stream order.

A batch is ``{"conn": int, "seq": int, "prev": [conn, seq] | None, "events": [...]}``:
``conn`` identifies one listener connection (it only grows), ``seq`` numbers the batches of
that connection from 1, and a connection's first batch names in ``prev`` the last batch
enqueued before it. Workers may take batches in any order and any number of times; here,
under a row lock on ``ingest_state``:

- a batch already applied, or from a connection a newer one has replaced, is dropped;
- a batch whose predecessor has not been applied yet is parked in ``ingest_pending``;
- otherwise its events are applied, then any parked batches that have become next.

A reconnect replays a few seconds already seen; those events are recognised by their
``time_us`` in ``ingest_recent`` and skipped. A parked batch whose predecessor never comes
(its message was lost with the broker's data) is applied after ``gap_timeout`` seconds.

One bad event never costs another: the events are applied inside a savepoint, and if that
fails for a reason belonging to the events (:func:`deadletters.is_event_error`), the batch is
split in halves, in stream order, each applied in its own savepoint, down to the single
events that fail; those go to ``ingest_dead_letters`` and the batch counts as applied, so the
chain moves on at once. A dead-lettered event counts as seen: its ``time_us`` stays in
``ingest_recent`` and a replay skips it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import orjson
from sqlalchemy import delete, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from models import IngestPending, IngestState
from services.jetstream import PURGE_STATUSES

from . import deadletters
from .changes import Changes, Run
from .params import arrays
from .purge import purge_account
from .view import load_view
from .writes import write_changes, write_tombstones

STREAM = "jetstream"
#: How long applied event ids are remembered: far more than the listener's rewind.
RECENT_WINDOW_US = 120 * 1_000_000
#: How long stream deletes are remembered for backfills (docs/indexing-rules.md, "Backfilled
#: records"): far more than a backfill page takes from its fetch to its commit.
TOMBSTONE_WINDOW_US = 6 * 3600 * 1_000_000
#: Dead letters logged one by one per batch; the rest are counted in one line.
LOGGED_DEAD_LETTERS = 10

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What one call did: its verdict on the batch, and what was applied (drained ones too)."""

    verdict: str
    batches: int = 0
    events: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    indexed_posts: list[str] = field(default_factory=list)
    # The net changes of each run applied, for realtime events built before commit.
    changes: list[Changes] = field(default_factory=list)


def ingest_batch(session: Session, batch: dict, cannabis_tags: frozenset[str], gap_timeout: float = 300.0) -> Outcome:
    state = _lock_state(session)
    key = (batch["conn"], batch["seq"], *(batch.get("prev") or (None, None)))
    outcome = Outcome(_verdict(state, *key))
    if outcome.verdict == "apply":
        _apply(session, state, key, batch["events"], cannabis_tags, outcome)
    elif outcome.verdict == "wait":
        _park(session, key, batch["events"])
    _drain(session, state, cannabis_tags, gap_timeout, outcome)
    return outcome


def drain_parked(session: Session, cannabis_tags: frozenset[str], gap_timeout: float = 300.0) -> Outcome:
    """Apply parked batches that are due, even when no new batch arrives to trigger it."""
    outcome = Outcome("drain")
    _drain(session, _lock_state(session), cannabis_tags, gap_timeout, outcome)
    return outcome


def read_state(session: Session) -> IngestState | None:
    """The last applied batch and high-water time, for status and for a listener without a cursor."""
    return session.get(IngestState, STREAM)


def lock_index(session: Session) -> IngestState:
    """Take the ingest lock (until the transaction ends) to apply events from outside the stream.

    An app action applies the event of the record it just wrote while holding it, so that
    action and a concurrent batch carrying the same record never both count it: whichever
    comes second finds the URI stored and skips it.
    """
    return _lock_state(session)


def _lock_state(session: Session) -> IngestState:
    session.execute(insert(IngestState).values(stream=STREAM).on_conflict_do_nothing())
    _plan_for_each_batch(session)
    return session.execute(select(IngestState).where(IngestState.stream == STREAM).with_for_update()).scalar_one()


def _plan_for_each_batch(session: Session) -> None:
    """Plan this transaction's statements for the arrays they are given, not once for all.

    psycopg prepares a statement after a few runs, and PostgreSQL then settles on a generic
    plan that cannot see the array size: ``uri = ANY($1)`` over a table of a few thousand
    rows became a sequential scan comparing each row with every element of a 700-element
    array (20 ms, where a custom plan hashes the array: 1 ms). Planning each statement costs
    far less (docs/performance.md, "Ingest"). ``SET LOCAL`` ends with the transaction.
    """
    session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))


def _verdict(state: IngestState, conn: int, seq: int, prev_conn: int | None, prev_seq: int | None) -> str:
    if state.conn is None:  # nothing applied yet: only a first batch with no predecessor can start
        return "apply" if seq == 1 and prev_conn is None else "wait"
    if conn < state.conn:
        return "superseded"
    if conn == state.conn:
        return "duplicate" if seq <= state.seq else "apply" if seq == state.seq + 1 else "wait"
    if seq != 1:
        return "wait"
    if prev_conn is None or prev_conn < state.conn or (prev_conn == state.conn and prev_seq <= state.seq):
        return "apply"
    return "wait"


def _apply(session: Session, state: IngestState, key: tuple, events: list, tags: frozenset[str],
           outcome: Outcome) -> None:
    # An event without a time_us PostgreSQL can store cannot even be deduplicated.
    malformed = [(e, "malformed event: no usable time_us") for e in events if deadletters.time_us_of(e) is None]
    fresh = _first_sightings(session, [e for e in events if deadletters.time_us_of(e) is not None])
    duplicates = len(events) - len(malformed) - len(fresh)
    applied: list[Changes] = []
    failed: list[tuple[dict, str]] = []
    _apply_isolating(session, fresh, tags, applied, failed)
    _dead_letter(session, key, malformed + failed)
    for changes in applied:
        outcome.indexed_posts += changes.indexed_posts
        outcome.changes.append(changes)
    done, dead = len(fresh) - len(failed), len(malformed) + len(failed)
    outcome.batches += 1
    outcome.events += done
    outcome.duplicates += duplicates
    outcome.dead_lettered += dead
    state.conn, state.seq = key[0], key[1]
    state.applied_time_us = max([state.applied_time_us, *(e["t"] for e in fresh)])
    state.batches_applied += 1
    state.events_applied += done
    state.duplicates_skipped += duplicates
    state.events_dead_lettered += dead
    state.updated_at = datetime.now(timezone.utc)
    session.execute(text("DELETE FROM ingest_recent WHERE stream = :stream AND time_us < :floor"),
                    {"stream": STREAM, "floor": state.applied_time_us - RECENT_WINDOW_US})
    session.execute(text("DELETE FROM record_tombstones WHERE time_us < :floor"),
                    {"floor": state.applied_time_us - TOMBSTONE_WINDOW_US})


def _apply_isolating(session: Session, events: list[dict], tags: frozenset[str], applied: list[Changes],
                     failures: list[tuple[dict, str]]) -> None:
    """Apply ``events`` in order; the ones that fail on their own go to ``failures``.

    Each attempt runs in a savepoint. On an event error the savepoint is rolled back and the
    halves are tried in turn, so the good events are applied in stream order and each sees the
    state the ones before it left, exactly as if the bad ones had never been in the batch.
    Any other error (connection, deadlock, timeout) propagates and the whole batch retries.
    """
    if not events:
        return
    try:
        with session.begin_nested():
            changes = apply_events(session, events, tags)
    except Exception as exc:
        if not deadletters.is_event_error(exc):
            raise
        if len(events) == 1:
            failures.append((events[0], deadletters.describe_error(exc)))
            return
        middle = len(events) // 2
        _apply_isolating(session, events[:middle], tags, applied, failures)
        _apply_isolating(session, events[middle:], tags, applied, failures)
        return
    applied.extend(changes)


def _dead_letter(session: Session, key: tuple, failures: list[tuple[dict, str]]) -> None:
    """Keep the events left out of batch ``key``, naming each (never its record) in the log."""
    for n, (event, reason) in enumerate(failures):
        letter_id = deadletters.record(session, STREAM, key[0], key[1], event, reason)
        if n < LOGGED_DEAD_LETTERS:
            log.error("ingest %s/%s: event %s left out as dead letter %d: %s",
                      key[0], key[1], deadletters.EventLabel.of(event), letter_id, reason)
    if len(failures) > LOGGED_DEAD_LETTERS:
        log.error("ingest %s/%s: %d more events left out as dead letters (cannect deadletters list)",
                  key[0], key[1], len(failures) - LOGGED_DEAD_LETTERS)


def _first_sightings(session: Session, events: list[dict]) -> list[dict]:
    """The events whose time_us was never applied before, in their order, each once."""
    if not events:
        return []
    new = set(session.execute(text(
        "INSERT INTO ingest_recent (stream, time_us) SELECT :stream, unnest(CAST(:ids AS bigint[])) "
        "ON CONFLICT DO NOTHING RETURNING time_us"),
        arrays({"stream": STREAM, "ids": [e["t"] for e in events]})).scalars())
    fresh = []
    for event in events:
        if event["t"] in new:
            new.discard(event["t"])
            fresh.append(event)
    return fresh


def apply_events(session: Session, events: list[dict], tags: frozenset[str]) -> list[Changes]:
    """Apply events in order; returns the net changes of each run (see below).

    Events are applied in runs: each run reads its slice of the index once, plays its events
    in memory and writes the net result. An account purge ends a run, since it touches rows
    no run has loaded.
    """
    applied: list[Changes] = []
    start = 0
    for i, event in enumerate(events + [None]):
        purge = event is not None and event["k"] == "account" and event.get("status") in PURGE_STATUSES
        if event is None or purge:
            run_events = events[start:i]
            if run_events:
                run = Run(load_view(session, run_events), tags)
                for e in run_events:
                    run.apply(e)
                write_changes(session, run.changes)
                applied.append(run.changes)
            if purge:
                applied.append(purge_account(session, event["did"]))  # its deletions, for realtime
                write_tombstones(session, {event["did"]: event["t"]})  # no backfill brings it back
            start = i + 1
    return applied


def _park(session: Session, key: tuple, events: list[dict]) -> None:
    conn, seq, prev_conn, prev_seq = key
    session.execute(insert(IngestPending).values(
        stream=STREAM, conn=conn, seq=seq, prev_conn=prev_conn, prev_seq=prev_seq,
        events=orjson.dumps(events)).on_conflict_do_nothing())


def _drain(session: Session, state: IngestState, tags: frozenset[str], gap_timeout: float, outcome: Outcome) -> None:
    """Apply parked batches that have become next; accept a gap when one waited too long."""
    while True:
        parked = session.execute(select(IngestPending.conn, IngestPending.seq, IngestPending.prev_conn,
                                        IngestPending.prev_seq, IngestPending.staged_at)
                                 .where(IngestPending.stream == STREAM)
                                 .order_by(IngestPending.conn, IngestPending.seq)).all()
        if not parked:
            return
        verdicts = [(_verdict(state, *row[:4]), row) for row in parked]
        stale = [row[:2] for verdict, row in verdicts if verdict in ("duplicate", "superseded")]
        ready = next((row for verdict, row in verdicts if verdict == "apply"), None)
        if ready is None:
            deadline = datetime.now(timezone.utc) - timedelta(seconds=gap_timeout)
            ready = next((row for verdict, row in verdicts if verdict == "wait" and row[4] < deadline), None)
            if ready is not None:
                log.error("ingest: batch %s/%s waited %.0fs for its predecessor; applying it over the gap",
                          ready[0], ready[1], gap_timeout)
                state.gaps_accepted += 1
        if ready is None:
            _delete_parked(session, stale)
            return
        events = orjson.loads(session.execute(select(IngestPending.events).where(
            IngestPending.stream == STREAM, IngestPending.conn == ready[0], IngestPending.seq == ready[1])).scalar_one())
        _delete_parked(session, stale + [ready[:2]])
        _apply(session, state, tuple(ready[:4]), events, tags, outcome)


def _delete_parked(session: Session, keys: list[tuple[int, int]]) -> None:
    for conn, seq in keys:
        session.execute(delete(IngestPending).where(IngestPending.stream == STREAM, IngestPending.conn == conn,
                                                    IngestPending.seq == seq))
