"""A member's notifications: the list (plain or grouped), the unread count, marking read.

Every function takes the recipient's DID and touches only that member's rows.

Plain list: newest first, keyset over ``(created_at, id)`` (``services.pagination`` cursors,
the id in the cursor's second part), so new notifications never shift a page.

Grouped list (Mastodon 4.3's grouped notifications): likes and reposts of one subject fold
into one group each (``like:<subject uri>``, ``repost:<subject uri>``), all follows into one
(``follow``); replies, mentions and quotes stay single (``<reason>:<id>``). Groups are ordered
by their most recent notification's ``(created_at, id)``. The first page takes a snapshot, the
highest notification id at that moment; the cursor carries it, and every later page counts
and orders only notifications up to it. So while new ones arrive, no group moves, no group is
repeated or skipped, and counts and latest actors are those of the snapshot; the new ones show
in the next first page. One SQL statement per page: a GROUP BY over the member's notifications
(``idx_notifications_recipient``), counting each group whole, not only the page.

Unread: the ``read`` flag of each notification (no ``seenAt`` watermark): the count is of
unread ones, and ``mark_read`` sets the flag for all, those up to a time, or given ids.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text
from sqlalchemy.orm import Session

from services.jetstream.fields import embed_summary, reply_refs
from services.pagination import InvalidCursor, decode_cursor, encode_cursor, page
from services.views import iso, post_views, profile_views

#: Reasons whose notification carries a post of the actor (the reply, mention or quote itself).
POST_REASONS = ("reply", "mention", "quote")
#: Reasons folded into groups in the grouped list.
GROUPED_REASONS = ("like", "repost", "follow")
#: Most recent distinct actors shown per group.
LATEST_ACTORS = 5

_COLUMNS = "id, type, actor_did, subject_uri, reason_uri, read, created_at, reason_cid, reason_record"
_REASONS = "AND type = ANY(:reasons)"
_AFTER = "AND created_at <= :after_at AND (created_at < :after_at OR id < :after_id)"

_LIST = f"""
    SELECT {_COLUMNS} FROM notifications
    WHERE recipient_did = :did {{reasons}} {{after}}
    ORDER BY created_at DESC, id DESC LIMIT :limit"""

_GROUP_KEY = """CASE WHEN type IN ('like', 'repost') THEN type || ':' || coalesce(subject_uri, '')
                     WHEN type = 'follow' THEN 'follow' ELSE type || ':' || id END"""
_GROUPS = f"""
    WITH groups AS (
        SELECT {_GROUP_KEY} AS group_key, min(type) AS type, min(subject_uri) AS subject_uri,
               count(*) AS count, bool_and(read) AS all_read,
               (array_agg(id ORDER BY created_at DESC, id DESC))[1] AS latest_id,
               max(created_at) AS latest_at,
               (array_agg(actor_did ORDER BY created_at DESC, id DESC))[1:{LATEST_ACTORS * 4}] AS actors
        FROM notifications
        WHERE recipient_did = :did AND id <= :snapshot {{reasons}}
        GROUP BY 1)
    SELECT * FROM groups WHERE true {{after}}
    ORDER BY latest_at DESC, latest_id DESC LIMIT :limit"""
_GROUP_AFTER = "AND (latest_at, latest_id) < (:after_at, :after_id)"
_SNAPSHOT = text("SELECT coalesce(max(id), 0) FROM notifications WHERE recipient_did = :did")
_SINGLES = text(f"SELECT {_COLUMNS} FROM notifications WHERE recipient_did = :did AND id = ANY(:ids)")

_UNREAD = text("SELECT count(*) FROM notifications WHERE recipient_did = :did AND NOT read")
_READ_ALL = text("UPDATE notifications SET read = true WHERE recipient_did = :did AND NOT read")
_READ_BEFORE = text("""UPDATE notifications SET read = true
                       WHERE recipient_did = :did AND NOT read AND created_at <= :before""")
_READ_IDS = text("""UPDATE notifications SET read = true
                    WHERE recipient_did = :did AND NOT read AND id = ANY(:ids)""")


def list_notifications(session: Session, did: str, limit: int, cursor: str | None, reasons: list[str] | None,
                       cdn: str) -> tuple[list[dict], str | None]:
    """One page of the member's notifications, newest first, hydrated; and the next cursor."""
    params = {"did": did, "limit": limit + 1, "reasons": reasons}
    after = ""
    if cursor is not None:
        params["after_at"], params["after_id"] = _cursor_key(cursor, 1)
        after = _AFTER
    query = _LIST.format(reasons=_REASONS if reasons else "", after=after)
    rows, next_cursor = page(session.execute(text(query), params).all(), limit,
                             lambda row: (row.created_at, str(row.id)))
    return _hydrate(session, rows, did, cdn), next_cursor


