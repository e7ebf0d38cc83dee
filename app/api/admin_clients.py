"""``/api/admin/clients``: B2B API clients for admins (``ADMIN_TOKEN`` or an admin member):
create, list, show, rotate the key, revoke, change the plan, read a client's usage.

Keys appear in the answers of create and rotate only; they are stored hashed. Every change
is committed, then announced to the web processes (``limits.invalidate``), so a revoked key
is refused from the next request on.
"""

from __future__ import annotations

import logging
from typing import Literal

from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, ConfigDict, Field
from redis import RedisError

from services.b2b import clients, limits, usage
from services.b2b.tiers import ENDPOINTS, MAX_QUOTA, MAX_RATE
from services.db import session_scope

from ..admin import ADMIN
from ..errors import ApiError
from ..extensions import get_redis, settings
from ..schemas import BODY_ERRORS, ERRORS, Problem
from .v1.usage import UsageQuery, UsageResponse, day_range

log = logging.getLogger(__name__)

api = APIBlueprint("admin_clients", __name__, url_prefix="/api/admin/clients",
                   abp_tags=[Tag(name="admin: B2B clients", description="API clients, keys, plans and usage")])

Tier = Literal["starter", "growth", "enterprise", "custom"]
Endpoint = Literal[ENDPOINTS]  # type: ignore[valid-type]
ADMIN_ERRORS = {403: Problem, 404: Problem, **ERRORS}
ADMIN_BODY_ERRORS = {403: Problem, 404: Problem, **BODY_ERRORS}


class PlanFields(BaseModel):
    monthlyQuota: int | None = Field(None, ge=1, le=MAX_QUOTA, description="Override the tier's calls per month")
    rateLimitPerMin: int | None = Field(None, ge=1, le=MAX_RATE, description="Override the tier's calls per minute")
    allowedEndpoints: list[Endpoint] | None = Field(None, max_length=len(ENDPOINTS),
                                                    description="Override the tier's endpoints")


class CreateBody(PlanFields):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"name": "Acme Dispensaries", "tier": "growth"},
        {"name": "Big Brand", "tier": "custom", "monthlyQuota": 5000000, "rateLimitPerMin": 3000}]})

    name: str = Field(min_length=1, max_length=clients.MAX_NAME)
    tier: Tier
    expiresInDays: float | None = Field(None, gt=0, le=3650, description="The key stops working after this long")


class TierBody(PlanFields):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"tier": "enterprise"}]})

    tier: Tier


class RotateBody(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"overlapSeconds": 86400}]})

    overlapSeconds: int | None = Field(None, ge=0, le=30 * 86400,
                                       description="How long the current key keeps working (default "
                                                   "B2B_KEY_OVERLAP_SECONDS; 0: it stops at once)")
    expiresInDays: float | None = Field(None, gt=0, le=3650, description="The new key stops working after this long")


class ClientPath(BaseModel):
    client_id: int = Field(ge=1, le=2**31 - 1)


class ClientView(BaseModel):
    id: int
    name: str
    tier: str | None
    monthlyQuota: int | None
    rateLimitPerMin: int
    allowedEndpoints: list[str]
    active: bool
    keyId: str = Field(description="Public part of the current key (cnk_live_<keyId>_...)")
    keyExpiresAt: str | None
    previousKeyId: str | None = Field(description="The key replaced by the last rotation, while it still works")
    previousKeyExpiresAt: str | None
    createdAt: str
    lastUsedAt: str | None
    revokedAt: str | None


class ClientWithKey(BaseModel):
    model_config = ConfigDict(openapi_extra={"examples": {"created": {"value": {
        "client": {"id": 7, "name": "Acme Dispensaries", "tier": "growth", "monthlyQuota": 100000,
                   "rateLimitPerMin": 300, "allowedEndpoints": ["segments", "trends", "intents"], "active": True,
                   "keyId": "4fQx9LmZr2Tb", "keyExpiresAt": None, "previousKeyId": None,
                   "previousKeyExpiresAt": None, "createdAt": "2026-12-01T03:00:00+00:00", "lastUsedAt": None,
                   "revokedAt": None},
        "apiKey": "cnk_live_4fQx9LmZr2Tb_" + "x" * 43 + "1a2B3c"}}}})

    client: ClientView
    apiKey: str = Field(description="The key, shown this once: cnk_live_<key id>_<secret><checksum>")


