"""Post and profile views: what the app renders, hydrated in one query per page.

Shapes follow the AppView's (camelCase, ``viewer`` state of the signed-in member), so the app
can drop its own caching and optimistic-update code. The viewer's likes, reposts and follows
come from ``user_post_state`` / ``user_follow_state``, kept by ingest for members.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text
from sqlalchemy.orm import Session

_POSTS = text("""
    SELECT p.uri, p.cid, p.author_did, p.raw_record, p.created_at, p.indexed_at, p.sort_at,
           p.reply_parent_uri, p.reply_root_uri, p.quote_uri, p.embed_type, p.has_media,
           p.like_count, p.repost_count, p.reply_count,
           a.handle, a.display_name, a.avatar_cid, a.is_cannect_user,
           s.like_uri, s.repost_uri
    FROM posts p
    LEFT JOIN profiles a ON a.did = p.author_did
    LEFT JOIN user_post_state s ON s.user_did = :viewer AND s.post_uri = p.uri
    WHERE p.uri = ANY(:uris)""")

_PROFILES = text("""
    SELECT p.did, p.handle, p.display_name, p.description, p.avatar_cid, p.banner_cid,
           p.followers_count, p.following_count, p.posts_count, p.is_cannect_user, p.indexed_at,
           f.follow_uri, coalesce(f.followed_by, false) AS followed_by
    FROM profiles p
    LEFT JOIN user_follow_state f ON f.user_did = :viewer AND f.target_did = p.did
    WHERE p.did = ANY(:dids)""")


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def image_url(cdn: str, kind: str, did: str, cid: str | None) -> str | None:
    """The Bluesky CDN URL of an avatar or banner blob."""
    return f"{cdn}/{kind}/plain/{did}/{cid}@jpeg" if cid else None


def post_views(session: Session, uris: list[str], viewer: str | None, cdn: str, cache=None) -> list[dict]:
    """Views of the posts that exist, in the order of ``uris`` (deleted ones are left out).

    With a ``services.read_cache.ReadCache`` (one the caller may use now), from it."""
    if cache is not None:
        return cache.post_views(session, uris, viewer)
    if not uris:
        return []
    rows = {row.uri: row for row in session.execute(_POSTS, {"uris": list(uris), "viewer": viewer or ""})}
    return [_post_view(rows[uri], cdn) for uri in uris if uri in rows]


def _post_view(row, cdn: str) -> dict:
    view = {
        "uri": row.uri,
        "cid": row.cid,
        "author": {"did": row.author_did, "handle": row.handle, "displayName": row.display_name,
                   "avatar": image_url(cdn, "avatar", row.author_did, row.avatar_cid),
                   "isCannectUser": bool(row.is_cannect_user)},
        "record": row.raw_record,
        "embedType": row.embed_type,
        "hasMedia": row.has_media,
        "likeCount": row.like_count,
        "repostCount": row.repost_count,
        "replyCount": row.reply_count,
        "createdAt": iso(row.created_at),
        "indexedAt": iso(row.indexed_at),
        "viewer": {"like": row.like_uri, "repost": row.repost_uri},
    }
    if row.reply_parent_uri:
        view["reply"] = {"parent": row.reply_parent_uri, "root": row.reply_root_uri}
    if row.quote_uri:
        view["quote"] = row.quote_uri
    return view


def profile_views(session: Session, dids: list[str], viewer: str | None, cdn: str, cache=None) -> list[dict]:
    """Views of the known profiles, in the order of ``dids`` (from ``cache`` when given)."""
    if cache is not None:
        return cache.profile_views(session, dids, viewer)
    if not dids:
        return []
    rows = {row.did: row for row in session.execute(_PROFILES, {"dids": list(dids), "viewer": viewer or ""})}
    return [_profile_view(rows[did], cdn) for did in dids if did in rows]


def _profile_view(row, cdn: str) -> dict:
    return {
        "did": row.did,
        "handle": row.handle,
        "displayName": row.display_name,
        "description": row.description,
        "avatar": image_url(cdn, "avatar", row.did, row.avatar_cid),
        "banner": image_url(cdn, "banner", row.did, row.banner_cid),
        "followersCount": row.followers_count,
        "followingCount": row.following_count,
        "postsCount": row.posts_count,
        "isCannectUser": row.is_cannect_user,
        "indexedAt": iso(row.indexed_at),
        "viewer": {"following": row.follow_uri, "followedBy": row.followed_by},
    }
