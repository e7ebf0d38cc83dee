"""Notifications for members and their web-push subscriptions."""

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, Identity, Index, Integer, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, created_now

NOTIFICATION_TYPES = ("like", "repost", "follow", "reply", "mention", "quote")


class Notification(Base):
    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    recipient_did: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(Text)
    actor_did: Mapped[str] = mapped_column(Text)
    subject_uri: Mapped[str | None] = mapped_column(Text)
    # The record that caused it (the like, repost, follow or reply); one notification per cause.
    reason_uri: Mapped[str | None] = mapped_column(Text)
    read: Mapped[bool] = mapped_column(Boolean, server_default="false")
    created_at: Mapped[datetime] = created_now()

    __table_args__ = (
        CheckConstraint("type IN ('like','repost','follow','reply','mention','quote')", name="type"),
        UniqueConstraint("recipient_did", "type", "reason_uri", name="uq_notifications_reason"),
        Index("idx_notifications_recipient", "recipient_did", text("created_at DESC")),
        Index("idx_notifications_unread", "recipient_did", postgresql_where=text("NOT read")),
        Index("idx_notifications_actor", "actor_did"),
    )


class PushSubscription(Base):
    __tablename__ = "push_subscriptions"

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    user_did: Mapped[str] = mapped_column(Text)
    endpoint: Mapped[str] = mapped_column(Text, unique=True)
    p256dh: Mapped[str] = mapped_column(Text)
    auth: Mapped[str] = mapped_column(Text)
    user_agent: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_now()
    last_used_at: Mapped[datetime | None]

    __table_args__ = (Index("idx_push_subs_user", "user_did"),)
