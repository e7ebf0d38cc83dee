"""Classify indexed posts and store the results: what the ``classify`` queue runs.

A call reads the posts, classifies them with no transaction open (an LLM answers in about a
second), then writes everything in one transaction. The rules that decide what a post ends up
with:

- **Eligible**: a post is classified when ``classification_version`` is below
  :data:`CLASSIFICATION_VERSION` (new posts have 0), or when it was never processed and has
  no error. Posts classified at the current version, and posts that failed for good at it,
  are skipped unless ``force`` is given. A post gone from ``posts`` (deleted) is skipped.
- **One current row per post**: storing a classification replaces the post's row for the
  same ``model_version`` (upsert on ``(post_id, model_version)``) and deletes its rows of any
  other ``model_version``. Whatever classifier ran last is what aggregates read; history is
  not kept (the version on ``posts`` says how old it is).
- **Success**: ``processed_at`` = now, ``classification_version`` = current,
  ``processing_error`` cleared.
- **Failure** (``processing_error`` = the reason, ``processed_at`` stays NULL for a post
  never classified; an older classification of the post is kept):
  ``Failure.retry_later`` (budget, provider down) leaves the version as it was, so the sweep
  tries again after ``CLASSIFY_RETRY_DELAY_SECONDS``; any other failure (answers invalid
  after the classifier's own retries) stamps the current version on a never-classified post:
  it is not retried until the version is raised.
- **Deleted meanwhile**: the posts are locked (``FOR NO KEY UPDATE``) before writing; rows
  gone by then are skipped, and a delete that comes later cascades to the classification.
- Brand and strain mentions are stored as their canonical names (``entities.py``).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable, ContextManager, Sequence

from sqlalchemy import bindparam, delete, func, literal, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from models import Post
from models.intelligence import PostClassification

from . import CLASSIFICATION_VERSION, entities
from .schema import Classification, Classifier, Failure, Outcome, PostText

log = logging.getLogger(__name__)

#: ``processing_error`` is a reason for an operator, not a log: longer ones are cut.
MAX_ERROR = 500
_CONSTRAINT = "uq_post_classifications_post_model"


@dataclass(frozen=True)
class Pending:
    """A post to classify: its id and what the classifier sees of it."""

    post_id: int
    text: PostText


@dataclass
class Report:
    """What one call did, for the actor's log line and the tests."""

    requested: int = 0
    skipped: int = 0          # already classified at the current version (or failed for good)
    gone: int = 0             # deleted before they could be read or written
    classified: int = 0
    failed: int = 0
    retry_later: int = 0
    model_version: str = ""
    elapsed_ms: int = 0
    failures: list[tuple[int, str]] = field(default_factory=list)


def eligible(force: bool = False):
    """The SQL condition for a post that needs (re)classification (see the module doc)."""
    if force:
        return literal(True)
    return (Post.classification_version < CLASSIFICATION_VERSION) | (
        Post.processed_at.is_(None) & Post.processing_error.is_(None))


def pending_posts(session: Session, post_ids: Sequence[int], force: bool = False) -> tuple[list[Pending], int]:
    """The eligible posts among ``post_ids`` in id order, and how many of the ids still exist."""
    ids = sorted(set(post_ids))
    rows = session.execute(
        select(Post.id, Post.uri, Post.text, Post.langs, Post.has_media, Post.embed_type, Post.created_at,
               eligible(force).label("due"))
        .where(Post.id.in_(ids)).order_by(Post.id)).all()
    work = [Pending(row.id, PostText(key=row.uri, text=row.text or "", langs=tuple(row.langs or ()),
                                     has_media=bool(row.has_media), embed_type=row.embed_type,
                                     created_at=row.created_at))
            for row in rows if row.due]
    return work, len(rows)


def classify_posts(scope: Callable[[], ContextManager[Session]], classifier: Classifier, post_ids: Sequence[int],
                   force: bool = False) -> Report:
    """Classify the eligible posts among ``post_ids`` and store the outcome.

    ``scope()`` opens a session in one transaction (``services.db.session_scope``); it is
    called twice: to read the posts, then to write the outcome. The classifier runs in
    between with no transaction open (an LLM answer takes a second; a connection idle in
    a transaction that long would hold locks and a pool slot).
    """
    report = Report(requested=len(set(post_ids)))
    with scope() as session:
        work, existing = pending_posts(session, post_ids, force)
    report.gone = report.requested - existing
    report.skipped = existing - len(work)
    if not work:
        return report
    outcome = classifier.classify([item.text for item in work])
    with scope() as session:
        store_outcome(session, work, outcome, report)
    return report


