"""``/api/v1/webhooks``: a B2B client's webhook endpoints, their secrets and delivery logs.

The client is the API key's (``current_client()``), and every endpoint is looked up by that
client and its id: another client's endpoint is answered 404, exactly like one that does not
exist. The signing secret (``whsec_...``) appears in the answers of create and rotate-secret
only. Events are sent by the ``webhooks`` queue (``tasks/webhooks.py``); how receivers verify
them, the retry schedule and the disabling rule are in the README's "Webhooks" section.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Literal

from dramatiq.errors import BrokerError
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, ConfigDict, Field
from redis import RedisError

from models.webhooks import DELIVERY_STATUSES, EVENT_TYPES
from services.db import session_scope
from services.webhooks import endpoints, events
from services.webhooks.endpoints import EndpointNotFound, InvalidEndpoint

from ...errors import ApiError
from ...extensions import settings
from ...schemas import Problem, QueryModel
from .access import B2B_ERRORS, B2B_SECURITY, current_client

log = logging.getLogger(__name__)

api = APIBlueprint("b2b_webhooks", __name__, url_prefix="/api/v1/webhooks",
                   abp_tags=[Tag(name="b2b: webhooks", description="Signed event deliveries to your endpoints")])

EventType = Literal[EVENT_TYPES]  # type: ignore[valid-type]
DeliveryStatus = Literal[DELIVERY_STATUSES]  # type: ignore[valid-type]
ERRORS = {404: Problem, 413: Problem, **B2B_ERRORS}

EVENT_DESCRIPTIONS = {
    "high_intent_post": "A cannabis post classified with purchase intent of 70 or more",
    "brand_mention": "A cannabis post naming a brand (only the endpoint's brands, when it lists some)",
    "sentiment_shift": "The last 24 hours' average sentiment moved away from the 7 days before",
    "trend_spike": "A hashtag, strain, brand or effect rising fast in the last 24 hours",
}


class EndpointPath(BaseModel):
    endpoint_id: int = Field(ge=1, le=2**31 - 1)


class CreateBody(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"url": "https://hooks.example.com/cannect", "eventTypes": ["high_intent_post", "brand_mention"],
         "brands": ["cookies"], "description": "CRM intake"}]})

    url: str = Field(min_length=9, max_length=2048, description="https URL of a public host, no user:password")
    eventTypes: list[EventType] = Field(min_length=1, max_length=len(EVENT_TYPES))
    brands: list[str] | None = Field(None, max_length=endpoints.MAX_BRANDS,
                                     description="brand_mention only for these brands (case-insensitive); "
                                                 "null or absent: every brand")
    description: str | None = Field(None, max_length=endpoints.MAX_DESCRIPTION)


class UpdateBody(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"eventTypes": ["trend_spike"]}, {"enabled": False}]})

    url: str | None = Field(None, min_length=9, max_length=2048)
    eventTypes: list[EventType] | None = Field(None, min_length=1, max_length=len(EVENT_TYPES))
    brands: list[str] | None = Field(None, max_length=endpoints.MAX_BRANDS, description="null: every brand")
    description: str | None = Field(None, max_length=endpoints.MAX_DESCRIPTION)
    enabled: bool | None = Field(None, description="false disables the endpoint (its queued deliveries are "
                                                   "given up); true re-enables it")


class EndpointView(BaseModel):
    id: int
    url: str
    description: str | None
    eventTypes: list[str]
    brands: list[str] | None
    enabled: bool
    disabledReason: str | None = Field(description="Why the endpoint was disabled (by you, by a 410 Gone, or "
                                                   "after failing too long)")
    disabledAt: str | None
    failingSince: str | None = Field(description="Start of the current run of failed attempts; null after a success")
    lastSuccessAt: str | None
    createdAt: str


class EndpointList(BaseModel):
    endpoints: list[EndpointView]


_ENDPOINT_EXAMPLE = {"id": 7, "url": "https://hooks.example.com/cannect", "description": "CRM intake",
                     "eventTypes": ["brand_mention", "high_intent_post"], "brands": ["cookies"], "enabled": True,
                     "disabledReason": None, "disabledAt": None, "failingSince": None,
                     "lastSuccessAt": "2026-12-01T03:00:00+00:00", "createdAt": "2026-11-30T10:00:00+00:00"}


class EndpointWithSecret(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "endpoint": _ENDPOINT_EXAMPLE, "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8G",
        "previousSecretValidUntil": None}]})

    endpoint: EndpointView
    secret: str = Field(description="The signing secret, shown this once: whsec_ + base64")
    previousSecretValidUntil: str | None = Field(None, description="After a rotation: the old secret also "
                                                                   "signs until then")


class DeliveriesQuery(QueryModel):
    model_config = ConfigDict(extra="forbid")

    status: DeliveryStatus | None = None
    before: int | None = Field(None, ge=1, description="Cursor: the nextBefore of the previous page")
    limit: int = Field(50, ge=1, le=200)


class DeliveryView(BaseModel):
    id: int
    eventId: str = Field(description="The webhook-id header (the same on every attempt)")
    eventType: str
    status: str = Field(description="pending, failed (another attempt is due at nextAttemptAt), delivered, given_up")
    attempts: int
    lastStatusCode: int | None
    lastError: str | None
    lastAttemptAt: str | None
    nextAttemptAt: str | None
    deliveredAt: str | None
    createdAt: str
    payload: dict


class DeliveryList(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"deliveries": [{
        "id": 912, "eventId": "msg_2Wq0bS3dJm1x6m8n0lQH0y9Z", "eventType": "high_intent_post", "status": "failed",
        "attempts": 2, "lastStatusCode": 503, "lastError": "HTTP 503: upstream unavailable",
        "lastAttemptAt": "2026-12-01T03:00:05+00:00", "nextAttemptAt": "2026-12-01T03:05:05+00:00",
        "deliveredAt": None, "createdAt": "2026-12-01T03:00:00+00:00",
        "payload": {"type": "high_intent_post", "timestamp": "2026-12-01T03:00:00Z",
                    "data": {"purchase_intent": 85, "product_category": "flower", "brand": "Cookies"}}}],
        "nextBefore": None}]})

    deliveries: list[DeliveryView]
    nextBefore: int | None = Field(description="Pass as ?before= for the next (older) page; null: no more")


class TestSent(BaseModel):
    deliveryId: int
    eventId: str


class EventTypeView(BaseModel):
    name: str
    description: str


class EventTypeList(BaseModel):
    eventTypes: list[EventTypeView]


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _endpoint(view: dict) -> dict:
    return {"id": view["id"], "url": view["url"], "description": view["description"],
            "eventTypes": view["event_types"], "brands": view["brands"], "enabled": view["enabled"],
            "disabledReason": view["disabled_reason"], "disabledAt": _time(view["disabled_at"]),
            "failingSince": _time(view["failing_since"]), "lastSuccessAt": _time(view["last_success_at"]),
            "createdAt": _time(view["created_at"])}


def _delivery(view: dict) -> dict:
    return {"id": view["id"], "eventId": view["event_id"], "eventType": view["event_type"], "status": view["status"],
            "attempts": view["attempts"], "lastStatusCode": view["last_status_code"], "lastError": view["last_error"],
            "lastAttemptAt": _time(view["last_attempt_at"]), "nextAttemptAt": _time(view["next_attempt_at"]),
            "deliveredAt": _time(view["delivered_at"]), "createdAt": _time(view["created_at"]),
            "payload": view["payload"]}


def _run(work):
    """``work(session, client_id)`` in one transaction; the service's refusals as problems."""
    client_id = current_client().client_id
    try:
        with session_scope() as session:
            return work(session, client_id)
    except EndpointNotFound:
        raise ApiError(404, "Not Found", "No such webhook endpoint") from None
    except InvalidEndpoint as exc:
        raise ApiError(422, "Invalid webhook endpoint", str(exc)) from None


