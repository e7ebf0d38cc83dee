"""The intelligence product's tables: per-post LLM classifications, per-author aggregates,
time-series aggregates and the brand/strain reference tables (cannect-intelligence-v2)."""

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (BigInteger, Boolean, CheckConstraint, ForeignKey, Identity, Index, Integer,
                        Numeric, SmallInteger, Text, UniqueConstraint, text)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, created_now


def _one_of(column: str, *values: str) -> CheckConstraint:
    quoted = ",".join(f"'{v}'" for v in values)
    return CheckConstraint(f"{column} IN ({quoted})", name=column)


class PostClassification(Base):
    __tablename__ = "post_classifications"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"))
    classified_at: Mapped[datetime] = created_now()
    model_version: Mapped[str] = mapped_column(Text)
    confidence: Mapped[int | None] = mapped_column(SmallInteger)
    processing_ms: Mapped[int | None] = mapped_column(Integer)
    # False: the post is not about cannabis (a member's dog); its product fields say ``none``.
    cannabis_related: Mapped[bool] = mapped_column(Boolean, server_default="true")

    experience_level: Mapped[str | None] = mapped_column(Text)
    consumer_type: Mapped[str | None] = mapped_column(Text)
    lifestyle_tags: Mapped[list[str] | None] = mapped_column(ARRAY(Text))

    occasion: Mapped[str | None] = mapped_column(Text)
    setting: Mapped[str | None] = mapped_column(Text)
    mood_before: Mapped[str | None] = mapped_column(Text)
    mood_after: Mapped[str | None] = mapped_column(Text)
    time_of_day: Mapped[str | None] = mapped_column(Text)
    is_ritual: Mapped[bool] = mapped_column(Boolean, server_default="false")

    intent_type: Mapped[str | None] = mapped_column(Text)
    purchase_intent: Mapped[int | None] = mapped_column(SmallInteger)
    purchase_stage: Mapped[str | None] = mapped_column(Text)

    product_category: Mapped[str | None] = mapped_column(Text)
    effects_mentioned: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    effects_desired: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    quality_perception: Mapped[str | None] = mapped_column(Text)
    dosage_pattern: Mapped[str | None] = mapped_column(Text)

    post_type: Mapped[str | None] = mapped_column(Text)
    media_type: Mapped[str | None] = mapped_column(Text)

    sentiment: Mapped[str | None] = mapped_column(Text)
    sentiment_score: Mapped[int | None] = mapped_column(SmallInteger)
    emotions: Mapped[list[str] | None] = mapped_column(ARRAY(Text))

    brand_mentioned: Mapped[str | None] = mapped_column(Text)
    strain_mentioned: Mapped[str | None] = mapped_column(Text)
    dispensary_mentioned: Mapped[str | None] = mapped_column(Text)
    price_mentioned: Mapped[bool] = mapped_column(Boolean, server_default="false")
    price_sentiment: Mapped[str | None] = mapped_column(Text)

    frustrations: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    region_hint: Mapped[str | None] = mapped_column(Text)
    legal_context: Mapped[str | None] = mapped_column(Text)

    data_richness: Mapped[int | None] = mapped_column(SmallInteger)
    business_value: Mapped[str | None] = mapped_column(Text)
    audience_segments: Mapped[list[str] | None] = mapped_column(ARRAY(Text))

    __table_args__ = (
        UniqueConstraint("post_id", "model_version", name="uq_post_classifications_post_model"),
        CheckConstraint("confidence BETWEEN 0 AND 100", name="confidence"),
        CheckConstraint("purchase_intent BETWEEN 0 AND 100", name="purchase_intent"),
        CheckConstraint("sentiment_score BETWEEN -100 AND 100", name="sentiment_score"),
        CheckConstraint("data_richness BETWEEN 1 AND 10", name="data_richness"),
        _one_of("experience_level", "curious", "newbie", "casual", "regular", "daily", "expert", "unknown"),
        _one_of("consumer_type", "wellness", "recreational", "medical", "social", "connoisseur", "spiritual",
                "unknown"),
        _one_of("time_of_day", "morning", "afternoon", "evening", "night", "late_night", "unknown"),
        _one_of("intent_type", "sharing", "asking", "recommending", "complaining", "celebrating", "informing",
                "venting", "unknown"),
        _one_of("purchase_stage", "unaware", "considering", "shopping", "post_purchase", "loyal", "unknown"),
        _one_of("quality_perception", "premium", "good", "average", "poor", "unknown"),
        _one_of("dosage_pattern", "microdose", "light", "moderate", "heavy", "unknown"),
        _one_of("post_type", "experience", "review", "question", "recommendation", "announcement", "meme",
                "photo", "vent", "celebration", "education", "news", "other"),
        _one_of("sentiment", "positive", "negative", "neutral", "mixed"),
        _one_of("price_sentiment", "fair", "expensive", "cheap", "deal"),
        _one_of("legal_context", "legal", "medical_only", "illegal", "unknown"),
        _one_of("business_value", "high", "medium", "low"),
        Index("idx_class_post", "post_id"),
        Index("idx_class_purchase_intent", text("purchase_intent DESC"), postgresql_where=text("purchase_intent >= 70")),
        Index("idx_class_consumer_type", "consumer_type"),
        Index("idx_class_product", "product_category"),
        Index("idx_class_sentiment", "sentiment"),
        Index("idx_class_experience", "experience_level"),
        Index("idx_class_effects", "effects_mentioned", postgresql_using="gin"),
        Index("idx_class_lifestyle", "lifestyle_tags", postgresql_using="gin"),
        Index("idx_class_brand", "brand_mentioned", postgresql_where=text("brand_mentioned IS NOT NULL")),
        Index("idx_class_strain", "strain_mentioned", postgresql_where=text("strain_mentioned IS NOT NULL")),
    )


