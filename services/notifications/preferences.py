"""Per-member notification preferences: which reasons are pushed, and a mute until a time.

They only decide pushes (``services.push.delivery.unwanted`` reads them at send time); the
in-app list always shows every notification. A member without a row has the defaults: every
reason pushes, not muted. ``muted_until`` in the past is the same as not muted.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text
from sqlalchemy.orm import Session

from models.notifications import NOTIFICATION_TYPES

_READ = text("SELECT push_reasons, muted_until, updated_at FROM notification_preferences WHERE did = :did")
_WRITE = text("""
    INSERT INTO notification_preferences (did, push_reasons, muted_until, updated_at)
    VALUES (:did, :push_reasons, :muted_until, now())
    ON CONFLICT (did) DO UPDATE SET push_reasons = excluded.push_reasons, muted_until = excluded.muted_until,
                                    updated_at = excluded.updated_at
    RETURNING push_reasons, muted_until, updated_at""")
#: Why a member's preferences hold back a push now ('muted', 'reason_off') or NULL: an SQL
#: expression over the notification ``n`` and the member's preferences ``np`` (LEFT JOINed, so
#: NULL for the defaults), which the push delivery reads with the notification itself.
PUSH_BLOCK_SQL = """CASE WHEN np.muted_until > now() THEN 'muted'
                         WHEN np.did IS NOT NULL AND NOT (n.type = ANY(np.push_reasons)) THEN 'reason_off' END"""


def _view(row) -> dict:
    reasons = set(row.push_reasons) if row else set(NOTIFICATION_TYPES)
    return {"pushReasons": [reason for reason in NOTIFICATION_TYPES if reason in reasons],
            "mutedUntil": row.muted_until if row else None,
            "updatedAt": row.updated_at if row else None}


def get_preferences(session: Session, did: str) -> dict:
    """The member's preferences (the defaults when never set)."""
    return _view(session.execute(_READ, {"did": did}).first())


def set_preferences(session: Session, did: str, push_reasons: list[str], muted_until: datetime | None) -> dict:
    """Replace the member's preferences. ``push_reasons`` must be notification types."""
    unknown = set(push_reasons) - set(NOTIFICATION_TYPES)
    if unknown:
        raise ValueError(f"not notification reasons: {sorted(unknown)}")
    reasons = [reason for reason in NOTIFICATION_TYPES if reason in set(push_reasons)]
    row = session.execute(_WRITE, {"did": did, "push_reasons": reasons, "muted_until": muted_until}).one()
    return _view(row)
