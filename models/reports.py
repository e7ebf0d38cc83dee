"""Scheduled email reports: the delivery log, one row per client, frequency and period.

The row is the unit of work of the ``reports`` queue and the client's delivery log at once;
``(client_id, period_start, frequency)`` is unique, so a period is reported once however
often it is scheduled, retried or sent by hand (services/reports/delivery.py).
"""

from datetime import datetime

from sqlalchemy import (BigInteger, CheckConstraint, ForeignKey, Identity, Index, SmallInteger, Text,
                        UniqueConstraint, Uuid, text)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, created_now

FREQUENCIES = ("daily", "weekly")
#: pending: due, not tried yet; retry: the last attempt failed, the next is due at
#: next_attempt_at; sending: an attempt holds it until next_attempt_at (its lease); sent: the
#: SMTP server accepted it; failed: given up; unknown: an attempt died while handing the message
#: over, so whether it arrived is not known (never resent by itself); cancelled: the client
#: was revoked or has no report address any more.
STATUSES = ("pending", "retry", "sending", "sent", "failed", "unknown", "cancelled")


class ReportDelivery(Base):
    __tablename__ = "report_deliveries"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("api_clients.id", ondelete="CASCADE"))
    frequency: Mapped[str] = mapped_column(Text)
    period_start: Mapped[datetime]
    period_end: Mapped[datetime]
    status: Mapped[str] = mapped_column(Text, server_default="pending")
    # Deterministic per client, frequency and period: every attempt sends the same Message-ID.
    message_id: Mapped[str] = mapped_column(Text)
    recipients: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    attempts: Mapped[int] = mapped_column(SmallInteger, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    # The SMTP server's answer to the message (providers put their own message id in it).
    smtp_response: Mapped[str | None] = mapped_column(Text)
    # retry: when the next attempt is due; pending: when the message was queued; sending: the
    # end of the attempt's lease.
    next_attempt_at: Mapped[datetime | None]
    claim_token: Mapped[str | None] = mapped_column(Uuid(as_uuid=False))
    claimed_at: Mapped[datetime | None]
    # Set just before the message itself goes to the server: after it, a dead attempt is ambiguous.
    data_started_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_now()
    updated_at: Mapped[datetime] = created_now()

    __table_args__ = (
        CheckConstraint("frequency IN ('daily', 'weekly')", name="frequency"),
        CheckConstraint("status IN (" + ", ".join(f"'{s}'" for s in STATUSES) + ")", name="status"),
        CheckConstraint("period_end > period_start", name="period"),
        UniqueConstraint("client_id", "period_start", "frequency", name="uq_report_deliveries_client_period"),
        Index("idx_report_deliveries_log", "client_id", text("id DESC")),
        Index("idx_report_deliveries_due", "next_attempt_at",
              postgresql_where=text("status IN ('pending', 'retry', 'sending')")),
    )