class ClientList(BaseModel):
    clients: list[ClientView]


def _announce(client_id: int) -> None:
    try:
        limits.invalidate(get_redis(), client_id)
    except RedisError:
        log.exception("B2B client %s changed but web processes were not told", client_id)
        raise ApiError(503, "Service Unavailable", "Saved, but Redis is not answering: web processes may use "
                       "the old settings for up to 10 seconds", {"Retry-After": "10"})


def _change(work):
    try:
        with session_scope() as session:
            return work(session)
    except clients.ClientNotFound as exc:
        raise ApiError(404, "Not Found", str(exc))
    except clients.ClientError as exc:
        raise ApiError(422, "Invalid request", str(exc))


@api.post("", security=ADMIN, responses={201: ClientWithKey, **ADMIN_BODY_ERRORS})
def create_client(body: CreateBody):
    """Create a client on a tier (its defaults, with the overrides given) and its first key."""
    client, key = _change(lambda session: clients.create(
        session, body.name, body.tier, body.monthlyQuota, body.rateLimitPerMin, body.allowedEndpoints,
        body.expiresInDays))
    return {"client": client, "apiKey": key}, 201


@api.get("", security=ADMIN, responses={200: ClientList, **ADMIN_ERRORS})
def list_clients():
    """Every client, revoked ones included, oldest first."""
    return {"clients": _change(clients.list_clients)}


@api.get("/<int:client_id>", security=ADMIN, responses={200: ClientView, **ADMIN_ERRORS})
def show_client(path: ClientPath):
    """One client (never its key)."""
    return _change(lambda session: clients.show(session, path.client_id))


@api.post("/<int:client_id>/rotate", security=ADMIN, responses={200: ClientWithKey, **ADMIN_BODY_ERRORS})
def rotate_key(path: ClientPath, body: RotateBody):
    """A new key; the current one keeps working for the overlap, then stops."""
    overlap = body.overlapSeconds if body.overlapSeconds is not None else settings().b2b_key_overlap_seconds
    client, key = _change(lambda session: clients.rotate(session, path.client_id, overlap, body.expiresInDays))
    _announce(path.client_id)
    return {"client": client, "apiKey": key}


@api.post("/<int:client_id>/revoke", security=ADMIN, responses={200: ClientView, **ADMIN_ERRORS})
def revoke_client(path: ClientPath):
    """Switch the client off: all its keys are refused from the next request on."""
    client = _change(lambda session: clients.revoke(session, path.client_id))
    _announce(path.client_id)
    return client


@api.put("/<int:client_id>/tier", security=ADMIN, responses={200: ClientView, **ADMIN_BODY_ERRORS})
def set_tier(path: ClientPath, body: TierBody):
    """Move the client to a tier: its defaults, with the overrides given."""
    client = _change(lambda session: clients.set_tier(session, path.client_id, body.tier, body.monthlyQuota,
                                                      body.rateLimitPerMin, body.allowedEndpoints))
    _announce(path.client_id)
    return client


@api.get("/<int:client_id>/usage", security=ADMIN, responses={200: UsageResponse, **ADMIN_ERRORS})
def client_usage(path: ClientPath, query: UsageQuery):
    """A client's calls per UTC day and endpoint, and its quota this month."""
    start, end = day_range(query.start, query.end)

    def report(session):
        client = clients.show(session, path.client_id)
        return usage.report(session, get_redis(), client["id"], client["monthlyQuota"], client["rateLimitPerMin"],
                            start, end)
    return _change(report)
