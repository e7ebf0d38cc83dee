"""Play a run of events in stream order against an in-memory view of the index.

The database is read once per run (:func:`services.ingest.state.load_view`) for just the keys
the events touch; each event then sees the state left by the events before it, exactly as
one-at-a-time processing would, and the net result is collected in :class:`Changes` for a
handful of set-based writes (:mod:`services.ingest.writes`). The rules are those of
``docs/indexing-rules.md``, and for members' notifications ``docs/notification-rules.md``.

Backfilled records (``services/backfill``) are events too, marked with ``bf``: the same rules
apply, except what "Backfilled records" of the rules says (a URI deleted on the stream stays
deleted, a copy never overwrites what the stream stored, no notifications, and a post they
index starts from the AppView's counts as of the time in ``bf``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone

from services.jetstream import embed_summary, parse_datetime, post_tags, record_uri, reply_refs

from .notifications import post_recipients, shown_record


#: Post columns an update of the record may change (not counters, not the indexing decision).
POST_CONTENT = ("cid", "text", "raw_record", "facets", "embed", "embed_type", "has_media", "media_count",
                "quote_uri", "langs", "tags", "labels")


@dataclass
class PostRef:
    """What the rules need to know about an indexed post."""

    author: str
    parent: str | None
    # Backfilled posts: count changes from events up to this time (µs) are in the counts already.
    counts_as_of: int | None = None

    def counts(self, time_us: int) -> bool:
        """Whether an event at ``time_us`` moves this post's counts."""
        return self.counts_as_of is None or time_us > self.counts_as_of


@dataclass
class View:
    """The slice of the index a run of events can touch, as loaded before the run."""

    members: set[str]
    profiles: set[str]
    member_followers: dict[str, int]   # did -> stored follows of it by members
    posts: dict[str, PostRef]
    likes: dict[str, tuple[str, str]]    # uri -> (actor, subject)
    reposts: dict[str, tuple[str, str]]
    follows: dict[str, tuple[str, str]]  # uri -> (follower, subject)
    # parent uri -> indexed replies to it while it is not indexed itself (a reply seen first).
    orphan_replies: dict[str, int]
    # Record URIs (and DIDs) deleted on the stream recently, for backfilled events only.
    tombstones: set[str] = field(default_factory=set)


@dataclass
class Changes:
    """Net writes of a run: rows to insert or delete and counter deltas."""

    post_rows: dict[str, dict] = field(default_factory=dict)       # upserts
    deleted_posts: set[str] = field(default_factory=set)
    like_rows: dict[str, dict] = field(default_factory=dict)
    deleted_likes: set[str] = field(default_factory=set)
    repost_rows: dict[str, dict] = field(default_factory=dict)
    deleted_reposts: set[str] = field(default_factory=set)
    follow_rows: dict[str, dict] = field(default_factory=dict)
    deleted_follows: set[str] = field(default_factory=set)
    new_profiles: set[str] = field(default_factory=set)
    # uri -> [likes, reposts, replies]; did -> [followers, following, posts]
    post_deltas: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0, 0]))
    profile_deltas: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0, 0]))
    profile_records: dict[str, dict] = field(default_factory=dict)
    # DIDs (with a profile) whose identity event asks for their handle to be resolved again;
    # with new_profiles, enqueued for resolution after the commit (services/identity).
    identity_refresh: set[str] = field(default_factory=set)
    account_statuses: dict[str, str] = field(default_factory=dict)
    # Member viewer state to recompute: (member, post uri) and (member, other did).
    viewer_posts: set[tuple[str, str]] = field(default_factory=set)
    viewer_follows: set[tuple[str, str]] = field(default_factory=set)
    indexed_posts: list[str] = field(default_factory=list)
    # App sessions an account purge deleted: their sockets close (services/realtime.py).
    ended_sessions: set[str] = field(default_factory=set)
    # Notifications: reason uri -> rows to insert; reasons whose notifications go; the ids
    # of those really inserted (set by the writes, fanned out after the commit).
    notification_rows: dict[str, list[dict]] = field(default_factory=dict)
    deleted_notification_reasons: set[str] = field(default_factory=set)
    notification_ids: list[int] = field(default_factory=list)
    # Stream deletes of posts and follows (uri -> time_us), kept so a backfill cannot undo them.
    tombstones: dict[str, int] = field(default_factory=dict)
    # Accounts a member newly follows that no member followed before: their past is backfilled.
    newly_covered: dict[str, str] = field(default_factory=dict)  # account -> the member following it
    # Backfilled records of the run that were stored or were already there (not dropped).
    backfilled_kept: int = 0


