"""B2B webhooks: the endpoints clients register and the log of every event queued for them.

A delivery row is the unit of work of the ``webhooks`` queue and the client's delivery log at
once; ``(endpoint_id, event_id)`` is unique, so an event is queued once per endpoint however
often it is emitted (services/webhooks/events.py).
"""

from datetime import datetime

from sqlalchemy import (BigInteger, Boolean, CheckConstraint, ForeignKey, Identity, Index, Integer, LargeBinary,
                        SmallInteger, Text, UniqueConstraint, text)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, created_now

#: The event types a client can subscribe to (services/webhooks/events.py emits them).
EVENT_TYPES = ("high_intent_post", "brand_mention", "sentiment_shift", "trend_spike")
#: pending: not tried yet; failed: the last attempt failed, another is due at next_attempt_at;
#: delivered: answered 2xx; given_up: retries exhausted or the endpoint was disabled.
DELIVERY_STATUSES = ("pending", "failed", "delivered", "given_up")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("api_clients.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    event_types: Mapped[list[str]] = mapped_column(ARRAY(Text))
    # brand_mention only for these brands (lowercase); NULL: every brand.
    brands: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    # The whsec_ signing secret, encrypted with the PDS-token cipher (services/crypto.py): it
    # must be readable to sign, so it cannot be hashed. After a rotation the previous one
    # also signs until previous_secret_expires_at (receivers accept either signature).
    secret_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    previous_secret_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    previous_secret_expires_at: Mapped[datetime | None]
    enabled: Mapped[bool] = mapped_column(Boolean, server_default="true")
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    disabled_at: Mapped[datetime | None]
    # Start of the current run of failed attempts (NULL after a success).
    failing_since: Mapped[datetime | None]
    last_success_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_now()

    __table_args__ = (
        CheckConstraint("cardinality(event_types) >= 1 AND event_types <@ ARRAY["
                        + ", ".join(f"'{t}'" for t in EVENT_TYPES) + "]::text[]", name="event_types"),
        CheckConstraint("enabled OR disabled_reason IS NOT NULL", name="disabled_has_reason"),
        Index("idx_webhook_endpoints_client", "client_id", "id"),
    )


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    # The Standard Webhooks ``webhook-id`` (msg_...), the same on every attempt.
    event_id: Mapped[str] = mapped_column(Text)
    event_type: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict] = mapped_column(JSONB)
    attempts: Mapped[int] = mapped_column(SmallInteger, server_default="0")
    status: Mapped[str] = mapped_column(Text, server_default="pending")
    last_status_code: Mapped[int | None] = mapped_column(SmallInteger)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_attempt_at: Mapped[datetime | None]
    next_attempt_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_now()

    __table_args__ = (
        CheckConstraint(_in("status", DELIVERY_STATUSES), name="status"),
        UniqueConstraint("endpoint_id", "event_id", name="uq_webhook_deliveries_endpoint_event"),
        Index("idx_webhook_deliveries_log", "endpoint_id", text("id DESC")),
        Index("idx_webhook_deliveries_due", "next_attempt_at", postgresql_where=text("status IN ('pending', 'failed')")),
        Index("idx_webhook_deliveries_created", "created_at"),
    )
