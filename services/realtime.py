"""Realtime events: built from committed changes, carried to the web processes by a Redis Stream.

A producer (the ingest actor, an action endpoint) calls :func:`collect_events` inside its
transaction, so the counts it reads are the ones it commits, and :func:`publish` after the
commit, so nothing is announced for a transaction that rolled back. Every web process reads
the stream once and fans each event out to its own sockets by the event's routing key
(``app/realtime.py``). The stream keeps the last ``STREAM_MAXLEN`` events, so a client that
reconnects can ask for what it missed since the last event id it saw (:func:`history`).

Events (each gets its stream id as ``id``; routing key in brackets):

- ``post_updated {post: {uri, likeCount, repostCount, replyCount}}`` [the post]
- ``reply_added {parentUri, reply: PostView}`` [the parent]
- ``post_deleted {uri}`` [the post]
- ``profile_updated {profile: ProfileView}`` [the member's own sockets]
- ``notification {recipient, notification}`` [the recipient's own sockets]
- ``backfill_progress {member, backfill}`` [the member's own sockets]: their onboarding
  backfill moved (``services.backfill.progress``); the Following feed has more to show
- ``high_intent_post {post, purchase_intent, ...}`` [``HIGH_INTENT_KEY``]: a post classified with
  high purchase intent, for the dashboard's live feed sockets (``services/b2b/live.py``)
- ``session_ended {sessionId}`` [the sockets signed in with that app session]: a control
  event, never sent to a client. Each web process closes those sockets (logout, refresh-token
  reuse, account purge), and publishing it also marks the session's access tokens as refused
  on every endpoint (:func:`services.tokens.revoked_session_key`), in the same transaction.
- ``read_changed {posts, newPosts, deleted, profiles}`` [``cache:read``, no socket listens]:
  a control event for the web processes' read caches (``services/read_cache.py``), published
  with the others of the same commit by ingest, actions, identity and sign-in.

Views are rendered as an anonymous viewer sees them (their ``viewer`` state is empty): one
event serves every socket.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable

import orjson
from redis import Redis, RedisError
from sqlalchemy import text
from sqlalchemy.orm import Session

from services.ingest.changes import Changes
from services.read_cache import author_of
from services.tokens import REVOKED_SESSION_TTL_SECONDS, revoked_session_key
from services.views import post_views, profile_views

log = logging.getLogger(__name__)

STREAM = "cannect:realtime"
#: Events kept for reconnecting clients (trimmed approximately, by whole stream nodes).
STREAM_MAXLEN = 50_000
#: A reconnecting client further behind than this many events (network-wide) must refetch.
REPLAY_LIMIT = 5_000
SESSION_ENDED = "session_ended"
#: Routing key of ``high_intent_post`` events: the dashboard's live feed (services/b2b/live.py).
HIGH_INTENT_KEY = "b2b:high-intent"
#: A control event for the web processes' read caches (services/read_cache.py), never sent to
#: a client: everything one commit changed that a cached view or first page could show.
READ_CHANGED = "read_changed"
READ_CHANGED_KEY = "cache:read"

_ID = re.compile(r"^(\d{1,20})-(\d{1,20})$")

_COUNTS = text("SELECT uri, like_count, repost_count, reply_count FROM posts WHERE uri = ANY(:uris)")
_MEMBERS = text("SELECT did FROM profiles WHERE did = ANY(:dids) AND is_cannect_user ORDER BY did")


# -- producing ------------------------------------------------------------------------------

def collect_events(session: Session, changes_list: list[Changes], avatar_cdn: str | None = None) -> list[dict]:
    """The events the net effect of these runs deserves, read in the caller's transaction.

    Call it after the writes and before the commit; publish the result after the commit.
    """
    deleted: set[str] = set()
    new_posts: dict[str, str | None] = {}   # newly indexed post -> its parent
    post_deltas: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    profile_deltas: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    profiles_changed: set[str] = set()
    ended_sessions: set[str] = set()
    for changes in changes_list:
        ended_sessions.update(changes.ended_sessions)
        for uri in changes.deleted_posts:
            deleted.add(uri)
            new_posts.pop(uri, None)
        for uri in changes.indexed_posts:
            deleted.discard(uri)
            row = changes.post_rows.get(uri)
            new_posts[uri] = row.get("reply_parent_uri") if row else None
        _add_deltas(post_deltas, changes.post_deltas)
        _add_deltas(profile_deltas, changes.profile_deltas)
        profiles_changed.update(changes.profile_records)
    updated = {uri for uri, delta in post_deltas.items() if any(delta)}
    profiles_changed.update(did for did, delta in profile_deltas.items() if any(delta))

    lookup = updated | deleted | set(new_posts) | {parent for parent in new_posts.values() if parent}
    counts = {row.uri: row for row in session.execute(_COUNTS, {"uris": sorted(lookup)})} if lookup else {}

    events: list[dict] = [{"type": "post_deleted", "uri": uri} for uri in sorted(deleted) if uri not in counts]
    replies = [uri for uri, parent in new_posts.items() if uri in counts and parent in counts]
    cdn = avatar_cdn or _default_cdn()
    events += [{"type": "reply_added", "parentUri": new_posts[view["uri"]], "reply": view}
               for view in post_views(session, replies, None, cdn)]
    events += [{"type": "post_updated", "post": {"uri": uri, "likeCount": counts[uri].like_count,
                                                  "repostCount": counts[uri].repost_count,
                                                  "replyCount": counts[uri].reply_count}}
               for uri in sorted(updated) if uri in counts]
    events += profile_events(session, profiles_changed, cdn)
    events += [session_ended_event(session_id) for session_id in sorted(ended_sessions)]
    return events


def profile_events(session: Session, dids: Iterable[str], avatar_cdn: str | None = None) -> list[dict]:
    """``profile_updated`` for those of ``dids`` that are members, read in the caller's transaction.

    Only members have signed-in sockets, so only their profiles are worth announcing.
    """
    dids = list(dids)
    members = list(session.execute(_MEMBERS, {"dids": dids}).scalars()) if dids else []
    if not members:
        return []
    views = profile_views(session, members, None, avatar_cdn or _default_cdn())
    return [{"type": "profile_updated", "profile": view} for view in views]


def read_changed_events(changes_list: list[Changes]) -> list[dict]:
    """The ``read_changed`` event of these runs (none when they changed nothing a view shows).

    Over-inclusive on purpose: it names every post upserted, counted or deleted, each new post
    with the feeds it enters, every profile whose row changed (non-members included) and every
    account whose follows changed (its Following feed did).
    """
    posts: set[str] = set()
    deleted: set[str] = set()
    profiles: set[str] = set()
    new_posts: dict[str, list[str]] = {}
    for changes in changes_list:
        posts.update(changes.post_rows)
        posts.update(uri for uri, delta in changes.post_deltas.items() if any(delta))
        deleted.update(changes.deleted_posts)
        for uri in changes.indexed_posts:
            row = changes.post_rows.get(uri)
            feeds = [feed for feed, column in (("global", "has_cannabis_hashtag"), ("local", "is_cannect_user"))
                     if row is None or row.get(column)]
            new_posts[uri] = feeds
        profiles.update(did for did, delta in changes.profile_deltas.items() if any(delta))
        profiles.update(changes.profile_records)
        profiles.update(changes.new_profiles)
        profiles.update(changes.account_statuses)
        # A follower's follows changed even when its counts did not (one follow, one unfollow).
        profiles.update(filter(None, map(author_of, [*changes.follow_rows, *changes.deleted_follows])))
    return read_changed_event(posts=posts - set(new_posts), new_posts=new_posts, deleted=deleted, profiles=profiles)


def read_changed_event(posts=(), new_posts: dict[str, list[str]] | None = None, deleted=(), profiles=()) -> list[dict]:
    """``[read_changed]`` naming these posts and profiles, or ``[]`` when it names nothing."""
    event = {"type": READ_CHANGED, "posts": sorted(posts), "newPosts": sorted((new_posts or {}).items()),
             "deleted": sorted(deleted), "profiles": sorted(profiles)}
    return [event] if any(event[name] for name in ("posts", "newPosts", "deleted", "profiles")) else []


def notification_event(recipient: str, notification: dict) -> dict:
    """The event that delivers a notification view to its recipient's sockets."""
    return {"type": "notification", "recipient": recipient, "notification": notification}


