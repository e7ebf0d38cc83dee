"""Query and answer models of the B2B intelligence endpoints (their OpenAPI, with examples).

Every query model forbids unknown parameters, and times need a zone: anything else is a 422
problem. Answers are documented with an example each; field meanings are in
docs/intelligence.md.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from services.b2b.queries import ranges
from services.classify.schema import ENUMS

from ...schemas import QueryModel
from .access import LIMIT_HEADERS

ConsumerType = Literal[ENUMS["consumer_type"]]  # type: ignore[valid-type]
ExperienceLevel = Literal[ENUMS["experience_level"]]  # type: ignore[valid-type]
Product = Literal[ENUMS["product_category"]]  # type: ignore[valid-type]
Sentiment = Literal[ENUMS["sentiment"]]  # type: ignore[valid-type]

#: Regions are free text from the classifier ("California", "Ontario"): letters, digits, spaces and
#: a little punctuation; matched case-insensitively.
REGION = Field(None, min_length=1, max_length=64, pattern=r"^[^\x00-\x1f]+$",
               description="Region as classified (e.g. California), case-insensitive")
NAME = r"^[^\x00-\x1f]+$"


class RangeQuery(QueryModel):
    """``since``/``until`` (ISO 8601 with a zone) shared by the endpoints over a time range."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    since: AwareDatetime | None = Field(None, description="Start of the range, ISO 8601 with zone (included)")
    until: AwareDatetime | None = Field(None, description="End of the range, ISO 8601 with zone (excluded); "
                                                          "default: now")

    @model_validator(mode="after")
    def _range(self):
        ranges.check(self.since, self.until, self._max_span())
        return self

    def _max_span(self) -> timedelta:
        return ranges.MAX_SPAN


def _example(value: dict, headers: bool = True) -> ConfigDict:
    extra: dict[str, Any] = {"examples": {"example": {"value": value}}}
    if headers:
        extra["headers"] = LIMIT_HEADERS
    return ConfigDict(openapi_extra=extra)


class PostView(BaseModel):
    uri: str
    author_did: str
    author_handle: str | None
    text: str | None
    created_at: str
    engagement: int = Field(description="likes + reposts + replies")


_POST = {"uri": "at://did:plc:abc/app.bsky.feed.post/3kx", "author_did": "did:plc:abc",
         "author_handle": "alice.bsky.social", "text": "Where can I find a good sleepy edible near LA?",
         "created_at": "2026-12-01T09:00:00+00:00", "engagement": 4}


# -- segments ---------------------------------------------------------------------------------

class SegmentsQuery(QueryModel):
    model_config = ConfigDict(extra="forbid")

    consumer_type: ConsumerType | None = None
    experience_level: ExperienceLevel | None = None
    lifestyles: int = Field(5, ge=0, le=20, description="Lifestyle tags listed per segment, most frequent first")


class Segment(BaseModel):
    consumer_type: str
    experience_level: str
    user_count: int
    post_count: int
    avg_sentiment: float | None = Field(description="Mean sentiment score, -100..100")
    avg_intent: float | None = Field(description="Mean purchase intent, 0..100")
    common_lifestyles: list[str]


class SegmentsResponse(BaseModel):
    model_config = _example({"window_days": 30, "total_posts": 1250, "segments": [
        {"consumer_type": "wellness", "experience_level": "regular", "user_count": 310, "post_count": 540,
         "avg_sentiment": 38.5, "avg_intent": 41.2, "common_lifestyles": ["parent", "professional"]}]})

    window_days: int
    total_posts: int
    segments: list[Segment]


# -- intents ----------------------------------------------------------------------------------

