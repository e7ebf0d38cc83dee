"""Reference model of the Cannect index (docs/indexing-rules.md), one event at a time.

This module is deliberately independent of the production code: it imports nothing from the
project (only the standard library and ``tests/model_edge.py``, its own reading of the edge
rules, which uses orjson, ``regex`` and the atproto SDK's validators) and implements each numbered rule of
``docs/indexing-rules.md`` literally, with plain dicts, in stream order. End-to-end tests run a
capture through both the production pipeline (batched, set-based SQL) and this model and
compare ``CommunityModel.snapshot()`` with the same structure read from the database.

Usage::

    model = CommunityModel(members=[("did:plc:alice", "alice.test")], cannabis_tags=["cannabis"])
    model.apply_file("capture.jsonl")
    snap = model.snapshot()
    assert_invariants(snap)

Resolutions of points the rules leave open are marked "Resolution:" below.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable, Iterable

try:  # tests/ is on sys.path under pytest (conftest.py); as the package ``tests`` otherwise
    from model_edge import accept_line
except ImportError:  # pragma: no cover
    from tests.model_edge import accept_line

POST = "app.bsky.feed.post"
LIKE = "app.bsky.feed.like"
REPOST = "app.bsky.feed.repost"
FOLLOW = "app.bsky.graph.follow"
PROFILE = "app.bsky.actor.profile"

TAG_FEATURE = "app.bsky.richtext.facet#tag"
INLINE_TAG_RE = re.compile(r"(?:^|\s)#(\w+)")
PURGE_STATUSES = frozenset({"deleted", "takendown"})
MENTION_FEATURE = "app.bsky.richtext.facet#mention"
MAX_MENTIONS = 50

__all__ = [
    "CommunityModel",
    "assert_invariants",
    "invariant_violations",
    "record_uri",
    "extract_tags",
]


# --------------------------------------------------------------------------------------------
# Small pure helpers
# --------------------------------------------------------------------------------------------


def record_uri(did: str, collection: str, rkey: str) -> str:
    """A record URI is ``at://<did>/<collection>/<rkey>``."""
    return f"at://{did}/{collection}/{rkey}"


def _strip_hash(tag: str) -> str:
    """Strip one leading ``#`` (facet and record tags)."""
    return tag[1:] if tag.startswith("#") else tag


def extract_tags(record: dict) -> list[str]:
    """All tags of a post record, as written (not lower-cased), per rule 1.

    - every facet feature with ``$type == app.bsky.richtext.facet#tag``: its ``tag``;
    - every string in the record's ``tags`` array;
    - every match of ``(?:^|\\s)#(\\w+)`` in ``text``.
    A leading ``#`` is stripped from facet and record tags. Shapes that are not what the
    lexicon says (non-list facets, non-string tags, ...) contribute nothing.
    """
    tags: list[str] = []
    facets = record.get("facets")
    if isinstance(facets, list):
        for facet in facets:
            if not isinstance(facet, dict):
                continue
            features = facet.get("features")
            if not isinstance(features, list):
                continue
            for feature in features:
                if isinstance(feature, dict) and feature.get("$type") == TAG_FEATURE:
                    tag = feature.get("tag")
                    if isinstance(tag, str):
                        tags.append(_strip_hash(tag))
    record_tags = record.get("tags")
    if isinstance(record_tags, list):
        for tag in record_tags:
            if isinstance(tag, str):
                tags.append(_strip_hash(tag))
    text = record.get("text")
    if isinstance(text, str):
        tags.extend(INLINE_TAG_RE.findall(text))
    return tags


def _ref_uri(record: dict, *path: str) -> str | None:
    """``record[path[0]][path[1]]...`` when every step is a dict and the end is a string."""
    node: Any = record
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node if isinstance(node, str) else None


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _blob_cid(blob: Any) -> str | None:
    """CID of a blob ref (``ref.$link``; legacy blobs carry ``cid``). Not part of snapshots."""
    if not isinstance(blob, dict):
        return None
    ref = blob.get("ref")
    if isinstance(ref, dict) and isinstance(ref.get("$link"), str):
        return ref["$link"]
    return _str_or_none(blob.get("cid"))


