"""One page of an account's records, from its PDS or the AppView, in one shape.

``listRecords`` (a PDS) gives ``{cursor?, records: [{uri, cid, value}]}``, newest first;
``getAuthorFeed`` (the AppView) gives ``{cursor?, feed: [{post: {uri, cid, author, record,
likeCount, repostCount, replyCount}, reason?}]}``. Everything they say is untrusted: a record
whose URI is not the account's own, in another collection, or badly formed is dropped here,
and what remains is checked against the lexicons by ``services.jetstream`` like a streamed
record (``pages.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from services import atproto_syntax as syntax
from services.jetstream import FOLLOW, POST

from .fetch import XrpcFetcher

LIST_RECORDS = "com.atproto.repo.listRecords"
AUTHOR_FEED = "app.bsky.feed.getAuthorFeed"
MAX_CURSOR = 1024


@dataclass(frozen=True)
class Fetched:
    """A record of ``did`` in ``collection``; ``counts`` (likes, reposts, replies) from the AppView."""

    did: str
    collection: str
    rkey: str
    cid: str | None
    record: dict
    counts: tuple[int, int, int] | None = None


@dataclass(frozen=True)
class Page:
    records: list[Fetched]
    cursor: str | None
    dropped: int = 0


def list_records(fetcher: XrpcFetcher, pds: str, did: str, collection: str, cursor: str | None,
                 limit: int) -> Page:
    answer = fetcher.query(pds, LIST_RECORDS, {"repo": did, "collection": collection, "limit": limit,
                                               "cursor": cursor})
    items = answer.get("records") if isinstance(answer.get("records"), list) else []
    records, dropped = [], 0
    for item in items:
        fetched = _own_record(did, collection, item.get("uri") if isinstance(item, dict) else None,
                              item.get("cid") if isinstance(item, dict) else None,
                              item.get("value") if isinstance(item, dict) else None)
        if fetched is None:
            dropped += 1
        else:
            records.append(fetched)
    return Page(records, _next_cursor(answer, cursor, bool(items)), dropped)


def author_feed(fetcher: XrpcFetcher, appview: str, did: str, cursor: str | None, limit: int) -> Page:
    answer = fetcher.query(appview, AUTHOR_FEED, {"actor": did, "limit": limit, "cursor": cursor,
                                                  "filter": "posts_with_replies"})
    items = answer.get("feed") if isinstance(answer.get("feed"), list) else []
    records, dropped = [], 0
    for item in items:
        post = item.get("post") if isinstance(item, dict) else None
        if not isinstance(post, dict) or item.get("reason") is not None:
            continue  # a repost by the account: not its own post
        fetched = _own_record(did, POST, post.get("uri"), post.get("cid"), post.get("record"))
        counts = tuple(post.get(name) for name in ("likeCount", "repostCount", "replyCount"))
        if fetched is None or not all(type(n) is int and 0 <= n < 2**31 for n in counts):
            dropped += 1
            continue
        records.append(Fetched(fetched.did, POST, fetched.rkey, fetched.cid, fetched.record, counts))
    return Page(records, _next_cursor(answer, cursor, bool(items)), dropped)


def _own_record(did: str, collection: str, uri, cid, value) -> Fetched | None:
    if not isinstance(uri, str) or not isinstance(value, dict) or not syntax.is_at_uri(uri):
        return None
    parts = uri.removeprefix("at://").split("/")
    if len(parts) != 3 or parts[0] != did or parts[1] != collection:
        return None
    return Fetched(did, collection, parts[2], cid if isinstance(cid, str) else None, value)


def _next_cursor(answer: dict, previous: str | None, had_items: bool) -> str | None:
    """The cursor of the next page; None at the end (no cursor, the same one again, an empty page)."""
    cursor = answer.get("cursor")
    if not had_items or not isinstance(cursor, str) or not cursor or len(cursor) > MAX_CURSOR or cursor == previous:
        return None
    return cursor


__all__ = ["FOLLOW", "POST", "Fetched", "Page", "author_feed", "list_records"]
