"""Read the index back in the comparable shape of ``tests/model.py``'s ``snapshot()``."""

from __future__ import annotations

from sqlalchemy import text


def db_snapshot(session) -> dict:
    q = lambda sql: session.execute(text(sql)).all()  # noqa: E731
    return {
        "posts": {r.uri: {"author_did": r.author_did, "cid": r.cid, "reply_parent_uri": r.reply_parent_uri,
                          "reply_root_uri": r.reply_root_uri, "like_count": r.like_count,
                          "repost_count": r.repost_count, "reply_count": r.reply_count,
                          "has_cannabis_hashtag": r.has_cannabis_hashtag, "is_cannect_user": r.is_cannect_user}
                  for r in q("SELECT * FROM posts")},
        "likes": {r.uri: (r.actor_did, r.subject_uri) for r in q("SELECT * FROM likes")},
        "reposts": {r.uri: (r.actor_did, r.subject_uri) for r in q("SELECT * FROM reposts")},
        "follows": {r.uri: (r.follower_did, r.following_did) for r in q("SELECT * FROM follows")},
        "profiles": {r.did: {"handle": r.handle, "display_name": r.display_name,
                             "is_cannect_user": r.is_cannect_user, "followers_count": r.followers_count,
                             "following_count": r.following_count, "posts_count": r.posts_count}
                     for r in q("SELECT * FROM profiles")},
        "notifications": {f"{r.recipient_did} {r.type} {r.reason_uri}": [r.actor_did, r.subject_uri]
                          for r in q("SELECT * FROM notifications")},
    }


def diff(expected: dict, actual: dict, limit: int = 8) -> str:
    """A short, readable description of how two snapshots differ."""
    lines = []
    for table in expected:
        exp, act = expected[table], actual[table]
        missing, extra = exp.keys() - act.keys(), act.keys() - exp.keys()
        changed = [k for k in exp.keys() & act.keys() if exp[k] != act[k]]
        if missing or extra or changed:
            lines.append(f"{table}: {len(missing)} missing, {len(extra)} extra, {len(changed)} different")
            lines += [f"  missing {k}: {exp[k]}" for k in sorted(missing)[:limit]]
            lines += [f"  extra {k}: {act[k]}" for k in sorted(extra)[:limit]]
            lines += [f"  {k}: expected {exp[k]} got {act[k]}" for k in sorted(changed)[:limit]]
    return "\n".join(lines)