def store_outcome(session: Session, work: Sequence[Pending], outcome: Outcome, report: Report | None = None) -> Report:
    """Write one classifier outcome (results in the order of ``work``) in the caller's transaction."""
    report = report if report is not None else Report(requested=len(work))
    if len(outcome.results) != len(work):
        raise RuntimeError(f"classifier {outcome.model_version!r} returned {len(outcome.results)} results "
                           f"for {len(work)} posts")
    report.model_version, report.elapsed_ms = outcome.model_version, outcome.elapsed_ms
    # Locked in URI order, the order in which ingest updates posts' counts: two orders would
    # let a classification and an ingest batch deadlock on the same posts.
    alive = set(session.scalars(select(Post.id).where(Post.id.in_([item.post_id for item in work]))
                                .order_by(Post.uri).with_for_update(key_share=True)))
    report.gone += len(work) - len(alive)
    per_post_ms = outcome.elapsed_ms // max(len(work), 1)
    rows: list[dict] = []
    seen_at: list[datetime | None] = []
    failures: list[tuple[int, Failure]] = []
    for item, result in zip(work, outcome.results):
        if item.post_id not in alive:
            continue
        if isinstance(result, Classification):
            rows.append({**result.row(), "post_id": item.post_id, "model_version": outcome.model_version,
                         "processing_ms": per_post_ms})
            seen_at.append(item.text.created_at)
        elif isinstance(result, Failure):
            failures.append((item.post_id, result))
        else:
            raise RuntimeError(f"classifier returned {type(result).__name__}, not a Classification or Failure")
    if rows:
        entities.resolve_mentions(session, rows, seen_at)
        _write_classifications(session, rows, outcome.model_version)
    if failures:
        _record_failures(session, failures)
    report.classified += len(rows)
    report.retry_later += sum(1 for _, failure in failures if failure.retry_later)
    report.failed += sum(1 for _, failure in failures if not failure.retry_later)
    report.failures += [(post_id, failure.error) for post_id, failure in failures]
    return report


def _write_classifications(session: Session, rows: list[dict], model_version: str) -> None:
    post_ids = [row["post_id"] for row in rows]
    session.execute(delete(PostClassification).where(PostClassification.post_id.in_(post_ids),
                                                     PostClassification.model_version != model_version))
    # executemany of one statement (cached once compiled; SQLAlchemy batches it into few
    # multi-row INSERTs): compiling a fresh VALUES list per message cost more than the writes.
    session.connection().execute(_upsert_statement(tuple(rows[0])), rows)
    session.execute(update(Post).where(Post.id.in_(post_ids)).values(
        processed_at=text("now()"), classification_version=CLASSIFICATION_VERSION, processing_error=None))


@functools.lru_cache(maxsize=4)
def _upsert_statement(columns: tuple[str, ...]):
    statement = insert(PostClassification)
    updates = {name: statement.excluded[name] for name in columns if name not in ("post_id", "model_version")}
    return statement.on_conflict_do_update(constraint=_CONSTRAINT, set_={**updates, "classified_at": func.now()})


def _record_failures(session: Session, failures: list[tuple[int, Failure]]) -> None:
    # A failure for good stamps the version on a post that has no classification yet, so
    # neither the sweep nor a replay pays for it again before the version is raised.
    session.execute(
        text("UPDATE posts SET processing_error = :error, classification_version = CASE "
             "WHEN :final AND processed_at IS NULL THEN :version ELSE classification_version END "
             "WHERE id = :post_id").bindparams(bindparam("final"), bindparam("version")),
        [{"post_id": post_id, "error": (failure.error or "unknown error")[:MAX_ERROR],
          "final": not failure.retry_later, "version": CLASSIFICATION_VERSION} for post_id, failure in failures])


# -- finding work: the sweep and the backfill -------------------------------------------------

def unprocessed_post_ids(session: Session, limit: int, include_retries: bool, grace_seconds: float) -> list[int]:
    """Posts never classified, oldest first: those with no attempt yet, and (``include_retries``)
    those whose last attempt failed for a passing reason. Posts indexed within the last
    ``grace_seconds`` are left to the message ingest queued for them."""
    waiting = Post.processing_error.is_(None)
    if include_retries:
        waiting = waiting | (Post.classification_version < CLASSIFICATION_VERSION)
    return list(session.scalars(
        select(Post.id).where(Post.processed_at.is_(None), waiting,
                              Post.indexed_at < datetime.now(timezone.utc) - timedelta(seconds=grace_seconds))
        .order_by(Post.id).limit(limit)))


def outdated_post_ids(session: Session, below_version: int, after_id: int = 0, limit: int = 1000,
                      since: datetime | None = None) -> list[int]:
    """Posts with a classification version below ``below_version`` (never-classified ones too),
    created since ``since``, in id order after ``after_id``: the backfill's pages."""
    query = select(Post.id).where(Post.classification_version < below_version, Post.id > after_id)
    if since is not None:
        query = query.where(Post.created_at >= since)
    return list(session.scalars(query.order_by(Post.id).limit(limit)))


def count_outdated(session: Session, below_version: int, since: datetime | None = None) -> int:
    query = select(func.count()).select_from(Post).where(Post.classification_version < below_version)
    if since is not None:
        query = query.where(Post.created_at >= since)
    return session.scalar(query)


def post_ids_of(session: Session, uris: Sequence[str]) -> list[int]:
    """Ids of the indexed posts among ``uris`` (ingest reports URIs; messages carry ids)."""
    if not uris:
        return []
    return list(session.scalars(select(Post.id).where(Post.uri.in_(list(uris))).order_by(Post.id)))
