"""API clients: create, list, show, rotate the key, revoke, change the plan; and the lookup
the web process authenticates with.

Keys are returned only by ``create`` and ``rotate`` (shown once); rows keep their hash.
Changes are made on the caller's session; after the commit the caller must call
``limits.invalidate(redis, client_id)`` (``apply`` does both) so that every web process
drops its cached copy at its next request (see ``limits.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from models import ApiClient

from . import keys
from .tiers import ALWAYS_ALLOWED, PlanError, resolve_plan

MAX_NAME = 200


class ClientError(ValueError):
    """Input a client change cannot take; the message says why."""


class ClientNotFound(LookupError):
    pass


@dataclass(frozen=True)
class Credentials:
    """What the web process needs to authenticate a key id and apply the client's plan."""

    client_id: int
    name: str
    tier: str
    monthly_quota: int | None  # None: no monthly cap
    rate_limit_per_min: int
    allowed_endpoints: frozenset[str]
    active: bool
    secret_hash: str
    expires_at: datetime | None

    def allows(self, endpoint: str) -> bool:
        return endpoint in ALWAYS_ALLOWED or endpoint in self.allowed_endpoints

    def usable(self, now: datetime) -> bool:
        return self.active and (self.expires_at is None or now < self.expires_at)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _clean_name(name: str) -> str:
    name = (name or "").strip()
    if not 1 <= len(name) <= MAX_NAME or not name.isprintable():
        raise ClientError(f"a client name is 1 to {MAX_NAME} printable characters")
    return name


def _expiry(days: float | None, now: datetime) -> datetime | None:
    if days is None:
        return None
    if not 0 < days <= 3650:
        raise ClientError("a key expires after more than 0 and at most 3650 days")
    return now + timedelta(days=days)


def view(client: ApiClient) -> dict:
    """A client as admins see it: never a secret or its hash."""
    iso = lambda value: value.isoformat() if value else None  # noqa: E731
    return {"id": client.id, "name": client.client_name, "tier": client.tier,
            "monthlyQuota": client.monthly_quota, "rateLimitPerMin": client.rate_limit_per_min,
            "allowedEndpoints": list(client.allowed_endpoints or []), "active": client.is_active,
            "keyId": client.api_key, "keyExpiresAt": iso(client.key_expires_at),
            "previousKeyId": client.previous_api_key, "previousKeyExpiresAt": iso(client.previous_key_expires_at),
            "createdAt": iso(client.created_at), "lastUsedAt": iso(client.last_used_at),
            "revokedAt": iso(client.revoked_at)}


def _get(session: Session, client_id: int, lock: bool = False) -> ApiClient:
    query = select(ApiClient).where(ApiClient.id == client_id)
    client = session.scalars(query.with_for_update() if lock else query).one_or_none()
    if client is None:
        raise ClientNotFound(f"no API client {client_id}")
    return client


def create(session: Session, name: str, tier: str, monthly_quota: int | None = None,
           rate_limit_per_min: int | None = None, allowed_endpoints: list[str] | None = None,
           expires_in_days: float | None = None) -> tuple[dict, str]:
    """``(client, key)``: the key is shown this once."""
    try:
        plan = resolve_plan(tier, monthly_quota, rate_limit_per_min, allowed_endpoints)
    except PlanError as exc:
        raise ClientError(str(exc)) from None
    key, key_id, secret_hash = keys.new_key()
    client = ApiClient(client_name=_clean_name(name), api_key=key_id, api_secret_hash=secret_hash, tier=tier,
                       monthly_quota=plan.monthly_quota, rate_limit_per_min=plan.rate_limit_per_min,
                       allowed_endpoints=list(plan.allowed_endpoints), key_expires_at=_expiry(expires_in_days, _now()))
    session.add(client)
    session.flush()
    session.refresh(client)
    return view(client), key