def _parse_event(line: str | bytes) -> dict | None:
    """The event cleaned as the edge rules say, or None when they reject it
    ("Rejected events", "Records" and "Cleaning" of the rules: ``tests/model_edge.py``)."""
    return accept_line(line)


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------


class CommunityModel:
    """The index state after processing events in stream order, one at a time.

    Primary state (the five tables of the rules):
      posts[uri], likes[uri], reposts[uri], follows[uri], profiles[did]
    Secondary lookups (only to keep 300k events fast; always derivable from the tables):
      _posts_by_author, _replies_by_parent, _likes_by_subject, _likes_by_actor,
      _reposts_by_subject, _reposts_by_actor, _follows_from, _follows_to, _handle_owners
    """

    def __init__(self, members: Iterable[tuple[str, str | None]], cannabis_tags: Iterable[str]):
        # Resolution: configured tags are compared lower-cased, with one leading '#' stripped.
        self.cannabis_tags: frozenset[str] = frozenset(
            _strip_hash(tag).lower() for tag in cannabis_tags
        )
        self.rejected: int = 0
        self.accepted: int = 0

        self.posts: dict[str, dict] = {}
        self.likes: dict[str, tuple[str, str]] = {}
        self.reposts: dict[str, tuple[str, str]] = {}
        self.follows: dict[str, tuple[str, str]] = {}
        self.profiles: dict[str, dict] = {}
        # docs/notification-rules.md: (recipient, type, cause uri) -> (actor, subject uri)
        self.notifications: dict[tuple[str, str, str], tuple[str, str | None]] = {}
        self._by_cause: dict[str, set[tuple[str, str, str]]] = {}  # cause uri -> notification keys

        self._posts_by_author: dict[str, set[str]] = {}
        self._replies_by_parent: dict[str, set[str]] = {}  # parent uri -> indexed reply uris
        self._likes_by_subject: dict[str, set[str]] = {}
        self._likes_by_actor: dict[str, set[str]] = {}
        self._reposts_by_subject: dict[str, set[str]] = {}
        self._reposts_by_actor: dict[str, set[str]] = {}
        self._follows_from: dict[str, set[str]] = {}
        self._follows_to: dict[str, set[str]] = {}
        self._handle_owners: dict[str, set[str]] = {}
        # "Backfilled records": URIs and DIDs deleted on the stream, and the current event's time.
        self.tombstones: set[str] = set()
        self._time_us: int = 0

        for did, handle in members:
            profile = self._ensure_profile(did)
            profile["is_cannect_user"] = True
            self._set_handle_field(did, handle)

    def add_member(self, did: str, handle: str | None = None) -> None:
        """``cannect members add`` (or a sign-in) at this point of the stream."""
        self._ensure_profile(did)["is_cannect_user"] = True
        if handle is not None:
            self._set_handle_field(did, handle)

    # ---- input ------------------------------------------------------------------------------

    def apply_line(self, line: str | bytes) -> bool:
        """Apply one raw JSONL line. Returns False (and counts it in ``rejected``) when the
        line is invalid per the first paragraph of the rules; True otherwise, including for
        valid events that change nothing (other collections, unknown kinds, ...)."""
        event = _parse_event(line)
        if event is None:
            self.rejected += 1
            return False
        self.accepted += 1
        self._apply_event(event)
        return True

    def apply_lines(self, lines: Iterable[str | bytes]) -> "CommunityModel":
        for line in lines:
            self.apply_line(line)
        return self

    def apply_file(self, path: str) -> "CommunityModel":
        """Apply every line of a JSONL file in order. Resolution: lines that are empty or
        whitespace-only are not events and are skipped without counting as rejected."""
        with open(path, "rb") as fh:
            for line in fh:
                if not line.strip():
                    continue
                self.apply_line(line)
        return self

    # ---- dispatch ---------------------------------------------------------------------------

    def _apply_event(self, event: dict) -> None:
        did: str = event["did"]
        kind: str = event["kind"]
        self._time_us = event["time_us"]
        if kind == "commit":
            self._apply_commit(did, event["commit"])
        elif kind == "identity":
            pass  # rule 8: only prompts re-resolution (see ``resolve_identities``)
        elif kind == "account":
            account = event.get("account")
            status = account.get("status") if isinstance(account, dict) else None
            if status in PURGE_STATUSES:
                self.tombstones.add(did)
                self._purge_account(did)
        # Any other kind: accepted, nothing indexed.

    def _apply_commit(self, did: str, commit: dict) -> None:
        collection: str = commit["collection"]
        operation: str = commit["operation"]
        uri = record_uri(did, collection, commit["rkey"])
        record = commit.get("record")
        if collection == POST:
            if operation == "create" and isinstance(record, dict):
                self._notify_post(did, uri, record)  # notification rule 4
            if operation == "delete":
                self._unnotify(uri)  # notification rule 5
            if operation in ("create", "update"):
                self._post_upsert(did, uri, record, _str_or_none(commit.get("cid")))  # rule 1
            elif operation == "delete":
                self.tombstones.add(uri)  # backfilled records: the stream's delete wins
                self._post_delete(uri)  # rule 2
        elif collection in (LIKE, REPOST):
            # Resolution: like/repost/follow updates are ignored (the rules only define
            # create and delete for them; those records are immutable in practice).
            if operation == "create":
                self._engagement_create(collection, did, uri, record)  # rule 3
            elif operation == "delete":
                self._engagement_delete(collection, uri)  # rule 4
        elif collection == FOLLOW:
            if operation == "create":
                self._follow_create(did, uri, record)  # rule 5
            elif operation == "delete":
                self.tombstones.add(uri)
                self._follow_delete(uri)  # rule 6
        elif collection == PROFILE:
            if commit["rkey"] != "self":
                return
            if operation in ("create", "update"):
                self._profile_set(did, record)  # rule 7
            elif operation == "delete":
                self._profile_set(did, {})  # rule 7: delete clears the fields
        # Other collections are ignored.

    # ---- membership / profiles ---------------------------------------------------------------

    def _is_member(self, did: str) -> bool:
        profile = self.profiles.get(did)
        return profile is not None and profile["is_cannect_user"]

    def _followed_by_member(self, did: str) -> bool:
        """A stored follow to ``did`` whose follower is a member right now."""
        for follow_uri in self._follows_to.get(did, ()):
            follower, _ = self.follows[follow_uri]
            if self._is_member(follower):
                return True
        return False

    def _ensure_profile(self, did: str) -> dict:
        profile = self.profiles.get(did)
        if profile is None:
            profile = {
                "handle": None,
                "display_name": None,
                "description": None,
                "avatar_cid": None,
                "banner_cid": None,
                "is_cannect_user": False,
                "followers_count": 0,
                "following_count": 0,
                "posts_count": 0,
            }
            self.profiles[did] = profile
        return profile

    def _set_handle_field(self, did: str, handle: str | None) -> None:
        """Set profiles[did].handle and keep the handle lookup in step."""
        profile = self.profiles[did]
        old = profile["handle"]
        if old is not None:
            owners = self._handle_owners.get(old)
            if owners is not None:
                owners.discard(did)
                if not owners:
                    del self._handle_owners[old]
        profile["handle"] = handle
        if handle is not None:
            self._handle_owners.setdefault(handle, set()).add(did)

    # ---- rule 1: post create / update ---------------------------------------------------------

    def _has_cannabis_tag(self, record: dict) -> bool:
        return any(tag.lower() in self.cannabis_tags for tag in extract_tags(record))

    def _moves(self, uri: str, time_us: int) -> bool:
        """"Backfilled records": an event moves a backfilled post's counts only when it is later
        than the time the AppView's counts were read at."""
        as_of = self.posts[uri].get("counts_as_of")
        return as_of is None or time_us > as_of

    def _post_upsert(self, did: str, uri: str, record: dict, cid: str | None,
                     baseline: tuple | None = None, event_time: int | None = None) -> None:
        event_time = self._time_us if event_time is None else event_time
        existing = self.posts.get(uri)
        if existing is not None and baseline is not None:
            return  # a backfilled copy never overwrites what is stored
        if existing is not None:
            # Already indexed: only the content is refreshed.
            existing["cid"] = cid
            existing["text"] = _str_or_none(record.get("text"))
            existing["record"] = record
            return

        parent_uri = _ref_uri(record, "reply", "parent", "uri")
        root_uri = _ref_uri(record, "reply", "root", "uri")

        tag_rule = self._has_cannabis_tag(record)
        member_rule = self._is_member(did)
        followed_rule = self._followed_by_member(did)
        reply_rule = parent_uri is not None and parent_uri in self.posts  # at this moment
        if not (tag_rule or member_rule or followed_rule or reply_rule):
            return

        # Resolution: replies already indexed before this post (stream reordering, or a
        # parent indexed only later) are counted so that the reply_count invariant holds.
        earlier_replies = len(self._replies_by_parent.get(uri, ()))
        self.posts[uri] = {
            "author_did": did,
            "cid": cid,
            "text": _str_or_none(record.get("text")),
            "record": record,
            "reply_parent_uri": parent_uri,
            "reply_root_uri": root_uri,
            "like_count": 0,
            "repost_count": 0,
            "reply_count": earlier_replies,
            "has_cannabis_hashtag": tag_rule,
            "is_cannect_user": member_rule,
            "counts_as_of": None,
        }
        if baseline is not None:  # backfilled: the AppView's counts as of the fetch
            counts, as_of = baseline
            post = self.posts[uri]
            post["like_count"], post["repost_count"], post["reply_count"] = counts
            post["counts_as_of"] = as_of
        self._posts_by_author.setdefault(did, set()).add(uri)
        if parent_uri is not None:
            self._replies_by_parent.setdefault(parent_uri, set()).add(uri)
            if parent_uri in self.posts and self._moves(parent_uri, event_time):
                self.posts[parent_uri]["reply_count"] += 1
        self._ensure_profile(did)["posts_count"] += 1

    # ---- rule 2: post delete ----------------------------------------------------------------

    def _post_delete(self, uri: str) -> None:
        post = self.posts.pop(uri, None)
        if post is None:
            return
        for collection in (LIKE, REPOST):
            table, by_subject, by_actor, _ = self._engagement_tables(collection)
            for e_uri in by_subject.pop(uri, set()):
                actor, _subject = table.pop(e_uri)
                _discard(by_actor, actor, e_uri)
                self._unnotify(e_uri)
        parent_uri = post["reply_parent_uri"]
        if parent_uri is not None:
            _discard(self._replies_by_parent, parent_uri, uri)
            if parent_uri in self.posts and self._moves(parent_uri, self._time_us):
                self.posts[parent_uri]["reply_count"] -= 1
        author = post["author_did"]
        _discard(self._posts_by_author, author, uri)
        self.profiles[author]["posts_count"] -= 1

    # ---- rules 3 and 4: likes and reposts ----------------------------------------------------

    def _engagement_tables(self, collection: str):
        if collection == LIKE:
            return self.likes, self._likes_by_subject, self._likes_by_actor, "like_count"
        return self.reposts, self._reposts_by_subject, self._reposts_by_actor, "repost_count"

    def _engagement_create(self, collection: str, did: str, uri: str, record: dict) -> None:
        table, by_subject, by_actor, count_field = self._engagement_tables(collection)
        subject_uri = _ref_uri(record, "subject", "uri")
        if subject_uri is None or subject_uri not in self.posts:
            return  # dropped, no placeholder
        if uri in table:
            return
        table[uri] = (did, subject_uri)
        by_subject.setdefault(subject_uri, set()).add(uri)
        by_actor.setdefault(did, set()).add(uri)
        if self._moves(subject_uri, self._time_us):
            self.posts[subject_uri][count_field] += 1
        self._notify(self.posts[subject_uri]["author_did"], "like" if collection == LIKE else "repost",
                     did, uri, subject_uri)  # notification rule 2

    def _engagement_delete(self, collection: str, uri: str) -> None:
        table, by_subject, by_actor, count_field = self._engagement_tables(collection)
        stored = table.pop(uri, None)
        if stored is None:
            return
        actor, subject_uri = stored
        self._unnotify(uri)
        _discard(by_subject, subject_uri, uri)
        _discard(by_actor, actor, uri)
        if self._moves(subject_uri, self._time_us):
            self.posts[subject_uri][count_field] -= 1

    # ---- rules 5 and 6: follows --------------------------------------------------------------

    def _follow_create(self, did: str, uri: str, record: dict, notify: bool = True) -> None:
        subject = record.get("subject")
        # Resolution: the subject must be a non-empty string (not checked to be a DID).
        if not isinstance(subject, str) or not subject:
            return
        if uri in self.follows:
            return
        if not (self._is_member(did) or self._is_member(subject)):
            return
        self._ensure_profile(did)["following_count"] += 1
        self._ensure_profile(subject)["followers_count"] += 1
        self.follows[uri] = (did, subject)
        self._follows_from.setdefault(did, set()).add(uri)
        self._follows_to.setdefault(subject, set()).add(uri)
        if notify:
            self._notify(subject, "follow", did, uri, None)  # notification rule 3

    def _follow_delete(self, uri: str) -> None:
        stored = self.follows.pop(uri, None)
        if stored is None:
            return
        follower, following = stored
        self._unnotify(uri)
        _discard(self._follows_from, follower, uri)
        _discard(self._follows_to, following, uri)
        self.profiles[follower]["following_count"] -= 1
        self.profiles[following]["followers_count"] -= 1

    # ---- backfilled records (docs/indexing-rules.md, "Backfilled records") ---------------------

    def apply_backfill(self, records: Iterable[dict], fetched_us: int) -> "CommunityModel":
        """Apply one backfilled page at the point of the stream where it merged in.

        ``records``: ``{did, collection, rkey, cid, record, counts}`` (counts: (likes, reposts,
        replies) from the AppView, or None), fetched at ``fetched_us``. Each passes the edge
        rules like a streamed create; one deleted on the stream (or whose account was purged)
        is dropped; a post already indexed is left as it is; no notifications.
        """
        for item in records:
            frame = {"did": item["did"], "time_us": fetched_us, "kind": "commit",
                     "commit": {"operation": "create", "collection": item["collection"], "rkey": item["rkey"],
                                "cid": item.get("cid"), "record": item["record"]}}
            event = _parse_event(json.dumps(frame))
            if event is None:
                continue
            did, commit = event["did"], event["commit"]
            uri = record_uri(did, commit["collection"], commit["rkey"])
            if uri in self.tombstones or did in self.tombstones:
                continue
            record = commit["record"]
            if commit["collection"] == POST:
                counts = item.get("counts")
                created = _created_us(record.get("createdAt"))
                self._post_upsert(did, uri, record, _str_or_none(commit.get("cid")),
                                  (tuple(counts), fetched_us) if counts is not None else None,
                                  min(fetched_us, created) if created is not None else fetched_us)
            elif commit["collection"] == FOLLOW:
                self._follow_create(did, uri, record, notify=False)
        return self

    # ---- rule 7: profile record ---------------------------------------------------------------

    def _profile_set(self, did: str, record: dict) -> None:
        profile = self.profiles.get(did)
        if profile is None:
            return  # unknown DIDs get no row from a profile record
        # Resolution: a field that is not a string (or missing) becomes NULL.
        profile["display_name"] = _str_or_none(record.get("displayName"))
        profile["description"] = _str_or_none(record.get("description"))
        profile["avatar_cid"] = _blob_cid(record.get("avatar"))
        profile["banner_cid"] = _blob_cid(record.get("banner"))

    # ---- rule 8: identity ----------------------------------------------------------------------

    def resolve_identities(self, document_handle: Callable[[str], str | None],
                           handle_did: Callable[[str], str | None]) -> "CommunityModel":
        """Rule 8 once resolution has run for every profile: each profile's handle is the one
        its DID document names (``document_handle``) when that handle names the DID back
        (``handle_did``), else NULL. Operator-given handles are resolved like any other."""
        verified = {}
        for did in self.profiles:
            handle = document_handle(did)
            if handle is not None and handle_did(handle) == did:
                verified[did] = handle.lower()
        for did in self.profiles:
            self._set_handle_field(did, None)
        for did, handle in verified.items():
            for other in list(self._handle_owners.get(handle, ())):
                self._set_handle_field(other, None)
            self._set_handle_field(did, handle)
        return self

    # ---- rule 9: account purge ------------------------------------------------------------------

    def _purge_account(self, did: str) -> None:
        for uri in list(self._posts_by_author.get(did, ())):
            self._post_delete(uri)  # as in rule 2
        for collection in (LIKE, REPOST):
            _, _, by_actor, _ = self._engagement_tables(collection)
            for uri in list(by_actor.get(did, ())):
                self._engagement_delete(collection, uri)  # as in rule 4
        follow_uris = set(self._follows_from.get(did, ())) | set(self._follows_to.get(did, ()))
        for uri in follow_uris:
            self._follow_delete(uri)  # as in rule 6
        if did in self.profiles:
            self._set_handle_field(did, None)
            del self.profiles[did]  # and so its membership
        for key, (actor, _) in list(self.notifications.items()):  # notification rule 6
            if did in (key[0], actor):
                del self.notifications[key]
                self._by_cause[key[2]].discard(key)

    # ---- notifications (docs/notification-rules.md) -----------------------------------------

    def _notify(self, recipient: str | None, kind: str, actor: str, cause: str, subject: str | None) -> bool:
        """Rule 1 and rule 7: members only, never oneself, once per recipient and cause."""
        if recipient is None or recipient == actor or not self._is_member(recipient):
            return False
        if any(key[0] == recipient for key in self._by_cause.get(cause, ())):
            return False
        self.notifications[(recipient, kind, cause)] = (actor, subject)
        self._by_cause.setdefault(cause, set()).add((recipient, kind, cause))
        return True

    def _unnotify(self, cause: str) -> None:
        for key in self._by_cause.pop(cause, ()):
            self.notifications.pop(key, None)

    def _notify_post(self, did: str, uri: str, record: dict) -> None:
        """Rule 4: reply (parent, then root), quote, mention; each member once."""
        parent = _ref_uri(record, "reply", "parent", "uri")
        root = _ref_uri(record, "reply", "root", "uri")
        embed = record.get("embed")
        quoted = None
        if isinstance(embed, dict):
            if embed.get("$type") == "app.bsky.embed.record":
                quoted = _ref_uri(embed, "record", "uri")
            elif embed.get("$type") == "app.bsky.embed.recordWithMedia":
                quoted = _ref_uri(embed, "record", "record", "uri")
        if quoted is not None and _uri_part(quoted, 1) != POST:
            quoted = None
        mentions: list[str] = []
        for facet in record.get("facets") if isinstance(record.get("facets"), list) else ():
            features = facet.get("features") if isinstance(facet, dict) else None
            for feature in features if isinstance(features, list) else ():
                if (isinstance(feature, dict) and feature.get("$type") == MENTION_FEATURE
                        and isinstance(feature.get("did"), str) and feature["did"].startswith("did:")
                        and feature["did"] not in mentions and len(mentions) < MAX_MENTIONS):
                    mentions.append(feature["did"])
        for recipient, kind, subject in ([(_uri_part(parent, 0), "reply", parent), (_uri_part(root, 0), "reply", root),
                                          (_uri_part(quoted, 0), "quote", quoted)]
                                         + [(m, "mention", None) for m in mentions]):
            self._notify(recipient, kind, did, uri, subject)

    # ---- output -----------------------------------------------------------------------------------

    def snapshot(self) -> dict:
        """The comparable state: plain dicts and tuples (fresh copies)."""
        return {
            "posts": {
                uri: {
                    "author_did": p["author_did"],
                    "cid": p["cid"],
                    "reply_parent_uri": p["reply_parent_uri"],
                    "reply_root_uri": p["reply_root_uri"],
                    "like_count": p["like_count"],
                    "repost_count": p["repost_count"],
                    "reply_count": p["reply_count"],
                    "has_cannabis_hashtag": p["has_cannabis_hashtag"],
                    "is_cannect_user": p["is_cannect_user"],
                }
                for uri, p in self.posts.items()
            },
            "likes": dict(self.likes),
            "reposts": dict(self.reposts),
            "follows": dict(self.follows),
            "profiles": {
                did: {
                    "handle": p["handle"],
                    "display_name": p["display_name"],
                    "is_cannect_user": p["is_cannect_user"],
                    "followers_count": p["followers_count"],
                    "following_count": p["following_count"],
                    "posts_count": p["posts_count"],
                }
                for did, p in self.profiles.items()
            },
            # "recipient type cause" -> [actor, subject]: plain strings, so a snapshot is JSON.
            "notifications": {" ".join(key): list(value) for key, value in self.notifications.items()},
        }


