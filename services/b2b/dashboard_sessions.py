"""Dashboard sessions: an API key exchanged once for a short-lived browser session.

The browser holds only a random session id (a cookie); the key never reaches it after the
sign-in form. Redis holds, under a hash of that id (a Redis dump yields no usable cookie),
the key id, the hash of the key and the CSRF token. Every request looks the key id up again
(``clients.credentials``) and compares the hash, so a revoked client, a key rotated past its
overlap or an expired key ends the session at its next request, in every process.

A session ends after ``idle`` seconds without a request and at most ``max_age`` after sign-in.
The live feed's socket cannot send the HttpOnly cookie in a message: the page gives it a
short-lived ticket (HMAC of a hash of the session id) instead (:func:`feed_ticket`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy.orm import Session

from . import clients, keys

PREFIX = "dash:session:"
TICKET_SECONDS = 3600


@dataclass(frozen=True)
class DashboardSession:
    session_id: str
    csrf: str
    credentials: clients.Credentials


def _hashed(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def _key(session_id: str) -> str:
    return PREFIX + _hashed(session_id)


def feed_session_id(session_id: str) -> str:
    """The name of the session on the live feed (and in its ``session_ended`` event): never the cookie."""
    return "dashboard-" + _hashed(session_id)


def _valid(credentials: clients.Credentials | None, secret_hash: str) -> bool:
    return (credentials is not None and keys.matches(secret_hash, credentials.secret_hash)
            and credentials.usable(datetime.now(timezone.utc)))


def sign_in(redis, session: Session, raw_key: str, idle: int) -> DashboardSession | None:
    """A new session for a valid key (None for anything else: one answer for all)."""
    presented = keys.parse(raw_key.strip() if raw_key else raw_key)
    if presented is None:
        return None
    credentials = clients.credentials(session, presented.key_id)
    if not _valid(credentials, presented.secret_hash):
        return None
    session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    redis.hset(_key(session_id), mapping={"key_id": presented.key_id, "secret_hash": presented.secret_hash,
                                          "client_id": credentials.client_id, "csrf": csrf,
                                          "created": int(time.time())})
    redis.expire(_key(session_id), idle)
    return DashboardSession(session_id, csrf, credentials)


def load(redis, session: Session, session_id: str | None, idle: int, max_age: int) -> DashboardSession | None:
    """The live session of this id, its idle time renewed; None (and deleted) once it ended."""
    if not session_id or len(session_id) > 100:
        return None
    found = _check(redis, session, _key(session_id), max_age)
    if found is None:
        return None
    stored, credentials, age = found
    redis.expire(_key(session_id), max(1, min(idle, int(max_age - age))))
    return DashboardSession(session_id, stored["csrf"], credentials)


def _check(redis, session: Session, key: str, max_age: int):
    """(stored fields, credentials, age) of a live session; an ended one is deleted."""
    stored = {k.decode(): v.decode() for k, v in redis.hgetall(key).items()}
    if not stored:
        return None
    age = time.time() - int(stored["created"])
    credentials = clients.credentials(session, stored["key_id"])
    if age >= max_age or not _valid(credentials, stored["secret_hash"]):
        redis.delete(key)
        return None
    return stored, credentials, age


def feed_client(redis, session: Session, feed_id: str, max_age: int) -> clients.Credentials | None:
    """The client of a live session named by its feed id (the socket's check; idle time untouched)."""
    if not feed_id.startswith("dashboard-") or len(feed_id) != len("dashboard-") + 64:
        return None
    found = _check(redis, session, PREFIX + feed_id[len("dashboard-"):], max_age)
    return found[1] if found else None


def sign_out(redis, session_id: str | None) -> None:
    if session_id:
        redis.delete(_key(session_id))


def feed_ticket(secret: str, session_id: str, now: float | None = None) -> str:
    """``<expiry>.<feed id>.<mac>``: lets the live feed's socket name its session for a few minutes."""
    expires = int((now or time.time()) + TICKET_SECONDS)
    body = f"{expires}.{feed_session_id(session_id)}"
    return body + "." + hmac.new(secret.encode(), b"dashboard-feed\x00" + body.encode(), hashlib.sha256).hexdigest()


def read_ticket(secret: str, ticket: str, now: float | None = None) -> str | None:
    """The feed id of a genuine, unexpired ticket."""
    if not isinstance(ticket, str) or len(ticket) > 300:
        return None
    body, _, mac = ticket.rpartition(".")
    expires, _, session_id = body.partition(".")
    good = hmac.new(secret.encode(), b"dashboard-feed\x00" + body.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(mac, good) or not expires.isdigit() or int(expires) < (now or time.time()):
        return None
    return session_id