class UserProfile(Base):
    """Aggregated consumer intelligence per author (distinct from the app's ``profiles``)."""

    __tablename__ = "user_profiles"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    author_did: Mapped[str] = mapped_column(Text, unique=True)
    author_handle: Mapped[str | None] = mapped_column(Text)
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    posts_analyzed: Mapped[int] = mapped_column(Integer, server_default="0")
    primary_consumer_type: Mapped[str | None] = mapped_column(Text)
    secondary_consumer_type: Mapped[str | None] = mapped_column(Text)
    experience_level: Mapped[str | None] = mapped_column(Text)
    preferred_products: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    preferred_effects: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    typical_occasions: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    lifestyle_tags: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    avg_sentiment: Mapped[Decimal | None] = mapped_column(Numeric(5, 2))
    posting_frequency: Mapped[str | None] = mapped_column(Text)
    typical_time_of_day: Mapped[str | None] = mapped_column(Text)
    purchase_frequency: Mapped[str | None] = mapped_column(Text)
    estimated_monthly_spend: Mapped[str | None] = mapped_column(Text)
    frustrations: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    likely_region: Mapped[str | None] = mapped_column(Text)
    legal_market: Mapped[bool | None] = mapped_column(Boolean)
    dispensary_target_score: Mapped[int] = mapped_column(SmallInteger, server_default="0")
    wellness_brand_target_score: Mapped[int] = mapped_column(SmallInteger, server_default="0")
    premium_product_target_score: Mapped[int] = mapped_column(SmallInteger, server_default="0")
    accessory_target_score: Mapped[int] = mapped_column(SmallInteger, server_default="0")
    profile_updated_at: Mapped[datetime] = created_now()
    stats_json: Mapped[dict | None] = mapped_column(JSONB)

    __table_args__ = (
        Index("idx_user_profiles_consumer_type", "primary_consumer_type"),
        Index("idx_user_profiles_experience", "experience_level"),
        Index("idx_user_profiles_dispensary_score", text("dispensary_target_score DESC")),
        Index("idx_user_profiles_region", "likely_region"),
    )


