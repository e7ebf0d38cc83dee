"""Derived intelligence: trends and the posts behind them, engagement snapshots, opportunity
scores, and the bookkeeping of the recompute jobs (docs/intelligence.md).

Every row that names a post references ``posts`` with ``ON DELETE CASCADE``: a deleted post
(or a purged account's posts) leaves no trace in what clients read.
"""

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (BigInteger, CheckConstraint, Float, ForeignKey, Identity, Index, Integer, Numeric,
                        SmallInteger, Text, UniqueConstraint, text)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, created_now


class Trend(Base):
    """A hashtag, strain, brand or effect counted in the current window and the one before."""

    __tablename__ = "trends"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    kind: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    window: Mapped[str] = mapped_column(Text)
    current_count: Mapped[int] = mapped_column(Integer, server_default="0")
    previous_count: Mapped[int] = mapped_column(Integer, server_default="0")
    velocity: Mapped[float] = mapped_column(Float, server_default="0")
    computed_at: Mapped[datetime] = created_now()

    __table_args__ = (
        CheckConstraint("kind IN ('hashtag','strain','brand','effect')", name="kind"),
        UniqueConstraint("kind", "window", "name", name="uq_trends_kind_window_name"),
        Index("idx_trends_rising", "kind", "window", text("velocity DESC")),
    )


class TrendSource(Base):
    """A post that supports a trend (data-warehouse-architecture.md's ``trend_sources``)."""

    __tablename__ = "trend_sources"

    trend_id: Mapped[int] = mapped_column(ForeignKey("trends.id", ondelete="CASCADE"), primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True)
    relevance_score: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = created_now()

    __table_args__ = (Index("idx_trend_sources_post", "post_id"),)


class PostMetricsHistory(Base):
    """An engagement snapshot of a recent post, taken when its counts changed."""

    __tablename__ = "post_metrics_history"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"))
    captured_at: Mapped[datetime] = created_now()
    like_count: Mapped[int] = mapped_column(Integer)
    repost_count: Mapped[int] = mapped_column(Integer)
    reply_count: Mapped[int] = mapped_column(Integer)
    engagement_rate: Mapped[float] = mapped_column(Float)
    velocity: Mapped[float] = mapped_column(Float)

    __table_args__ = (
        Index("idx_post_metrics_post", "post_id", text("captured_at DESC")),
        Index("idx_post_metrics_captured", "captured_at"),
    )


class OpportunityScore(Base):
    """A client-facing opportunity: a product category or an effect in a region, scored 0-100."""

    __tablename__ = "opportunity_scores"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    kind: Mapped[str] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(Text)
    region: Mapped[str] = mapped_column(Text)
    score: Mapped[Decimal] = mapped_column(Numeric(5, 2))
    demand_score: Mapped[Decimal] = mapped_column(Numeric(5, 2))
    unmet_need_score: Mapped[Decimal] = mapped_column(Numeric(5, 2))
    saturation_score: Mapped[Decimal] = mapped_column(Numeric(5, 2))
    parts: Mapped[dict] = mapped_column(JSONB)
    computed_at: Mapped[datetime] = created_now()

    __table_args__ = (
        CheckConstraint("kind IN ('product','effect')", name="kind"),
        CheckConstraint("score BETWEEN 0 AND 100", name="score"),
        UniqueConstraint("kind", "subject", "region", name="uq_opportunity_scores_segment"),
        Index("idx_opportunity_scores_rank", "kind", text("score DESC")),
    )


class OpportunitySample(Base):
    """A post that illustrates an opportunity (gone with the post)."""

    __tablename__ = "opportunity_samples"

    opportunity_id: Mapped[int] = mapped_column(ForeignKey("opportunity_scores.id", ondelete="CASCADE"),
                                                primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True)
    rank: Mapped[int] = mapped_column(SmallInteger)

    __table_args__ = (Index("idx_opportunity_samples_post", "post_id"),)


class IntelligenceDirtyAuthor(Base):
    """Authors whose classified posts changed since the last profile run.

    Filled by triggers (migration 0010) when a classification is written or a post deleted,
    emptied by the profile job in the transaction that recomputes them.
    """

    __tablename__ = "intelligence_dirty_authors"

    author_did: Mapped[str] = mapped_column(Text, primary_key=True)
    marked_at: Mapped[datetime] = created_now()


class IntelligenceRun(Base):
    """The last run of each recompute job: what ``cannect status`` shows."""

    __tablename__ = "intelligence_runs"

    job: Mapped[str] = mapped_column(Text, primary_key=True)
    finished_at: Mapped[datetime] = created_now()
    duration_ms: Mapped[int] = mapped_column(Integer)
    rows: Mapped[int] = mapped_column(Integer, server_default="0")
    runs: Mapped[int] = mapped_column(BigInteger, server_default="1")
