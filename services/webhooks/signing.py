"""Standard Webhooks signatures (https://www.standardwebhooks.com/, "Signature scheme").

A secret is ``whsec_`` + base64 of 24 random bytes; the key is those bytes (base64-decoded
after the prefix). Each request carries ``webhook-id`` (the event's id, the same on every
retry so receivers can deduplicate), ``webhook-timestamp`` (integer seconds, new on every
attempt, so receivers can refuse replays) and ``webhook-signature``: ``v1,`` + base64 of
HMAC-SHA256 over ``"{id}.{timestamp}.{body}"``, space-separated when several secrets are valid
at once (during a rotation), which receivers accept if any one matches.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from typing import Iterable, Mapping

PREFIX = "whsec_"
SECRET_BYTES = 24
#: How far a timestamp may be from the receiver's clock (the spec's suggested tolerance).
TOLERANCE_SECONDS = 5 * 60


class InvalidSecret(ValueError):
    """Not a ``whsec_`` secret of base64 bytes."""


class InvalidSignature(ValueError):
    """The headers do not prove that the holder of the secret sent this body (or it is too old)."""


def generate_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a secret (base64 after the optional ``whsec_`` prefix)."""
    try:
        key = base64.b64decode(secret.removeprefix(PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSecret("a webhook secret is whsec_ followed by base64") from None
    if len(key) < 16:
        raise InvalidSecret("a webhook secret must hold at least 16 bytes")
    return key


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256>`` of ``{id}.{timestamp}.{body}``."""
    signed = f"{message_id}.{int(timestamp)}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(secret_key(secret), signed, hashlib.sha256).digest()).decode()


def headers(secrets_: Iterable[str], message_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers, one signature per valid secret."""
    timestamp = int(time.time()) if timestamp is None else int(timestamp)
    return {"webhook-id": message_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": " ".join(sign(s, message_id, timestamp, body) for s in secrets_)}


def verify(secret: str, request_headers: Mapping[str, str], body: bytes, now: float | None = None) -> None:
    """What a receiver does (shown in the integration guide): InvalidSignature unless valid."""
    lowered = {k.lower(): v for k, v in request_headers.items()}
    message_id, stamp, signatures = (lowered.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if not message_id or not stamp or not signatures:
        raise InvalidSignature("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise InvalidSignature("webhook-timestamp is not an integer") from None
    if abs((time.time() if now is None else now) - timestamp) > TOLERANCE_SECONDS:
        raise InvalidSignature("webhook-timestamp is too far from now")
    expected = sign(secret, message_id, timestamp, body).encode()
    if not any(hmac.compare_digest(expected, candidate.encode()) for candidate in signatures.split()
               if candidate.startswith("v1,")):
        raise InvalidSignature("no v1 signature matches")
