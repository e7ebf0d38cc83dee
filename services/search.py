"""Search: posts by full-text match, accounts by handle or display-name prefix.

Posts: ``websearch_to_tsquery('english', q)`` (quotes, ``or``, ``-word`` as on search engines;
never a syntax error) against ``to_tsvector('english', coalesce(text, ''))``, the expression
of the GIN index idx_posts_text_search, newest first with the feeds' keyset cursor. A query of
only stop words matches nothing.

Newest first and a text match pull against each other: PostgreSQL either walks idx_posts_created
testing every post (fast for common words, a scan of the whole table for a word nobody used:
11 s on a million posts) or takes every match from the GIN index and sorts them (fast for rare
words, 260 ms for a word in 10% of the posts). It picks by its estimate of how common the words
are, which is poor for phrases and for words it has no statistics on. So matches always come
from the GIN index (the ``OFFSET 0`` subquery is planned on its own, without the LIMIT that
makes walking look cheap), and the search runs in time windows, newest first (:data:`WINDOWS`),
intersected with idx_posts_created: the first window that fills the page ends it, so common
words read only a day of posts and rare ones reach the unbounded window, where they are few.
On a million posts (bench/api.py data, where every word is in about 8% of the posts): 2 to
80 ms per page for words, phrases and exclusions, instead of 9 ms to 11 s.

Accounts: ``lower(handle)`` or ``lower(display_name)`` starting with ``q`` (LIKE
metacharacters escaped), served by the ``text_pattern_ops`` indexes idx_profiles_handle_prefix
and idx_profiles_display_name_prefix. Best known first: followers count descending, then DID;
the cursor is that pair, so a page boundary only moves if a count changes between pages.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

from services.feeds import hydrate_page, page_keys
from services.pagination import InvalidCursor, decode_cursor
from services.views import profile_views

#: ``OFFSET 0`` plans the matches on their own, so from the GIN index (and idx_posts_created for
#: the window), never by walking posts newest first and testing each.
POSTS = """SELECT uri, sort_at, cid FROM (
               SELECT uri, sort_at, cid FROM posts
               WHERE to_tsvector('english', coalesce(text, '')) @@ websearch_to_tsquery('english', :q)
                 {since} {{after}}
               OFFSET 0) AS matches"""
#: How far back each attempt looks from the page's start (the cursor, or now); None: all time.
WINDOWS = (timedelta(days=1), timedelta(days=8), timedelta(days=64), None)

_USERS = """SELECT did, followers_count FROM profiles
            WHERE (lower(handle) LIKE :prefix OR lower(display_name) LIKE :prefix) {after}
            ORDER BY followers_count DESC, did LIMIT :limit"""
_AFTER = "AND (followers_count < :after_count OR (followers_count = :after_count AND did > :after_did))"


def search_posts(session: Session, q: str, limit: int, cursor: str | None,
                 viewer: str | None, cdn: str) -> tuple[list[dict], str | None]:
    start = decode_cursor(cursor)[0] if cursor is not None else datetime.now(UTC)
    for window in WINDOWS:
        since = _earlier(start, window)
        if since is None:
            rows = page_keys(session, POSTS.format(since=""), {"q": q}, limit, cursor)
            break
        rows = page_keys(session, POSTS.format(since="AND sort_at >= :since"), {"q": q, "since": since},
                         limit, cursor)
        if len(rows) > limit:
            break
    return hydrate_page(session, rows, limit, viewer, cdn)


def _earlier(start: datetime, window: timedelta | None) -> datetime | None:
    """``start - window``, or None for no bound (no window, or before the calendar starts)."""
    try:
        return start - window if window is not None else None
    except OverflowError:
        return None


def search_users(session: Session, q: str, limit: int, cursor: str | None,
                 viewer: str | None, cdn: str) -> tuple[list[dict], str | None]:
    params = {"prefix": like_prefix(q.removeprefix("@").lower()), "limit": limit + 1}
    if cursor is not None:
        params["after_count"], params["after_did"] = _decode(cursor)
    rows = session.execute(text(_USERS.format(after=_AFTER if cursor is not None else "")), params).all()
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = _encode(rows[-1].followers_count, rows[-1].did)
    return profile_views(session, [row.did for row in rows], viewer, cdn), next_cursor


def like_prefix(value: str) -> str:
    """A LIKE pattern matching strings that start with ``value`` taken literally."""
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _encode(count: int, did: str) -> str:
    return base64.urlsafe_b64encode(f"{count}:{did}".encode()).decode().rstrip("=")


def _decode(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        count, did = raw.split(":", 1)
        count = int(count)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidCursor("cursor is not one this API returned") from None
    if not -2**31 <= count < 2**31 or "\x00" in did:
        raise InvalidCursor("cursor is not one this API returned")
    return count, did