def list_groups(session: Session, did: str, limit: int, cursor: str | None, reasons: list[str] | None,
                cdn: str) -> tuple[list[dict], str | None]:
    """One page of the member's grouped notifications as of a snapshot (see the module doc)."""
    params = {"did": did, "limit": limit + 1, "reasons": reasons}
    after = ""
    if cursor is None:
        params["snapshot"] = session.execute(_SNAPSHOT, {"did": did}).scalar_one()
    else:
        params["after_at"], params["after_id"], params["snapshot"] = _cursor_key(cursor, 2)
        after = _GROUP_AFTER
    query = _GROUPS.format(reasons=_REASONS if reasons else "", after=after)
    groups, next_cursor = page(session.execute(text(query), params).all(), limit,
                               lambda group: (group.latest_at, f"{group.latest_id}:{params['snapshot']}"))
    return _hydrate_groups(session, groups, did, cdn), next_cursor


def unread_count(session: Session, did: str) -> int:
    return session.execute(_UNREAD, {"did": did}).scalar_one()


def mark_read(session: Session, did: str, *, everything: bool = False, before: datetime | None = None,
              ids: list[int] | None = None) -> int:
    """Mark the member's notifications read (all, up to ``before``, or those of ``ids`` that are
    theirs); returns how many were unread and now are read."""
    if everything:
        result = session.execute(_READ_ALL, {"did": did})
    elif before is not None:
        result = session.execute(_READ_BEFORE, {"did": did, "before": before})
    else:
        result = session.execute(_READ_IDS, {"did": did, "ids": list(ids or [])})
    return result.rowcount


def _cursor_key(cursor: str, numbers: int) -> tuple:
    """(created_at, id[, snapshot]) from a cursor; InvalidCursor if it is not one of ours."""
    at, rest = decode_cursor(cursor)
    parts = rest.split(":")
    if len(parts) != numbers or not all(part.isascii() and part.isdigit() and len(part) < 19 for part in parts):
        raise InvalidCursor("cursor is not one this API returned")
    return (at, *map(int, parts))


_UNREAD_BY_ID = text(f"SELECT recipient_did, {_COLUMNS} FROM notifications "
                     "WHERE id = ANY(:ids) AND NOT read ORDER BY id")


def unread_views(session: Session, ids: list[int], cdn: str) -> list[tuple[str, dict]]:
    """(recipient, view) of those of ``ids`` still there and unread, each as its recipient's list shows it."""
    by_recipient: dict[str, list] = {}
    for row in session.execute(_UNREAD_BY_ID, {"ids": list(ids)}):
        by_recipient.setdefault(row.recipient_did, []).append(row)
    return [(recipient, view) for recipient, rows in by_recipient.items()
            for view in _hydrate(session, rows, recipient, cdn)]


def _hydrate(session: Session, rows: list, viewer: str, cdn: str) -> list[dict]:
    """Notification views: actor profiles, subject posts and reason posts, one query each."""
    actors = _profiles(session, {row.actor_did for row in rows}, viewer, cdn)
    posts = _posts(session, {uri for row in rows for uri in (row.subject_uri, row.reason_uri) if uri}, viewer, cdn)
    return [_notification_view(row, actors, posts) for row in rows]