def _created_us(value: Any) -> int | None:
    """A record's createdAt in microseconds (None when unusable)."""
    from datetime import datetime, timezone

    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return int(parsed.timestamp() * 1_000_000)


def _uri_part(uri: str | None, n: int) -> str | None:
    """Part ``n`` after ``at://`` of a URI: 0 the DID (when it is one), 1 the collection."""
    if uri is None or not uri.startswith("at://"):
        return None
    parts = uri[5:].split("/")
    if n >= len(parts) or (n == 0 and not parts[0].startswith("did:")):
        return None
    return parts[n]


def _discard(index: dict[str, set[str]], key: str, value: str) -> None:
    members = index.get(key)
    if members is not None:
        members.discard(value)
        if not members:
            del index[key]


# --------------------------------------------------------------------------------------------
# Invariants (usable on any snapshot, including one read from the production database)
# --------------------------------------------------------------------------------------------


def invariant_violations(snapshot: dict, *, referential: bool = True, limit: int = 50,
                         baselined: Iterable[str] = ()) -> list[str]:
    """Describe every way ``snapshot`` breaks the count invariants at the end of the rules.

    Counts always equal the stored rows:
      like_count = stored likes of the post, repost_count = stored reposts,
      reply_count = indexed replies whose parent is the post,
      posts_count = indexed posts of the author,
      followers_count / following_count = stored follows to / from the DID.
    With ``referential`` (default), also the row existence the rules imply: every like/repost
    subject is an indexed post (no placeholders), and every post author and follow endpoint
    has a profile row (which is where its counts live).
    """
    posts = snapshot["posts"]
    profiles = snapshot["profiles"]

    likes_of: dict[str, int] = {}
    for _actor, subject in snapshot["likes"].values():
        likes_of[subject] = likes_of.get(subject, 0) + 1
    reposts_of: dict[str, int] = {}
    for _actor, subject in snapshot["reposts"].values():
        reposts_of[subject] = reposts_of.get(subject, 0) + 1
    replies_to: dict[str, int] = {}
    posts_by: dict[str, int] = {}
    for post in posts.values():
        parent = post["reply_parent_uri"]
        if parent is not None:
            replies_to[parent] = replies_to.get(parent, 0) + 1
        posts_by[post["author_did"]] = posts_by.get(post["author_did"], 0) + 1
    followers_of: dict[str, int] = {}
    following_of: dict[str, int] = {}
    for follower, following in snapshot["follows"].values():
        following_of[follower] = following_of.get(follower, 0) + 1
        followers_of[following] = followers_of.get(following, 0) + 1

    problems: list[str] = []

    def check(kind: str, key: str, field: str, stored: int, expected: int) -> None:
        if stored != expected:
            problems.append(f"{kind} {key}: {field}={stored} but {expected} stored rows")

    baselined = set(baselined)  # backfilled posts: counts start from the AppView's, not the rows
    for uri, post in posts.items():
        if uri in baselined:
            continue
        check("post", uri, "like_count", post["like_count"], likes_of.get(uri, 0))
        check("post", uri, "repost_count", post["repost_count"], reposts_of.get(uri, 0))
        check("post", uri, "reply_count", post["reply_count"], replies_to.get(uri, 0))
    for did, profile in profiles.items():
        check("profile", did, "posts_count", profile["posts_count"], posts_by.get(did, 0))
        check("profile", did, "followers_count", profile["followers_count"], followers_of.get(did, 0))
        check("profile", did, "following_count", profile["following_count"], following_of.get(did, 0))

    if referential:
        for table in ("likes", "reposts"):
            for uri, (_actor, subject) in snapshot[table].items():
                if subject not in posts:
                    problems.append(f"{table} {uri}: subject {subject} is not an indexed post")
        for did in sorted(set(posts_by) - set(profiles)):
            problems.append(f"author {did}: {posts_by[did]} indexed posts but no profile row")
        for did in sorted((set(followers_of) | set(following_of)) - set(profiles)):
            problems.append(f"follow endpoint {did}: stored follows but no profile row")

    if len(problems) > limit:
        problems = problems[:limit] + [f"... and {len(problems) - limit} more"]
    return problems


def assert_invariants(snapshot: dict, *, referential: bool = True) -> None:
    """Raise AssertionError listing every violated count invariant (see invariant_violations)."""
    problems = invariant_violations(snapshot, referential=referential)
    if problems:
        raise AssertionError("index invariants violated:\n  " + "\n  ".join(problems))
