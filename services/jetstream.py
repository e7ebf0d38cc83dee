"""Jetstream v1 events: parse, validate and slim them for the ingest queue.

The listener calls :func:`parse_event` on every frame. It must never raise: real streams
carry unknown collections and fields, missing optional fields, and now and then garbage.
An event comes back as a compact dict (the wire format of ``ingest`` messages), or as a
:class:`Skip` saying why it was dropped: ``ignored`` for things we do not use, ``rejected``
for things that are broken.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

import orjson

POST = "app.bsky.feed.post"
LIKE = "app.bsky.feed.like"
REPOST = "app.bsky.feed.repost"
FOLLOW = "app.bsky.graph.follow"
PROFILE = "app.bsky.actor.profile"

#: Collection NSID -> the short name used in ingest messages.
SHORT_NAMES = {POST: "post", LIKE: "like", REPOST: "repost", FOLLOW: "follow", PROFILE: "profile"}
NSIDS = {short: nsid for nsid, short in SHORT_NAMES.items()}
OPERATIONS = {"create": "c", "update": "u", "delete": "d"}
PURGE_STATUSES = frozenset({"deleted", "takendown"})

TAG_FEATURE = "app.bsky.richtext.facet#tag"
INLINE_TAG = re.compile(r"(?:^|\s)#(\w+)")


@dataclass(frozen=True, slots=True)
class Skip:
    """Why an event was not forwarded: ``outcome`` is ``ignored`` or ``rejected``."""

    outcome: str
    reason: str
    time_us: int | None = None


def _reject(reason: str, time_us: int | None = None) -> Skip:
    return Skip("rejected", reason, time_us)


def parse_event(raw: str | bytes, max_bytes: int = 1_000_000) -> dict | Skip:
    """Turn one Jetstream frame into a slim ingest event, or say why not."""
    if len(raw) > max_bytes:
        return _reject("too_large")
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _reject("malformed_json")
    if not isinstance(event, dict):
        return _reject("not_an_object")
    did, time_us, kind = event.get("did"), event.get("time_us"), event.get("kind")
    if not isinstance(time_us, int) or isinstance(time_us, bool) or time_us <= 0:
        return _reject("bad_time_us")
    if not isinstance(did, str) or not did.startswith("did:"):
        return _reject("bad_did", time_us)
    if kind == "commit":
        return _parse_commit(did, time_us, event.get("commit"))
    if kind == "identity":
        identity = event.get("identity") if isinstance(event.get("identity"), dict) else {}
        handle = identity.get("handle")
        return {"t": time_us, "did": did, "k": "identity",
                "handle": handle.lower() if isinstance(handle, str) and handle else None}
    if kind == "account":
        account = event.get("account")
        if not isinstance(account, dict):
            return _reject("bad_account", time_us)
        status = account.get("status")
        return {"t": time_us, "did": did, "k": "account", "active": bool(account.get("active")),
                "status": status if isinstance(status, str) else None}
    return Skip("ignored", "unknown_kind", time_us)


def _parse_commit(did: str, time_us: int, commit) -> dict | Skip:
    if not isinstance(commit, dict):
        return _reject("bad_commit", time_us)
    collection, operation, rkey = commit.get("collection"), commit.get("operation"), commit.get("rkey")
    if not isinstance(collection, str) or not isinstance(rkey, str) or not rkey:
        return _reject("bad_commit", time_us)
    short = SHORT_NAMES.get(collection)
    if short is None:
        return Skip("ignored", "unwanted_collection", time_us)
    op = OPERATIONS.get(operation)
    if op is None:
        return _reject("bad_operation", time_us)
    event = {"t": time_us, "did": did, "k": "commit", "col": short, "op": op, "rkey": rkey}
    if op == "d":
        return event
    record = commit.get("record")
    if not isinstance(record, dict):
        return _reject("missing_record", time_us)
    slim = _SLIMMERS[short](record)
    if slim is None:
        return _reject(f"bad_{short}_record", time_us)
    cid = commit.get("cid")
    event["cid"] = cid if isinstance(cid, str) else None
    event["rec"] = slim
    return event


def _slim_post(record: dict) -> dict | None:
    text = record.get("text", "")
    return record if isinstance(text, str) else None


def _slim_subject_ref(record: dict) -> dict | None:
    subject = record.get("subject")
    if not isinstance(subject, dict) or not isinstance(subject.get("uri"), str):
        return None
    cid = subject.get("cid")
    return {"subject": {"uri": subject["uri"], "cid": cid if isinstance(cid, str) else None},
            "createdAt": record.get("createdAt")}


def _slim_follow(record: dict) -> dict | None:
    subject = record.get("subject")
    if not isinstance(subject, str) or not subject.startswith("did:"):
        return None
    return {"subject": subject, "createdAt": record.get("createdAt")}


def _blob_cid(blob) -> str | None:
    if isinstance(blob, dict):
        ref = blob.get("ref")
        if isinstance(ref, dict) and isinstance(ref.get("$link"), str):
            return ref["$link"]
        if isinstance(blob.get("cid"), str):  # legacy blob shape
            return blob["cid"]
    return None


def _text_or_none(value) -> str | None:
    return value if isinstance(value, str) else None


def _slim_profile(record: dict) -> dict:
    return {"displayName": _text_or_none(record.get("displayName")),
            "description": _text_or_none(record.get("description")),
            "avatar": _blob_cid(record.get("avatar")), "banner": _blob_cid(record.get("banner"))}


_SLIMMERS = {"post": _slim_post, "like": _slim_subject_ref, "repost": _slim_subject_ref,
             "follow": _slim_follow, "profile": _slim_profile}


def record_uri(did: str, short_collection: str, rkey: str) -> str:
    return f"at://{did}/{NSIDS[short_collection]}/{rkey}"


def uri_collection(uri: str) -> str | None:
    """The collection NSID of an AT-URI, or None if it is not one."""
    parts = uri.split("/", 4)
    return parts[3] if len(parts) >= 4 and uri.startswith("at://") else None


def post_tags(record: dict) -> set[str]:
    """Every hashtag of a post, lower-cased: facet tags, the ``tags`` array, inline ``#words``."""
    tags: set[str] = set()
    facets = record.get("facets")
    for facet in facets if isinstance(facets, list) else ():
        features = facet.get("features") if isinstance(facet, dict) else None
        for feature in features if isinstance(features, list) else ():
            if isinstance(feature, dict) and feature.get("$type") == TAG_FEATURE and isinstance(feature.get("tag"), str):
                tags.add(feature["tag"].lstrip("#").lower())
    extra = record.get("tags")
    for tag in extra if isinstance(extra, list) else ():
        if isinstance(tag, str):
            tags.add(tag.lstrip("#").lower())
    text = record.get("text")
    if isinstance(text, str) and "#" in text:
        tags.update(match.lower() for match in INLINE_TAG.findall(text))
    return tags


