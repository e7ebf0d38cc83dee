"""Feeds: global (cannabis-tagged posts), local (posts of Cannect members), following.

Every post list of the API (feeds, profile tabs, post search) is the same query shape: the
keys ``(uri, sort_at, cid)`` of one page, newest first, read from a partial or composite index
that ends in ``(sort_at DESC, cid)``, then the page hydrated by ``services.views.post_views``.
:func:`post_page` runs that shape for a query given by the caller.

Keyset: the next page is ``sort_at <= t AND (sort_at < t OR cid < c)``, a range on the index's
leading ``sort_at`` (its ``cid`` runs ascending, so an incremental sort orders the rare ties).
There are two statements per query (with and without a cursor) rather than one with
``:cursor IS NULL OR ...``, so a prepared statement's generic plan can never be a bad one.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from services.pagination import decode_cursor, page
from services.read_cache import PAGE_ROWS
from services.views import post_views

GLOBAL = "SELECT uri, sort_at, cid FROM posts WHERE has_cannabis_hashtag {after}"      # idx_posts_cannabis
LOCAL = "SELECT uri, sort_at, cid FROM posts WHERE is_cannect_user {after}"            # idx_posts_cannect

#: Posts of the accounts the viewer follows, from idx_posts_author, in two steps. First the
#: newest post of each followed account: the ``limit``-th newest of those is a floor below which
#: no post of the page can be (that many posts are at or above it). Then each account's posts
#: above the floor. A page so reads about one index probe per follow plus the posts shown,
#: instead of a page per follow (2.5 ms instead of 15 to 60 ms for 300 follows on a million
#: posts, bench/api.py).
#: The CTE is materialized so that the planner costs the follows once, as the small set they are.
FOLLOWING = """
    WITH followed AS MATERIALIZED (SELECT DISTINCT following_did AS did FROM follows WHERE follower_did = :viewer)
    SELECT uri, sort_at, cid FROM followed CROSS JOIN LATERAL (
        SELECT uri, sort_at, cid FROM posts
        WHERE author_did = followed.did {after}
          AND sort_at >= coalesce((
              SELECT newest.sort_at FROM followed AS f
              CROSS JOIN LATERAL (SELECT sort_at FROM posts WHERE author_did = f.did {after}
                                  ORDER BY sort_at DESC LIMIT 1) AS newest
              ORDER BY newest.sort_at DESC OFFSET :limit - 1 LIMIT 1), '-infinity')
        ORDER BY sort_at DESC, cid DESC LIMIT :limit) AS posts"""

AFTER = "AND sort_at <= :after_sort_at AND (sort_at < :after_sort_at OR cid < :after_cid)"
AFTER_OLDEST_FIRST = "AND sort_at >= :after_sort_at AND (sort_at > :after_sort_at OR cid > :after_cid)"


def post_page(session: Session, query: str, params: dict, limit: int, cursor: str | None,
              viewer: str | None, cdn: str, oldest_first: bool = False, cache=None,
              cache_key: tuple | None = None) -> tuple[list[dict], str | None]:
    """One page of the posts ``query`` selects, hydrated, newest first (or oldest first, as
    replies are read). Raises InvalidCursor for a cursor this API did not give.

    With a read cache, views come from it, and so does a first page named by ``cache_key``
    (``services.read_cache``: the cache drops it when a post enters or leaves it)."""
    if cache is not None and cache_key is not None and cursor is None:
        rows = cache.first_page(cache_key, lambda n: page_keys(session, query, params, n, None, oldest_first))
        rows = rows[:limit + 1]
    else:
        rows = page_keys(session, query, params, limit, cursor, oldest_first)
    return hydrate_page(session, rows, limit, viewer, cdn, cache)


def page_keys(session: Session, query: str, params: dict, limit: int, cursor: str | None,
              oldest_first: bool = False) -> list:
    """The ``(uri, sort_at, cid)`` rows of a page, plus one more if there is a next page.

    ``query`` is a constant of a service module, never user input: a ``SELECT uri, sort_at,
    cid`` with ``{after}`` where the keyset condition of a next page goes (ORDER BY and LIMIT
    are added here).
    """
    after = ""
    params = dict(params, limit=limit + 1)
    if cursor is not None:
        params["after_sort_at"], params["after_cid"] = decode_cursor(cursor)
        after = AFTER_OLDEST_FIRST if oldest_first else AFTER
    order = "sort_at, cid" if oldest_first else "sort_at DESC, cid DESC"
    return session.execute(text(f"{query.format(after=after)} ORDER BY {order} LIMIT :limit"), params).all()


def hydrate_page(session: Session, rows: list, limit: int, viewer: str | None, cdn: str,
                 cache=None) -> tuple[list[dict], str | None]:
    """The views of the page's posts and the cursor of the next page (None on the last)."""
    rows, next_cursor = page(rows, limit, lambda row: (row.sort_at, row.cid))
    return post_views(session, [row.uri for row in rows], viewer, cdn, cache), next_cursor


def global_feed(session: Session, limit: int, cursor: str | None, viewer: str | None, cdn: str, cache=None):
    return post_page(session, GLOBAL, {}, limit, cursor, viewer, cdn, cache=cache, cache_key=("f", "global"))


def local_feed(session: Session, limit: int, cursor: str | None, viewer: str | None, cdn: str, cache=None):
    return post_page(session, LOCAL, {}, limit, cursor, viewer, cdn, cache=cache, cache_key=("f", "local"))


_FOLLOWED = text("SELECT DISTINCT following_did FROM follows WHERE follower_did = :viewer")


def following_feed(session: Session, viewer: str, limit: int, cursor: str | None, cdn: str, cache=None):
    """With a read cache, the first page's keys are the viewer's own cache entry, valid while
    the viewer's follows (their profile entry: ``read_changed`` names the follower of every
    follow made or undone) and the followed accounts' post lists (their profile tabs) did not
    change."""
    if cache is None or cursor is not None:
        return post_page(session, FOLLOWING, {"viewer": viewer}, limit, cursor, viewer, cdn, cache=cache)

    def read():
        followed = session.execute(_FOLLOWED, {"viewer": viewer}).scalars().all()
        rows = page_keys(session, FOLLOWING, {"viewer": viewer}, PAGE_ROWS - 1, None)
        return rows, [("a", viewer)] + [("tab", did, "posts") for did in followed]

    rows = cache.dependent(("following", viewer), read)
    return hydrate_page(session, rows[:limit + 1], limit, viewer, cdn, cache)