class Run:
    """Applies events one by one to a :class:`View`, recording :class:`Changes`."""

    def __init__(self, view: View, cannabis_tags: frozenset[str], now: datetime | None = None):
        self.view = view
        self.tags = cannabis_tags
        self.now = now or datetime.now(timezone.utc)
        self.changes = Changes()

    def apply(self, event: dict) -> None:
        kind = event["k"]
        if "bf" in event:
            self._backfilled(event)
        elif kind == "commit":
            handler = getattr(self, f"_{event['col']}_{'delete' if event['op'] == 'd' else 'put'}")
            handler(event, record_uri(event["did"], event["col"], event["rkey"]))
        elif kind == "identity":
            self._identity(event)
        elif kind == "account":
            self._account(event)

    def _backfilled(self, event: dict) -> None:
        """A record fetched by a backfill: dropped when the stream deleted it (or its account)."""
        uri = record_uri(event["did"], event["col"], event["rkey"])
        if uri in self.view.tombstones or event["did"] in self.view.tombstones or event["op"] != "c":
            return
        before = len(self.changes.post_rows) + len(self.changes.follow_rows)
        known = uri in self.view.posts or uri in self.view.follows
        getattr(self, f"_{event['col']}_put")(event, uri)
        if known or len(self.changes.post_rows) + len(self.changes.follow_rows) > before:
            self.changes.backfilled_kept += 1

    # -- posts ---------------------------------------------------------------------------

    def _post_put(self, event: dict, uri: str) -> None:
        view, changes, record, author = self.view, self.changes, event["rec"], event["did"]
        parent, root = reply_refs(record)
        backfilled = event.get("bf")
        if backfilled and uri in view.posts:
            return  # the stream's copy (or an earlier backfill's) is as new or newer
        row = self._post_row(event, uri, parent, root)
        if event["op"] == "c" and not backfilled:
            self._notify_post(event, uri, parent, root, row["quote_uri"])
        if uri in view.posts:  # content refresh; counters and the indexing decision stay
            content = {name: row[name] for name in POST_CONTENT}
            if uri in changes.post_rows:
                changes.post_rows[uri].update(content)
            else:  # the row exists, so only the ON CONFLICT branch of the upsert runs
                changes.post_rows[uri] = {**row, "has_cannabis_hashtag": False, "is_cannect_user": False,
                                          "reply_count": 0}
            return
        tagged = bool(self.tags.intersection(post_tags(record)))
        member = author in view.members
        selected = bool(backfilled and backfilled.get("legacy"))  # the old feed generator's AI filter chose it
        if not (selected or tagged or member or view.member_followers.get(author, 0) > 0 or parent in view.posts):
            return
        row.update(has_cannabis_hashtag=tagged, is_cannect_user=member,
                   reply_count=view.orphan_replies.pop(uri, 0))
        if backfilled and backfilled["counts"] is not None:  # the AppView's at the fetch; the stream's after
            likes, reposts, replies = backfilled["counts"]
            row.update(like_count=likes, repost_count=reposts, reply_count=replies,
                       counts_as_of_us=backfilled["as_of"])
        changes.post_rows[uri] = row
        changes.indexed_posts.append(uri)
        view.posts[uri] = PostRef(author, parent, row["counts_as_of_us"])
        self._ensure_profile(author)
        changes.profile_deltas[author][2] += 1
        self._count_reply(parent, +1, _event_time(event))

    def _count_reply(self, parent: str | None, step: int, time_us: int) -> None:
        if parent in self.view.posts:
            if self.view.posts[parent].counts(time_us):
                self.changes.post_deltas[parent][2] += step
        elif parent is not None:
            self.view.orphan_replies[parent] = self.view.orphan_replies.get(parent, 0) + step

    def _post_row(self, event: dict, uri: str, parent: str | None, root: str | None) -> dict:
        record = event["rec"]
        created_at = parse_datetime(record.get("createdAt"), event["t"])
        embed, embed_type, quote_uri, media_count = embed_summary(record)
        langs = record.get("langs")
        extra_tags = record.get("tags")
        return {
            "uri": uri, "cid": event.get("cid") or "", "author_did": event["did"],
            "text": record.get("text") or "", "created_at": created_at,
            "sort_at": min(created_at, self.now), "indexed_time_us": event["t"],
            "reply_parent_uri": parent, "reply_root_uri": root, "quote_uri": quote_uri,
            "embed": embed, "embed_type": embed_type, "has_media": media_count > 0, "media_count": min(media_count, 32767),
            "facets": record.get("facets") if isinstance(record.get("facets"), list) else None,
            "labels": record.get("labels") if isinstance(record.get("labels"), dict) else None,
            "langs": [x for x in langs if isinstance(x, str)] if isinstance(langs, list) else None,
            "tags": [x for x in extra_tags if isinstance(x, str)] if isinstance(extra_tags, list) else None,
            "raw_record": record, "like_count": 0, "repost_count": 0, "counts_as_of_us": None,
        }

    def _notify_post(self, event: dict, uri: str, parent: str | None, root: str | None, quote: str | None) -> None:
        # Indexed or not: a member replied to, quoted or mentioned is told (notification-rules.md).
        author, record = event["did"], event["rec"]
        recipients = post_recipients(author, record, parent, root, quote, self.view.members)
        if recipients:
            shown = shown_record(record)
            for recipient, kind, subject in recipients:
                self._notify(recipient, kind, author, subject, uri, event.get("cid"), shown)

    def _notify(self, recipient: str, kind: str, actor: str, subject: str | None, reason: str,
                cid: str | None = None, record: dict | None = None) -> None:
        self.changes.notification_rows.setdefault(reason, []).append(
            {"recipient_did": recipient, "type": kind, "actor_did": actor, "subject_uri": subject,
             "reason_uri": reason, "reason_cid": cid, "reason_record": record})

    def _unnotify(self, reason: str) -> None:
        """The record ``reason`` left the index (or, for a post, the network): its notifications go."""
        self.changes.notification_rows.pop(reason, None)
        self.changes.deleted_notification_reasons.add(reason)

    def _post_delete(self, event: dict, uri: str) -> None:
        view, changes = self.view, self.changes
        self._unnotify(uri)
        changes.tombstones[uri] = event["t"]
        post = view.posts.pop(uri, None)
        if post is None:
            return
        # Deletes are written before inserts, so deleting a row this run inserted is harmless.
        changes.post_rows.pop(uri, None)
        changes.deleted_posts.add(uri)
        if uri in changes.indexed_posts:
            changes.indexed_posts.remove(uri)
        changes.profile_deltas[post.author][2] -= 1
        self._count_reply(post.parent, -1, event["t"])
        for table, rows in (("likes", changes.like_rows), ("reposts", changes.repost_rows)):
            stored = getattr(view, table)
            for ref_uri in [u for u, (_, subject) in stored.items() if subject == uri]:
                actor, _ = stored.pop(ref_uri)
                rows.pop(ref_uri, None)
                self._unnotify(ref_uri)
                if actor in view.members:
                    changes.viewer_posts.add((actor, uri))

    # -- likes and reposts ---------------------------------------------------------------

    def _subject_put(self, event: dict, uri: str, table: str, rows: dict, slot: int) -> None:
        stored = getattr(self.view, table)
        subject = event["rec"]["subject"]
        if uri in stored or subject["uri"] not in self.view.posts:
            return
        actor = event["did"]
        stored[uri] = (actor, subject["uri"])
        rows[uri] = {"uri": uri, "actor_did": actor, "subject_uri": subject["uri"], "subject_cid": subject["cid"],
                     "created_at": parse_datetime(event["rec"].get("createdAt"), event["t"])}
        if self.view.posts[subject["uri"]].counts(event["t"]):
            self.changes.post_deltas[subject["uri"]][slot] += 1
        if actor in self.view.members:
            self.changes.viewer_posts.add((actor, subject["uri"]))
        author = self.view.posts[subject["uri"]].author
        if author in self.view.members and author != actor:
            self._notify(author, table[:-1], actor, subject["uri"], uri)

    def _subject_delete(self, event: dict, uri: str, table: str, rows: dict, deleted: set, slot: int) -> None:
        ref = getattr(self.view, table).pop(uri, None)
        if ref is None:
            return
        actor, subject = ref
        rows.pop(uri, None)
        deleted.add(uri)
        self._unnotify(uri)
        post = self.view.posts.get(subject)
        if post is None or post.counts(event["t"]):
            self.changes.post_deltas[subject][slot] -= 1
        if actor in self.view.members:
            self.changes.viewer_posts.add((actor, subject))

    # Likes, reposts and follows are never edited: an update changes nothing.

    def _like_put(self, event, uri):
        if event["op"] == "c":
            self._subject_put(event, uri, "likes", self.changes.like_rows, 0)

    def _like_delete(self, event, uri):
        self._subject_delete(event, uri, "likes", self.changes.like_rows, self.changes.deleted_likes, 0)

    def _repost_put(self, event, uri):
        if event["op"] == "c":
            self._subject_put(event, uri, "reposts", self.changes.repost_rows, 1)

    def _repost_delete(self, event, uri):
        self._subject_delete(event, uri, "reposts", self.changes.repost_rows, self.changes.deleted_reposts, 1)

    # -- follows -------------------------------------------------------------------------

    def _follow_put(self, event: dict, uri: str) -> None:
        view, changes = self.view, self.changes
        follower, subject = event["did"], event["rec"]["subject"]
        if event["op"] != "c" or uri in view.follows or not (follower in view.members or subject in view.members):
            return
        if ("bf" not in event and follower in view.members and subject not in view.members
                and view.member_followers.get(subject, 0) <= 0):
            changes.newly_covered.setdefault(subject, follower)
        view.follows[uri] = (follower, subject)
        changes.follow_rows[uri] = {"uri": uri, "follower_did": follower, "following_did": subject,
                                    "created_at": parse_datetime(event["rec"].get("createdAt"), event["t"])}
        self._follow_counts(follower, subject, +1)
        if subject in view.members and subject != follower and "bf" not in event:
            self._notify(subject, "follow", follower, None, uri)

    def _follow_delete(self, event: dict, uri: str) -> None:
        self.changes.tombstones[uri] = event["t"]
        ref = self.view.follows.pop(uri, None)
        if ref is None:
            return
        self.changes.follow_rows.pop(uri, None)
        self.changes.deleted_follows.add(uri)
        self._unnotify(uri)
        self._follow_counts(*ref, -1)

    def _follow_counts(self, follower: str, subject: str, step: int) -> None:
        view, changes = self.view, self.changes
        self._ensure_profile(follower)
        self._ensure_profile(subject)
        changes.profile_deltas[follower][1] += step
        changes.profile_deltas[subject][0] += step
        if follower in view.members:
            view.member_followers[subject] = view.member_followers.get(subject, 0) + step
            changes.viewer_follows.add((follower, subject))
        if subject in view.members:
            changes.viewer_follows.add((subject, follower))

    # -- profiles, identity, account -----------------------------------------------------

    def _profile_put(self, event: dict, uri: str) -> None:
        if event["rkey"] == "self" and event["did"] in self.view.profiles:
            self.changes.profile_records[event["did"]] = event["rec"]

    def _profile_delete(self, event: dict, uri: str) -> None:
        if event["rkey"] == "self" and event["did"] in self.view.profiles:
            self.changes.profile_records[event["did"]] = {}

    def _identity(self, event: dict) -> None:
        # The handle an identity event carries is only a claim: it prompts re-resolution.
        if event["did"] in self.view.profiles:
            self.changes.identity_refresh.add(event["did"])

    def _account(self, event: dict) -> None:
        # Purges (deleted, takendown) are applied by the caller between runs.
        if event["did"] in self.view.profiles:
            self.changes.account_statuses[event["did"]] = event["status"] or ("active" if event["active"] else "inactive")

    def _ensure_profile(self, did: str) -> None:
        if did not in self.view.profiles:
            self.view.profiles.add(did)
            self.changes.new_profiles.add(did)


def _event_time(event: dict) -> int:
    """When a record came to be, for counts: the stream's time, or for a backfilled record its
    ``createdAt`` (no later than the fetch), since it may well predate a counted parent."""
    if "bf" not in event:
        return event["t"]
    created = parse_datetime(event["rec"].get("createdAt"), event["t"])
    return min(event["t"], int(created.timestamp() * 1_000_000))