class TimeSeriesAggregate(Base):
    __tablename__ = "time_series_aggregates"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    period_type: Mapped[str] = mapped_column(Text)
    period_start: Mapped[datetime]
    period_end: Mapped[datetime]
    total_posts: Mapped[int] = mapped_column(Integer, server_default="0")
    unique_authors: Mapped[int] = mapped_column(Integer, server_default="0")
    posts_with_media: Mapped[int] = mapped_column(Integer, server_default="0")
    positive_count: Mapped[int] = mapped_column(Integer, server_default="0")
    negative_count: Mapped[int] = mapped_column(Integer, server_default="0")
    neutral_count: Mapped[int] = mapped_column(Integer, server_default="0")
    avg_sentiment_score: Mapped[Decimal | None] = mapped_column(Numeric(5, 2))
    consumer_type_dist: Mapped[dict | None] = mapped_column(JSONB)
    product_dist: Mapped[dict | None] = mapped_column(JSONB)
    effects_dist: Mapped[dict | None] = mapped_column(JSONB)
    avg_purchase_intent: Mapped[Decimal | None] = mapped_column(Numeric(5, 2))
    high_intent_count: Mapped[int] = mapped_column(Integer, server_default="0")
    top_strains: Mapped[list | None] = mapped_column(JSONB)
    top_brands: Mapped[list | None] = mapped_column(JSONB)
    top_frustrations: Mapped[list | None] = mapped_column(JSONB)
    top_emotions: Mapped[list | None] = mapped_column(JSONB)
    computed_at: Mapped[datetime] = created_now()

    __table_args__ = (
        _one_of("period_type", "hour", "day", "week", "month"),
        UniqueConstraint("period_type", "period_start", name="uq_time_series_aggregates_period"),
        Index("idx_timeseries_period", "period_type", text("period_start DESC")),
    )


class Brand(Base):
    __tablename__ = "brands"

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    normalized_name: Mapped[str] = mapped_column(Text)
    aliases: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    category: Mapped[str | None] = mapped_column(Text)
    website: Mapped[str | None] = mapped_column(Text)
    is_verified: Mapped[bool] = mapped_column(Boolean, server_default="false")
    mention_count: Mapped[int] = mapped_column(Integer, server_default="0")
    avg_sentiment: Mapped[Decimal | None] = mapped_column(Numeric(5, 2))
    first_seen_at: Mapped[datetime] = created_now()
    last_seen_at: Mapped[datetime | None]

    __table_args__ = (Index("idx_brands_normalized", "normalized_name"),)


class Strain(Base):
    __tablename__ = "strains"

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    normalized_name: Mapped[str] = mapped_column(Text)
    aliases: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    strain_type: Mapped[str | None] = mapped_column(Text)
    mention_count: Mapped[int] = mapped_column(Integer, server_default="0")
    avg_sentiment: Mapped[Decimal | None] = mapped_column(Numeric(5, 2))
    common_effects: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    first_seen_at: Mapped[datetime] = created_now()
    last_seen_at: Mapped[datetime | None]

    __table_args__ = (
        _one_of("strain_type", "indica", "sativa", "hybrid", "unknown"),
        Index("idx_strains_normalized", "normalized_name"),
    )


class LlmCall(Base):
    """Every LLM request: tokens (cache hit / miss / output), cost, latency and outcome."""

    __tablename__ = "llm_calls"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    called_at: Mapped[datetime] = created_now()
    purpose: Mapped[str] = mapped_column(Text)
    model: Mapped[str] = mapped_column(Text)
    posts: Mapped[int] = mapped_column(Integer, server_default="0")
    attempt: Mapped[int] = mapped_column(SmallInteger, server_default="1")
    cache_hit_tokens: Mapped[int] = mapped_column(Integer, server_default="0")
    cache_miss_tokens: Mapped[int] = mapped_column(Integer, server_default="0")
    output_tokens: Mapped[int] = mapped_column(Integer, server_default="0")
    cost_usd: Mapped[Decimal] = mapped_column(Numeric(12, 6), server_default="0")
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        _one_of("outcome", "ok", "invalid", "blank", "rate_limited", "server_error", "network_error", "refused",
                "spend_cap"),
        Index("idx_llm_calls_called_at", text("called_at DESC")),
    )
