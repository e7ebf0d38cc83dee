"""B2B access: API clients with tiers, quotas and rate limits, and their usage log.

A client's key is ``cnk_live_<api_key>_<secret+checksum>`` (services/b2b/keys.py): ``api_key``
is the public key id, the secret is only ever stored as ``api_secret_hash``. A rotation keeps
the previous key id and hash valid until ``previous_key_expires_at`` (the overlap).
"""

from datetime import datetime

from sqlalchemy import (BigInteger, Boolean, CheckConstraint, ForeignKey, Identity, Index, Integer,
                        SmallInteger, Text, Uuid, text)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, created_now


class ApiClient(Base):
    __tablename__ = "api_clients"

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    client_name: Mapped[str] = mapped_column(Text)
    # The public key id a client sends; the secret is only ever stored hashed.
    api_key: Mapped[str] = mapped_column(Text, unique=True)
    api_secret_hash: Mapped[str] = mapped_column(Text)
    key_expires_at: Mapped[datetime | None]
    # The key replaced by the last rotation, valid until previous_key_expires_at.
    previous_api_key: Mapped[str | None] = mapped_column(Text, unique=True)
    previous_secret_hash: Mapped[str | None] = mapped_column(Text)
    previous_key_expires_at: Mapped[datetime | None]
    tier: Mapped[str | None] = mapped_column(Text)
    monthly_quota: Mapped[int | None] = mapped_column(Integer)
    allowed_endpoints: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    rate_limit_per_min: Mapped[int] = mapped_column(Integer, server_default="60")
    is_active: Mapped[bool] = mapped_column(Boolean, server_default="true")
    revoked_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_now()
    last_used_at: Mapped[datetime | None]
    # Scheduled email reports (services/reports): the addresses, and daily or weekly (NULL: none).
    report_emails: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    report_frequency: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint("tier IN ('starter','growth','enterprise','custom')", name="tier"),
        CheckConstraint("report_frequency IN ('daily', 'weekly')", name="report_frequency"),
        CheckConstraint("report_frequency IS NULL OR cardinality(report_emails) >= 1", name="report_has_recipients"),
        CheckConstraint("monthly_quota IS NULL OR monthly_quota > 0", name="quota_positive"),
        CheckConstraint("rate_limit_per_min > 0", name="rate_positive"),
    )


class ApiUsage(Base):
    __tablename__ = "api_usage"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    client_id: Mapped[int | None] = mapped_column(ForeignKey("api_clients.id", ondelete="CASCADE"))
    endpoint: Mapped[str] = mapped_column(Text)
    method: Mapped[str] = mapped_column(Text)
    status_code: Mapped[int | None] = mapped_column(SmallInteger)
    response_time_ms: Mapped[int | None] = mapped_column(Integer)
    called_at: Mapped[datetime] = created_now()
    # Given by the web process to each call: the flush from Redis inserts a call at most once.
    request_id: Mapped[str | None] = mapped_column(Uuid(as_uuid=False), unique=True)

    __table_args__ = (Index("idx_api_usage_client", "client_id", text("called_at DESC")),)
