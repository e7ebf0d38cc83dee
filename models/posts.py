"""Indexed posts: one table for the app's feeds and the intelligence product.

Merges ``posts`` of both seeds: the app's ``uri``-keyed columns plus the intelligence
seed's numeric ``id`` (referenced by classifications) and processing status.
Only indexed posts live here: no placeholder rows for posts merely liked or replied to.
"""

from datetime import date, datetime

from sqlalchemy import (BigInteger, Boolean, Computed, Date, Identity, Index, Integer,
                        SmallInteger, Text, func)
from sqlalchemy import text as sql
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, created_now


class Post(Base):
    __tablename__ = "posts"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    uri: Mapped[str] = mapped_column(Text, unique=True)
    cid: Mapped[str] = mapped_column(Text)
    author_did: Mapped[str] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    indexed_at: Mapped[datetime] = created_now()
    # AppView convention: feeds sort by least(createdAt, indexedAt) so back-dated posts can't jump the queue.
    sort_at: Mapped[datetime]
    # Jetstream time_us of the event that indexed the post.
    indexed_time_us: Mapped[int] = mapped_column(BigInteger)

    reply_parent_uri: Mapped[str | None] = mapped_column(Text)
    reply_root_uri: Mapped[str | None] = mapped_column(Text)
    quote_uri: Mapped[str | None] = mapped_column(Text)

    like_count: Mapped[int] = mapped_column(Integer, server_default="0")
    repost_count: Mapped[int] = mapped_column(Integer, server_default="0")
    reply_count: Mapped[int] = mapped_column(Integer, server_default="0")
    # Backfilled posts: the time (µs, the stream's clock) the AppView's counts were read at;
    # stream events up to then are already in the counts (docs/indexing-rules.md). NULL: the
    # counts are the stored rows.
    counts_as_of_us: Mapped[int | None] = mapped_column(BigInteger)
    engagement_updated_at: Mapped[datetime | None]

    embed: Mapped[dict | None] = mapped_column(JSONB)
    embed_type: Mapped[str | None] = mapped_column(Text)
    has_media: Mapped[bool] = mapped_column(Boolean, server_default="false")
    media_count: Mapped[int] = mapped_column(SmallInteger, server_default="0")
    facets: Mapped[list | None] = mapped_column(JSONB)
    labels: Mapped[dict | None] = mapped_column(JSONB)
    langs: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    tags: Mapped[list[str] | None] = mapped_column(ARRAY(Text))

    has_cannabis_hashtag: Mapped[bool] = mapped_column(Boolean, server_default="false")
    is_cannect_user: Mapped[bool] = mapped_column(Boolean, server_default="false")
    raw_record: Mapped[dict | None] = mapped_column(JSONB)

    processed_at: Mapped[datetime | None]
    classification_version: Mapped[int] = mapped_column(Integer, server_default="0")
    processing_error: Mapped[str | None] = mapped_column(Text)
    created_date: Mapped[date] = mapped_column(
        Date, Computed("((created_at AT TIME ZONE 'UTC'))::date", persisted=True))

    __table_args__ = (
        # Feeds and tabs page by (sort_at, cid) descending: the indexes match that order exactly.
        Index("idx_posts_author", "author_did", sql("sort_at DESC"), sql("cid DESC")),
        Index("idx_posts_created", sql("sort_at DESC"), sql("cid DESC")),
        Index("idx_posts_cannabis", sql("sort_at DESC"), sql("cid DESC"), postgresql_where=sql("has_cannabis_hashtag")),
        Index("idx_posts_cannect", sql("sort_at DESC"), sql("cid DESC"), postgresql_where=sql("is_cannect_user")),
        # Replies of a post, oldest first (threads, /replies); ingest finds orphans with it too.
        Index("idx_posts_reply_parent", "reply_parent_uri", "sort_at", "cid",
              postgresql_where=sql("reply_parent_uri IS NOT NULL")),
        # Profile tabs: top-level posts, and posts with media.
        Index("idx_posts_author_top", "author_did", sql("sort_at DESC"), sql("cid DESC"),
              postgresql_where=sql("reply_parent_uri IS NULL")),
        Index("idx_posts_author_media", "author_did", sql("sort_at DESC"), sql("cid DESC"),
              postgresql_where=sql("has_media")),
        Index("idx_posts_indexed", sql("indexed_at DESC")),
        Index("idx_posts_unprocessed", "id", postgresql_where=sql("processed_at IS NULL")),
        Index("idx_posts_date", "created_date"),
        Index("idx_posts_text_search", func.to_tsvector(sql("'english'"), func.coalesce(sql("text"), sql("''"))),
              postgresql_using="gin"),
    )
