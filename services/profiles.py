"""Profiles: an account's view, its post tabs, the posts it liked, its followers and follows.

Accounts are named by handle or DID (``@`` optional); handles are stored lower-cased (from
identity events and member registration), so a lookup is one probe of idx_profiles_handle.
Likes and follows page newest first over ``(created_at, uri)`` of the like or follow record,
with the same opaque cursor format as posts (``services.pagination``).
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from services.feeds import post_page
from services.pagination import decode_cursor, page
from services.views import post_views, profile_views

_BY_DID = text("SELECT did FROM profiles WHERE did = :actor")
_BY_HANDLE = text("SELECT did FROM profiles WHERE handle = :actor")

#: Profile tabs, for services.feeds.post_page: idx_posts_author_top, idx_posts_author (there is
#: no partial index of replies), idx_posts_author_media.
TABS = {
    "posts": "SELECT uri, sort_at, cid FROM posts WHERE author_did = :did AND reply_parent_uri IS NULL {after}",
    "replies": "SELECT uri, sort_at, cid FROM posts WHERE author_did = :did AND reply_parent_uri IS NOT NULL {after}",
    "media": "SELECT uri, sort_at, cid FROM posts WHERE author_did = :did AND has_media {after}",
}

# idx_likes_actor (actor_did, created_at DESC); uri only breaks ties of equal created_at.
_LIKES = """SELECT subject_uri, created_at, uri FROM likes WHERE actor_did = :did {after}
            ORDER BY created_at DESC, uri DESC LIMIT :limit"""
# idx_follows_following / idx_follows_follower are (did, other did), with no created_at: a page
# reads all the account's follows and keeps the newest (2 ms for 850 followers, linear beyond).
_FOLLOWERS = """SELECT follower_did AS did, created_at, uri FROM follows WHERE following_did = :did {after}
                ORDER BY created_at DESC, uri DESC LIMIT :limit"""
_FOLLOWING = """SELECT following_did AS did, created_at, uri FROM follows WHERE follower_did = :did {after}
                ORDER BY created_at DESC, uri DESC LIMIT :limit"""
_AFTER = "AND created_at <= :after_at AND (created_at < :after_at OR uri < :after_uri)"


def resolve_actor(session: Session, actor: str, cache=None) -> str | None:
    """The DID of a known account named by handle or DID, else None (from ``cache`` when given)."""
    actor = actor.removeprefix("@")
    actor = actor if actor.startswith("did:") else actor.lower()
    query = _BY_DID if actor.startswith("did:") else _BY_HANDLE

    def lookup(name: str) -> str | None:
        return session.execute(query, {"actor": name}).scalar()
    return cache.resolve(actor, lookup) if cache is not None else lookup(actor)


def get_profile(session: Session, actor: str, viewer: str | None, cdn: str, cache=None) -> dict | None:
    did = resolve_actor(session, actor, cache)
    views = profile_views(session, [did], viewer, cdn, cache) if did else []
    return views[0] if views else None


def author_posts(session: Session, actor: str, tab: str, limit: int, cursor: str | None,
                 viewer: str | None, cdn: str, cache=None) -> tuple[list[dict], str | None] | None:
    """A page of one profile tab (posts, replies, media), newest first; None for an unknown actor."""
    did = resolve_actor(session, actor, cache)
    if did is None:
        return None
    return post_page(session, TABS[tab], {"did": did}, limit, cursor, viewer, cdn, cache=cache,
                     cache_key=("tab", did, tab))


def liked_posts(session: Session, actor: str, limit: int, cursor: str | None,
                viewer: str | None, cdn: str, cache=None) -> tuple[list[dict], str | None] | None:
    """The indexed posts the account liked, newest like first; None for an unknown actor."""
    did = resolve_actor(session, actor, cache)
    if did is None:
        return None
    rows, next_cursor = _record_page(session, _LIKES, did, limit, cursor)
    return post_views(session, [row.subject_uri for row in rows], viewer, cdn, cache), next_cursor


def followers(session: Session, actor: str, limit: int, cursor: str | None,
              viewer: str | None, cdn: str, cache=None) -> tuple[list[dict], str | None] | None:
    return _follow_list(session, _FOLLOWERS, actor, limit, cursor, viewer, cdn, cache)


def following(session: Session, actor: str, limit: int, cursor: str | None,
              viewer: str | None, cdn: str, cache=None) -> tuple[list[dict], str | None] | None:
    return _follow_list(session, _FOLLOWING, actor, limit, cursor, viewer, cdn, cache)


def _follow_list(session: Session, query: str, actor: str, limit: int, cursor: str | None,
                 viewer: str | None, cdn: str, cache=None) -> tuple[list[dict], str | None] | None:
    did = resolve_actor(session, actor, cache)
    if did is None:
        return None
    rows, next_cursor = _record_page(session, query, did, limit, cursor)
    return profile_views(session, [row.did for row in rows], viewer, cdn, cache), next_cursor


def _record_page(session: Session, query: str, did: str, limit: int, cursor: str | None):
    """One page of like or follow records of ``did``, newest first by (created_at, uri)."""
    params = {"did": did, "limit": limit + 1}
    if cursor is not None:
        params["after_at"], params["after_uri"] = decode_cursor(cursor)
    sql = text(query.format(after=_AFTER if cursor is not None else ""))
    return page(session.execute(sql, params).all(), limit, lambda row: (row.created_at, row.uri))
