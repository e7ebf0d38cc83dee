"""Webhook events: :func:`emit` and the producers of the four event types.

Every producer is a plain function in the caller's transaction that inserts one
``webhook_deliveries`` row per subscribed, enabled endpoint and returns the new rows' ids; the
caller enqueues them after its commit (``tasks/webhooks.py``: ``request``). The event id
(``webhook-id``) is derived from what the event is about (the post, the trend and day...), and
``(endpoint_id, event_id)`` is unique: an event produced twice (a retried classification, a
detection run every few minutes) is queued once per endpoint.

Events and their ``data`` (the body is ``{"type", "timestamp", "data"}``, the Standard
Webhooks payload structure):

- ``high_intent_post``: a cannabis post whose newest classification has purchase_intent >=
  ``WEBHOOK_HIGH_INTENT_THRESHOLD`` (70): the post and its intent, product, brand, region.
- ``brand_mention``: a post whose newest classification names a brand; an endpoint with a
  ``brands`` list receives only those brands (case-insensitive).
- ``trend_spike``: a 24 h trend (hashtag, strain, brand, effect) whose smoothed velocity
  reached ``WEBHOOK_TREND_SPIKE_VELOCITY`` with at least ``WEBHOOK_TREND_SPIKE_MIN_POSTS``
  posts; once per trend and UTC day.
- ``sentiment_shift``: the average sentiment score of the last 24 h moved by at least
  ``WEBHOOK_SENTIMENT_SHIFT_POINTS`` (on -100..100) from the 7 days before, from the hourly
  ``time_series_aggregates``, both windows with at least ``WEBHOOK_SENTIMENT_MIN_POSTS``
  posts; once per direction and UTC day.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Iterable

from sqlalchemy import text
from sqlalchemy.orm import Session

from models.webhooks import EVENT_TYPES
from services.intelligence.base import LATEST

from .endpoints import EndpointNotFound, InvalidEndpoint

TEST_EVENT = "webhook.test"
HIGH_INTENT_THRESHOLD = 70

_FAN_OUT = text("""
    INSERT INTO webhook_deliveries (endpoint_id, event_id, event_type, payload, next_attempt_at)
    SELECT e.id, :event_id, :event_type, CAST(:payload AS jsonb), now() FROM webhook_endpoints e
    WHERE e.enabled AND :event_type = ANY(e.event_types)
      AND (CAST(:client_id AS integer) IS NULL OR e.client_id = CAST(:client_id AS integer))
      AND (CAST(:brand AS text) IS NULL OR e.brands IS NULL OR lower(CAST(:brand AS text)) = ANY(e.brands))
    ON CONFLICT (endpoint_id, event_id) DO NOTHING
    RETURNING id""")


def _json_value(value):
    """Timestamps as ISO 8601 (UTC with Z), numbers as numbers."""
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(value, Decimal):
        return float(value)
    return str(value)


def event_id(event_type: str, key: str) -> str:
    """``msg_`` + 24 base64url characters of a hash of what the event is about: stable across retries."""
    digest = hashlib.sha256(f"{event_type}\x00{key}".encode()).digest()[:18]
    return "msg_" + base64.urlsafe_b64encode(digest).decode()


def envelope(event_type: str, data: dict, now: datetime | None = None) -> dict:
    now = now or datetime.now(timezone.utc)
    return {"type": event_type, "timestamp": now.isoformat().replace("+00:00", "Z"), "data": data}


def emit(session: Session, client_id: int | None, event_type: str, data: dict, key: str | None = None,
         brand: str | None = None, now: datetime | None = None) -> list[int]:
    """Queue an event for every enabled endpoint subscribed to its type (of one client, or of all
    with ``client_id`` None; ``brand`` applies the endpoints' brand filters). ``key`` names what
    the event is about (default: the data itself). Returns the ids of the deliveries created."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    key = key if key is not None else json.dumps(data, sort_keys=True, default=_json_value)
    payload = json.dumps(envelope(event_type, data, now), default=_json_value)
    return list(session.execute(_FAN_OUT, {"event_id": event_id(event_type, key), "event_type": event_type,
                                           "payload": payload, "client_id": client_id, "brand": brand}).scalars())


def send_test(session: Session, client_id: int, endpoint_id: int, now: datetime | None = None) -> tuple[int, str]:
    """A ``webhook.test`` event for one endpoint of the client: (delivery id, event id)."""
    row = session.execute(text("SELECT enabled FROM webhook_endpoints WHERE id = :e AND client_id = :c"),
                          {"e": endpoint_id, "c": client_id}).first()
    if row is None:
        raise EndpointNotFound(f"no webhook endpoint {endpoint_id}")
    if not row.enabled:
        raise InvalidEndpoint("the endpoint is disabled: enable it before sending a test event")
    message_id = event_id(TEST_EVENT, secrets.token_hex(16))
    payload = envelope(TEST_EVENT, {"message": "A test event sent from the Cannect API", "endpoint_id": endpoint_id},
                       now)
    delivery_id = session.execute(text(
        "INSERT INTO webhook_deliveries (endpoint_id, event_id, event_type, payload, next_attempt_at) "
        "VALUES (:e, :id, :type, CAST(:payload AS jsonb), now()) RETURNING id"),
        {"e": endpoint_id, "id": message_id, "type": TEST_EVENT, "payload": json.dumps(payload, default=_json_value)}).scalar_one()
    return delivery_id, message_id


# -- classifications: high_intent_post and brand_mention -------------------------------------------

_CLASSIFIED = text(f"""
    SELECT p.uri, p.author_did, p.text, p.created_at, pc.purchase_intent, pc.purchase_stage, pc.intent_type,
           pc.product_category, pc.brand_mentioned, pc.strain_mentioned, pc.region_hint, pc.sentiment,
           pc.sentiment_score, pc.model_version, pc.classified_at
    FROM posts p JOIN post_classifications pc ON pc.post_id = p.id AND {LATEST}
    WHERE p.id = ANY(CAST(:ids AS bigint[])) AND (pc.purchase_intent >= :threshold OR pc.brand_mentioned IS NOT NULL)
    ORDER BY p.id""")


def _post(row) -> dict:
    return {"uri": row.uri, "author_did": row.author_did, "text": row.text, "created_at": row.created_at}


def events_for_classifications(session: Session, post_ids: Iterable[int],
                               threshold: int = HIGH_INTENT_THRESHOLD) -> list[int]:
    """After the classification pipeline's commit: the high_intent_post and brand_mention events of
    these posts (their newest classification, cannabis posts only). Safe to call again for the
    same posts. Returns the deliveries created."""
    ids = sorted({int(i) for i in post_ids})
    if not ids:
        return []
    created: list[int] = []
    for row in session.execute(_CLASSIFIED, {"ids": ids, "threshold": threshold}):
        common = {"post": _post(row), "purchase_intent": row.purchase_intent, "product_category": row.product_category,
                  "brand": row.brand_mentioned, "strain": row.strain_mentioned, "region": row.region_hint,
                  "sentiment": row.sentiment, "sentiment_score": row.sentiment_score,
                  "classified_at": row.classified_at, "model_version": row.model_version}
        if row.purchase_intent is not None and row.purchase_intent >= threshold:
            created += emit(session, None, "high_intent_post",
                            {**common, "purchase_stage": row.purchase_stage, "intent_type": row.intent_type},
                            key=row.uri)
        if row.brand_mentioned:
            created += emit(session, None, "brand_mention", common, key=f"{row.uri}\x00{row.brand_mentioned.lower()}",
                            brand=row.brand_mentioned)
    return created


# -- trends and aggregates: trend_spike and sentiment_shift ----------------------------------------

_SPIKES = text("""
    SELECT t.kind, t.name, t."window", t.current_count, t.previous_count, t.velocity, t.computed_at,
           coalesce((SELECT array_agg(p.uri ORDER BY s.relevance_score DESC, p.id) FROM (
                SELECT * FROM trend_sources s WHERE s.trend_id = t.id ORDER BY s.relevance_score DESC LIMIT 3) s
                JOIN posts p ON p.id = s.post_id), '{}') AS sample_posts
    FROM trends t
    WHERE t."window" = '24h' AND t.velocity >= :velocity AND t.current_count >= :min_posts
    ORDER BY t.velocity DESC, t.kind, t.name
    LIMIT 200""")


def detect_trend_spikes(session: Session, settings, now: datetime | None = None) -> list[int]:
    """trend_spike events for the 24 h trends rising past the thresholds (once per trend and UTC day)."""
    now = now or datetime.now(timezone.utc)
    created: list[int] = []
    params = {"velocity": settings.webhook_trend_spike_velocity, "min_posts": settings.webhook_trend_spike_min_posts}
    for row in session.execute(_SPIKES, params):
        data = {"kind": row.kind, "name": row.name, "window": row.window, "current_count": row.current_count,
                "previous_count": row.previous_count, "velocity": round(float(row.velocity), 4),
                "computed_at": row.computed_at, "sample_posts": list(row.sample_posts)}
        created += emit(session, None, "trend_spike", data,
                        key=f"{row.kind}\x00{row.name.lower()}\x00{row.window}\x00{now.date().isoformat()}", now=now)
    return created


_SENTIMENT = text("""
    SELECT sum(avg_sentiment_score * total_posts) FILTER (WHERE period_start >= :mid)
               / nullif(sum(total_posts) FILTER (WHERE period_start >= :mid AND avg_sentiment_score IS NOT NULL), 0)
               AS current_avg,
           coalesce(sum(total_posts) FILTER (WHERE period_start >= :mid AND avg_sentiment_score IS NOT NULL), 0)
               AS current_posts,
           sum(avg_sentiment_score * total_posts) FILTER (WHERE period_start < :mid)
               / nullif(sum(total_posts) FILTER (WHERE period_start < :mid AND avg_sentiment_score IS NOT NULL), 0)
               AS baseline_avg,
           coalesce(sum(total_posts) FILTER (WHERE period_start < :mid AND avg_sentiment_score IS NOT NULL), 0)
               AS baseline_posts
    FROM time_series_aggregates
    WHERE period_type = 'hour' AND period_start >= :lo AND period_start < :hi""")


def detect_sentiment_shift(session: Session, settings, now: datetime | None = None) -> list[int]:
    """A sentiment_shift event when the last 24 h's average sentiment left the 7 days before's by
    the threshold (hourly aggregates, weighted by posts; once per direction and UTC day)."""
    now = now or datetime.now(timezone.utc)
    hi = now.replace(minute=0, second=0, microsecond=0)
    mid, lo = hi - timedelta(hours=24), hi - timedelta(days=8)
    row = session.execute(_SENTIMENT, {"lo": lo, "mid": mid, "hi": hi}).one()
    minimum = settings.webhook_sentiment_min_posts
    if row.current_avg is None or row.baseline_avg is None or row.current_posts < minimum or row.baseline_posts < minimum:
        return []
    current, baseline = float(row.current_avg), float(row.baseline_avg)
    delta = current - baseline
    if abs(delta) < settings.webhook_sentiment_shift_points:
        return []
    direction = "up" if delta > 0 else "down"
    data = {"scope": "market", "direction": direction, "current_avg_sentiment": round(current, 2),
            "baseline_avg_sentiment": round(baseline, 2), "delta": round(delta, 2),
            "current_posts": int(row.current_posts), "baseline_posts": int(row.baseline_posts),
            "current_window": {"from": mid, "to": hi}, "baseline_window": {"from": lo, "to": mid}}
    return emit(session, None, "sentiment_shift", data, key=f"market\x00{direction}\x00{hi.date().isoformat()}", now=now)
