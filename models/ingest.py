"""Bookkeeping of the ingest pipeline itself.

The listener numbers its batches per connection: ``(conn, seq)``, where ``conn`` grows with
every new connection and a connection's first batch names the last batch enqueued before it
(``prev``). ``ingest_state`` holds the last batch applied and is updated in the same
transaction as the data; that is what makes batches apply exactly once and in stream order.
``ingest_pending`` parks batches that arrived before their predecessor. ``ingest_recent``
remembers the ``time_us`` of recently applied events, so the overlap a reconnect replays
(a few seconds rewound) is recognised and skipped. ``ingest_dead_letters`` keeps the events
that could not be applied (a data error of their own), so that one bad event never costs the
rest of its batch.
"""

from datetime import datetime

from sqlalchemy import BigInteger, Identity, Index, LargeBinary, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, created_now


class IngestState(Base):
    __tablename__ = "ingest_state"

    stream: Mapped[str] = mapped_column(Text, primary_key=True)
    conn: Mapped[int | None] = mapped_column(BigInteger)
    seq: Mapped[int | None] = mapped_column(BigInteger)
    # Highest Jetstream time_us applied so far.
    applied_time_us: Mapped[int] = mapped_column(BigInteger, server_default="0")
    batches_applied: Mapped[int] = mapped_column(BigInteger, server_default="0")
    events_applied: Mapped[int] = mapped_column(BigInteger, server_default="0")
    duplicates_skipped: Mapped[int] = mapped_column(BigInteger, server_default="0")
    gaps_accepted: Mapped[int] = mapped_column(BigInteger, server_default="0")
    # Events left out of their batch into ingest_dead_letters (ever, including dropped ones).
    events_dead_lettered: Mapped[int] = mapped_column(BigInteger, server_default="0")
    updated_at: Mapped[datetime] = created_now()


class IngestPending(Base):
    __tablename__ = "ingest_pending"

    stream: Mapped[str] = mapped_column(Text, primary_key=True)
    conn: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    prev_conn: Mapped[int | None] = mapped_column(BigInteger)
    prev_seq: Mapped[int | None] = mapped_column(BigInteger)
    # The batch's events, orjson-encoded.
    events: Mapped[bytes] = mapped_column(LargeBinary)
    staged_at: Mapped[datetime] = created_now()


class IngestRecent(Base):
    __tablename__ = "ingest_recent"

    stream: Mapped[str] = mapped_column(Text, primary_key=True)
    time_us: Mapped[int] = mapped_column(BigInteger, primary_key=True)


class IngestDeadLetter(Base):
    """An event left out of its batch because applying it failed with a data error.

    Every text column is NUL-free and bounded (PostgreSQL text rejects ``\\x00``); ``event``
    is the event as JSON text, where a NUL is the six characters ``\\u0000``.
    """

    __tablename__ = "ingest_dead_letters"
    __table_args__ = (Index("idx_ingest_dead_letters_stream", "stream", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    stream: Mapped[str] = mapped_column(Text)
    # The batch the event came in.
    conn: Mapped[int] = mapped_column(BigInteger)
    seq: Mapped[int] = mapped_column(BigInteger)
    # What could be read of the event (a malformed one may lack any of these).
    time_us: Mapped[int | None] = mapped_column(BigInteger)
    did: Mapped[str | None] = mapped_column(Text)
    collection: Mapped[str | None] = mapped_column(Text)
    rkey: Mapped[str | None] = mapped_column(Text)
    # Exception class and the first line of its message.
    reason: Mapped[str] = mapped_column(Text)
    event: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = created_now()
