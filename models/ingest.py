"""Bookkeeping of the ingest pipeline itself.

``ingest_state`` holds, per stream, the Jetstream ``time_us`` up to which events have been
applied; it is updated in the same transaction as the data, which is what makes replays
and redeliveries harmless. ``ingest_pending`` parks batches that arrived before their
predecessor, so batches are applied in stream order whatever order workers take them in.
"""

from datetime import datetime

from sqlalchemy import BigInteger, LargeBinary, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, created_now


class IngestState(Base):
    __tablename__ = "ingest_state"

    stream: Mapped[str] = mapped_column(Text, primary_key=True)
    applied_time_us: Mapped[int] = mapped_column(BigInteger, server_default="0")
    batches_applied: Mapped[int] = mapped_column(BigInteger, server_default="0")
    events_applied: Mapped[int] = mapped_column(BigInteger, server_default="0")
    duplicates_skipped: Mapped[int] = mapped_column(BigInteger, server_default="0")
    gaps_accepted: Mapped[int] = mapped_column(BigInteger, server_default="0")
    updated_at: Mapped[datetime] = created_now()


class IngestPending(Base):
    __tablename__ = "ingest_pending"

    stream: Mapped[str] = mapped_column(Text, primary_key=True)
    after_time_us: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    last_time_us: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # The batch's events, orjson-encoded.
    events: Mapped[bytes] = mapped_column(LargeBinary)
    staged_at: Mapped[datetime] = created_now()
