"""Threads: a post with the chain of its parents above and the tree of its replies below.

The shape is the AppView's ``getPostThread``: the anchor node has ``post``, ``parent`` and
``replies``; a parent node has ``post`` and ``parent``; a reply node has ``post`` and
``replies``, ordered oldest first. A parent the index does not hold is
``{"notFound": true, "uri": ...}``: the index keeps no tombstones, so a deleted parent and one
that was never indexed (a tagged reply to an outside post) look the same, and both are named
so that the app can say so or fetch it from Bluesky. Replies not in the index are absent.

Parents are one recursive query up ``posts.uri``; replies one recursive query down
idx_posts_reply_parent, breadth first, stopped after :data:`REPLY_LIMIT` nodes. A thread with
more keeps its complete shallower levels (the app pages the rest with ``/replies``). Record
URIs are chosen by their authors, so reply chains can loop: every post appears once, at the
place nearest the anchor, and the depth and height limits bound the queries.
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import text
from sqlalchemy.orm import Session

from services.feeds import post_page
from services.views import post_views

#: Most reply nodes in one thread response (the AppView's newer thread API caps breadth too).
REPLY_LIMIT = 500

_PARENTS = text("""
    WITH RECURSIVE up(uri, parent, height) AS (
        SELECT uri, reply_parent_uri, 0 FROM posts WHERE uri = :uri
        UNION ALL
        SELECT p.uri, p.reply_parent_uri, up.height + 1
        FROM up JOIN posts p ON p.uri = up.parent
        WHERE up.height < :height)
    SELECT uri, parent, height FROM up ORDER BY height""")

# No ORDER BY: the outer LIMIT then stops the recursion as soon as enough rows are found.
# PostgreSQL evaluates a recursive query level by level, so rows come breadth first.
_REPLIES = text("""
    WITH RECURSIVE down(uri, parent, depth, sort_at, cid) AS (
        SELECT uri, reply_parent_uri, 1, sort_at, cid FROM posts WHERE reply_parent_uri = :uri
        UNION ALL
        SELECT p.uri, p.reply_parent_uri, down.depth + 1, p.sort_at, p.cid
        FROM down JOIN posts p ON p.reply_parent_uri = down.uri
        WHERE down.depth < :depth)
    SELECT uri, parent, depth, sort_at, cid FROM down LIMIT :limit""")

_DIRECT_REPLIES = text("""
    SELECT uri, reply_parent_uri AS parent, 1 AS depth, sort_at, cid FROM posts
    WHERE reply_parent_uri = :uri ORDER BY sort_at, cid LIMIT :limit""")

_EXISTS = text("SELECT 1 FROM posts WHERE uri = :uri")

REPLIES = "SELECT uri, sort_at, cid FROM posts WHERE reply_parent_uri = :uri {after}"  # idx_posts_reply_parent


def post_thread(session: Session, uri: str, depth: int, parent_height: int,
                viewer: str | None, cdn: str, cache=None) -> dict | None:
    """The thread around ``uri``, or None when the post is not in the index.

    With a read cache, the structure (parents and reply rows) comes from it: it stays valid
    while none of its posts changed (a new reply counts on its parent, a delete names the
    post) and the missing parent above the chain, if any, was not indexed."""
    def read():
        structure = _structure(session, uri, depth, parent_height)
        if structure is None:
            return None, ()
        chain, replies = structure
        named = [row.uri for row in chain] + [row.uri for row in replies] + [chain[-1].parent]
        return structure, [("p", name) for name in named if name]

    structure = cache.dependent(("t", uri, depth, parent_height), read) if cache is not None else read()[0]
    if structure is None:
        return None
    chain, replies = structure
    views = {view["uri"]: view for view in
             post_views(session, [row.uri for row in chain] + [row.uri for row in replies], viewer, cdn, cache)}
    if uri not in views:  # deleted between the statements
        return None
    children = defaultdict(list)
    for row in replies:
        children[row.parent].append(row)
    for rows in children.values():
        rows.sort(key=lambda row: (row.sort_at, row.cid))
    return {"post": views[uri], "parent": _parent_node(chain, parent_height, views),
            "replies": _reply_nodes(uri, children, views)}


def post_replies(session: Session, uri: str, limit: int, cursor: str | None,
                 viewer: str | None, cdn: str, cache=None) -> tuple[list[dict], str | None] | None:
    """A page of the direct replies to ``uri``, oldest first; None when the post is not indexed."""
    if session.execute(_EXISTS, {"uri": uri}).first() is None:
        return None
    return post_page(session, REPLIES, {"uri": uri}, limit, cursor, viewer, cdn, oldest_first=True, cache=cache)


def _structure(session: Session, uri: str, depth: int, parent_height: int) -> tuple[list, list] | None:
    """The parent chain and the reply rows of the thread around ``uri`` (None: not indexed)."""
    chain = _parent_chain(session, uri, parent_height)
    if not chain:
        return None
    seen = {row.uri for row in chain}
    return chain, (_reply_rows(session, uri, depth, seen) if depth > 0 else [])


def _parent_chain(session: Session, uri: str, parent_height: int) -> list:
    """The anchor and its indexed ancestors, nearest first, cut where a loop would repeat one."""
    chain, seen = [], set()
    for row in session.execute(_PARENTS, {"uri": uri, "height": parent_height}):
        if row.uri in seen:
            break
        seen.add(row.uri)
        chain.append(row)
    return chain


def _parent_node(chain: list, parent_height: int, views: dict) -> dict | None:
    """The nested parents of ``chain[0]``, built from the top of the chain down."""
    top = chain[-1]
    seen = {row.uri for row in chain}
    if top.parent is None or top.height >= parent_height or top.parent in seen:
        node = None
    else:
        node = {"notFound": True, "uri": top.parent}
    for row in reversed(chain[1:]):
        node = {"post": views[row.uri], "parent": node} if row.uri in views else {"notFound": True, "uri": row.uri}
    return node


def _reply_rows(session: Session, uri: str, depth: int, seen: set[str]) -> list:
    """Reply rows (uri, parent, depth, sort_at, cid) below ``uri``: complete levels, each post once."""
    rows = session.execute(_REPLIES, {"uri": uri, "depth": depth, "limit": REPLY_LIMIT + 1}).all()
    if len(rows) > REPLY_LIMIT:
        deepest = max(row.depth for row in rows)
        rows = [row for row in rows if row.depth < deepest]
        if not rows:  # the first level alone is too wide: its oldest replies
            rows = session.execute(_DIRECT_REPLIES, {"uri": uri, "limit": REPLY_LIMIT}).all()
    kept = []
    for row in sorted(rows, key=lambda row: row.depth):
        if row.uri not in seen:
            seen.add(row.uri)
            kept.append(row)
    return kept


def _reply_nodes(uri: str, children: dict, views: dict) -> list[dict]:
    return [{"post": views[row.uri], "replies": _reply_nodes(row.uri, children, views)}
            for row in children.get(uri, ()) if row.uri in views]
