"""Bookkeeping of the ingest pipeline itself.

The listener numbers its batches per connection: ``(conn, seq)``, where ``conn`` grows with
every new connection and a connection's first batch names the last batch enqueued before it
(``prev``). ``ingest_state`` holds the last batch applied and is updated in the same
transaction as the data; that is what makes batches apply exactly once and in stream order.
``ingest_pending`` parks batches that arrived before their predecessor. ``ingest_recent``
remembers the ``time_us`` of recently applied events, so the overlap a reconnect replays
(a few seconds rewound) is recognised and skipped.
"""

from datetime import datetime

from sqlalchemy import BigInteger, LargeBinary, Text
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
