"""Signed page cursors: opaque to clients, refused when altered or used with other filters.

A cursor is ``base64url(JSON [scope, key]) . base64url(HMAC-SHA256 truncated to 16 bytes)``,
keyed by a secret derived from the server's own (``JWT_SECRET``). ``scope`` is a digest of the
query's filters, so a cursor from one query cannot page another; ``key`` is the sort key of the
last row of the page. Anything else raises :class:`services.pagination.InvalidCursor`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json

from services.pagination import InvalidCursor

_SIG_BYTES = 16


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def signing_key(server_secret: str) -> bytes:
    """A key for cursors only, so that a cursor can never serve as anything else."""
    return hashlib.sha256(b"cannect-b2b-cursor:" + server_secret.encode()).digest()


def scope_of(filters: dict) -> str:
    return hashlib.sha256(json.dumps(filters, sort_keys=True, default=str).encode()).hexdigest()[:16]


def encode(key: bytes, filters: dict, sort_key: list) -> str:
    payload = json.dumps([scope_of(filters), sort_key], separators=(",", ":")).encode()
    return _b64(payload) + "." + _b64(hmac.new(key, payload, hashlib.sha256).digest()[:_SIG_BYTES])


def decode(key: bytes, filters: dict, cursor: str) -> list:
    """The sort key a cursor carries; raises InvalidCursor if it was altered or is for other filters."""
    try:
        body, _, signature = cursor.partition(".")
        payload = _unb64(body)
        expected = hmac.new(key, payload, hashlib.sha256).digest()[:_SIG_BYTES]
        if not hmac.compare_digest(_unb64(signature), expected):
            raise ValueError("signature")
        scope, sort_key = json.loads(payload)
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError):
        raise InvalidCursor("cursor is not one this API returned") from None
    if scope != scope_of(filters):
        raise InvalidCursor("cursor belongs to a query with other filters")
    if not isinstance(sort_key, list):
        raise InvalidCursor("cursor is not one this API returned")
    return sort_key
