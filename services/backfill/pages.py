"""Fetch one page of a chunk and apply it to the index through the ingest rules.

The fetch happens with no transaction open. The page is then applied in one transaction
that locks the chunk (a repeated message finds the page already committed and writes
nothing), then takes a lock only pages share (so however many backfill threads run, at most
one page waits for the ingest lock and a live batch waits behind one page commit at most),
then the ingest lock (``services.ingest.lock_index``), so backfilled records
and live batches are applied one after the other, each seeing what the other stored: a
record seen both ways is stored once, and a stream delete committed first leaves a
tombstone the backfilled copy cannot pass (docs/indexing-rules.md, "Backfilled records").
Every fetched record is checked at the edge exactly like a streamed one
(``services.jetstream.parse_event``); those it rejects are counted as skipped.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import orjson
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from models import BackfillChunk, BackfillJob
from models.backfill import OPEN_STATUSES
from services.identity import IdentityResolver, Unreachable as IdentityUnreachable
from services.ingest import apply_events, deadletters, lock_index
from services.ingest.changes import Changes
from services.jetstream import FOLLOW, POST, Skip, parse_datetime, parse_event

from . import jobs
from .fetch import Gone, TryLater, XrpcFetcher
from .sources import Fetched, Page, author_feed, list_records

log = logging.getLogger(__name__)

#: The lock only page commits share, taken before the ingest lock (see the module docstring).
_COMMIT_LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended('cannect:backfill:commit', 0))")


@dataclass(frozen=True)
class PageSettings:
    appview_url: str
    posts_source: str
    page_size: int
    window: timedelta
    max_posts: int
    cannabis_tags: frozenset[str]
    max_event_bytes: int

    @classmethod
    def of(cls, settings) -> "PageSettings":
        return cls(settings.backfill_appview_url, settings.backfill_posts_source, settings.backfill_page_size,
                   timedelta(days=settings.backfill_window_days), settings.backfill_max_posts_per_account,
                   frozenset(settings.cannabis_tags), settings.max_event_bytes)


@dataclass
class PageOutcome:
    """What a page did, for the actor to announce after the commit."""

    applied: bool = False
    send: list[jobs.PageRequest] = field(default_factory=list)
    changes: list[Changes] = field(default_factory=list)
    progress_event: dict | None = None
    records: int = 0
    skipped: int = 0


def run_page(scope, fetcher: XrpcFetcher, resolver: IdentityResolver, config: PageSettings,
             request: jobs.PageRequest) -> PageOutcome:
    """Fetch and apply ``request``'s page; TryLater when its host cannot answer now."""
    with scope() as session:
        state = _chunk_state(session, request)
        if state is None or state[0] >= request.page:
            return PageOutcome(send=_resend(session, request, state))
        cursor, stored_so_far = state[1], state[2]
    fetched_at = datetime.now(timezone.utc)
    try:
        page = _fetch(fetcher, resolver, config, request, cursor)
        error = None
    except Gone as exc:
        page, error = Page([], None), str(exc)
    records, finished = _within_limits(page, request.source, config, fetched_at, stored_so_far)
    events, skipped = _events(records, fetched_at, config.max_event_bytes)
    with scope() as session:
        return _commit(session, request, config, page, events, skipped + page.dropped, finished, error, fetched_at)


def _chunk_state(session: Session, request: jobs.PageRequest) -> tuple[int, str | None, int] | None:
    """(pages committed, next cursor, records so far) of an open job's pending chunk, else None."""
    row = session.execute(
        select(BackfillChunk.pages, BackfillChunk.cursor, BackfillChunk.records)
        .join(BackfillJob, BackfillJob.id == BackfillChunk.job_id)
        .where(BackfillChunk.job_id == request.job_id, BackfillChunk.account_did == request.account,
               BackfillChunk.source == request.source, BackfillChunk.status == "pending",
               BackfillJob.status.in_(OPEN_STATUSES))).first()
    return tuple(row) if row else None


def _resend(session: Session, request: jobs.PageRequest, state) -> list[jobs.PageRequest]:
    """A message whose page is already committed (redelivered after a crash between the commit
    and the sends, or a duplicate): send what that commit should have sent, as far as it has
    not started yet: its chunk's next page, and for the member's follows, the first page of
    each account chunk not begun. Later pages are never re-sent, so duplicates cannot multiply;
    each page resent is a no-op if it was already done."""
    again = []
    if state is not None and state[0] == request.page:
        again.append(jobs.PageRequest(request.job_id, request.account, request.source, request.page + 1))
    if request.source == jobs.FOLLOWS and (state is None or state[0] == request.page) and jobs.is_open(
            session, request.job_id):  # the last follows page may have been the one that created them
        again += [p for p in jobs.pending_pages(session, request.job_id) if p.page == 1 and p.source == jobs.POSTS]
    return again


def _fetch(fetcher: XrpcFetcher, resolver: IdentityResolver, config: PageSettings, request: jobs.PageRequest,
           cursor: str | None) -> Page:
    if request.source == jobs.POSTS and config.posts_source == "appview":
        return author_feed(fetcher, config.appview_url, request.account, cursor, config.page_size)
    try:
        pds = resolver.pds_endpoint(request.account)
    except IdentityUnreachable as exc:
        raise TryLater(f"the DID document of {request.account} cannot be read now: {exc}", 30.0) from None
    if pds is None:
        raise Gone(f"the DID document of {request.account} names no PDS")
    collection = FOLLOW if request.source == jobs.FOLLOWS else POST
    return list_records(fetcher, pds, request.account, collection, cursor, config.page_size)