def parse_datetime(value, fallback_time_us: int) -> datetime:
    """A record's ``createdAt``, parsed leniently; the event's own time when it is unusable."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=timezone.utc)
            if 1990 <= parsed.year <= 2100:
                return parsed
        except ValueError:
            pass
    return datetime.fromtimestamp(fallback_time_us / 1_000_000, tz=timezone.utc)


def reply_refs(record: dict) -> tuple[str | None, str | None]:
    """(parent URI, root URI) of a reply post, or (None, None)."""
    reply = record.get("reply")
    if not isinstance(reply, dict):
        return None, None

    def ref_uri(key):
        ref = reply.get(key)
        return ref["uri"] if isinstance(ref, dict) and isinstance(ref.get("uri"), str) else None

    return ref_uri("parent"), ref_uri("root")


def embed_summary(record: dict) -> tuple[dict | None, str | None, str | None, int]:
    """(embed, embed type, quoted post URI, media count) of a post record."""
    embed = record.get("embed")
    if not isinstance(embed, dict):
        return None, None, None, 0
    kind = str(embed.get("$type", "")).removeprefix("app.bsky.embed.")
    quoted, media = None, embed
    if kind == "record":
        quoted = _dig(embed, "record", "uri")
    elif kind == "recordWithMedia":
        quoted = _dig(embed, "record", "record", "uri")
        media = embed.get("media") if isinstance(embed.get("media"), dict) else {}
    if quoted is not None and uri_collection(quoted) != POST:
        quoted = None  # feeds, lists and starter packs can be embedded too
    media_kind = str(media.get("$type", "")).removeprefix("app.bsky.embed.")
    images = media.get("images")
    count = len(images) if media_kind == "images" and isinstance(images, list) else int(media_kind == "video")
    embed_type = {"images": "images", "video": "video", "external": "external", "record": "quote",
                  "recordWithMedia": "quote_with_media"}.get(kind, kind or None)
    return embed, embed_type, quoted, count


def _dig(value, *keys):
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value if isinstance(value, str) else None