@api.get("/event-types", security=B2B_SECURITY, responses={200: EventTypeList, **B2B_ERRORS})
def list_event_types():
    """The events an endpoint can subscribe to."""
    current_client()
    return {"eventTypes": [{"name": name, "description": EVENT_DESCRIPTIONS[name]} for name in EVENT_TYPES]}


@api.get("/endpoints", security=B2B_SECURITY, responses={200: EndpointList, **B2B_ERRORS})
def list_endpoints():
    """Your webhook endpoints, oldest first."""
    return {"endpoints": [_endpoint(v) for v in _run(lambda s, c: endpoints.list_for(s, c))]}


@api.post("/endpoints", security=B2B_SECURITY, responses={201: EndpointWithSecret, **ERRORS})
def create_endpoint(body: CreateBody):
    """Register an endpoint. The answer holds its signing secret: the only time it is shown."""
    view, secret = _run(lambda s, c: endpoints.create(s, c, settings(), body.url, body.eventTypes, body.brands,
                                                      body.description))
    return {"endpoint": _endpoint(view), "secret": secret}, 201


@api.get("/endpoints/<int:endpoint_id>", security=B2B_SECURITY, responses={200: EndpointView, **ERRORS})
def show_endpoint(path: EndpointPath):
    """One endpoint, with why and since when it is disabled or failing."""
    return _endpoint(_run(lambda s, c: endpoints.get(s, c, path.endpoint_id)))


