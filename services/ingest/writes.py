"""Write a run's :class:`~services.ingest.changes.Changes` with a few set-based statements.

Order matters: deletes before inserts (a run may delete and recreate a key), inserts before
counter updates (a new post's counters are bumped by later events of the same run).
"""

from __future__ import annotations

import orjson
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from models import Follow, Like, Post, Repost

from .changes import POST_CONTENT, Changes
from .params import arrays


_BUMP_POSTS = text("""
    UPDATE posts SET like_count = like_count + d.likes, repost_count = repost_count + d.reposts,
                     reply_count = reply_count + d.replies, engagement_updated_at = now()
    FROM unnest(CAST(:uris AS text[]), CAST(:likes AS int[]), CAST(:reposts AS int[]), CAST(:replies AS int[]))
         AS d(uri, likes, reposts, replies)
    WHERE posts.uri = d.uri""")
_ENSURE_PROFILES = text("""
    INSERT INTO profiles (did) SELECT unnest(CAST(:dids AS text[])) ON CONFLICT (did) DO NOTHING""")
_BUMP_PROFILES = text("""
    UPDATE profiles SET followers_count = followers_count + d.followers,
                        following_count = following_count + d.following,
                        posts_count = posts_count + d.posts, updated_at = now()
    FROM unnest(CAST(:dids AS text[]), CAST(:followers AS int[]), CAST(:following AS int[]), CAST(:posts AS int[]))
         AS d(did, followers, following, posts)
    WHERE profiles.did = d.did""")
_PROFILE_RECORDS = text("""
    UPDATE profiles SET display_name = d.display_name, description = d.description,
                        avatar_cid = d.avatar, banner_cid = d.banner, updated_at = now()
    FROM unnest(CAST(:dids AS text[]), CAST(:names AS text[]), CAST(:descriptions AS text[]),
                CAST(:avatars AS text[]), CAST(:banners AS text[]))
         AS d(did, display_name, description, avatar, banner)
    WHERE profiles.did = d.did""")
_ACCOUNT_STATUS = text("""
    UPDATE profiles SET account_status = d.status, updated_at = now()
    FROM unnest(CAST(:dids AS text[]), CAST(:statuses AS text[])) AS d(did, status)
    WHERE profiles.did = d.did""")
# Viewer state is recomputed from the stored likes/reposts/follows, never counted.
_VIEWER_POSTS = text("""
    INSERT INTO user_post_state (user_did, post_uri, liked, like_uri, reposted, repost_uri)
    SELECT v.user_did, v.post_uri, l.uri IS NOT NULL, l.uri, r.uri IS NOT NULL, r.uri
    FROM unnest(CAST(:users AS text[]), CAST(:posts AS text[])) AS v(user_did, post_uri)
    JOIN posts p ON p.uri = v.post_uri
    LEFT JOIN LATERAL (SELECT uri FROM likes WHERE subject_uri = v.post_uri AND actor_did = v.user_did
                       ORDER BY uri LIMIT 1) l ON true
    LEFT JOIN LATERAL (SELECT uri FROM reposts WHERE subject_uri = v.post_uri AND actor_did = v.user_did
                       ORDER BY uri LIMIT 1) r ON true
    ON CONFLICT (user_did, post_uri) DO UPDATE SET liked = excluded.liked, like_uri = excluded.like_uri,
        reposted = excluded.reposted, repost_uri = excluded.repost_uri""")
_VIEWER_FOLLOWS = text("""
    INSERT INTO user_follow_state (user_did, target_did, following, follow_uri, followed_by)
    SELECT v.user_did, v.target_did, f.uri IS NOT NULL, f.uri,
           EXISTS (SELECT 1 FROM follows b WHERE b.follower_did = v.target_did AND b.following_did = v.user_did)
    FROM unnest(CAST(:users AS text[]), CAST(:targets AS text[])) AS v(user_did, target_did)
    LEFT JOIN LATERAL (SELECT uri FROM follows WHERE follower_did = v.user_did AND following_did = v.target_did
                       ORDER BY uri LIMIT 1) f ON true
    ON CONFLICT (user_did, target_did) DO UPDATE SET following = excluded.following,
        follow_uri = excluded.follow_uri, followed_by = excluded.followed_by""")


def write_changes(session: Session, changes: Changes) -> None:
    _write_deletes(session, changes)
    _write_inserts(session, changes)
    _write_counters(session, changes)
    _write_profiles(session, changes)
    _write_viewer_state(session, changes)


def _insert(model, **on_conflict):
    """A Core INSERT compiled once and run as executemany (no per-batch SQL compilation)."""
    stmt = insert(model)
    if on_conflict:
        return stmt.on_conflict_do_update(index_elements=[model.uri],
                                          set_={name: stmt.excluded[name] for name in on_conflict["update"]})
    return stmt.on_conflict_do_nothing()


_INSERTS = ((Like, "like_rows", _insert(Like)), (Repost, "repost_rows", _insert(Repost)),
            (Follow, "follow_rows", _insert(Follow)))
_UPSERT_POSTS = _insert(Post, update=POST_CONTENT)
_DELETES = (
    ("deleted_likes", text("DELETE FROM likes WHERE uri = ANY(:uris)")),
    ("deleted_reposts", text("DELETE FROM reposts WHERE uri = ANY(:uris)")),
    ("deleted_follows", text("DELETE FROM follows WHERE uri = ANY(:uris)")),
)
_DELETE_NOTIFICATIONS = text("DELETE FROM notifications WHERE reason_uri = ANY(:uris)")
# One per (recipient, type, cause): a replayed cause inserts nothing and reports no id.
_INSERT_NOTIFICATIONS = text("""
    INSERT INTO notifications (recipient_did, type, actor_did, subject_uri, reason_uri, reason_cid, reason_record)
    SELECT n.recipient, n.type, n.actor, n.subject, n.reason, n.cid, CAST(n.record AS jsonb)
    FROM unnest(CAST(:recipients AS text[]), CAST(:types AS text[]), CAST(:actors AS text[]),
                CAST(:subjects AS text[]), CAST(:reasons AS text[]), CAST(:cids AS text[]), CAST(:records AS text[]))
         AS n(recipient, type, actor, subject, reason, cid, record)
    ON CONFLICT (recipient_did, type, reason_uri) DO NOTHING RETURNING id""")