def session_ended_event(session_id: str) -> dict:
    """The event that closes an ended app session's sockets and refuses its access tokens."""
    return {"type": SESSION_ENDED, "sessionId": session_id}


def _add_deltas(total: dict[str, list[int]], deltas: dict[str, list[int]]) -> None:
    for key, delta in deltas.items():
        into = total[key]
        for i, step in enumerate(delta):
            into[i] += step


def _default_cdn() -> str:
    from cannect.config import get_settings

    return get_settings().avatar_cdn


def post_key(uri: str) -> str:
    return f"post:{uri}"


def did_key(did: str) -> str:
    return f"did:{did}"


def session_key(session_id: str) -> str:
    return f"session:{session_id}"


def event_key(event: dict) -> str:
    """Who an event is for: the sockets subscribed to a post, or a member's own sockets."""
    kind = event["type"]
    if kind == "post_updated":
        return post_key(event["post"]["uri"])
    if kind == "reply_added":
        return post_key(event["parentUri"])
    if kind == "post_deleted":
        return post_key(event["uri"])
    if kind == "profile_updated":
        return did_key(event["profile"]["did"])
    if kind == "notification":
        return did_key(event["recipient"])
    if kind == "backfill_progress":
        return did_key(event["member"])
    if kind == SESSION_ENDED:
        return session_key(event["sessionId"])
    if kind == "high_intent_post":
        return HIGH_INTENT_KEY
    if kind == READ_CHANGED:
        return READ_CHANGED_KEY
    raise ValueError(f"unknown realtime event type {kind!r}")


