"""The reference model's reading of the edge rules of ``docs/indexing-rules.md``.

"Rejected events", "Records" and "Cleaning", implemented again, literally and one function per
definition, without the production code (``services/jetstream``): only the standard library,
orjson, the ``regex`` module and the atproto SDK's syntax validators, which the rules name.
:func:`accept_line` returns the cleaned event in Jetstream's own shape, or None when the rules
reject it; ``tests/model.py`` applies what it returns.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable

import orjson
import regex
from atproto_client.models import string_formats

MAX_DEPTH = 32
MAX_EVENT_BYTES = 1_000_000
OUR_COLLECTIONS = ("app.bsky.feed.post", "app.bsky.feed.like", "app.bsky.feed.repost",
                   "app.bsky.graph.follow", "app.bsky.actor.profile")
ACCOUNT_STATUSES = ("takendown", "suspended", "deleted", "deactivated", "desynchronized", "throttled")
GRAPHEME = regex.compile(r"\X")  # a grapheme is at least one code point
DISALLOWED_TLDS = ("alt", "arpa", "example", "internal", "invalid", "local", "localhost", "onion")


class Broken(Exception):
    """The record breaks a rule of "Records"."""


def _sdk(validator) -> Callable[[Any], bool]:
    check = validator.__wrapped__  # the SDK validator without its pydantic opt-in gate

    @lru_cache(maxsize=100_000)  # the model replays long captures: identifiers recur
    def valid_string(value: str) -> bool:
        try:
            check(value, None)
            return True
        except ValueError:
            return False

    return lambda value: isinstance(value, str) and valid_string(value)


valid_did = _sdk(string_formats.validate_did)
valid_nsid = _sdk(string_formats.validate_nsid)
valid_rkey = _sdk(string_formats.validate_record_key)
valid_cid = _sdk(string_formats.validate_cid)
valid_at_uri = _sdk(string_formats.validate_at_uri)
valid_language = _sdk(string_formats.validate_language)
valid_datetime = _sdk(string_formats.validate_datetime)
valid_handle = _sdk(string_formats.validate_handle)
_sdk_uri = _sdk(string_formats.validate_uri)


def valid_uri(value: Any) -> bool:
    """The SDK's URI syntax, and no control character (C0, DEL, C1)."""
    return _sdk_uri(value) and not any(ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f for c in value)


# ---- the event ------------------------------------------------------------------------------


def nests_deeper_than(value: Any, limit: int) -> bool:
    """Arrays/objects nested more than ``limit`` levels (``value`` itself is level 1)."""
    if not isinstance(value, (dict, list)):
        return False
    if limit == 0:
        return True
    children = value.values() if isinstance(value, dict) else value
    return any(nests_deeper_than(child, limit - 1) for child in children)


def accept_line(line: str | bytes) -> dict | None:
    """The cleaned event, or None when "Rejected events" rejects it."""
    size = len(line.encode("utf-8", "surrogatepass")) if isinstance(line, str) else len(line)
    if size > MAX_EVENT_BYTES:
        return None
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None  # not JSON, not UTF-8, lone surrogates, or nested beyond the decoder's limit
    if not isinstance(event, dict):
        return None
    time_us = event.get("time_us")
    if isinstance(time_us, bool) or not isinstance(time_us, int) or not 1 <= time_us <= 2**63 - 1:
        return None
    if not valid_did(event.get("did")):
        return None
    brackets = line.count(b"{") + line.count(b"[") if isinstance(line, bytes) else line.count("{") + line.count("[")
    if brackets > MAX_DEPTH and nests_deeper_than(event, MAX_DEPTH):  # depth <= brackets
        return None
    kind = event.get("kind")
    if kind == "commit":
        commit = _accept_commit(event.get("commit"))
        return None if commit is None else {**event, "commit": commit}
    if kind == "identity":
        identity = event.get("identity")
        if not isinstance(identity, dict):
            return None
        return {**event, "identity": {"handle": clean_handle(identity.get("handle"))}}
    if kind == "account":
        account = event.get("account")
        if not isinstance(account, dict) or not isinstance(account.get("active"), bool):
            return None
        status = account.get("status")
        if status is not None and status not in ACCOUNT_STATUSES:
            return None
        return event
    if not isinstance(kind, str):
        return None
    return event  # another kind: ignored


def clean_handle(handle: Any) -> str | None:
    if not valid_handle(handle):
        return None
    handle = handle.lower()
    return None if handle.split(".")[-1] in DISALLOWED_TLDS else handle


def _accept_commit(commit: Any) -> dict | None:
    if not isinstance(commit, dict):
        return None
    collection, rkey, operation = commit.get("collection"), commit.get("rkey"), commit.get("operation")
    if not isinstance(collection, str) or not isinstance(rkey, str) or not valid_nsid(collection):
        return None
    if collection not in OUR_COLLECTIONS:
        return commit  # ignored
    if not valid_rkey(rkey) or operation not in ("create", "update", "delete"):
        return None
    if operation == "delete":
        return commit
    record = commit.get("record")
    if not isinstance(record, dict):
        return None
    cid = commit.get("cid")
    if cid is not None and not valid_cid(cid):
        return None
    try:
        cleaned = RECORDS[collection](record)
    except Broken:
        return None
    return {**commit, "record": cleaned}