# A stream delete is remembered (the latest time wins) so a backfilled copy cannot bring it back.
_TOMBSTONES = text("""
    INSERT INTO record_tombstones (uri, time_us)
    SELECT unnest(CAST(:uris AS text[])), unnest(CAST(:times AS bigint[]))
    ON CONFLICT (uri) DO UPDATE SET time_us = greatest(record_tombstones.time_us, excluded.time_us)""")
_DELETE_POSTS = [text(f"DELETE FROM {table} WHERE {column} = ANY(:uris)") for table, column in (
    ("likes", "subject_uri"), ("reposts", "subject_uri"), ("user_post_state", "post_uri"), ("posts", "uri"))]


def _write_deletes(session: Session, c: Changes) -> None:
    for attribute, statement in _DELETES:
        if getattr(c, attribute):
            session.execute(statement, arrays({"uris": list(getattr(c, attribute))}))
    if c.deleted_posts:
        for statement in _DELETE_POSTS:
            session.execute(statement, arrays({"uris": list(c.deleted_posts)}))
    if c.deleted_notification_reasons:
        session.execute(_DELETE_NOTIFICATIONS, arrays({"uris": list(c.deleted_notification_reasons)}))
    if c.tombstones:
        write_tombstones(session, c.tombstones)


def write_tombstones(session: Session, tombstones: dict[str, int]) -> None:
    uris = sorted(tombstones)  # a stable order keeps concurrent writers from deadlocking
    session.execute(_TOMBSTONES, arrays({"uris": uris, "times": [tombstones[u] for u in uris]}))


def _write_inserts(session: Session, c: Changes) -> None:
    connection = session.connection()
    if c.new_profiles:
        connection.execute(_ENSURE_PROFILES, arrays({"dids": sorted(c.new_profiles)}))
    if c.post_rows:
        connection.execute(_UPSERT_POSTS, list(c.post_rows.values()))
    for _, attribute, statement in _INSERTS:
        rows = getattr(c, attribute)
        if rows:
            connection.execute(statement, list(rows.values()))
    _write_notifications(session, c)


def _write_notifications(session: Session, c: Changes) -> None:
    rows = [row for reason_rows in c.notification_rows.values() for row in reason_rows]
    if not rows:
        return
    records = [None if r["reason_record"] is None else orjson.dumps(r["reason_record"]).decode() for r in rows]
    c.notification_ids = list(session.execute(_INSERT_NOTIFICATIONS, arrays({
        "recipients": [r["recipient_did"] for r in rows], "types": [r["type"] for r in rows],
        "actors": [r["actor_did"] for r in rows], "subjects": [r["subject_uri"] for r in rows],
        "reasons": [r["reason_uri"] for r in rows], "cids": [r["reason_cid"] for r in rows],
        "records": records})).scalars())


def _write_counters(session: Session, c: Changes) -> None:
    deltas = {uri: d for uri, d in c.post_deltas.items() if any(d) and uri not in c.deleted_posts}
    if deltas:
        uris = sorted(deltas)  # a stable order keeps concurrent writers from deadlocking
        session.execute(_BUMP_POSTS, arrays({"uris": uris, "likes": [deltas[u][0] for u in uris],
                                             "reposts": [deltas[u][1] for u in uris],
                                             "replies": [deltas[u][2] for u in uris]}))
    deltas = {did: d for did, d in c.profile_deltas.items() if any(d)}
    if deltas:
        dids = sorted(deltas)
        session.execute(_BUMP_PROFILES, arrays({"dids": dids, "followers": [deltas[d][0] for d in dids],
                                                "following": [deltas[d][1] for d in dids],
                                                "posts": [deltas[d][2] for d in dids]}))


def _write_profiles(session: Session, c: Changes) -> None:
    if c.profile_records:
        dids = sorted(c.profile_records)
        records = [c.profile_records[d] for d in dids]
        session.execute(_PROFILE_RECORDS, arrays({
            "dids": dids, "names": [r.get("displayName") for r in records],
            "descriptions": [r.get("description") for r in records],
            "avatars": [r.get("avatar") for r in records], "banners": [r.get("banner") for r in records]}))
    if c.account_statuses:
        session.execute(_ACCOUNT_STATUS, arrays({"dids": list(c.account_statuses),
                                                 "statuses": list(c.account_statuses.values())}))


def _write_viewer_state(session: Session, c: Changes) -> None:
    refresh_viewer_state(session, c.viewer_posts, c.viewer_follows)


def refresh_viewer_state(session: Session, post_pairs, follow_pairs) -> None:
    """Recompute members' own like/repost state of posts and follow state of accounts.

    ``post_pairs`` are (member, post uri), ``follow_pairs`` (member, other did).
    """
    if post_pairs:
        pairs = sorted(post_pairs)
        session.execute(_VIEWER_POSTS, arrays({"users": [u for u, _ in pairs], "posts": [p for _, p in pairs]}))
    if follow_pairs:
        pairs = sorted(follow_pairs)
        session.execute(_VIEWER_FOLLOWS, arrays({"users": [u for u, _ in pairs], "targets": [t for _, t in pairs]}))

