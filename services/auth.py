"""Signing in with the member's own PDS account, the app's sessions, and writing for a member.

Login checks the password against the member's PDS (createSession) and keeps the PDS token
pair, encrypted, in ``pds_sessions``: we write records for the member with it later. The app
gets its own pair: a short JWT access token (services/tokens.py) naming an ``app_sessions``
row, and a random refresh token of which only the SHA-256 is stored. Refreshing rotates that
token and keeps the hash of the one it replaced: when that one comes back, two parties hold the
session (one stole it) and the whole session is revoked (:class:`RefreshTokenReused`). There is
no grace period, so a client must run one refresh at a time. A session slides with each
refresh (``REFRESH_TTL_DAYS``) but ends ``SESSION_MAX_AGE_DAYS`` after sign-in whatever
happens; its access tokens never outlive it. Logging out revokes the row, which kills its
access tokens too (:func:`ensure_live_session`; the web layer also announces the end to every
process, ``services.realtime.session_ended_event``).

An expired PDS access token is refreshed on the fly (:class:`PdsAccount`): refreshSession,
the new pair stored, the call tried once more. When the PDS refresh token is dead as well,
the member has to sign in again (:class:`SignInAgain`).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from models import AppSession, PdsSession
from services.crypto import UnreadableToken, cipher_for
from services.members import InvalidMember, add_member
from services.pds import PdsError, pds_client
from services.tokens import issue_access_token

#: A PDS hands this out for an account whose handle does not verify: it names nobody.
INVALID_HANDLE = "handle.invalid"


class AuthFailed(Exception):
    """The credentials or the session are wrong, expired or revoked (HTTP 401)."""


class RefreshTokenReused(AuthFailed):
    """A refresh token that was already rotated came back: its session is now revoked."""

    def __init__(self, session_id: str):
        super().__init__("This refresh token was already used, so the session may be stolen: "
                         "it is signed out everywhere, sign in again")
        self.session_id = session_id


class SignInAgain(AuthFailed):
    """Our PDS session for the member is dead (refresh token expired or revoked)."""


class AccountInactive(Exception):
    """The PDS account exists but cannot act (deactivated, suspended, taken down)."""

    def __init__(self, status: str | None):
        super().__init__(f"The account is not active ({status or 'deactivated'})")
        self.status = status


@dataclass(frozen=True)
class Member:
    """A signed-in member: their DID and the app session their access token names."""

    did: str
    session_id: str


@dataclass(frozen=True)
class Tokens:
    access_token: str
    refresh_token: str
    did: str
    handle: str | None
    expires_in: int

    def as_json(self) -> dict:
        return {"accessToken": self.access_token, "refreshToken": self.refresh_token, "did": self.did,
                "handle": self.handle, "expiresIn": self.expires_in}


def _now() -> datetime:
    return datetime.now(timezone.utc)


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def login(session: Session, settings, identifier: str, password: str, user_agent: str | None = None) -> Tokens:
    """Sign in on the PDS, keep its tokens, make the account a member, open an app session."""
    try:
        answer = pds_client(settings.pds_url).create_session(identifier.strip().removeprefix("@"), password)
    except PdsError as exc:
        if exc.status in (400, 401):
            if exc.error == "AuthFactorTokenRequired":
                raise AuthFailed("This account asks for an emailed sign-in code: sign in with an app password") from None
            raise AuthFailed("Wrong identifier or password") from None
        raise
    if answer.get("active") is False:
        raise AccountInactive(answer.get("status"))
    did, handle = answer["did"], answer["handle"].lower()
    handle = None if handle == INVALID_HANDLE else handle
    try:
        add_member(session, did, handle)
    except InvalidMember as exc:
        raise PdsError(502, "InvalidResponse", f"the PDS named an account we cannot use: {exc}") from None
    cipher, now = cipher_for(settings), _now()
    values = {"pds_url": settings.pds_url, "handle": handle, "access_jwt": cipher.encrypt(answer["accessJwt"]),
              "refresh_jwt": cipher.encrypt(answer["refreshJwt"]), "updated_at": now}
    session.execute(insert(PdsSession).values(did=did, **values)
                    .on_conflict_do_update(index_elements=[PdsSession.did], set_=values))
    refresh_token = secrets.token_urlsafe(32)
    session_id = str(uuid.uuid4())
    ends = now + timedelta(days=min(settings.refresh_ttl_days, settings.session_max_age_days))
    session.add(AppSession(id=session_id, did=did, refresh_token_hash=hash_refresh_token(refresh_token),
                           user_agent=(user_agent or "")[:512] or None, created_at=now, last_used_at=now,
                           expires_at=ends))
    session.flush()
    return _tokens(settings, did, handle, session_id, refresh_token, ends)


def refresh(session: Session, settings, refresh_token: str) -> Tokens:
    """Rotate the app refresh token: the one given stops working; the session lives on.

    Raises :class:`RefreshTokenReused` (the session is then revoked, committed on its own)
    for the token the last rotation replaced, :class:`AuthFailed` for anything else unusable.
    """
    presented, new_token, now = hash_refresh_token(refresh_token), secrets.token_urlsafe(32), _now()
    max_age = timedelta(days=settings.session_max_age_days)
    row = session.execute(
        update(AppSession)
        .where(AppSession.refresh_token_hash == presented, AppSession.revoked_at.is_(None),
               AppSession.expires_at > now, AppSession.created_at > now - max_age)
        .values(refresh_token_hash=hash_refresh_token(new_token), previous_refresh_token_hash=presented,
                last_used_at=now,
                expires_at=func.least(now + timedelta(days=settings.refresh_ttl_days), AppSession.created_at + max_age))
        .returning(AppSession.id, AppSession.did, AppSession.expires_at)).first()
    if row is None:
        reused = _revoke_reused(session, presented, now)
        if reused is not None:
            raise RefreshTokenReused(reused)
        raise AuthFailed("The refresh token is expired, revoked or unknown: sign in again")
    handle = session.scalar(select(PdsSession.handle).where(PdsSession.did == row.did))
    return _tokens(settings, row.did, handle, str(row.id), new_token, row.expires_at)


def _revoke_reused(session: Session, presented_hash: str, now: datetime) -> str | None:
    """Revoke the open session whose previous refresh token this is; its id, or None.

    In a transaction of its own, committed at once: the request fails (401), and the
    revocation must stand all the same.
    """
    with Session(bind=session.get_bind()) as own, own.begin():
        row = own.execute(update(AppSession)
                          .where(AppSession.previous_refresh_token_hash == presented_hash,
                                 AppSession.revoked_at.is_(None))
                          .values(revoked_at=now).returning(AppSession.id, AppSession.did)).first()
        if row is not None:
            _forget_pds_tokens_unless_signed_in(own, row.did, now)
    return str(row.id) if row is not None else None


def _tokens(settings, did: str, handle: str | None, session_id: str, refresh_token: str,
            session_ends: datetime) -> Tokens:
    """The pair; the access token never outlives its session (absolute lifetime)."""
    ttl = max(1, min(settings.jwt_ttl_seconds, int((session_ends - _now()).total_seconds())))
    access = issue_access_token(did, session_id, settings.jwt_secret, ttl)
    return Tokens(access, refresh_token, did, handle, ttl)


def _valid_session_id(session_id: str) -> bool:
    try:
        uuid.UUID(session_id)
    except (TypeError, ValueError):
        return False
    return True


def ensure_live_session(session: Session, member: Member) -> None:
    """Raise :class:`AuthFailed` unless the access token's app session is still open."""
    live = _valid_session_id(member.session_id) and session.scalar(select(exists().where(
        AppSession.id == member.session_id, AppSession.did == member.did,
        AppSession.revoked_at.is_(None), AppSession.expires_at > _now())))
    if not live:
        raise AuthFailed("This session has been signed out or has expired: sign in again")


