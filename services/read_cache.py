"""Exact read caches of one web process, kept by the realtime stream it already reads.

What is cached, per process: the anonymous part of post views (record, counts, reply/quote)
and, apart, their authors' part (handle, name, avatar); profile views without the viewer's
follow state; handle -> DID; the first 101 keys of the global and local feeds and of each
profile tab; and *dependent* entries, valid while the entries they were computed from are:
thread structures (valid while none of their posts, nor the missing parent above them,
changed) and the first 101 keys of a member's Following feed (valid while the member's
follows and the followed accounts' post lists did not change). The viewer's own state (like, repost, following) is read per request and laid
over the cached views, so one entry serves every viewer.

Exactness rests on three rules (see docs/performance.md):

1. Every change worth showing is announced on the realtime stream after its commit
   (``services/realtime.py``: ``post_updated``, ``post_deleted``, ``reply_added``,
   ``profile_updated`` and the control event ``read_changed``, which names everything a
   batch changed, non-members' profiles and new posts included). The stream reader calls
   :meth:`ReadCache.apply` for each event, in stream order, *before* it counts the event as
   read; the entries the event names are dropped.
2. A fill that raced an invalidation is never stored: a fill takes :meth:`ReadCache.ticket`
   (a sequence number) before its query, and :meth:`ReadCache.store` refuses it when any of
   its keys was invalidated after that ticket, or the cache was flushed after it. Fills that
   start after an event was applied read the database after the commit it announced.
3. A request only uses the cache when the reader has applied everything on the stream when
   the request starts (the caller checks with one non-blocking ``XREAD`` after the reader's
   position: ``app/read_cache.py``), and while the reader is healthy: an outage of the
   subscription flushes everything and turns the cache off until it reads again.

Writers that announce nothing (none are known) are bounded by ``max_age``.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Iterable

import orjson
from sqlalchemy import text
from sqlalchemy.orm import Session

from services.views import image_url, iso

#: Rows of a cached first page: enough for the largest page (100) and the "is there more" row.
PAGE_ROWS = 101

_BASE_POSTS = text("""
    SELECT p.uri, p.cid, p.author_did, p.raw_record, p.created_at, p.indexed_at,
           p.reply_parent_uri, p.reply_root_uri, p.quote_uri, p.embed_type, p.has_media,
           p.like_count, p.repost_count, p.reply_count,
           a.handle, a.display_name, a.avatar_cid, a.is_cannect_user
    FROM posts p LEFT JOIN profiles a ON a.did = p.author_did
    WHERE p.uri = ANY(:uris)""")
_POST_STATE = text("""SELECT post_uri, like_uri, repost_uri FROM user_post_state
                      WHERE user_did = :viewer AND post_uri = ANY(:uris)""")
_BASE_PROFILES = text("""
    SELECT did, handle, display_name, description, avatar_cid, banner_cid,
           followers_count, following_count, posts_count, is_cannect_user, indexed_at
    FROM profiles WHERE did = ANY(:dids)""")
_FOLLOW_STATE = text("""SELECT target_did, follow_uri, coalesce(followed_by, false) AS followed_by
                        FROM user_follow_state WHERE user_did = :viewer AND target_did = ANY(:dids)""")

_NO_POST_VIEWER = {"like": None, "repost": None}
_NO_PROFILE_VIEWER = {"following": None, "followedBy": False}
_TABS = ("posts", "replies", "media")


def author_of(uri: str) -> str | None:
    """The DID in an AT-URI (``at://did/collection/rkey``)."""
    parts = uri.split("/")
    return parts[2] if len(parts) > 2 and uri.startswith("at://") else None


class ReadCache:
    """One process's cache. Thread- and greenlet-safe: every mutation holds one short lock."""

    def __init__(self, cdn: str, max_entries: int = 50_000, max_age: float = 300.0):
        self.cdn = cdn
        self.max_entries = max_entries
        self.max_age = max_age
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple, tuple[object, float]] = OrderedDict()
        self._seq = 0                      # bumped by every invalidation and flush
        self._floor = 0                    # fills with an older ticket are never stored
        self._dirty: dict[tuple, int] = {}  # key -> seq of its last invalidation
        self._handles: dict[str, set[str]] = {}  # did -> handles cached as naming it
        self._dependents: dict[tuple, set[tuple]] = {}  # key -> dependent entries computed from it
        self.enabled = False               # the stream reader is reading (set by the hub)
        self.hits = self.misses = self.refused = self.flushes = 0

    # -- lifecycle, from the stream reader ---------------------------------------------------

    def enable(self) -> None:
        self.flush()
        self.enabled = True

    def disable(self) -> None:
        """The subscription failed: events may be missed from now on."""
        self.enabled = False
        self.flush()

    def flush(self) -> None:
        with self._lock:
            self._seq += 1
            self._floor = self._seq
            self._entries.clear()
            self._dirty.clear()
            self._handles.clear()
            self._dependents.clear()
            self.flushes += 1

    def apply(self, kind: str, key: str, body: bytes | str | None = None) -> None:
        """Drop what one stream event changed. ``key`` is its routing key; ``body`` its JSON,
        read only for ``read_changed`` (the others name their post or member in the key)."""
        if kind in ("post_updated", "post_deleted", "reply_added"):
            uri = key.removeprefix("post:")
            keys = [("p", uri)]
            if kind == "post_deleted":
                keys += self._page_keys_of(uri, feeds=True)
            self.invalidate(keys)
        elif kind == "profile_updated":
            self.invalidate(self._profile_keys(key.removeprefix("did:")))
        elif kind == "read_changed":
            event = orjson.loads(body)
            keys = [("p", uri) for uri in event.get("posts", ())]
            for uri, feeds in event.get("newPosts", ()):
                keys.append(("p", uri))
                keys += self._page_keys_of(uri, feeds=False)
                keys += [("f", feed) for feed in feeds]
            for uri in event.get("deleted", ()):
                keys.append(("p", uri))
                keys += self._page_keys_of(uri, feeds=True)
            for did in event.get("profiles", ()):
                keys += self._profile_keys(did)
            if event.get("all"):
                self.flush()
            else:
                self.invalidate(keys)
        elif kind == "backfill_progress":
            self.flush()  # a backfill page stored posts, follows and counts of many accounts

    @staticmethod
    def _page_keys_of(uri: str, feeds: bool) -> list[tuple]:
        author = author_of(uri)
        keys = [("tab", author, tab) for tab in _TABS] if author else []
        return keys + ([("f", "global"), ("f", "local")] if feeds else [])

    def _profile_keys(self, did: str) -> list[tuple]:
        return [("a", did), ("au", did), ("h", did)] + [("h", handle) for handle in self._handles.get(did, ())]

    def invalidate(self, keys: Iterable[tuple]) -> None:
        with self._lock:
            self._seq += 1
            for key in keys:
                self._entries.pop(key, None)
                self._dirty[key] = self._seq
                for dependent in self._dependents.pop(key, ()):
                    self._entries.pop(dependent, None)
                    self._dirty[dependent] = self._seq
            if len(self._dirty) > self.max_entries:
                # Forget old invalidations; refusing every fill in flight keeps that exact.
                self._dirty.clear()
                self._floor = self._seq

    # -- fills -------------------------------------------------------------------------------

    def ticket(self) -> int:
        """Take before reading the database for a fill; give to :meth:`store`."""
        return self._seq

    def store(self, ticket: int, items: Iterable[tuple[tuple, object]], depends: Iterable[tuple] = ()) -> None:
        """Store what was read since ``ticket``, except entries invalidated meanwhile. With
        ``depends``, the items are dropped whenever one of those keys is invalidated, and not
        stored if one was invalidated since the ticket."""
        now = time.monotonic()
        depends = list(depends)
        with self._lock:
            if ticket < self._floor or not self.enabled or any(self._dirty.get(key, -1) > ticket for key in depends):
                self.refused += 1
                return
            if depends:
                items = list(items)
                self._register_dependents([key for key, _ in items], depends)
            for key, value in items:
                if self._dirty.get(key, -1) > ticket:  # an event came after the read began
                    self.refused += 1
                    continue
                self._entries[key] = (value, now)
                if key[0] == "h" and isinstance(value, str) and value != key[1]:
                    self._handles.setdefault(value, set()).add(key[1])
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def _register_dependents(self, keys: list[tuple], depends: list[tuple]) -> None:
        if len(self._dependents) > 4 * self.max_entries:
            # Entries evicted by age or size leave their registrations behind: start again, and
            # drop the dependent entries that were registered, which lose their guard.
            for dependents in self._dependents.values():
                for key in dependents:
                    self._entries.pop(key, None)
            self._dependents.clear()
        for depend in depends:
            self._dependents.setdefault(depend, set()).update(keys)

    def get(self, key: tuple):
        entry = self._entries.get(key)
        if entry is None or time.monotonic() - entry[1] > self.max_age:
            return None
        return entry[0]

    def stats(self) -> dict:
        return {"enabled": self.enabled, "entries": len(self._entries), "hits": self.hits, "misses": self.misses,
                "refused": self.refused, "flushes": self.flushes}

    # -- posts -------------------------------------------------------------------------------

    def post_views(self, session: Session, uris: list[str], viewer: str | None) -> list[dict]:
        """As ``services.views.post_views``: cached anonymous parts, the viewer's state per request."""
        if not uris:
            return []
        parts: dict[str, tuple[dict, dict]] = {}
        missing = []
        for uri in uris:
            base = self.get(("p", uri))
            author = self.get(("au", base["_author"])) if base is not None else None
            if author is None:
                missing.append(uri)
            else:
                parts[uri] = (base, author)
        if missing:
            self.misses += len(missing)
            parts.update(self._fill_posts(session, missing))
        self.hits += len(uris) - len(missing)
        states = {}
        if viewer:
            states = {row.post_uri: {"like": row.like_uri, "repost": row.repost_uri}
                      for row in session.execute(_POST_STATE, {"viewer": viewer, "uris": list(parts)})}
        out = []
        for uri in uris:
            if uri in parts:
                base, author = parts[uri]
                view = {**base, "author": author, "viewer": states.get(uri, _NO_POST_VIEWER)}
                del view["_author"]
                out.append(view)
        return out

    def _fill_posts(self, session: Session, uris: list[str]) -> dict[str, tuple[dict, dict]]:
        ticket = self.ticket()
        found, items = {}, []
        for row in session.execute(_BASE_POSTS, {"uris": list(dict.fromkeys(uris))}):
            base, author = self._post_parts(row)
            found[row.uri] = (base, author)
            items += [(("p", row.uri), base), (("au", row.author_did), author)]
        self.store(ticket, items)
        return found

    def _post_parts(self, row) -> tuple[dict, dict]:
        author = {"did": row.author_did, "handle": row.handle, "displayName": row.display_name,
                  "avatar": image_url(self.cdn, "avatar", row.author_did, row.avatar_cid),
                  "isCannectUser": bool(row.is_cannect_user)}
        base = {"uri": row.uri, "cid": row.cid, "_author": row.author_did, "record": row.raw_record,
                "embedType": row.embed_type, "hasMedia": row.has_media, "likeCount": row.like_count,
                "repostCount": row.repost_count, "replyCount": row.reply_count,
                "createdAt": iso(row.created_at), "indexedAt": iso(row.indexed_at)}
        if row.reply_parent_uri:
            base["reply"] = {"parent": row.reply_parent_uri, "root": row.reply_root_uri}
        if row.quote_uri:
            base["quote"] = row.quote_uri
        return base, author

    # -- profiles ----------------------------------------------------------------------------

    def profile_views(self, session: Session, dids: list[str], viewer: str | None) -> list[dict]:
        """As ``services.views.profile_views``, the viewer's follow state read per request."""
        if not dids:
            return []
        views, missing = {}, []
        for did in dids:
            view = self.get(("a", did))
            if view is None:
                missing.append(did)
            else:
                views[did] = view
        if missing:
            self.misses += len(missing)
            ticket = self.ticket()
            items = []
            for row in session.execute(_BASE_PROFILES, {"dids": list(dict.fromkeys(missing))}):
                view = self._profile_view(row)
                views[row.did] = view
                items.append((("a", row.did), view))
            self.store(ticket, items)
        self.hits += len(dids) - len(missing)
        states = {}
        if viewer:
            states = {row.target_did: {"following": row.follow_uri, "followedBy": row.followed_by}
                      for row in session.execute(_FOLLOW_STATE, {"viewer": viewer, "dids": list(views)})}
        return [{**views[did], "viewer": states.get(did, _NO_PROFILE_VIEWER)} for did in dids if did in views]

    def _profile_view(self, row) -> dict:
        return {"did": row.did, "handle": row.handle, "displayName": row.display_name,
                "description": row.description, "avatar": image_url(self.cdn, "avatar", row.did, row.avatar_cid),
                "banner": image_url(self.cdn, "banner", row.did, row.banner_cid),
                "followersCount": row.followers_count, "followingCount": row.following_count,
                "postsCount": row.posts_count, "isCannectUser": row.is_cannect_user, "indexedAt": iso(row.indexed_at)}

    # -- handles and first pages -------------------------------------------------------------

    def resolve(self, actor: str, lookup) -> str | None:
        """The DID ``lookup(actor)`` gives (``actor`` as normalized by the caller), cached while found."""
        did = self.get(("h", actor))
        if did is not None:
            self.hits += 1
            return did
        self.misses += 1
        ticket = self.ticket()
        did = lookup(actor)
        if did is not None:
            self.store(ticket, [(("h", actor), did)])
        return did

    def dependent(self, key: tuple, read):
        """A value computed from the database that stays valid while the entries it depends on
        do: ``read()`` returns ``(value, depends)``, the keys whose invalidation makes the value
        stale. A value of None (nothing found) is not stored."""
        value = self.get(key)
        if value is not None:
            self.hits += 1
            return value
        self.misses += 1
        ticket = self.ticket()
        value, depends = read()
        if value is not None:
            self.store(ticket, [(key, value)], depends)
        return value

    def dependents(self, keys: list[tuple], read) -> dict[tuple, object]:
        """:meth:`dependent` for many keys with one read: ``read(missing)`` returns
        ``{key: (value, depends)}`` for the keys not held (a value of None is not stored)."""
        found, missing = {}, []
        for key in keys:
            value = self.get(key)
            if value is None:
                missing.append(key)
            else:
                found[key] = value
        self.hits += len(keys) - len(missing)
        if missing:
            self.misses += len(missing)
            ticket = self.ticket()
            for key, (value, depends) in read(missing).items():
                found[key] = value
                if value is not None:
                    self.store(ticket, [(key, value)], depends)
        return found

    def first_page(self, key: tuple, read) -> list:
        """The first :data:`PAGE_ROWS` keys of a page; ``read(PAGE_ROWS - 1)`` fetches them (as
        ``services.feeds.page_keys`` with that limit: one row more than asked)."""
        rows = self.get(key)
        if rows is not None:
            self.hits += 1
            return rows
        self.misses += 1
        ticket = self.ticket()
        rows = list(read(PAGE_ROWS - 1))
        self.store(ticket, [(key, rows)])
        return rows
