"""Clients' webhook endpoints: register, change, rotate the secret, disable, re-enable, read the log.

Every function takes the client's id and looks endpoints up by (client, id): one client's
endpoint is "not found" to every other client. URLs are checked when given (``check_url``:
https, no user:password, every address of the host public) and again at each delivery by the
guarded client, since DNS may answer differently later.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from models.webhooks import DELIVERY_STATUSES, EVENT_TYPES, WebhookDelivery, WebhookEndpoint
from services.crypto import cipher_for
from services.outbound import Policy, RefusedDestination, check_url

from .signing import generate_secret

#: Endpoints one client may register.
MAX_ENDPOINTS_PER_CLIENT = 20
MAX_BRANDS = 100
MAX_DESCRIPTION = 500
_BRAND = re.compile(r"^[^\x00-\x1f\x7f]{1,100}$")


class InvalidEndpoint(ValueError):
    """The client asked for something we will not register (URL, event types, brands, too many)."""


class EndpointNotFound(LookupError):
    """No such endpoint for this client."""


def policy(settings) -> Policy:
    """Where webhooks may go: https public hosts (plus the origins a test allows), with a
    timeout and a cap on the answer read."""
    return Policy(exempt_origins=frozenset(settings.webhook_insecure_test_origins),
                  connect_timeout=settings.webhook_timeout_seconds, read_timeout=settings.webhook_timeout_seconds,
                  max_response_bytes=settings.webhook_max_response_bytes, max_url_length=2048)


def validate_url(url: str, endpoint_policy: Policy) -> str:
    try:
        check_url(url, endpoint_policy)
    except RefusedDestination as exc:
        raise InvalidEndpoint(f"url: {exc}") from None
    return url


def validate_event_types(event_types) -> list[str]:
    chosen = sorted(set(event_types or ()))
    unknown = [t for t in chosen if t not in EVENT_TYPES]
    if unknown or not chosen:
        raise InvalidEndpoint(f"event_types must be one or more of {', '.join(EVENT_TYPES)}"
                              + (f" (unknown: {', '.join(map(str, unknown))})" if unknown else ""))
    return chosen


def validate_brands(brands) -> list[str] | None:
    if brands is None:
        return None
    cleaned = sorted({str(b).strip().lower() for b in brands if str(b).strip()})
    if len(cleaned) > MAX_BRANDS or not all(_BRAND.match(b) for b in cleaned):
        raise InvalidEndpoint(f"brands must be at most {MAX_BRANDS} names of 1 to 100 printable characters")
    return cleaned or None


def view(endpoint: WebhookEndpoint) -> dict:
    """What the client sees of an endpoint (never the secret)."""
    return {"id": endpoint.id, "url": endpoint.url, "description": endpoint.description,
            "event_types": list(endpoint.event_types), "brands": endpoint.brands, "enabled": endpoint.enabled,
            "disabled_reason": endpoint.disabled_reason, "disabled_at": endpoint.disabled_at,
            "failing_since": endpoint.failing_since, "last_success_at": endpoint.last_success_at,
            "created_at": endpoint.created_at}


def _owned(session: Session, client_id: int, endpoint_id: int, lock: bool = False) -> WebhookEndpoint:
    query = select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.client_id == client_id)
    endpoint = session.scalar(query.with_for_update() if lock else query)
    if endpoint is None:
        raise EndpointNotFound(f"no webhook endpoint {endpoint_id}")
    return endpoint


def create(session: Session, client_id: int, settings, url: str, event_types, brands=None,
           description: str | None = None) -> tuple[dict, str]:
    """Register an endpoint; (its view, its secret): the only time the secret is shown."""
    validate_url(url, policy(settings))
    if description is not None and len(description) > MAX_DESCRIPTION:
        raise InvalidEndpoint(f"description must be at most {MAX_DESCRIPTION} characters")
    session.execute(text("SELECT pg_advisory_xact_lock(hashtext('webhook_endpoints'), :c)"), {"c": client_id})
    count = session.scalar(text("SELECT count(*) FROM webhook_endpoints WHERE client_id = :c"), {"c": client_id})
    if count >= MAX_ENDPOINTS_PER_CLIENT:
        raise InvalidEndpoint(f"a client may register at most {MAX_ENDPOINTS_PER_CLIENT} webhook endpoints")
    secret = generate_secret()
    endpoint = WebhookEndpoint(client_id=client_id, url=url, description=description,
                               event_types=validate_event_types(event_types), brands=validate_brands(brands),
                               secret_encrypted=cipher_for(settings).encrypt(secret), enabled=True)
    session.add(endpoint)
    session.flush()
    session.refresh(endpoint)
    return view(endpoint), secret


def list_for(session: Session, client_id: int) -> list[dict]:
    return [view(e) for e in session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.client_id == client_id)
                                             .order_by(WebhookEndpoint.id))]


def get(session: Session, client_id: int, endpoint_id: int) -> dict:
    return view(_owned(session, client_id, endpoint_id))


def update_endpoint(session: Session, client_id: int, endpoint_id: int, settings, **changes) -> dict:
    """Change url, event_types, brands, description and/or enabled (only the keys given)."""
    endpoint = _owned(session, client_id, endpoint_id, lock=True)
    if "url" in changes:
        endpoint.url = validate_url(changes["url"], policy(settings))
    if "event_types" in changes:
        endpoint.event_types = validate_event_types(changes["event_types"])
    if "brands" in changes:
        endpoint.brands = validate_brands(changes["brands"])
    if "description" in changes:
        if changes["description"] is not None and len(changes["description"]) > MAX_DESCRIPTION:
            raise InvalidEndpoint(f"description must be at most {MAX_DESCRIPTION} characters")
        endpoint.description = changes["description"]
    if changes.get("enabled") is True and not endpoint.enabled:
        _enable(endpoint)
    elif changes.get("enabled") is False and endpoint.enabled:
        session.flush()
        disable(session, endpoint.id, "Disabled by the client")
        session.refresh(endpoint)
    session.flush()
    return view(endpoint)


def delete(session: Session, client_id: int, endpoint_id: int) -> None:
    session.delete(_owned(session, client_id, endpoint_id, lock=True))
    session.flush()


def rotate_secret(session: Session, client_id: int, endpoint_id: int, settings,
                  now: datetime | None = None) -> tuple[dict, str, datetime | None]:
    """A new secret (shown once); the old one keeps signing too for ``WEBHOOK_SECRET_OVERLAP_SECONDS``
    so receivers can switch without losing a delivery. Returns (view, secret, old one valid until)."""
    endpoint = _owned(session, client_id, endpoint_id, lock=True)
    now = now or datetime.now(timezone.utc)
    overlap = settings.webhook_secret_overlap_seconds
    secret = generate_secret()
    endpoint.previous_secret_encrypted = endpoint.secret_encrypted if overlap else None
    endpoint.previous_secret_expires_at = now + timedelta(seconds=overlap) if overlap else None
    endpoint.secret_encrypted = cipher_for(settings).encrypt(secret)
    session.flush()
    return view(endpoint), secret, endpoint.previous_secret_expires_at


def _enable(endpoint: WebhookEndpoint) -> None:
    endpoint.enabled, endpoint.disabled_reason, endpoint.disabled_at, endpoint.failing_since = True, None, None, None


def enable(session: Session, client_id: int, endpoint_id: int) -> dict:
    """Re-enable a disabled endpoint: new events reach it again (those given up stay given up)."""
    endpoint = _owned(session, client_id, endpoint_id, lock=True)
    _enable(endpoint)
    session.flush()
    return view(endpoint)


def disable(session: Session, endpoint_id: int, reason: str, now: datetime | None = None) -> bool:
    """Disable an endpoint with a reason its client can read, and give up its queued deliveries.
    False when it was already disabled."""
    now = now or datetime.now(timezone.utc)
    done = session.execute(update(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.enabled)
                           .values(enabled=False, disabled_reason=reason[:1000], disabled_at=now)).rowcount
    if done:
        session.execute(update(WebhookDelivery)
                        .where(WebhookDelivery.endpoint_id == endpoint_id,
                               WebhookDelivery.status.in_(("pending", "failed")))
                        .values(status="given_up", next_attempt_at=None,
                                last_error=text("coalesce(last_error || ' / ', '') || 'endpoint disabled'")))
    return bool(done)


def delivery_view(delivery: WebhookDelivery) -> dict:
    return {"id": delivery.id, "event_id": delivery.event_id, "event_type": delivery.event_type,
            "status": delivery.status, "attempts": delivery.attempts, "last_status_code": delivery.last_status_code,
            "last_error": delivery.last_error, "last_attempt_at": delivery.last_attempt_at,
            "next_attempt_at": delivery.next_attempt_at, "delivered_at": delivery.delivered_at,
            "created_at": delivery.created_at, "payload": delivery.payload}


def deliveries(session: Session, client_id: int, endpoint_id: int, status: str | None = None,
               before_id: int | None = None, limit: int = 50) -> list[dict]:
    """The endpoint's delivery log, newest first (``before_id``: the cursor of the next page)."""
    _owned(session, client_id, endpoint_id)
    if status is not None and status not in DELIVERY_STATUSES:
        raise InvalidEndpoint(f"status must be one of {', '.join(DELIVERY_STATUSES)}")
    query = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    if before_id is not None:
        query = query.where(WebhookDelivery.id < before_id)
    return [delivery_view(d) for d in session.scalars(query.order_by(WebhookDelivery.id.desc()).limit(limit))]