class IntentsQuery(QueryModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    min_intent: int = Field(70, ge=70, le=100, description="Lowest purchase intent (the view holds 70 and above)")
    product: Product | None = Field(None, description="Product category")
    region: str | None = REGION
    since: AwareDatetime | None = Field(None, description="Only posts created since (within the last 24 hours)")
    limit: int = Field(50, ge=1, le=100)
    cursor: str | None = Field(None, max_length=512, description="Opaque cursor from the previous page")


class IntentPost(PostView):
    purchase_intent: int
    purchase_stage: str | None
    product_category: str | None
    region: str | None


class IntentsResponse(BaseModel):
    model_config = _example({"since": "2026-11-30T10:00:00+00:00", "until": "2026-12-01T10:00:00+00:00",
                             "min_intent": 70, "total": 42, "by_product": {"edible": 20, "flower": 22},
                             "posts": [{**_POST, "purchase_intent": 90, "purchase_stage": "shopping",
                                        "product_category": "edible", "region": "California"}], "cursor": None})

    since: str
    until: str
    min_intent: int
    total: int = Field(description="High-intent posts matching the filters (as of the last view refresh)")
    by_product: dict[str, int]
    posts: list[IntentPost]
    cursor: str | None


# -- trends -----------------------------------------------------------------------------------

class TrendsQuery(QueryModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["hashtag", "strain", "brand", "effect"] | None = Field(None, description="One kind; default all")
    window: Literal["24h", "7d"] = "24h"
    limit: int = Field(20, ge=1, le=100, description="Trends per kind, fastest growing first")
    sources: int = Field(3, ge=0, le=10, description="Supporting posts shown per trend")


class Trend(BaseModel):
    name: str
    current_count: int
    previous_count: int
    velocity: float = Field(description="(current + 5) / (previous + 5) - 1")
    computed_at: str
    supporting_posts: int = Field(description="Posts naming it in the current window")
    sources: list[PostView] = Field(description="Its most engaging current posts that still exist")


class TrendsResponse(BaseModel):
    model_config = _example({"window": "24h", "trends": {"effect": [
        {"name": "sleepy", "current_count": 60, "previous_count": 20, "velocity": 1.6,
         "computed_at": "2026-12-01T10:00:00+00:00", "supporting_posts": 60, "sources": [_POST]}]}})

    window: str
    trends: dict[str, list[Trend]]


# -- opportunities ----------------------------------------------------------------------------

class OpportunitiesQuery(QueryModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    kind: Literal["product", "effect"] = "product"
    region: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[^\x00-\x1f]+$",
                               description="Region as classified, or 'unknown'; default: all regions together")
    limit: int = Field(20, ge=1, le=100)
    samples: int = Field(3, ge=0, le=5, description="Sample posts per opportunity")


class Opportunity(BaseModel):
    kind: str
    subject: str
    region: str
    score: float
    demand_score: float
    unmet_need_score: float
    saturation_score: float
    parts: dict[str, Any] = Field(description="Every input of the score and its contributions")
    computed_at: str
    samples: list[PostView]


class OpportunitiesResponse(BaseModel):
    model_config = _example({"kind": "product", "region": "all", "opportunities": [
        {"kind": "product", "subject": "edible", "region": "all", "score": 61.2, "demand_score": 58.0,
         "unmet_need_score": 44.5, "saturation_score": 12.0,
         "parts": {"posts": 120, "contributions": {"demand": 26.1, "unmet_need": 15.58, "openness": 17.6}},
         "computed_at": "2026-12-01T10:00:00+00:00", "samples": [_POST]}]})

    kind: str
    region: str
    opportunities: list[Opportunity]


# -- brands, strains, time series -------------------------------------------------------------

class BrandsQuery(QueryModel):
    model_config = ConfigDict(extra="forbid")

    min_mentions: int = Field(1, ge=0, le=10_000_000)
    limit: int = Field(50, ge=1, le=200)


class BrandsResponse(BaseModel):
    model_config = _example({"brands": [
        {"name": "Cookies", "category": None, "website": None, "is_verified": False, "mention_count": 310,
         "avg_sentiment": 0.42, "first_seen_at": "2026-01-03T10:00:00+00:00",
         "last_seen_at": "2026-12-01T09:00:00+00:00"}]})

    brands: list[dict[str, Any]] = Field(description="name, category, website, is_verified, mention_count, "
                                                     "avg_sentiment (-1..1), first_seen_at, last_seen_at")


class StrainsQuery(RangeQuery):
    strain_type: Literal["indica", "sativa", "hybrid", "unknown"] | None = None
    min_mentions: int = Field(1, ge=0, le=10_000_000)
    limit: int = Field(20, ge=1, le=100)


class StrainsResponse(BaseModel):
    model_config = _example({"since": "2026-09-08T10:00:00+00:00", "until": "2026-12-01T10:00:00+00:00", "strains": [
        {"name": "Blue Dream", "strain_type": "hybrid", "mention_count": 120, "avg_sentiment": 0.35,
         "common_effects": ["relaxed", "happy"], "first_seen_at": "2026-02-01T00:00:00+00:00",
         "last_seen_at": "2026-12-01T08:00:00+00:00",
         "weeks": [{"week": "2026-11-23", "mentions": 14, "avg_sentiment_score": 31.5}]}]})

    since: str
    until: str
    strains: list[dict[str, Any]] = Field(description="Strain statistics and `weeks`: ISO weeks with mentions and "
                                                      "mean sentiment score (-100..100)")


SERIES_MAX = {"hour": timedelta(days=31), "day": ranges.MAX_SPAN, "week": ranges.MAX_SPAN,
              "month": ranges.MAX_SPAN}


class TimeseriesQuery(RangeQuery):
    period: Literal["hour", "day", "week", "month"] = "day"

    def _max_span(self) -> timedelta:
        return SERIES_MAX[self.period]


class TimeseriesResponse(BaseModel):
    model_config = _example({"period": "day", "since": "2026-11-01T00:00:00+00:00",
                             "until": "2026-12-01T00:00:00+00:00", "points": [
        {"period_start": "2026-11-30T00:00:00+00:00", "period_end": "2026-12-01T00:00:00+00:00",
         "total_posts": 2700, "unique_authors": 1900, "posts_with_media": 540, "positive_count": 1300,
         "negative_count": 500, "neutral_count": 700, "avg_sentiment_score": 12.5, "avg_purchase_intent": 38.1,
         "high_intent_count": 610, "consumer_type_dist": {"wellness": 800}, "product_dist": {"flower": 900},
         "effects_dist": {"relaxed": 700}, "top_strains": [{"name": "Blue Dream", "count": 40}],
         "top_brands": [{"name": "Cookies", "count": 30}], "top_frustrations": [{"name": "price", "count": 90}],
         "top_emotions": [{"name": "joy", "count": 300}]}]})

    period: str
    since: str
    until: str
    points: list[dict[str, Any]] = Field(description="Stored periods, oldest first (time_series_aggregates)")


# -- insights ---------------------------------------------------------------------------------

Question = Literal["consumption-times", "weekend-vs-weekday", "effect-trends", "seasonality", "purchase-intent-now",
                   "complaint-times", "brand-sentiment"]


class InsightPath(BaseModel):
    question: Question = Field(description="One of the seven time-analysis questions")


class InsightQuery(RangeQuery):
    region: str | None = REGION
    names: str | None = Field(None, max_length=500, pattern=NAME,
                              description="Comma-separated effects (effect-trends) or brands (brand-sentiment) "
                                          "to follow; default: the most frequent")

    def name_list(self) -> list[str] | None:
        names = [n.strip() for n in (self.names or "").split(",") if n.strip()]
        return names[:20] or None


class InsightResponse(BaseModel):
    model_config = _example({"question": "weekend-vs-weekday", "since": "2026-09-02T10:00:00+00:00",
                             "until": "2026-12-01T10:00:00+00:00", "region": None, "answer": {
                                 "weekday": {"posts": 900, "days": 64, "posts_per_day": 14.06},
                                 "weekend": {"posts": 500, "days": 26, "posts_per_day": 19.23},
                                 "weekend_lift": 0.3677}})

    question: str
    since: str
    until: str
    region: str | None
    answer: dict[str, Any] = Field(description="The question's answer (docs/intelligence.md, the seven questions)")


# -- profiles ---------------------------------------------------------------------------------

class ProfilesQuery(QueryModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    score: Literal["dispensary", "wellness_brand", "premium_product", "accessory"] = Field(
        "dispensary", description="Target score to filter and sort by (highest first)")
    min_score: int = Field(0, ge=0, le=100)
    consumer_type: ConsumerType | None = Field(None, description="Primary consumer type")
    experience_level: ExperienceLevel | None = None
    region: str | None = REGION
    limit: int = Field(50, ge=1, le=100)
    cursor: str | None = Field(None, max_length=512, description="Opaque cursor from the previous page")


class ProfilesResponse(BaseModel):
    model_config = _example({"score": "dispensary", "cursor": None, "profiles": [
        {"author_did": "did:plc:abc", "author_handle": "alice.bsky.social", "posts_analyzed": 12,
         "primary_consumer_type": "wellness", "experience_level": "regular", "preferred_products": ["edible"],
         "likely_region": "California", "estimated_monthly_spend": "$50-100",
         "target_scores": {"dispensary": 72, "wellness_brand": 64, "premium_product": 20, "accessory": 8},
         "score_parts": {"dispensary": {"intent": 0.61}}}]})

    score: str
    profiles: list[dict[str, Any]] = Field(description="Aggregated profiles (docs/intelligence.md, user profiles); "
                                                       "`target_scores` 0-100 and their `score_parts`")
    cursor: str | None


# -- search -----------------------------------------------------------------------------------

class SearchQuery(RangeQuery):
    q: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00]*$",
                   description='Words to find (web-search syntax: "phrase", or, -word)')
    product: Product | None = None
    sentiment: Sentiment | None = None
    min_intent: int | None = Field(None, ge=0, le=100, description="Lowest purchase intent")
    region: str | None = REGION
    strain: str | None = Field(None, min_length=1, max_length=100, pattern=NAME, description="Strain, case-insensitive")
    brand: str | None = Field(None, min_length=1, max_length=100, pattern=NAME, description="Brand, case-insensitive")
    limit: int = Field(50, ge=1, le=100)
    cursor: str | None = Field(None, max_length=512, description="Opaque cursor from the previous page")


class Classified(BaseModel):
    consumer_type: str | None
    experience_level: str | None
    product_category: str | None
    sentiment: str | None
    sentiment_score: int | None
    purchase_intent: int | None
    purchase_stage: str | None
    region: str | None
    strain: str | None
    brand: str | None
    effects: list[str]


class SearchPost(PostView):
    classification: Classified


class SearchResponse(BaseModel):
    model_config = _example({"q": "sleepy edible", "since": "2026-11-01T10:00:00+00:00",
                             "until": "2026-12-01T10:00:00+00:00", "cursor": "eyJ...sig", "posts": [
        {**_POST, "classification": {"consumer_type": "wellness", "experience_level": "regular",
                                     "product_category": "edible", "sentiment": "positive", "sentiment_score": 40,
                                     "purchase_intent": 85, "purchase_stage": "shopping", "region": "California",
                                     "strain": None, "brand": "Kiva", "effects": ["sleepy"]}}]})

    q: str
    since: str
    until: str
    posts: list[SearchPost]
    cursor: str | None
