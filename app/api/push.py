"""Web push: the VAPID key the app subscribes with, members' subscriptions, admin broadcasts.

The app calls ``PushManager.subscribe({applicationServerKey: <publicKey>})`` and posts the
resulting ``PushSubscription.toJSON()`` here. Deliveries run on the ``push`` queue
(``tasks/push.py``). Without VAPID keys configured, push is off: these endpoints answer 404.
"""

from __future__ import annotations

import logging
import time

from dramatiq.errors import BrokerError
from flask import request
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, ConfigDict, Field, field_validator
from redis import RedisError

from services.db import session_scope
from services.push import subscriptions
from services.push.subscriptions import InvalidSubscription

from ..admin import ADMIN, require_admin
from ..auth import BEARER, require_viewer
from ..errors import ApiError
from ..extensions import settings
from ..schemas import BODY_ERRORS, Problem

log = logging.getLogger(__name__)

api = APIBlueprint("push", __name__, url_prefix="/api/push", abp_tags=[Tag(name="push")])

B64URL = r"^[A-Za-z0-9_-]+={0,2}$"
ENDPOINT = r"^https?://[^\x00-\x20\x7f]+$"


class PushKeys(BaseModel):
    model_config = ConfigDict(extra="forbid")

    p256dh: str = Field(min_length=86, max_length=88, pattern=B64URL,
                        description="base64url of the browser's P-256 public key (65 bytes, uncompressed)")
    auth: str = Field(min_length=22, max_length=24, pattern=B64URL,
                      description="base64url of the 16-byte authentication secret")


class SubscribeBody(BaseModel):
    """``PushSubscription.toJSON()`` as the browser gives it, and optionally a user agent."""

    model_config = ConfigDict(extra="forbid")

    endpoint: str = Field(min_length=10, max_length=2048, pattern=ENDPOINT,
                          description="The push service URL of the subscription (https, public host)")
    keys: PushKeys
    expirationTime: float | None = Field(None, ge=0, description="As the browser reports it (not used)")
    userAgent: str | None = Field(None, max_length=512, description="Default: the User-Agent header")


class UnsubscribeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoint: str = Field(min_length=1, max_length=2048, pattern=ENDPOINT)


class BroadcastBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=120)
    body: str = Field(min_length=1, max_length=1000)
    url: str | None = Field(None, max_length=512, pattern=r"^(/|https://)[^\s]*$",
                            description="App path (or https URL) the notification opens; default /")

    @field_validator("url")
    @classmethod
    def _same_site_or_https(cls, value: str | None) -> str | None:
        if value and value.startswith(("//", "/\\")):
            raise ValueError("must be a path of the app (/...) or an https:// URL")
        return value


class VapidKeyResponse(BaseModel):
    publicKey: str = Field(description="applicationServerKey for PushManager.subscribe (base64url)")


class SubscribedResponse(BaseModel):
    id: int
    endpoint: str
    created: bool = Field(description="False when the endpoint was already subscribed (it was updated)")


class UnsubscribedResponse(BaseModel):
    deleted: bool


class BroadcastResponse(BaseModel):
    id: str
    subscriptions: int = Field(description="Subscriptions the broadcast is being sent to")


def _require_push() -> None:
    if not settings().vapid_public_key:
        raise ApiError(404, "Not Found", "Web push is not configured on this server")


@api.get("/vapid-public-key", responses={200: VapidKeyResponse, 404: Problem, 429: Problem})
def vapid_public_key():
    """The VAPID public key (``applicationServerKey``) to subscribe with."""
    _require_push()
    return {"publicKey": settings().vapid_public_key}


@api.post("/subscribe", security=BEARER,
          responses={200: SubscribedResponse, 201: SubscribedResponse, 404: Problem, **BODY_ERRORS})
def subscribe(body: SubscribeBody):
    """Register (or update) this browser's push subscription for the signed-in member."""
    did = require_viewer()
    _require_push()
    config = settings()
    try:
        with session_scope() as session:
            result = subscriptions.subscribe(
                session, did, body.endpoint, body.keys.p256dh, body.keys.auth,
                body.userAgent or request.headers.get("User-Agent"),
                subscriptions.endpoint_policy(config), config.push_max_subscriptions_per_user)
    except InvalidSubscription as exc:
        raise ApiError(422, "Invalid subscription", str(exc)) from None
    return {"id": result.id, "endpoint": body.endpoint, "created": result.created}, 201 if result.created else 200


@api.delete("/subscribe", security=BEARER, responses={200: UnsubscribedResponse, **BODY_ERRORS})
def unsubscribe(body: UnsubscribeBody):
    """Remove one of the member's subscriptions (the browser unsubscribed, or the member signed out)."""
    did = require_viewer()
    with session_scope() as session:
        return {"deleted": subscriptions.unsubscribe(session, did, body.endpoint)}


@api.post("/broadcast", security=ADMIN,
          responses={202: BroadcastResponse, 403: Problem, 404: Problem, 503: Problem, **BODY_ERRORS})
def broadcast(body: BroadcastBody):
    """Admins: push a title and body to every subscription (fanned out on the ``push`` queue).

    Allowed for signed-in members listed in ADMIN_DIDS, or with ADMIN_TOKEN in the X-Admin-Token header.
    """
    require_admin()
    _require_push()
    with session_scope() as session:
        message, count = subscriptions.new_broadcast(session, body.title, body.body, body.url, time.time())
    try:
        from tasks.push import broadcast as fan_out  # the broker lives with the actors

        fan_out.send(message, 0)
    except (RedisError, BrokerError):
        log.exception("could not enqueue broadcast %s", message["id"])
        raise ApiError(503, "Queue unavailable", "The broadcast could not be queued: try again",
                       headers={"Retry-After": "30"}) from None
    return {"id": message["id"], "subscriptions": count}, 202
