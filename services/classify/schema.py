"""What a classifier says about one post: the fields of ``post_classifications``, validated.

Both classifiers (the LLM one and the offline one) produce :class:`Classification`; nothing
else is ever written to ``post_classifications``. An answer from outside (an LLM's JSON) is
hostile input like any other: unknown enumeration values become ``unknown`` (or nothing, for
the few enumerations the seed gives no ``unknown``), numbers out of range are clamped,
numbers that are not numbers are dropped, free text is trimmed and capped, and lists are
deduplicated snake_case tags of bounded length and count.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, Sequence

from pydantic import BaseModel, ConfigDict, field_validator

#: Enumerations of ``post_classifications`` (the seed's CHECK constraints), plus the closed
#: vocabularies the product aggregates on (product categories, frustrations).
ENUMS: dict[str, tuple[str, ...]] = {
    "experience_level": ("curious", "newbie", "casual", "regular", "daily", "expert", "unknown"),
    "consumer_type": ("wellness", "recreational", "medical", "social", "connoisseur", "spiritual", "unknown"),
    "time_of_day": ("morning", "afternoon", "evening", "night", "late_night", "unknown"),
    "intent_type": ("sharing", "asking", "recommending", "complaining", "celebrating", "informing", "venting",
                    "unknown"),
    "purchase_stage": ("unaware", "considering", "shopping", "post_purchase", "loyal", "unknown"),
    "quality_perception": ("premium", "good", "average", "poor", "unknown"),
    "dosage_pattern": ("microdose", "light", "moderate", "heavy", "unknown"),
    "post_type": ("experience", "review", "question", "recommendation", "announcement", "meme", "photo", "vent",
                  "celebration", "education", "news", "other"),
    "sentiment": ("positive", "negative", "neutral", "mixed"),
    "price_sentiment": ("fair", "expensive", "cheap", "deal"),
    "legal_context": ("legal", "medical_only", "illegal", "unknown"),
    "business_value": ("high", "medium", "low"),
    # ``none``: the post is not about cannabis; ``unknown``: it is, but the product is unclear.
    "product_category": ("flower", "pre_roll", "edible", "vape", "concentrate", "tincture", "topical",
                         "beverage", "capsule", "seeds", "accessory", "other", "unknown", "none"),
}

#: What an enumeration falls back to when an answer's value is not one of its values.
ENUM_FALLBACK: dict[str, str | None] = {name: ("unknown" if "unknown" in values else None)
                                        for name, values in ENUMS.items()}
ENUM_FALLBACK["post_type"] = "other"

#: Free-text tag lists and the vocabulary classifiers are asked to prefer (not enforced:
#: operators may extend lexicons, and LLMs find new effects; tags are normalized instead).
TAG_LISTS = ("lifestyle_tags", "effects_mentioned", "effects_desired", "emotions", "frustrations",
             "audience_segments")
PREFERRED_TAGS: dict[str, tuple[str, ...]] = {
    "effects": ("relaxed", "sleepy", "creative", "focused", "energetic", "euphoric", "happy", "hungry", "giggly",
                "uplifted", "calm", "pain_relief", "anxiety_relief", "talkative", "aroused", "tingly", "anxious",
                "paranoid", "dry_mouth", "dry_eyes", "dizzy", "couch_lock", "headache"),
    "frustrations": ("price", "availability", "quality", "legality", "stigma", "potency", "side_effects",
                     "service", "packaging", "testing", "delivery", "other"),
    "lifestyle_tags": ("active", "creative", "professional", "parent", "student", "outdoors", "gamer",
                       "musician", "foodie", "spiritual", "social", "veteran", "patient"),
    "audience_segments": ("dispensary_target", "brand_target", "wellness_target", "premium_target",
                          "accessory_target", "medical_target"),
}

TEXT_FIELDS = ("occasion", "setting", "mood_before", "mood_after", "media_type", "brand_mentioned",
               "strain_mentioned", "dispensary_mentioned", "region_hint")
#: Numeric fields and their inclusive ranges.
RANGES: dict[str, tuple[int, int]] = {
    "confidence": (0, 100), "purchase_intent": (0, 100), "sentiment_score": (-100, 100), "data_richness": (1, 10),
}
MAX_TEXT = 120
MAX_TAGS = 12
MAX_TAG = 40
_TAG_JUNK = re.compile(r"[^0-9a-z]+")


def normalize_tag(value: Any) -> str | None:
    """``"Pain Relief"`` → ``pain_relief``; non-strings and blanks → ``None``."""
    if not isinstance(value, str):
        return None
    tag = _TAG_JUNK.sub("_", value.strip().lower()).strip("_")[:MAX_TAG].strip("_")
    return tag or None


class Classification(BaseModel):
    """One post's classification; construct with :meth:`from_answer` for untrusted input."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    cannabis_related: bool = True
    confidence: int | None = None

    experience_level: str | None = "unknown"
    consumer_type: str | None = "unknown"
    lifestyle_tags: tuple[str, ...] = ()

    occasion: str | None = None
    setting: str | None = None
    mood_before: str | None = None
    mood_after: str | None = None
    time_of_day: str | None = "unknown"
    is_ritual: bool = False

    intent_type: str | None = "unknown"
    purchase_intent: int | None = None
    purchase_stage: str | None = "unknown"

    product_category: str | None = "unknown"
    effects_mentioned: tuple[str, ...] = ()
    effects_desired: tuple[str, ...] = ()
    quality_perception: str | None = "unknown"
    dosage_pattern: str | None = "unknown"

    post_type: str | None = "other"
    media_type: str | None = None

    sentiment: str | None = "neutral"
    sentiment_score: int | None = None
    emotions: tuple[str, ...] = ()

    brand_mentioned: str | None = None
    strain_mentioned: str | None = None
    dispensary_mentioned: str | None = None
    price_mentioned: bool = False
    price_sentiment: str | None = None

    frustrations: tuple[str, ...] = ()
    region_hint: str | None = None
    legal_context: str | None = "unknown"

    data_richness: int | None = None
    business_value: str | None = None
    audience_segments: tuple[str, ...] = ()

    @field_validator(*ENUMS, mode="before")
    @classmethod
    def _enum(cls, value: Any, info) -> str | None:
        if isinstance(value, str):
            candidate = normalize_tag(value)
            if candidate in ENUMS[info.field_name]:
                return candidate
        return ENUM_FALLBACK[info.field_name]

    @field_validator(*RANGES, mode="before")
    @classmethod
    def _number(cls, value: Any, info) -> int | None:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            return None
        try:
            number = float(value)
        except ValueError:
            return None
        if not math.isfinite(number):
            return None
        low, high = RANGES[info.field_name]
        return int(min(high, max(low, round(number))))

    @field_validator(*TEXT_FIELDS, mode="before")
    @classmethod
    def _text(cls, value: Any) -> str | None:
        if not isinstance(value, str):
            return None
        value = " ".join(value.replace("\x00", "").split())[:MAX_TEXT].strip()
        return None if value.lower() in ("", "none", "null", "unknown", "n/a") else value

    @field_validator(*TAG_LISTS, mode="before")
    @classmethod
    def _tags(cls, value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            return ()
        tags = dict.fromkeys(t for t in map(normalize_tag, value) if t and t not in ("none", "unknown"))
        return tuple(tags)[:MAX_TAGS]

    @field_validator("cannabis_related", "is_ritual", "price_mentioned", mode="before")
    @classmethod
    def _flag(cls, value: Any, info) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1"):
            return True
        if isinstance(value, str) and value.strip().lower() in ("false", "no", "0"):
            return False
        return info.field_name == "cannabis_related"  # unclear: assume the indexed post is on topic

    @classmethod
    def from_answer(cls, answer: Any) -> "Classification":
        """Validate one untrusted answer object; raises ``ValueError`` if it is not an object."""
        if not isinstance(answer, dict):
            raise ValueError("a classification must be a JSON object")
        return cls.model_validate(answer)

    def row(self) -> dict[str, Any]:
        """The ``post_classifications`` columns (lists as lists, for ARRAY columns)."""
        return {name: (list(value) if isinstance(value, tuple) else value)
                for name, value in self.model_dump().items()}


@dataclass(frozen=True)
class PostText:
    """What a classifier sees of a post: its text and the little context that helps."""

    key: str                      # the post's URI, or any caller's id (``cannect classify``)
    text: str
    langs: tuple[str, ...] = ()
    has_media: bool = False
    embed_type: str | None = None
    created_at: datetime | None = None


@dataclass(frozen=True)
class Failure:
    """A post a classifier could not classify, and why (stored in ``posts.processing_error``).

    ``retry_later``: the failure is the service's, not the post's (daily LLM budget reached,
    provider down or refusing our key, slots busy): the pipeline should try the post again
    later instead of recording it as failed for good.
    """

    key: str
    error: str
    retry_later: bool = False


@dataclass
class Outcome:
    """One ``classify`` call: a result per input, in input order, and what it cost."""

    results: list[Classification | Failure] = field(default_factory=list)
    model_version: str = ""
    elapsed_ms: int = 0


class Classifier(Protocol):
    """Both classifiers: ``classify`` never raises for one bad post, it returns a Failure."""

    model_version: str

    def classify(self, posts: Sequence[PostText]) -> Outcome: ...
