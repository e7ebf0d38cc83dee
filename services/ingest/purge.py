"""Remove a deleted or taken-down account from every output, keeping counters exact."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

_STATEMENTS = [
    # Counters of other accounts' posts and profiles lose what this account contributed.
    """UPDATE posts p SET reply_count = p.reply_count - c.n
       FROM (SELECT reply_parent_uri AS uri, count(*) AS n FROM posts
             WHERE author_did = :did AND reply_parent_uri IS NOT NULL GROUP BY 1) c
       WHERE p.uri = c.uri AND p.author_did <> :did""",
    """UPDATE posts p SET like_count = p.like_count - c.n
       FROM (SELECT subject_uri AS uri, count(*) AS n FROM likes WHERE actor_did = :did GROUP BY 1) c
       WHERE p.uri = c.uri AND p.author_did <> :did""",
    """UPDATE posts p SET repost_count = p.repost_count - c.n
       FROM (SELECT subject_uri AS uri, count(*) AS n FROM reposts WHERE actor_did = :did GROUP BY 1) c
       WHERE p.uri = c.uri AND p.author_did <> :did""",
    """UPDATE profiles p SET followers_count = p.followers_count - c.n
       FROM (SELECT following_did AS did, count(*) AS n FROM follows WHERE follower_did = :did GROUP BY 1) c
       WHERE p.did = c.did AND p.did <> :did""",
    """UPDATE profiles p SET following_count = p.following_count - c.n
       FROM (SELECT follower_did AS did, count(*) AS n FROM follows WHERE following_did = :did GROUP BY 1) c
       WHERE p.did = c.did AND p.did <> :did""",
    # Then the rows themselves, in every table that can name the account.
    """DELETE FROM user_post_state WHERE user_did = :did
       OR post_uri IN (SELECT uri FROM posts WHERE author_did = :did)""",
    "DELETE FROM user_follow_state WHERE user_did = :did OR target_did = :did",
    "DELETE FROM likes WHERE actor_did = :did OR subject_uri IN (SELECT uri FROM posts WHERE author_did = :did)",
    "DELETE FROM reposts WHERE actor_did = :did OR subject_uri IN (SELECT uri FROM posts WHERE author_did = :did)",
    "DELETE FROM follows WHERE follower_did = :did OR following_did = :did",
    "DELETE FROM notifications WHERE recipient_did = :did OR actor_did = :did",
    "DELETE FROM push_subscriptions WHERE user_did = :did",
    "DELETE FROM posts WHERE author_did = :did",  # classifications go with them (ON DELETE CASCADE)
    "DELETE FROM user_profiles WHERE author_did = :did",
    "DELETE FROM profiles WHERE did = :did",
]


def purge_account(session: Session, did: str) -> None:
    for statement in _STATEMENTS:
        session.execute(text(statement), {"did": did})