# ---- values -----------------------------------------------------------------------------------


def text(value: Any, max_bytes: int | None = None, max_graphemes: int | None = None) -> str:
    if not isinstance(value, str):
        raise Broken("not text")
    value = value.replace("\x00", "")
    if max_bytes is not None and len(value.encode("utf-8")) > max_bytes:
        raise Broken("too many bytes")
    if max_graphemes is not None and len(value) > max_graphemes and len(GRAPHEME.findall(value)) > max_graphemes:
        raise Broken("too many graphemes")
    return value


def integer(value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise Broken("not an integer in range")
    return value


def checked(value: Any, valid: Callable[[Any], bool]) -> str:
    if not valid(value):
        raise Broken("bad syntax")
    return value


def obj(value: Any, *required: str) -> dict:
    if not isinstance(value, dict):
        raise Broken("not an object")
    for name in required:
        if name not in value:
            raise Broken(f"{name} missing")
    return value


def array(value: Any, max_items: int, item: Callable[[Any], Any]) -> list:
    if not isinstance(value, list) or len(value) > max_items:
        raise Broken("not an array, or too long")
    kept = [item(element) for element in value]
    return [element for element in kept if element is not None]


def optional(value: dict, out: dict, name: str, rule: Callable[[Any], Any]) -> None:
    """Copy ``value[name]``, checked and cleaned, when present (left out when the rule drops it)."""
    if name in value:
        kept = rule(value[name])
        if kept is not None:
            out[name] = kept


def union(value: Any, members: dict[str, Callable[[dict], dict]]) -> dict | None:
    """A union member cleaned, or None for a well-formed type we do not know."""
    obj(value)
    kind = value.get("$type")
    if not isinstance(kind, str):
        raise Broken("no $type")
    if kind.endswith("#main"):
        kind = kind[: -len("#main")]
    if kind in members:
        return {**members[kind](value), "$type": kind}
    nsid, _, name = kind.partition("#")
    if not valid_nsid(nsid) or (name and not name.isidentifier()):
        raise Broken("bad $type")
    return None


def strong_ref(value: Any) -> dict:
    obj(value, "uri", "cid")
    return {"uri": checked(value["uri"], valid_at_uri), "cid": checked(value["cid"], valid_cid)}


def aspect_ratio(value: Any) -> dict:
    obj(value, "width", "height")
    return {"width": integer(value["width"], 1), "height": integer(value["height"], 1)}


def blob(value: Any) -> dict:
    obj(value)
    if value.get("$type") == "blob":
        ref = value.get("ref")
        if not isinstance(ref, dict):
            raise Broken("blob without ref")
        return {"$type": "blob", "ref": {"$link": checked(ref.get("$link"), valid_cid)},
                "mimeType": text(value.get("mimeType")), "size": integer(value.get("size"), 0)}
    if "$type" not in value and "cid" in value:
        return {"cid": checked(value["cid"], valid_cid), "mimeType": text(value.get("mimeType"))}
    raise Broken("not a blob")


def self_labels(value: dict) -> dict:
    obj(value, "values")

    def label(item):
        obj(item, "val")
        return {"val": text(item["val"], 128)}

    return {"values": array(value["values"], 10, label)}


def labels(value: Any) -> dict | None:
    return union(value, {"com.atproto.label.defs#selfLabels": self_labels})


def created_at(value: Any) -> str:
    return checked(value, valid_datetime)


# ---- posts ------------------------------------------------------------------------------------


def facet(value: Any) -> dict:
    obj(value, "index", "features")
    index = obj(value["index"], "byteStart", "byteEnd")
    features = {
        "app.bsky.richtext.facet#mention": lambda f: {"did": checked(obj(f, "did")["did"], valid_did)},
        "app.bsky.richtext.facet#link": lambda f: {"uri": checked(obj(f, "uri")["uri"], valid_uri)},
        "app.bsky.richtext.facet#tag": lambda f: {"tag": text(obj(f, "tag")["tag"], 640, 64)},
    }
    return {"index": {"byteStart": integer(index["byteStart"], 0), "byteEnd": integer(index["byteEnd"], 0)},
            "features": array(value["features"], 100, lambda f: union(f, features))}


def image(value: Any) -> dict:
    obj(value, "image", "alt")
    out = {"image": blob(value["image"]), "alt": text(value["alt"])}
    optional(value, out, "aspectRatio", aspect_ratio)
    return out


def images(value: dict) -> dict:
    obj(value, "images")
    return {"images": array(value["images"], 4, image)}


def video(value: dict) -> dict:
    obj(value, "video")
    out = {"video": blob(value["video"])}

    def caption(item):
        obj(item, "lang", "file")
        return {"lang": checked(item["lang"], valid_language), "file": blob(item["file"])}

    optional(value, out, "captions", lambda v: array(v, 20, caption))
    optional(value, out, "alt", text)
    optional(value, out, "aspectRatio", aspect_ratio)
    optional(value, out, "presentation", text)
    return out


def gallery(value: dict) -> dict:
    obj(value, "items")

    def gallery_image(item):
        obj(item, "image", "alt", "aspectRatio")
        return {"image": blob(item["image"]), "alt": text(item["alt"]), "aspectRatio": aspect_ratio(item["aspectRatio"])}

    return {"items": array(value["items"], 20, lambda item: union(item, {"app.bsky.embed.gallery#image": gallery_image}))}


def external(value: dict) -> dict:
    obj(value, "external")
    ext = obj(value["external"], "uri", "title", "description")
    out = {"uri": checked(ext["uri"], valid_uri), "title": text(ext["title"]), "description": text(ext["description"])}
    optional(ext, out, "thumb", blob)
    optional(ext, out, "associatedRefs", lambda v: array(v, 100, strong_ref))
    return {"external": out}


def record_embed(value: Any) -> dict:
    obj(value, "record")
    return {"record": strong_ref(value["record"])}


MEDIA = {"app.bsky.embed.images": images, "app.bsky.embed.video": video,
         "app.bsky.embed.gallery": gallery, "app.bsky.embed.external": external}


def record_with_media(value: dict) -> dict:
    obj(value, "record", "media")
    inner = record_embed(value["record"])
    if value["record"].get("$type") in ("app.bsky.embed.record", "app.bsky.embed.record#main"):
        inner["$type"] = "app.bsky.embed.record"
    out = {"record": inner}
    optional(value, out, "media", lambda m: union(m, MEDIA))
    return out


def embed(value: Any) -> dict | None:
    return union(value, {**MEDIA, "app.bsky.embed.record": record_embed,
                         "app.bsky.embed.recordWithMedia": record_with_media})


def _record_type(record: dict, collection: str) -> None:
    if "$type" in record and record["$type"] not in (collection, collection + "#main"):
        raise Broken("wrong $type")


def post(record: dict) -> dict:
    _record_type(record, "app.bsky.feed.post")
    out: dict = {}
    optional(record, out, "text", lambda v: text(v, 3000, 300))
    optional(record, out, "facets", lambda v: array(v, 1000, facet))
    if "reply" in record:
        reply = obj(record["reply"], "root", "parent")
        out["reply"] = {"root": strong_ref(reply["root"]), "parent": strong_ref(reply["parent"])}
    optional(record, out, "embed", embed)
    optional(record, out, "langs", lambda v: array(v, 3, lambda lang: checked(lang, valid_language)))
    optional(record, out, "labels", labels)
    optional(record, out, "tags", lambda v: array(v, 8, lambda tag: text(tag, 640, 64)))
    optional(record, out, "createdAt", created_at)
    if "$type" in record:
        out["$type"] = "app.bsky.feed.post"
    raw_text = record.get("text")
    if "facets" in out and isinstance(raw_text, str) and "\x00" in raw_text:
        encoded = raw_text.encode("utf-8")
        for item in out["facets"]:
            for key in ("byteStart", "byteEnd"):
                item["index"][key] -= encoded[: item["index"][key]].count(0)
    return out


def _subject_record(collection: str, subject_rule: Callable[[Any], Any]) -> Callable[[dict], dict]:
    def rule(record: dict) -> dict:
        _record_type(record, collection)
        obj(record, "subject")
        out = {"subject": subject_rule(record["subject"])}
        optional(record, out, "createdAt", created_at)
        optional(record, out, "via", strong_ref)
        return out

    return rule


def profile(record: dict) -> dict:
    _record_type(record, "app.bsky.actor.profile")
    out: dict = {}
    optional(record, out, "displayName", lambda v: text(v, 640, 64))
    optional(record, out, "description", lambda v: text(v, 2560, 256))
    optional(record, out, "pronouns", lambda v: text(v, 200, 20))
    optional(record, out, "website", lambda v: checked(v, valid_uri))
    optional(record, out, "avatar", blob)
    optional(record, out, "banner", blob)
    optional(record, out, "labels", labels)
    optional(record, out, "joinedViaStarterPack", strong_ref)
    optional(record, out, "pinnedPost", strong_ref)
    optional(record, out, "createdAt", created_at)
    return out


RECORDS: dict[str, Callable[[dict], dict]] = {
    "app.bsky.feed.post": post,
    "app.bsky.feed.like": _subject_record("app.bsky.feed.like", strong_ref),
    "app.bsky.feed.repost": _subject_record("app.bsky.feed.repost", strong_ref),
    "app.bsky.graph.follow": _subject_record("app.bsky.graph.follow", lambda v: checked(v, valid_did)),
    "app.bsky.actor.profile": profile,
}