def publish(redis: Redis, events: list[dict], maxlen: int = STREAM_MAXLEN) -> list[dict]:
    """Append the events to the stream in one round trip (call it after the commit).

    Sets each event's ``id`` to its stream id and returns the events. Raises on Redis errors:
    the caller decides (after a commit, retrying the transaction cannot help).
    """
    if not events:
        return events
    pipe = redis.pipeline()  # MULTI: a session's end is announced and marked together
    for event in events:
        if event["type"] == SESSION_ENDED:
            pipe.set(revoked_session_key(event["sessionId"]), 1, ex=REVOKED_SESSION_TTL_SECONDS)
        body = {name: value for name, value in event.items() if name != "id"}
        pipe.xadd(STREAM, {"k": event_key(event), "t": event["type"], "e": orjson.dumps(body)},
                  maxlen=maxlen, approximate=True)
    replies = iter(pipe.execute())
    for event in events:
        if event["type"] == SESSION_ENDED:
            next(replies)  # the SET's reply
        entry_id = next(replies)
        event["id"] = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return events


def try_publish(redis: Redis, events: list[dict]) -> bool:
    """``publish`` after a commit that already happened: a Redis failure is logged, not raised.

    The change itself is committed; the clients that miss its live update refetch when they
    reconnect (``resync``).
    """
    try:
        publish(redis, events)
        return True
    except RedisError:
        log.warning("realtime: %d events not published", len(events), exc_info=True)
        return False


# -- consuming ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Delivery:
    """One stream entry as the sockets get it: the JSON text is built once per process."""

    id: tuple[int, int]
    key: str
    type: str
    text: str


def parse_id(value) -> tuple[int, int] | None:
    """A stream id as a comparable tuple, None when it is not one."""
    match = _ID.match(value) if isinstance(value, str) else None
    return (int(match[1]), int(match[2])) if match else None


def format_id(entry_id: tuple[int, int]) -> str:
    return f"{entry_id[0]}-{entry_id[1]}"


def _delivery(entry_id: bytes, fields: dict) -> Delivery:
    ident = entry_id.decode()
    body = fields[b"e"]
    # The id goes first: '{"id":"...",' + the stored object without its opening brace.
    text_ = '{"id":"' + ident + '",' + body[1:].decode()
    ms, _, seq = ident.partition("-")
    return Delivery((int(ms), int(seq)), fields[b"k"].decode(), fields[b"t"].decode(), text_)


def last_id(redis: Redis) -> tuple[int, int]:
    """The id of the newest event, (0, 0) when the stream is empty: where a new reader starts."""
    newest = redis.xrevrange(STREAM, count=1)
    return parse_id(newest[0][0].decode()) if newest else (0, 0)


def read_new(redis: Redis, after: tuple[int, int], block_ms: int, count: int) -> list[Delivery]:
    """Events after ``after``, waiting up to ``block_ms`` for the first one."""
    reply = redis.xread({STREAM: format_id(after)}, count=count, block=block_ms)
    return [_delivery(entry_id, fields) for _, entries in reply or () for entry_id, fields in entries]


def oldest_id(redis: Redis) -> tuple[int, int] | None:
    oldest = redis.xrange(STREAM, count=1)
    return parse_id(oldest[0][0].decode()) if oldest else None


@dataclass(frozen=True)
class Replay:
    """The events a reconnecting client missed, and the stream position they were read up to."""

    deliveries: list[Delivery]
    until: tuple[int, int]


def history(redis: Redis, since: tuple[int, int], keys: Iterable[str], limit: int = REPLAY_LIMIT) -> Replay | None:
    """Events after ``since`` for these routing keys; None when they can no longer be told.

    None means the client must refetch: the history was trimmed past ``since`` (or lost with
    Redis), or more than ``limit`` events happened since then.
    """
    pipe = redis.pipeline()  # MULTI: the bounds and the range are one snapshot
    pipe.xrange(STREAM, count=1)
    pipe.xrevrange(STREAM, count=1)
    pipe.xrange(STREAM, min="(" + format_id(since), count=limit + 1)
    oldest, newest, entries = pipe.execute()
    if not oldest or parse_id(oldest[0][0].decode()) > since or len(entries) > limit:
        return None
    newest_id = parse_id(newest[0][0].decode())
    if since > newest_id:  # an id this stream never issued: it was reset
        return None
    wanted = set(keys)
    deliveries = [_delivery(entry_id, fields) for entry_id, fields in entries if fields[b"k"].decode() in wanted]
    return Replay(deliveries, newest_id)
