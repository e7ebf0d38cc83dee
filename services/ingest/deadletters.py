"""Dead letters: events left out of their batch because applying them failed on their own.

When applying a batch fails for a reason that belongs to one event (a value PostgreSQL
refuses, a record the rules cannot read), the batch is applied again without that event
(:func:`services.ingest.ingest_batch` isolates it) and the event is kept here with its
reason and its JSON text, so that one bad event never costs the others and the chain of
batches moves on at once. A lost connection, a deadlock or a timeout says nothing about the
events: those still fail the batch, and the actor retries it.

Everything stored here is NUL-free text of bounded size: PostgreSQL text cannot hold a NUL,
and the event is kept as JSON, where a NUL is the six characters ``\\u0000``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import orjson
from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError, DataError, ProgrammingError, StatementError
from sqlalchemy.orm import Session

from models import IngestDeadLetter
from services.jetstream import NSIDS

#: Python errors the in-memory rules raise on an event they cannot read.
EVENT_ERRORS = (ValueError, TypeError, LookupError, AttributeError, ArithmeticError, RecursionError)
#: SQLSTATE classes about the data sent: data exception, integrity constraint violation,
#: program limit exceeded (``string is too long for tsvector``).
EVENT_SQLSTATE_CLASSES = frozenset({"22", "23", "54"})
#: The largest Jetstream ``time_us`` PostgreSQL's bigint holds.
MAX_TIME_US = 2**63 - 1

REASON_CHARS = 500
FIELD_CHARS = 300
EVENT_CHARS = 4_000_000


def is_event_error(exc: BaseException) -> bool:
    """Whether ``exc`` is about the events being applied (the same event fails again), not
    about the database being away or busy (a retry may succeed)."""
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return False
        sqlstate = getattr(exc.orig, "sqlstate", None)
        if sqlstate:
            return sqlstate[:2] in EVENT_SQLSTATE_CLASSES
        # Refused by the driver before sending: a NUL in a string, a value it cannot adapt.
        return isinstance(exc, (DataError, ProgrammingError))
    if isinstance(exc, StatementError):  # a bind processor refused a value
        return isinstance(exc.orig, EVENT_ERRORS)
    return isinstance(exc, EVENT_ERRORS)


def describe_error(exc: BaseException) -> str:
    """Error class and first line of its message (never SQLAlchemy's statement and parameters)."""
    cause = exc.orig if isinstance(exc, StatementError) and exc.orig is not None else exc
    lines = str(cause).strip().splitlines()
    sqlstate = getattr(cause, "sqlstate", None)
    reason = f"{type(cause).__name__}{f' [{sqlstate}]' if sqlstate else ''}: {lines[0] if lines else ''}"
    detail = getattr(getattr(cause, "diag", None), "message_detail", None)
    if detail:
        reason += f" ({detail.splitlines()[0]})"
    return clean(reason, REASON_CHARS, printable=True)


def clean(value, limit: int | None, printable: bool = False) -> str | None:
    """A string safe for a text column: NUL and lone surrogates escaped, at most ``limit`` chars;
    with ``printable``, every control or invisible character escaped too (safe in a log line)."""
    if not isinstance(value, str):
        return None
    if limit is not None:
        value = value[:limit]
    if printable:
        value = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in value)
    value = value.replace("\x00", "\\u0000").encode("utf-8", "backslashreplace").decode("utf-8")
    return value if limit is None or len(value) <= limit else value[:limit - 1] + "…"


def time_us_of(event) -> int | None:
    """The event's ``time_us`` if it is one PostgreSQL can store, else None."""
    value = event.get("t") if isinstance(event, dict) else None
    usable = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TIME_US
    return value if usable else None


def event_text(event) -> str:
    """The event as JSON text (NUL-safe), or its repr if it is not JSON-serialisable."""
    try:
        text = orjson.dumps(event).decode()
    except TypeError:  # orjson.JSONEncodeError: a lone surrogate, a non-str key, a huge int
        try:
            text = json.dumps(event, ensure_ascii=True, default=repr)
        except (TypeError, ValueError, RecursionError):
            try:
                text = repr(event)
            except RecursionError:
                text = f"<{type(event).__name__} nested too deeply to print>"
    return clean(text, EVENT_CHARS)


@dataclass(frozen=True)
class EventLabel:
    """What names an event in logs and listings: never its record."""

    time_us: int | None
    did: str | None
    collection: str | None
    rkey: str | None

    @classmethod
    def of(cls, event) -> EventLabel:
        get = event.get if isinstance(event, dict) else (lambda _key: None)
        collection = get("col") if get("k") == "commit" else get("k")
        if isinstance(collection, str):
            collection = NSIDS.get(collection, collection)
        return cls(time_us_of(event), clean(get("did"), FIELD_CHARS, True), clean(collection, FIELD_CHARS, True),
                   clean(get("rkey"), FIELD_CHARS, True))

    def __str__(self) -> str:
        where = "/".join(part or "?" for part in (self.did, self.collection)) + (f"/{self.rkey}" if self.rkey else "")
        return f"{where} at {self.time_us if self.time_us is not None else '?'}"


def record(session: Session, stream: str, conn: int, seq: int, event, reason: str) -> int:
    """Keep ``event`` of batch ``conn/seq``, left out for ``reason``; returns its id."""
    label = EventLabel.of(event)
    return session.execute(insert(IngestDeadLetter).values(
        stream=stream, conn=conn, seq=seq, time_us=label.time_us, did=label.did, collection=label.collection,
        rkey=label.rkey, reason=clean(reason, REASON_CHARS, True) or "", event=event_text(event),
    ).returning(IngestDeadLetter.id)).scalar_one()


# -- reading and dropping (``cannect deadletters``, ``cannect status``) ----------------------

def count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(IngestDeadLetter))


def latest(session: Session, limit: int = 20) -> list[IngestDeadLetter]:
    """The newest dead letters first."""
    return list(session.scalars(select(IngestDeadLetter).order_by(IngestDeadLetter.id.desc()).limit(limit)))


def get(session: Session, letter_id: int) -> IngestDeadLetter | None:
    return session.get(IngestDeadLetter, letter_id)


def drop(session: Session, letter_ids: list[int] | None) -> int:
    """Delete the given dead letters, or all of them when ``letter_ids`` is None; returns how many."""
    statement = delete(IngestDeadLetter)
    if letter_ids is not None:
        statement = statement.where(IngestDeadLetter.id.in_(letter_ids))
    return session.execute(statement).rowcount


def as_dict(letter: IngestDeadLetter, with_event: bool = False) -> dict:
    """A JSON-ready view; the event parsed back when ``with_event`` (as text if it is not JSON)."""
    view = {"id": letter.id, "stream": letter.stream, "batch": [letter.conn, letter.seq],
            "time_us": letter.time_us, "did": letter.did, "collection": letter.collection, "rkey": letter.rkey,
            "reason": letter.reason, "created_at": letter.created_at.isoformat()}
    if with_event:
        try:
            view["event"] = orjson.loads(letter.event)
        except orjson.JSONDecodeError:
            view["event"] = letter.event
    return view
