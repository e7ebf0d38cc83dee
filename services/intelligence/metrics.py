"""``post_metrics_history``: engagement snapshots of recent posts, for viral acceleration.

Every run snapshots each post created in the last RECENT_HOURS whose like, repost or reply
count changed since its last snapshot (or that has none yet). Per snapshot
(docs/intelligence.md, "Engagement snapshots")::

    engagement      = likes + reposts + replies
    engagement_rate = engagement / max(author's followers, 1)
    velocity        = (engagement - engagement at the previous snapshot)
                      / hours since that snapshot (since the post's creation for the first),
                      hours at least 1/60

Snapshots older than RETENTION_DAYS are deleted; a deleted post's go with it (cascade).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import text
from sqlalchemy.orm import Session

from . import runs
from .base import try_job_lock, utcnow

RECENT_HOURS = 48
RETENTION_DAYS = 30

_SNAPSHOT = text("""
WITH recent AS (
    SELECT p.id, p.created_at, p.like_count, p.repost_count, p.reply_count,
           coalesce(a.followers_count, 0) AS followers
    FROM posts p LEFT JOIN profiles a ON a.did = p.author_did
    WHERE p.created_date >= :lo_day AND p.created_at >= :lo AND p.created_at <= :now
), last AS (
    SELECT DISTINCT ON (h.post_id) h.post_id, h.captured_at, h.like_count, h.repost_count, h.reply_count
    FROM post_metrics_history h JOIN recent r ON r.id = h.post_id
    ORDER BY h.post_id, h.captured_at DESC
)
INSERT INTO post_metrics_history (post_id, captured_at, like_count, repost_count, reply_count, engagement_rate,
                                  velocity)
SELECT r.id, :now, r.like_count, r.repost_count, r.reply_count,
       (r.like_count + r.repost_count + r.reply_count)::float / greatest(r.followers, 1),
       ((r.like_count + r.repost_count + r.reply_count)
        - coalesce(l.like_count + l.repost_count + l.reply_count, 0))::float
       / greatest(extract(epoch FROM CAST(:now AS timestamptz) - coalesce(l.captured_at, r.created_at)) / 3600.0,
                  1.0 / 60)
FROM recent r LEFT JOIN last l ON l.post_id = r.id
WHERE l.post_id IS NULL
   OR (l.like_count, l.repost_count, l.reply_count) IS DISTINCT FROM (r.like_count, r.repost_count, r.reply_count)
""")
_EXPIRE = text("DELETE FROM post_metrics_history WHERE captured_at < :cutoff")


def snapshot(session: Session, now: datetime | None = None) -> int:
    """The scheduled job: snapshot recent posts whose engagement changed; snapshots taken."""
    if not try_job_lock(session, "post_metrics"):
        return 0
    now = now or utcnow()
    lo = now - timedelta(hours=RECENT_HOURS)
    with runs.recorded(session, "post_metrics") as tally:
        tally.rows = session.execute(_SNAPSHOT, {"now": now, "lo": lo,
                                                           "lo_day": lo.astimezone(timezone.utc).date()}).rowcount
        session.execute(_EXPIRE, {"cutoff": now - timedelta(days=RETENTION_DAYS)})
    return tally.rows


def accelerating(session: Session, since: datetime, limit: int = 20) -> list[dict]:
    """Posts whose latest snapshot since ``since`` shows the highest velocity."""
    rows = session.execute(text("""
        SELECT DISTINCT ON (h.post_id) h.post_id, p.uri, h.captured_at, h.like_count, h.repost_count,
               h.reply_count, h.engagement_rate, h.velocity
        FROM post_metrics_history h JOIN posts p ON p.id = h.post_id
        WHERE h.captured_at >= :since ORDER BY h.post_id, h.captured_at DESC"""), {"since": since}).mappings()
    return sorted((dict(r) for r in rows), key=lambda r: (-r["velocity"], r["post_id"]))[:limit]
