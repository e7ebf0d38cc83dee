"""Cannect members: the accounts whose posts and follows define the community."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from models import Profile
from services.ingest.writes import refresh_viewer_state

DID_PATTERN = re.compile(r"^did:(plc:[a-z2-7]{24}|web:[a-zA-Z0-9.\-:%]+)$")
HANDLE_PATTERN = re.compile(r"^([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$")


class InvalidMember(ValueError):
    pass


def add_member(session: Session, did: str, handle: str | None = None) -> Profile:
    """Register (or re-register) a member; from now on their posts are indexed."""
    if not DID_PATTERN.match(did):
        raise InvalidMember(f"not a DID: {did!r} (expected did:plc:<24 base32 chars> or did:web:<host>)")
    if handle is not None:
        handle = handle.lower().removeprefix("@")
        if not HANDLE_PATTERN.match(handle) or len(handle) > 253:
            raise InvalidMember(f"not a handle: {handle!r}")
        session.execute(update(Profile).where(Profile.handle == handle, Profile.did != did).values(handle=None))
    now = datetime.now(timezone.utc)
    values = {"did": did, "is_cannect_user": True, "member_since": now, "updated_at": now}
    if handle:
        values["handle"] = handle
    changes = {"is_cannect_user": True, "updated_at": now, "member_since": func.coalesce(Profile.member_since, now)}
    if handle:
        changes["handle"] = handle
    session.execute(insert(Profile).values(**values).on_conflict_do_update(index_elements=[Profile.did], set_=changes))
    _backfill_viewer_state(session, did)
    return session.get(Profile, did)


def _backfill_viewer_state(session: Session, did: str) -> None:
    """A new member's likes, reposts and follows we already store become their viewer state."""
    posts = session.execute(text("SELECT subject_uri FROM likes WHERE actor_did = :did "
                                 "UNION SELECT subject_uri FROM reposts WHERE actor_did = :did"), {"did": did})
    others = session.execute(text("SELECT following_did FROM follows WHERE follower_did = :did "
                                  "UNION SELECT follower_did FROM follows WHERE following_did = :did"), {"did": did})
    refresh_viewer_state(session, {(did, uri) for uri, in posts}, {(did, other) for other, in others})


def remove_member(session: Session, did: str) -> bool:
    result = session.execute(update(Profile).where(Profile.did == did, Profile.is_cannect_user)
                             .values(is_cannect_user=False))
    return result.rowcount > 0


def list_members(session: Session) -> list[Profile]:
    return list(session.scalars(select(Profile).where(Profile.is_cannect_user).order_by(Profile.member_since)))