def list_clients(session: Session, include_revoked: bool = True) -> list[dict]:
    query = select(ApiClient).order_by(ApiClient.id)
    if not include_revoked:
        query = query.where(ApiClient.is_active)
    return [view(client) for client in session.scalars(query)]


def show(session: Session, client_id: int) -> dict:
    return view(_get(session, client_id))


def rotate(session: Session, client_id: int, overlap_seconds: int, expires_in_days: float | None = None
           ) -> tuple[dict, str]:
    """A new key; the current one keeps working for ``overlap_seconds`` (0: stops at once).

    A key older than the current one (from an earlier rotation still in its overlap) stops now:
    at most two keys work at any time.
    """
    if not 0 <= overlap_seconds <= 30 * 86400:
        raise ClientError("the overlap is between 0 seconds and 30 days")
    client = _get(session, client_id, lock=True)
    if not client.is_active:
        raise ClientError(f"API client {client_id} is revoked: create a new client instead")
    now = _now()
    key, key_id, secret_hash = keys.new_key()
    if overlap_seconds:
        old_expiry = client.key_expires_at
        until = now + timedelta(seconds=overlap_seconds)
        client.previous_api_key, client.previous_secret_hash = client.api_key, client.api_secret_hash
        client.previous_key_expires_at = min(until, old_expiry) if old_expiry else until
    else:
        client.previous_api_key = client.previous_secret_hash = client.previous_key_expires_at = None
    session.flush()  # the old id leaves api_key before the new one arrives (both are unique)
    client.api_key, client.api_secret_hash = key_id, secret_hash
    client.key_expires_at = _expiry(expires_in_days, now)
    session.flush()
    return view(client), key


def revoke(session: Session, client_id: int) -> dict:
    """Switch the client off for good: every key of it stops at the next request."""
    client = _get(session, client_id, lock=True)
    if client.is_active:
        client.is_active, client.revoked_at = False, _now()
        client.previous_key_expires_at = client.revoked_at if client.previous_api_key else None
        session.flush()
    return view(client)


def set_tier(session: Session, client_id: int, tier: str, monthly_quota: int | None = None,
             rate_limit_per_min: int | None = None, allowed_endpoints: list[str] | None = None) -> dict:
    """Move to ``tier``: its defaults, with the overrides given."""
    try:
        plan = resolve_plan(tier, monthly_quota, rate_limit_per_min, allowed_endpoints)
    except PlanError as exc:
        raise ClientError(str(exc)) from None
    client = _get(session, client_id, lock=True)
    client.tier, client.monthly_quota = tier, plan.monthly_quota
    client.rate_limit_per_min, client.allowed_endpoints = plan.rate_limit_per_min, list(plan.allowed_endpoints)
    session.flush()
    return view(client)


def credentials(session: Session, key_id: str) -> Credentials | None:
    """The client holding ``key_id`` as its current or (during an overlap) previous key."""
    client = session.scalars(select(ApiClient).where(
        or_(ApiClient.api_key == key_id, ApiClient.previous_api_key == key_id))).one_or_none()
    if client is None:
        return None
    current = client.api_key == key_id
    return Credentials(
        client_id=client.id, name=client.client_name, tier=client.tier or "custom",
        monthly_quota=client.monthly_quota, rate_limit_per_min=client.rate_limit_per_min,
        allowed_endpoints=frozenset(client.allowed_endpoints or ()), active=client.is_active,
        secret_hash=client.api_secret_hash if current else client.previous_secret_hash,
        expires_at=client.key_expires_at if current else client.previous_key_expires_at)


def touch_last_used(session: Session, last_used: dict[int, datetime]) -> None:
    """Move ``last_used_at`` forward (never back) for the clients of a flushed usage batch."""
    for client_id, at in last_used.items():
        session.execute(update(ApiClient).where(ApiClient.id == client_id)
                        .where(or_(ApiClient.last_used_at.is_(None), ApiClient.last_used_at < at))
                        .values(last_used_at=at))
