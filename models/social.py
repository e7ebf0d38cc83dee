"""The social graph the app shows: profiles, follows, likes, reposts, and the viewer's own
state per post and per account (kept for Cannect members, who are the app's viewers)."""

from datetime import datetime

from sqlalchemy import Boolean, Index, Integer, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, created_now


class Profile(Base):
    """An account we know: a member, an author of an indexed post, or one side of a stored follow."""

    __tablename__ = "profiles"

    did: Mapped[str] = mapped_column(Text, primary_key=True)
    # A verified handle (services/identity: the DID document names it and it resolves back to
    # the DID), or one an operator or the user's PDS gave; NULL until then.
    handle: Mapped[str | None] = mapped_column(Text)
    display_name: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    avatar_cid: Mapped[str | None] = mapped_column(Text)
    banner_cid: Mapped[str | None] = mapped_column(Text)
    followers_count: Mapped[int] = mapped_column(Integer, server_default="0")
    following_count: Mapped[int] = mapped_column(Integer, server_default="0")
    posts_count: Mapped[int] = mapped_column(Integer, server_default="0")
    is_cannect_user: Mapped[bool] = mapped_column(Boolean, server_default="false")
    member_since: Mapped[datetime | None]
    account_status: Mapped[str | None] = mapped_column(Text)
    # Last time the handle was resolved and verified (or refused); NULL: never. Swept when stale.
    handle_checked_at: Mapped[datetime | None]
    indexed_at: Mapped[datetime] = created_now()
    updated_at: Mapped[datetime] = created_now()

    __table_args__ = (
        Index("idx_profiles_handle", "handle", unique=True, postgresql_where=text("handle IS NOT NULL")),
        # Prefix search of handles and display names (GET /api/search?type=users).
        Index("idx_profiles_handle_prefix", text("lower(handle) text_pattern_ops")),
        Index("idx_profiles_display_name_prefix", text("lower(display_name) text_pattern_ops")),
        Index("idx_profiles_members", "did", postgresql_where=text("is_cannect_user")),
        Index("idx_profiles_handle_checked", "handle_checked_at"),
    )


class Follow(Base):
    __tablename__ = "follows"

    uri: Mapped[str] = mapped_column(Text, primary_key=True)
    follower_did: Mapped[str] = mapped_column(Text)
    following_did: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = created_now()

    __table_args__ = (
        Index("idx_follows_follower", "follower_did", "following_did"),
        Index("idx_follows_following", "following_did", "follower_did"),
        # Followers / following lists, newest follow first.
        Index("idx_follows_follower_recent", "follower_did", text("created_at DESC"), text("uri DESC")),
        Index("idx_follows_following_recent", "following_did", text("created_at DESC"), text("uri DESC")),
    )


class _SubjectRecord:
    """Columns of a like or repost: a record of ``actor_did`` pointing at an indexed post."""

    uri: Mapped[str] = mapped_column(Text, primary_key=True)
    actor_did: Mapped[str] = mapped_column(Text)
    subject_uri: Mapped[str] = mapped_column(Text)
    subject_cid: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_now()


class Like(_SubjectRecord, Base):
    __tablename__ = "likes"
    __table_args__ = (
        Index("idx_likes_actor", "actor_did", text("created_at DESC")),
        Index("idx_likes_subject", "subject_uri", "actor_did"),
    )


class Repost(_SubjectRecord, Base):
    __tablename__ = "reposts"
    __table_args__ = (
        Index("idx_reposts_actor", "actor_did", text("created_at DESC")),
        Index("idx_reposts_subject", "subject_uri", "actor_did"),
    )


class UserPostState(Base):
    """A member's own like/repost of a post, so post views can show it without a join."""

    __tablename__ = "user_post_state"

    user_did: Mapped[str] = mapped_column(Text, primary_key=True)
    post_uri: Mapped[str] = mapped_column(Text, primary_key=True)
    liked: Mapped[bool] = mapped_column(Boolean, server_default="false")
    like_uri: Mapped[str | None] = mapped_column(Text)
    reposted: Mapped[bool] = mapped_column(Boolean, server_default="false")
    repost_uri: Mapped[str | None] = mapped_column(Text)


class UserFollowState(Base):
    """Whether a member follows an account and whether it follows them back."""

    __tablename__ = "user_follow_state"

    user_did: Mapped[str] = mapped_column(Text, primary_key=True)
    target_did: Mapped[str] = mapped_column(Text, primary_key=True)
    following: Mapped[bool] = mapped_column(Boolean, server_default="false")
    follow_uri: Mapped[str | None] = mapped_column(Text)
    followed_by: Mapped[bool] = mapped_column(Boolean, server_default="false")