@api.patch("/endpoints/<int:endpoint_id>", security=B2B_SECURITY, responses={200: EndpointView, **ERRORS})
def update_endpoint(path: EndpointPath, body: UpdateBody):
    """Change the URL, event types, brands, description, or disable / re-enable (only the fields sent)."""
    given = body.model_dump(exclude_unset=True)
    for field in ("url", "eventTypes", "enabled"):
        if field in given and given[field] is None:
            raise ApiError(422, "Invalid webhook endpoint", f"{field} cannot be null")
    changes = {{"eventTypes": "event_types"}.get(k, k): v for k, v in given.items()}
    return _endpoint(_run(lambda s, c: endpoints.update_endpoint(s, c, path.endpoint_id, settings(), **changes)))


@api.delete("/endpoints/<int:endpoint_id>", security=B2B_SECURITY, responses={204: None, **ERRORS})
def delete_endpoint(path: EndpointPath):
    """Delete an endpoint and its delivery log."""
    _run(lambda s, c: endpoints.delete(s, c, path.endpoint_id))
    return "", 204


@api.post("/endpoints/<int:endpoint_id>/rotate-secret", security=B2B_SECURITY,
          responses={200: EndpointWithSecret, **ERRORS})
def rotate_secret(path: EndpointPath):
    """A new signing secret (shown this once). The old one keeps signing alongside it for
    WEBHOOK_SECRET_OVERLAP_SECONDS (a day by default), so you can switch without losing events."""
    view, secret, until = _run(lambda s, c: endpoints.rotate_secret(s, c, path.endpoint_id, settings()))
    return {"endpoint": _endpoint(view), "secret": secret, "previousSecretValidUntil": _time(until)}


@api.post("/endpoints/<int:endpoint_id>/enable", security=B2B_SECURITY, responses={200: EndpointView, **ERRORS})
def enable_endpoint(path: EndpointPath):
    """Re-enable a disabled endpoint: new events reach it again (deliveries given up stay so)."""
    return _endpoint(_run(lambda s, c: endpoints.enable(s, c, path.endpoint_id)))


@api.get("/endpoints/<int:endpoint_id>/deliveries", security=B2B_SECURITY, responses={200: DeliveryList, **ERRORS})
def list_deliveries(path: EndpointPath, query: DeliveriesQuery):
    """The endpoint's delivery log, newest first: every event queued for it, its attempts and outcome."""
    rows = _run(lambda s, c: endpoints.deliveries(s, c, path.endpoint_id, query.status, query.before,
                                                  query.limit))
    return {"deliveries": [_delivery(r) for r in rows],
            "nextBefore": rows[-1]["id"] if len(rows) == query.limit else None}


@api.post("/endpoints/<int:endpoint_id>/test", security=B2B_SECURITY,
          responses={202: TestSent, **ERRORS})
def send_test_event(path: EndpointPath):
    """Send a ``webhook.test`` event to the endpoint now; follow it in the delivery log."""
    delivery_id, event_id = _run(lambda s, c: events.send_test(s, c, path.endpoint_id))
    try:
        from tasks.webhooks import request  # the broker lives with the actors

        request([delivery_id])
    except (RedisError, BrokerError):
        log.exception("could not enqueue webhook test delivery %s", delivery_id)  # the sweep sends it later
    return {"deliveryId": delivery_id, "eventId": event_id}, 202