def logout(session: Session, member: Member) -> None:
    """Revoke the app session; when it was the member's last, forget their PDS tokens too."""
    ensure_live_session(session, member)
    now = _now()
    session.execute(update(AppSession).where(AppSession.id == member.session_id).values(revoked_at=now))
    _forget_pds_tokens_unless_signed_in(session, member.did, now)


def _forget_pds_tokens_unless_signed_in(session: Session, did: str, now: datetime) -> None:
    """We hold no credentials for someone signed in nowhere (app_sessions rows cascade)."""
    others = session.scalar(select(exists().where(AppSession.did == did, AppSession.revoked_at.is_(None),
                                                  AppSession.expires_at > now)))
    if not others:
        session.execute(delete(PdsSession).where(PdsSession.did == did))


def open_account(session: Session, settings, member: Member) -> "PdsAccount":
    """The member's PDS account, to write records with, after checking their app session."""
    ensure_live_session(session, member)
    row = session.get(PdsSession, member.did)
    if row is None:
        raise SignInAgain("No PDS session is stored for this account: sign in again")
    return PdsAccount(session, settings, row)


class PdsAccount:
    """Writes records to one member's repo, refreshing an expired PDS session once.

    A refreshed pair is stored in a transaction of its own, committed at once: the PDS has
    already spent the old refresh token, so the pair must survive even when the request that
    needed it fails afterwards and rolls back. A row lock on ``pds_sessions`` serialises
    concurrent refreshes of one member; the loser finds the winner's new pair and uses it.
    """

    def __init__(self, session: Session, settings, row: PdsSession):
        self.did = row.did
        self._session, self._settings = session, settings
        self._client = pds_client(row.pds_url)
        self._cipher = cipher_for(settings)
        self._access = self._decrypt(row.access_jwt)

    def create_record(self, collection: str, record: dict) -> dict:
        return self._with_token(lambda token: self._client.create_record(token, self.did, collection, record))

    def delete_record(self, collection: str, rkey: str) -> None:
        self._with_token(lambda token: self._client.delete_record(token, self.did, collection, rkey))

    def _with_token(self, call):
        try:
            return call(self._access)
        except PdsError as exc:
            if not exc.token_rejected:
                raise
        self._refresh(rejected=self._access)
        try:
            return call(self._access)
        except PdsError as exc:
            if exc.token_rejected:
                raise SignInAgain("Your PDS no longer accepts our session: sign in again") from None
            raise

    def _refresh(self, rejected: str) -> None:
        with Session(bind=self._session.get_bind()) as own, own.begin():
            row = own.execute(select(PdsSession).where(PdsSession.did == self.did)
                              .with_for_update(key_share=True)).scalar_one_or_none()
            if row is None:
                raise SignInAgain("Signed out meanwhile: sign in again")
            stored = self._decrypt(row.access_jwt)
            if stored != rejected:  # another request refreshed while we waited
                self._access = stored
                return
            try:
                answer = self._client.refresh_session(self._decrypt(row.refresh_jwt))
            except PdsError as exc:
                if exc.status in (400, 401):
                    raise SignInAgain("Your PDS session has ended: sign in again") from None
                raise
            row.access_jwt = self._cipher.encrypt(answer["accessJwt"])
            row.refresh_jwt = self._cipher.encrypt(answer["refreshJwt"])
            row.updated_at = _now()
            self._access = answer["accessJwt"]

    def _decrypt(self, blob: bytes) -> str:
        try:
            return self._cipher.decrypt(blob)
        except UnreadableToken:
            raise SignInAgain("The stored PDS session cannot be read: sign in again") from None
