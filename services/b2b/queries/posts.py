"""The posts an answer names, read live: only posts that still exist are returned.

Aggregates and views lag their next refresh; ingest deletes a deleted post (and a purged
account's posts) from ``posts`` at once. Every post id an answer shows goes through
:func:`alive`, so nothing deleted is ever shown.

In a web process whose read cache may be used for the request (``app/read_cache.py``), the
views come from it: each is a dependent entry of the post (``("p", uri)``: its counts, its
deletion) and of its author (``("au", did)``: the handle), dropped by the realtime stream as
soon as either changes, so a cached view is exactly what the lookup would return. An id whose
post is gone is remembered as gone: ids are never reused. Elsewhere (or when the request may
not use the cache) one primary-key lookup per request reads them.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from services.read_cache import ReadCache

_POSTS = text("""SELECT p.id, p.uri, p.author_did, a.handle AS author_handle, p.text, p.created_at,
                        p.like_count, p.repost_count, p.reply_count
                 FROM posts p LEFT JOIN profiles a ON a.did = p.author_did
                 WHERE p.id = ANY(CAST(:ids AS bigint[]))""")
#: The cached value of an id whose post no longer exists (None cannot be stored).
_GONE = False


def alive(session: Session, ids, live: ReadCache | None = None) -> dict[int, dict]:
    """Post id → public view of the post, for the ids whose post still exists; from ``live``
    (the request's read cache) where it holds them."""
    ids = sorted({int(i) for i in ids})
    if not ids:
        return {}
    if live is None:
        return _read(session, ids)

    def read(keys: list[tuple]) -> dict[tuple, tuple]:
        views = _read(session, [post_id for _, post_id in keys])
        read = {("bp", i): (v, [("p", v["uri"]), ("au", v["author_did"])]) for i, v in views.items()}
        return {key: read.get(key, (_GONE, ())) for key in keys}

    cached = live.dependents([("bp", post_id) for post_id in ids], read)
    return {post_id: view for (_, post_id), view in cached.items() if view is not _GONE}


def _read(session: Session, ids: list[int]) -> dict[int, dict]:
    return {row["id"]: view(row) for row in session.execute(_POSTS, {"ids": ids}).mappings()}


def view(row) -> dict:
    return {"uri": row["uri"], "author_did": row["author_did"], "author_handle": row["author_handle"],
            "text": row["text"], "created_at": row["created_at"].isoformat(),
            "engagement": row["like_count"] + row["repost_count"] + row["reply_count"]}


def pick(found: dict[int, dict], ids, limit: int | None = None) -> list[dict]:
    """The existing posts among ``ids``, in that order."""
    chosen = [found[i] for i in ids if i in found]
    return chosen[:limit] if limit is not None else chosen