def _notification_view(row, actors: dict, posts: dict) -> dict:
    subject_is_post = row.type != "follow"
    view = {
        "id": row.id,
        "reason": row.type,
        "isRead": row.read,
        "indexedAt": iso(row.created_at),
        "author": actors[row.actor_did],
        "uri": row.reason_uri,
        "reasonSubject": row.subject_uri,
        "subject": posts.get(row.subject_uri) if subject_is_post and row.subject_uri else None,
        "post": None,
    }
    if row.type in POST_REASONS and row.reason_uri:
        view["post"] = posts.get(row.reason_uri) or _unindexed_post(row, actors[row.actor_did])
    return view


def _unindexed_post(row, actor: dict) -> dict | None:
    """A reply, mention or quote that is not indexed, from the slim record kept on the notification."""
    record = row.reason_record if isinstance(row.reason_record, dict) else None
    if record is None or not row.reason_cid:
        return None
    _, embed_type, quote, media = embed_summary(record)
    created = record.get("createdAt")
    view = {
        "uri": row.reason_uri, "cid": row.reason_cid,
        "author": {key: actor[key] for key in ("did", "handle", "displayName", "avatar", "isCannectUser")},
        "record": record, "embedType": embed_type, "hasMedia": media > 0,
        "likeCount": 0, "repostCount": 0, "replyCount": 0,
        "createdAt": created if isinstance(created, str) else None, "indexedAt": None,
        "viewer": {"like": None, "repost": None},
    }
    parent, root = reply_refs(record)
    if parent:
        view["reply"] = {"parent": parent, "root": root}
    if quote:
        view["quote"] = quote
    return view


def _hydrate_groups(session: Session, groups: list, viewer: str, cdn: str) -> list[dict]:
    singles = {row.id: row for row in session.execute(_SINGLES, {
        "did": viewer, "ids": [group.latest_id for group in groups if group.type not in GROUPED_REASONS]})}
    latest = {group.group_key: list(dict.fromkeys(group.actors))[:LATEST_ACTORS] for group in groups}
    single_views = {view["id"]: view for view in _hydrate(session, list(singles.values()), viewer, cdn)}
    actors = _profiles(session, {actor for dids in latest.values() for actor in dids}, viewer, cdn)
    posts = _posts(session, {group.subject_uri for group in groups
                             if group.type in ("like", "repost") and group.subject_uri}, viewer, cdn)
    views = []
    for group in groups:
        view = {"groupKey": group.group_key, "reason": group.type, "count": group.count,
                "isRead": group.all_read, "mostRecentAt": iso(group.latest_at),
                "mostRecentId": group.latest_id,
                "latestActors": [actors[actor] for actor in latest[group.group_key]],
                "reasonSubject": group.subject_uri if group.type != "follow" else None,
                "subject": posts.get(group.subject_uri) if group.type in ("like", "repost") else None,
                "notification": single_views.get(group.latest_id)}
        views.append(view)
    return views


def _profiles(session: Session, dids: set[str], viewer: str, cdn: str) -> dict[str, dict]:
    """Profile views by DID; a placeholder (DID only) for an actor without a profile row."""
    found = {view["did"]: view for view in profile_views(session, sorted(dids), viewer, cdn)}
    return {did: found.get(did) or _bare_profile(did) for did in dids}


def _bare_profile(did: str) -> dict:
    return {"did": did, "handle": None, "displayName": None, "description": None, "avatar": None,
            "banner": None, "followersCount": 0, "followingCount": 0, "postsCount": 0,
            "isCannectUser": False, "indexedAt": None, "viewer": {"following": None, "followedBy": False}}


def _posts(session: Session, uris: set[str], viewer: str, cdn: str) -> dict[str, dict]:
    return {view["uri"]: view for view in post_views(session, sorted(uris), viewer, cdn)}
