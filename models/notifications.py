"""Notifications for members and their web-push subscriptions."""

from datetime import datetime

from sqlalchemy import ARRAY, BigInteger, Boolean, CheckConstraint, Identity, Index, Integer, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
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
    # For reply, mention and quote: the causing post as the app shows it (text, facets, embed,
    # langs, createdAt, reply), kept here because that post need not be indexed.
    reason_cid: Mapped[str | None] = mapped_column(Text)
    reason_record: Mapped[dict | None] = mapped_column(JSONB)
    read: Mapped[bool] = mapped_column(Boolean, server_default="false")
    created_at: Mapped[datetime] = created_now()

    __table_args__ = (
        CheckConstraint("type IN ('like','repost','follow','reply','mention','quote')", name="type"),
        UniqueConstraint("recipient_did", "type", "reason_uri", name="uq_notifications_reason"),
        Index("idx_notifications_recipient", "recipient_did", text("created_at DESC")),
        Index("idx_notifications_unread", "recipient_did", postgresql_where=text("NOT read")),
        Index("idx_notifications_actor", "actor_did"),
        Index("idx_notifications_reason_uri", "reason_uri"),
    )


class NotificationPreference(Base):
    """A member's push preferences (services/notifications/preferences.py); no row: the defaults."""

    __tablename__ = "notification_preferences"

    did: Mapped[str] = mapped_column(Text, primary_key=True)
    push_reasons: Mapped[list[str]] = mapped_column(
        ARRAY(Text), server_default=text("'{like,repost,follow,reply,mention,quote}'::text[]"))
    muted_until: Mapped[datetime | None]
    updated_at: Mapped[datetime] = created_now()

    __table_args__ = (
        CheckConstraint("push_reasons <@ '{like,repost,follow,reply,mention,quote}'::text[]", name="push_reasons"),
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
