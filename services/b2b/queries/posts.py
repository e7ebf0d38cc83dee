"""The posts an answer names, read live: only posts that still exist are returned.

Aggregates and views lag their next refresh; ingest deletes a deleted post (and a purged
account's posts) from ``posts`` at once. Every post id an answer shows goes through
:func:`alive`, one primary-key lookup per request, so nothing deleted is ever shown.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

_POSTS = text("""SELECT p.id, p.uri, p.author_did, a.handle AS author_handle, p.text, p.created_at,
                        p.like_count, p.repost_count, p.reply_count
                 FROM posts p LEFT JOIN profiles a ON a.did = p.author_did
                 WHERE p.id = ANY(CAST(:ids AS bigint[]))""")


def alive(session: Session, ids) -> dict[int, dict]:
    """Post id → public view of the post, for the ids whose post still exists."""
    ids = sorted({int(i) for i in ids})
    if not ids:
        return {}
    return {row["id"]: view(row) for row in session.execute(_POSTS, {"ids": ids}).mappings()}


def view(row) -> dict:
    return {"uri": row["uri"], "author_did": row["author_did"], "author_handle": row["author_handle"],
            "text": row["text"], "created_at": row["created_at"].isoformat(),
            "engagement": row["like_count"] + row["repost_count"] + row["reply_count"]}


def pick(found: dict[int, dict], ids, limit: int | None = None) -> list[dict]:
    """The existing posts among ``ids``, in that order."""
    chosen = [found[i] for i in ids if i in found]
    return chosen[:limit] if limit is not None else chosen
