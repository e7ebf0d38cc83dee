"""Remove a deleted or taken-down account from every output, keeping counters exact.

The purge also ends the account's app sessions (and drops its PDS tokens), and reports what
it did as :class:`Changes` (posts deleted, other posts' and profiles' counter deltas,
sessions ended), so that ``services.realtime.collect_events`` announces it like any run.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from .changes import Changes

# Counters of other accounts' posts and profiles lose what this account contributed:
# (statement returning (key, n), which delta list, which position in it).
_COUNTERS = [
    ("""UPDATE posts p SET reply_count = p.reply_count - c.n
        FROM (SELECT reply_parent_uri AS uri, count(*) AS n FROM posts
              WHERE author_did = :did AND reply_parent_uri IS NOT NULL GROUP BY 1) c
        WHERE p.uri = c.uri AND p.author_did <> :did RETURNING p.uri, c.n""", "post_deltas", 2),
    ("""UPDATE posts p SET like_count = p.like_count - c.n
        FROM (SELECT subject_uri AS uri, count(*) AS n FROM likes WHERE actor_did = :did GROUP BY 1) c
        WHERE p.uri = c.uri AND p.author_did <> :did RETURNING p.uri, c.n""", "post_deltas", 0),
    ("""UPDATE posts p SET repost_count = p.repost_count - c.n
        FROM (SELECT subject_uri AS uri, count(*) AS n FROM reposts WHERE actor_did = :did GROUP BY 1) c
        WHERE p.uri = c.uri AND p.author_did <> :did RETURNING p.uri, c.n""", "post_deltas", 1),
    ("""UPDATE profiles p SET followers_count = p.followers_count - c.n
        FROM (SELECT following_did AS did, count(*) AS n FROM follows WHERE follower_did = :did GROUP BY 1) c
        WHERE p.did = c.did AND p.did <> :did RETURNING p.did, c.n""", "profile_deltas", 0),
    ("""UPDATE profiles p SET following_count = p.following_count - c.n
        FROM (SELECT follower_did AS did, count(*) AS n FROM follows WHERE following_did = :did GROUP BY 1) c
        WHERE p.did = c.did AND p.did <> :did RETURNING p.did, c.n""", "profile_deltas", 1),
]

# Then the rows themselves, in every table that can name the account: first those that
# refer to its posts, then the posts, its sessions, and what the posts and sessions refer to.
_DELETE_REFERENCES = [
    """DELETE FROM user_post_state WHERE user_did = :did
       OR post_uri IN (SELECT uri FROM posts WHERE author_did = :did)""",
    "DELETE FROM user_follow_state WHERE user_did = :did OR target_did = :did",
    "DELETE FROM likes WHERE actor_did = :did OR subject_uri IN (SELECT uri FROM posts WHERE author_did = :did)",
    "DELETE FROM reposts WHERE actor_did = :did OR subject_uri IN (SELECT uri FROM posts WHERE author_did = :did)",
    "DELETE FROM follows WHERE follower_did = :did OR following_did = :did",
    "DELETE FROM notifications WHERE recipient_did = :did OR actor_did = :did",
    "DELETE FROM push_subscriptions WHERE user_did = :did",
]
_DELETE_POSTS = "DELETE FROM posts WHERE author_did = :did RETURNING uri"  # classifications cascade
_END_SESSIONS = "DELETE FROM app_sessions WHERE did = :did RETURNING id"
_DELETE_ACCOUNT = [
    "DELETE FROM user_profiles WHERE author_did = :did",
    "DELETE FROM profiles WHERE did = :did",
    "DELETE FROM pds_sessions WHERE did = :did",
]


def purge_account(session: Session, did: str) -> Changes:
    """Delete everything of the account; what changed, for the realtime events."""
    report = Changes()
    params = {"did": did}
    for statement, deltas, position in _COUNTERS:
        for key, n in session.execute(text(statement), params):
            getattr(report, deltas)[key][position] -= n
    for statement in _DELETE_REFERENCES:
        session.execute(text(statement), params)
    report.deleted_posts.update(session.execute(text(_DELETE_POSTS), params).scalars())
    report.ended_sessions.update(str(sid) for sid in session.execute(text(_END_SESSIONS), params).scalars())
    for statement in _DELETE_ACCOUNT:
        session.execute(text(statement), params)
    return report