def _within_limits(page: Page, source: str, config: PageSettings, fetched_at: datetime,
                   stored_so_far: int) -> tuple[list[Fetched], bool]:
    """The page's records within the window and the per-account cap; and whether the chunk is over."""
    if source == jobs.FOLLOWS:
        return page.records, page.cursor is None
    oldest = fetched_at - config.window
    kept, finished = [], page.cursor is None
    for record in page.records:
        if stored_so_far + len(kept) >= config.max_posts:
            return kept, True
        if parse_datetime(record.record.get("createdAt"), int(fetched_at.timestamp() * 1e6)) < oldest:
            finished = True  # newest first: the rest of the account's posts are older still
            continue
        kept.append(record)
    return kept, finished or stored_so_far + len(kept) >= config.max_posts


def _events(records: list[Fetched], fetched_at: datetime, max_bytes: int) -> tuple[list[dict], int]:
    """Slim ingest events of the records that pass the edge's checks, marked as backfilled."""
    time_us = int(fetched_at.timestamp() * 1_000_000)
    events, skipped = [], 0
    for record in records:
        frame = {"did": record.did, "time_us": time_us, "kind": "commit",
                 "commit": {"operation": "create", "collection": record.collection, "rkey": record.rkey,
                            "cid": record.cid, "record": record.record}}
        try:
            raw = orjson.dumps(frame)
        except TypeError:
            skipped += 1
            continue
        event = parse_event(raw, max_bytes)
        if isinstance(event, Skip):
            skipped += 1
            continue
        event["bf"] = {"as_of": time_us, "counts": list(record.counts) if record.counts else None}
        events.append(event)
    return events, skipped


def _commit(session: Session, request: jobs.PageRequest, config: PageSettings, page: Page, events: list[dict],
            skipped: int, finished: bool, error: str | None, fetched_at: datetime) -> PageOutcome:
    chunk = session.get(BackfillChunk, (request.job_id, request.account, request.source), with_for_update=True)
    job = session.get(BackfillJob, request.job_id, with_for_update=True)
    if chunk is None or job is None or chunk.status != "pending" or chunk.pages >= request.page \
            or job.status not in OPEN_STATUSES:
        return PageOutcome()  # another delivery of this message got there first, or the job ended
    # One page at a time waits for the ingest lock, so a live batch waits behind one page at most.
    session.execute(_COMMIT_LOCK)
    stream = lock_index(session)
    changes, failed = apply_isolated(session, events, config.cannabis_tags)
    kept = sum(c.backfilled_kept for c in changes)
    outcome = PageOutcome(applied=True, changes=changes, records=kept, skipped=skipped + failed)
    if request.source == jobs.FOLLOWS:
        outcome.send += jobs.add_chunks(session, job.id, _followed(session, request.account, events), jobs.POSTS)
    chunk.pages, chunk.cursor = request.page, page.cursor
    chunk.applied = [*chunk.applied, {"page": request.page, "fetchedUs": int(fetched_at.timestamp() * 1_000_000),
                                      "streamUs": stream.applied_time_us, "appliedUs": time.time_ns() // 1000}]
    chunk.records += kept
    chunk.skipped += outcome.skipped
    chunk.updated_at = job.updated_at = datetime.now(timezone.utc)
    job.records += kept
    if error is not None:
        jobs.finish_chunk(session, job, chunk, "failed", error[:1000])
        log.warning("backfill %s: %s of %s given up: %s", job.id, request.source, request.account, error)
    elif finished:
        jobs.finish_chunk(session, job, chunk)
    else:
        outcome.send.append(jobs.PageRequest(job.id, request.account, request.source, request.page + 1))
    session.flush()
    outcome.progress_event = jobs.progress_event(job)
    return outcome


#: Records one transaction applies under the ingest lock when an admin job applies many (legacy
#: import, Jetstream replay): a live batch waits for one such slice at most (tens of ms), where a
#: whole chunk held at once made live ingest lag by seconds (bench/admin_backfill.py).
LOCKED_SLICE = 100


def apply_isolated(session: Session, events: list[dict], tags: frozenset[str]) -> tuple[list[Changes], int]:
    """Apply the events in order; one the database refuses (a data error) is left out alone."""
    if not events:
        return [], 0
    try:
        with session.begin_nested():
            return apply_events(session, events, tags), 0
    except Exception as exc:
        if not deadletters.is_event_error(exc):
            raise
    changes, failed = [], 0
    for event in events:
        try:
            with session.begin_nested():
                changes += apply_events(session, [event], tags)
        except Exception as exc:
            if not deadletters.is_event_error(exc):
                raise
            failed += 1
            log.warning("backfill: record %s left out: %s", deadletters.EventLabel.of(event),
                        deadletters.describe_error(exc))
    return changes, failed


def _followed(session: Session, member: str, events: list[dict]) -> list[str]:
    """Accounts this page's follows made the member follow (stored now: not deleted meanwhile)."""
    subjects = [e["rec"]["subject"] for e in events if e["col"] == "follow"]
    if not subjects:
        return []
    return list(session.execute(text("SELECT DISTINCT following_did FROM follows WHERE follower_did = :member "
                                     "AND following_did = ANY(:subjects) AND following_did <> :member"),
                                {"member": member, "subjects": subjects}).scalars())


