"""What a signed-in member does: post, reply, delete, like, repost, follow, and their undos.

Every action writes to the member's PDS first (:class:`services.auth.PdsAccount`). Only once
the PDS has accepted the record is the very event Jetstream will deliver later built,
parsed like any other (``services.jetstream.parse_event``) and applied to our index under
the ingest lock (``services.ingest.lock_index``), so the app shows it at once. When Jetstream
does deliver it, the ingest rules find the record's URI already stored and count nothing
twice; a concurrent batch and the action never both count it, since both hold that lock.
A PDS failure raises before anything local is written, so our data stays as it was.

Undoing what is not there (unlike a post not liked, unfollow someone not followed) is a
no-op answered like success with ``uri: null``: the member's intent already holds, and a
double tap must not be an error. Doing what is already done (liking a liked post) writes
nothing either and answers with the existing record.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone

import orjson
import regex
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Post, UserFollowState, UserPostState
from services.auth import Member, PdsAccount, open_account
from services.backfill import request_account_backfill
from services.members import NEW_BACKFILL_JOBS
from services.ingest import apply_events, lock_index
from services.ingest.changes import Changes
from services.jetstream import (
    FOLLOW,
    INLINE_TAG,
    LIKE,
    POST,
    REPOST,
    TAG_FEATURE,
    Skip,
    parse_event,
)
from services.pds import PdsError
from services.realtime import collect_events, read_changed_events
from services.views import post_views, profile_views

#: The post lexicon's limits (app.bsky.feed.post#text): UTF-8 bytes and graphemes.
MAX_TEXT_BYTES = 3000
MAX_TEXT_GRAPHEMES = 300
MAX_TAG_LENGTH = 64
LINK_FEATURE = "app.bsky.richtext.facet#link"
LINK = re.compile(r"https?://[^\s<>\"]+")
TRAILING_PUNCTUATION = ".,;:!?)]}'\""
GRAPHEME = regex.compile(r"\X")


#: Where an action leaves the live updates to publish after its commit (session.info key).
REALTIME_EVENTS = "realtime_events"
#: session.info key: ids of the notifications an action created, announced after the commit.
NEW_NOTIFICATIONS = "new_notifications"


class NotFound(Exception):
    """The post is not in the Cannect index."""


class Forbidden(Exception):
    """The member may not do this to that (someone else's post)."""


class InvalidAction(ValueError):
    """The request is well-formed but cannot be done (following yourself, an empty post)."""


# -- text ----------------------------------------------------------------------------------

def grapheme_count(text: str) -> int:
    """User-perceived characters (Unicode extended grapheme clusters, UAX #29), as the lexicon counts."""
    return len(GRAPHEME.findall(text))


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be a post's text, or None."""
    if not text.strip():
        return "text must not be empty"
    if "\x00" in text:
        return "text must not contain NUL characters"
    if len(text.encode()) > MAX_TEXT_BYTES:
        return f"text must be at most {MAX_TEXT_BYTES} bytes of UTF-8"
    if grapheme_count(text) > MAX_TEXT_GRAPHEMES:
        return f"text must be at most {MAX_TEXT_GRAPHEMES} characters"
    return None


def build_facets(text: str) -> list[dict]:
    """Facets for inline ``#tags`` (the index's own inline-tag rule) and http(s) links.

    Offsets are UTF-8 byte offsets, end exclusive, as the richtext lexicon wants.
    """
    def at(index: int) -> int:
        return len(text[:index].encode())

    facets = []
    for match in INLINE_TAG.finditer(text):
        tag = match.group(1)
        if len(tag) <= MAX_TAG_LENGTH:
            facets.append({"index": {"byteStart": at(match.start(1) - 1), "byteEnd": at(match.end(1))},
                           "features": [{"$type": TAG_FEATURE, "tag": tag}]})
    for match in LINK.finditer(text):
        url = match.group(0).rstrip(TRAILING_PUNCTUATION)
        if len(url) > len("https://"):
            facets.append({"index": {"byteStart": at(match.start()), "byteEnd": at(match.start() + len(url))},
                           "features": [{"$type": LINK_FEATURE, "uri": url}]})
    return sorted(facets, key=lambda facet: facet["index"]["byteStart"])


# -- actions -------------------------------------------------------------------------------

def create_post(session: Session, settings, member: Member, text: str, langs: list[str] | None = None,
                parent_uri: str | None = None) -> dict:
    """A post, or a reply to the indexed post ``parent_uri``: ``{uri, cid, post}``."""
    problem = text_problem(text)
    if problem:
        raise InvalidAction(problem)
    account = open_account(session, settings, member)
    record = {"$type": POST, "text": text, "createdAt": _now_iso()}
    if langs:
        record["langs"] = list(langs)
    facets = build_facets(text)
    if facets:
        record["facets"] = facets
    if parent_uri is not None:
        parent = _indexed_post(session, parent_uri)
        record["reply"] = {"root": _root_ref(parent), "parent": {"uri": parent.uri, "cid": parent.cid}}
    uri, cid = _create(session, settings, account, POST, record)
    views = post_views(session, [uri], member.did, settings.avatar_cdn)
    return {"uri": uri, "cid": cid, "post": views[0] if views else None}


def delete_post(session: Session, settings, member: Member, uri: str) -> dict:
    """Delete one of the member's own posts: ``{uri, deleted}``."""
    account = open_account(session, settings, member)
    post = _indexed_post(session, uri)
    if post.author_did != member.did:
        raise Forbidden("You can delete only your own posts")
    _delete(session, settings, account, POST, uri)
    return {"uri": uri, "deleted": True}


def like(session: Session, settings, member: Member, uri: str) -> dict:
    return _subject_put(session, settings, member, uri, LIKE, "like_uri")


def unlike(session: Session, settings, member: Member, uri: str) -> dict:
    return _subject_delete(session, settings, member, uri, LIKE, "like_uri")


def repost(session: Session, settings, member: Member, uri: str) -> dict:
    return _subject_put(session, settings, member, uri, REPOST, "repost_uri")


def unrepost(session: Session, settings, member: Member, uri: str) -> dict:
    return _subject_delete(session, settings, member, uri, REPOST, "repost_uri")


def follow(session: Session, settings, member: Member, did: str) -> dict:
    """Follow ``did``: ``{uri, cid, profile}`` (the follow record and the followed profile)."""
    account = open_account(session, settings, member)
    if did == member.did:
        raise InvalidAction("You cannot follow yourself")
    state = session.get(UserFollowState, (member.did, did))
    if state is not None and state.follow_uri:
        return _profile_result(session, settings, member, state.follow_uri, None, did)
    record = {"$type": FOLLOW, "subject": did, "createdAt": _now_iso()}
    uri, cid = _create(session, settings, account, FOLLOW, record)
    return _profile_result(session, settings, member, uri, cid, did)


def unfollow(session: Session, settings, member: Member, did: str) -> dict:
    """Unfollow ``did``: ``{uri (the follow deleted, or null), cid: null, profile}``."""
    account = open_account(session, settings, member)
    state = session.get(UserFollowState, (member.did, did))
    if state is None or not state.follow_uri:
        return _profile_result(session, settings, member, None, None, did)
    _delete(session, settings, account, FOLLOW, state.follow_uri)
    return _profile_result(session, settings, member, state.follow_uri, None, did)


# -- the steps they share ------------------------------------------------------------------

def _subject_put(session: Session, settings, member: Member, uri: str, collection: str, slot: str) -> dict:
    account = open_account(session, settings, member)
    post = _indexed_post(session, uri)
    existing = _viewer_record(session, member, uri, slot)
    if existing:
        return _post_result(session, settings, member, existing, None, uri)
    record = {"$type": collection, "subject": {"uri": post.uri, "cid": post.cid}, "createdAt": _now_iso()}
    record_uri, cid = _create(session, settings, account, collection, record)
    return _post_result(session, settings, member, record_uri, cid, uri)


def _subject_delete(session: Session, settings, member: Member, uri: str, collection: str, slot: str) -> dict:
    account = open_account(session, settings, member)
    _indexed_post(session, uri)
    existing = _viewer_record(session, member, uri, slot)
    if existing:
        _delete(session, settings, account, collection, existing)
    return _post_result(session, settings, member, existing, None, uri)


def _viewer_record(session: Session, member: Member, post_uri: str, slot: str) -> str | None:
    """The member's like or repost record of a post, as ingest keeps it in user_post_state."""
    state = session.get(UserPostState, (member.did, post_uri))
    return getattr(state, slot) if state is not None else None


def _create(session: Session, settings, account: PdsAccount, collection: str, record: dict) -> tuple[str, str]:
    """Write the record on the PDS, then index its create event: (uri, cid)."""
    answer = account.create_record(collection, record)
    uri, cid = answer["uri"], answer["cid"]
    repo, answered_collection, rkey = _split(uri)
    if repo != account.did or answered_collection != collection:
        raise PdsError(502, "InvalidResponse", "createRecord answered with a URI of another repo or collection")
    commit = answer.get("commit") if isinstance(answer.get("commit"), dict) else {}
    _index(session, settings, account.did, {"rev": commit.get("rev"), "operation": "create",
                                             "collection": collection, "rkey": rkey, "record": record, "cid": cid})
    return uri, cid


def _delete(session: Session, settings, account: PdsAccount, collection: str, uri: str) -> None:
    """Delete the record on the PDS, then index its delete event."""
    _, _, rkey = _split(uri)
    account.delete_record(collection, rkey)
    _index(session, settings, account.did, {"operation": "delete", "collection": collection, "rkey": rkey})


def _index(session: Session, settings, did: str, commit: dict) -> list[Changes]:
    """Apply the Jetstream v1 event of a commit we just made, as ingest would; its net changes.

    The live updates it causes are kept in ``session.info["realtime_events"]``: the caller
    publishes them once the transaction has committed (``services.realtime.publish``).
    """
    frame = {"did": did, "time_us": time.time_ns() // 1000, "kind": "commit", "commit": commit}
    event = parse_event(orjson.dumps(frame))
    if isinstance(event, Skip):
        raise ValueError(f"the event of our own {commit['collection']} commit does not parse: {event.reason}")
    lock_index(session)
    changes = apply_events(session, [event], frozenset(settings.cannabis_tags))
    session.info.setdefault(REALTIME_EVENTS, []).extend(collect_events(session, changes, settings.avatar_cdn))
    session.info[REALTIME_EVENTS].extend(read_changed_events(changes))
    session.info.setdefault(NEW_NOTIFICATIONS, []).extend(nid for c in changes for nid in c.notification_ids)
    for account, member in sorted({a: m for c in changes for a, m in c.newly_covered.items()}.items()):
        job_id = request_account_backfill(session, account, member)  # its recent posts, after the commit
        if job_id is not None:
            session.info.setdefault(NEW_BACKFILL_JOBS, []).append(job_id)
    return changes


def _indexed_post(session: Session, uri: str):
    post = session.execute(select(Post.uri, Post.cid, Post.author_did, Post.raw_record)
                           .where(Post.uri == uri)).first()
    if post is None:
        raise NotFound("No such post in the Cannect index")
    return post


def _root_ref(parent) -> dict:
    """The thread root of a reply to ``parent``: the parent's own root, or the parent itself."""
    reply = (parent.raw_record or {}).get("reply")
    root = reply.get("root") if isinstance(reply, dict) else None
    if isinstance(root, dict) and isinstance(root.get("uri"), str) and isinstance(root.get("cid"), str):
        return {"uri": root["uri"], "cid": root["cid"]}
    return {"uri": parent.uri, "cid": parent.cid}


def _post_result(session: Session, settings, member: Member, uri: str | None, cid: str | None,
                 post_uri: str) -> dict:
    views = post_views(session, [post_uri], member.did, settings.avatar_cdn)
    return {"uri": uri, "cid": cid, "post": views[0] if views else None}


def _profile_result(session: Session, settings, member: Member, uri: str | None, cid: str | None,
                    did: str) -> dict:
    views = profile_views(session, [did], member.did, settings.avatar_cdn)
    return {"uri": uri, "cid": cid, "profile": views[0] if views else None}


def _split(uri: str) -> tuple[str, str, str]:
    """(repo DID, collection, rkey) of an AT-URI."""
    parts = uri.removeprefix("at://").split("/")
    if not uri.startswith("at://") or len(parts) != 3 or not all(parts):
        raise PdsError(502, "InvalidResponse", "not a record URI")
    return parts[0], parts[1], parts[2]


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
