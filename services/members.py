"""Cannect members: the accounts whose posts and follows define the community."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from models import BackfillJob, Profile
from services.backfill import MEMBER, request_member_backfill
from services.identity.names import checked_did, normalize_handle
from services.identity.store import set_handle
from services.ingest.writes import refresh_viewer_state


class InvalidMember(ValueError):
    pass


def add_member(session: Session, did: str, handle: str | None = None) -> Profile:
    """Register (or re-register) a member; from now on their posts are indexed.

    A handle given here (by an operator, or by the member's own PDS at sign-in) is trusted
    as given: it is stored at once, released from any other profile, and counts as checked
    now. Later identity events and re-verification resolve it like any other.
    """
    if checked_did(did) is None:
        raise InvalidMember(f"not a DID: {did!r} (expected did:plc:<24 base32 chars> or did:web:<host>)")
    if handle is not None:
        checked = normalize_handle(handle.removeprefix("@"))
        if checked is None:
            raise InvalidMember(f"not a handle: {handle!r}")
        handle = checked
    now = datetime.now(timezone.utc)
    values = {"did": did, "is_cannect_user": True, "member_since": now, "updated_at": now}
    changes = {"is_cannect_user": True, "updated_at": now, "member_since": func.coalesce(Profile.member_since, now)}
    session.execute(insert(Profile).values(**values).on_conflict_do_update(index_elements=[Profile.did], set_=changes))
    if handle:
        set_handle(session, did, handle)
    _backfill_viewer_state(session, did)
    _request_onboarding(session, did)
    profile = session.get(Profile, did)
    session.refresh(profile)
    return profile


def _backfill_viewer_state(session: Session, did: str) -> None:
    """A new member's likes, reposts and follows we already store become their viewer state."""
    posts = session.execute(text("SELECT subject_uri FROM likes WHERE actor_did = :did "
                                 "UNION SELECT subject_uri FROM reposts WHERE actor_did = :did"), {"did": did})
    others = session.execute(text("SELECT following_did FROM follows WHERE follower_did = :did "
                                  "UNION SELECT follower_did FROM follows WHERE following_did = :did"), {"did": did})
    refresh_viewer_state(session, {(did, uri) for uri, in posts}, {(did, other) for other, in others})


#: session.info key: backfill jobs this transaction created, to start after the commit
#: (``tasks.backfill.start_jobs``).
NEW_BACKFILL_JOBS = "new_backfill_jobs"


def _request_onboarding(session: Session, did: str) -> None:
    """A member never onboarded gets a backfill of their follows and recent posts (services/backfill)."""
    if session.scalar(select(BackfillJob.id).where(BackfillJob.kind == MEMBER, BackfillJob.subject_did == did)
                      .limit(1)) is None:
        job_id = request_member_backfill(session, did)
        if job_id is not None:
            session.info.setdefault(NEW_BACKFILL_JOBS, []).append(job_id)


def remove_member(session: Session, did: str) -> bool:
    result = session.execute(update(Profile).where(Profile.did == did, Profile.is_cannect_user)
                             .values(is_cannect_user=False))
    return result.rowcount > 0


def list_members(session: Session) -> list[Profile]:
    return list(session.scalars(select(Profile).where(Profile.is_cannect_user).order_by(Profile.member_since)))
