"""Handles in the index: apply a verdict, trust an operator's handle, find what to resolve.

A handle belongs to one DID: setting it on one profile releases it from any other (which
is then worth resolving again). Writers of the same handle are serialized by a transaction
advisory lock on it, so two verdicts racing for one handle never trip the unique index.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from sqlalchemy import text
from sqlalchemy.orm import Session

from .resolver import Verdict

_LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended(:handle, 7))")
_CURRENT = text("SELECT handle FROM profiles WHERE did = :did")
_RELEASE = text("""
    UPDATE profiles SET handle = NULL, updated_at = now()
    WHERE handle = :handle AND did <> :did RETURNING did""")
_SET = text("""
    UPDATE profiles SET handle = :handle, handle_checked_at = now(),
                        updated_at = CASE WHEN handle IS DISTINCT FROM :handle THEN now() ELSE updated_at END
    WHERE did = :did""")
_CHECKED = text("UPDATE profiles SET handle_checked_at = now() WHERE did = :did")
_NEVER_CHECKED = text("SELECT did FROM profiles WHERE handle_checked_at IS NULL LIMIT :limit")
_STALE = text("""
    SELECT did FROM profiles WHERE handle_checked_at < :before ORDER BY handle_checked_at LIMIT :limit""")


@dataclass
class HandleChange:
    """What applying a handle did: the profile's handle before and after, and who lost it."""

    did: str
    before: str | None = None
    after: str | None = None
    released: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.before != self.after or bool(self.released)


def has_profile(session: Session, did: str) -> bool:
    """Only accounts the index knows get a handle: the others are not resolved at all."""
    return session.execute(_CURRENT, {"did": did}).first() is not None


def apply_verdict(session: Session, verdict: Verdict) -> HandleChange:
    """Store a verified handle (released from any other profile), or clear a disproven one."""
    return set_handle(session, verdict.did, verdict.handle)


def set_handle(session: Session, did: str, handle: str | None) -> HandleChange:
    """Give ``did``'s profile ``handle`` (None clears it) and mark it checked now.

    Nothing happens to other profiles when ``did`` has no profile row.
    """
    if handle is not None:
        session.execute(_LOCK, {"handle": handle})
    row = session.execute(_CURRENT, {"did": did}).first()
    change = HandleChange(did)
    if row is None:
        return change
    change.before = row.handle
    if handle is not None:
        change.released = list(session.execute(_RELEASE, {"handle": handle, "did": did}).scalars())
    session.execute(_SET, {"handle": handle, "did": did})
    change.after = handle
    return change


def mark_checked(session: Session, did: str) -> None:
    """Count ``did`` as checked now without changing its handle (resolution kept failing)."""
    session.execute(_CHECKED, {"did": did})


def due_for_resolution(session: Session, limit: int, reverify_after: timedelta) -> list[str]:
    """Profiles whose handle was never checked, then those checked longest ago (past due)."""
    dids = list(session.execute(_NEVER_CHECKED, {"limit": limit}).scalars())
    if len(dids) < limit:
        before = datetime.now(timezone.utc) - reverify_after
        dids += session.execute(_STALE, {"before": before, "limit": limit - len(dids)}).scalars()
    return dids
