"""The records we index, as their lexicons define them, and what of each we keep.

Limits are those of the lexicon JSON in ``bluesky-social/atproto`` (``lexicons/app/bsky/feed/
post.json``, ``feed/like.json``, ``feed/repost.json``, ``graph/follow.json``, ``actor/profile.json``,
``richtext/facet.json``, ``embed/*.json``, ``com/atproto/label/defs.json``, ``com/atproto/repo/
strongRef.json``), except the few marked "ours": arrays the lexicon leaves unbounded get a
bound, so a record cannot carry a hundred thousand facets. ``docs/indexing-rules.md`` lists
every rule.
"""

from __future__ import annotations

from bisect import bisect_left

from services import atproto_syntax as syntax

from .lexicon import Array, Blob, Format, Integer, Invalid, Object, Text, Union
from .names import FOLLOW, LIKE, POST, PROFILE, REPOST, TAG_FEATURE

#: Ours: bounds for arrays the lexicon leaves unbounded.
MAX_FACETS = 1000
MAX_FEATURES = 100
MAX_ASSOCIATED_REFS = 100

DID = Format(syntax.is_did, "DID")
AT_URI = Format(syntax.is_at_uri, "AT-URI")
CID = Format(syntax.is_cid, "CID")
URI = Format(syntax.is_uri, "URI")
LANGUAGE = Format(syntax.is_language, "language")
DATETIME = Format(syntax.is_datetime, "datetime")
BLOB = Blob()

# com.atproto.repo.strongRef, app.bsky.embed.defs#aspectRatio, com.atproto.label.defs#selfLabels
STRONG_REF = Object({"uri": AT_URI, "cid": CID}, ("uri", "cid"))
ASPECT_RATIO = Object({"width": Integer(minimum=1), "height": Integer(minimum=1)}, ("width", "height"))
SELF_LABELS = Object({"values": Array(Object({"val": Text(max_bytes=128)}, ("val",)), 10)}, ("values",))
LABELS = Union({"com.atproto.label.defs#selfLabels": SELF_LABELS})

# app.bsky.richtext.facet
FACET = Object({
    "index": Object({"byteStart": Integer(minimum=0), "byteEnd": Integer(minimum=0)}, ("byteStart", "byteEnd")),
    "features": Array(Union({
        "app.bsky.richtext.facet#mention": Object({"did": DID}, ("did",)),
        "app.bsky.richtext.facet#link": Object({"uri": URI}, ("uri",)),
        TAG_FEATURE: Object({"tag": Text(max_bytes=640, max_graphemes=64)}, ("tag",)),
    }), MAX_FEATURES),
}, ("index", "features"))

# app.bsky.embed.*
IMAGES = Object({"images": Array(Object(
    {"image": BLOB, "alt": Text(), "aspectRatio": ASPECT_RATIO}, ("image", "alt")), 4)}, ("images",))
VIDEO = Object({
    "video": BLOB,
    "captions": Array(Object({"lang": LANGUAGE, "file": BLOB}, ("lang", "file")), 20),
    "alt": Text(), "aspectRatio": ASPECT_RATIO, "presentation": Text(),
}, ("video",))
GALLERY = Object({"items": Array(Union({"app.bsky.embed.gallery#image": Object(
    {"image": BLOB, "alt": Text(), "aspectRatio": ASPECT_RATIO}, ("image", "alt", "aspectRatio"))}), 20)}, ("items",))
EXTERNAL = Object({"external": Object({
    "uri": URI, "title": Text(), "description": Text(), "thumb": BLOB,
    "associatedRefs": Array(STRONG_REF, MAX_ASSOCIATED_REFS),
}, ("uri", "title", "description"))}, ("external",))
RECORD_EMBED = Object({"record": STRONG_REF}, ("record",), name="app.bsky.embed.record")
MEDIA = {"app.bsky.embed.images": IMAGES, "app.bsky.embed.video": VIDEO,
         "app.bsky.embed.gallery": GALLERY, "app.bsky.embed.external": EXTERNAL}
EMBED = Union({**MEDIA, "app.bsky.embed.record": RECORD_EMBED,
               "app.bsky.embed.recordWithMedia": Object({"record": RECORD_EMBED, "media": Union(MEDIA)},
                                                        ("record", "media"))})

# The records. The lexicon requires a post's text and createdAt and a like's createdAt; we
# accept them missing (empty text; the event's time), as the index always has.
POST_RECORD = Object({
    "text": Text(max_bytes=3000, max_graphemes=300),
    "facets": Array(FACET, MAX_FACETS),
    "reply": Object({"root": STRONG_REF, "parent": STRONG_REF}, ("root", "parent")),
    "embed": EMBED,
    "langs": Array(LANGUAGE, 3),
    "labels": LABELS,
    "tags": Array(Text(max_bytes=640, max_graphemes=64), 8),
    "createdAt": DATETIME,
})
SUBJECT_RECORD = Object({"subject": STRONG_REF, "createdAt": DATETIME, "via": STRONG_REF}, ("subject",))
FOLLOW_RECORD = Object({"subject": DID, "createdAt": DATETIME, "via": STRONG_REF}, ("subject",))
PROFILE_RECORD = Object({
    "displayName": Text(max_bytes=640, max_graphemes=64),
    "description": Text(max_bytes=2560, max_graphemes=256),
    "pronouns": Text(max_bytes=200, max_graphemes=20),
    "website": URI,
    "avatar": BLOB, "banner": BLOB,
    "labels": LABELS,
    "joinedViaStarterPack": STRONG_REF, "pinnedPost": STRONG_REF,
    "createdAt": DATETIME,
})


def _record_type(record: dict, collection: str) -> None:
    kind = record.get("$type", collection)
    if kind != collection and kind != f"{collection}#main":
        raise Invalid(f"not {collection}").at("$type")


def slim_post(record: dict) -> dict:
    """The post's lexicon fields (what is stored and served as its record)."""
    _record_type(record, POST)
    slim = POST_RECORD.conform(record)
    text = record.get("text")
    if "facets" in slim and type(text) is str and "\x00" in text:
        _shift_facets(slim["facets"], text)
    if "$type" in record:
        slim["$type"] = POST
    return slim


def _shift_facets(facets: list[dict], raw_text: str) -> None:
    """Move facet byte offsets to the text without its NULs (each one UTF-8 byte)."""
    encoded = raw_text.encode()
    nuls, at = [], encoded.find(0)
    while at != -1:
        nuls.append(at)
        at = encoded.find(0, at + 1)
    for facet in facets:
        index = facet["index"]
        for key in ("byteStart", "byteEnd"):
            index[key] -= bisect_left(nuls, index[key])


def _slim_subject(collection: str):
    def slim(record: dict) -> dict:
        _record_type(record, collection)
        kept = SUBJECT_RECORD.conform(record)
        return {"subject": kept["subject"], "createdAt": kept.get("createdAt")}

    return slim


def slim_follow(record: dict) -> dict:
    _record_type(record, FOLLOW)
    kept = FOLLOW_RECORD.conform(record)
    return {"subject": kept["subject"], "createdAt": kept.get("createdAt")}


def slim_profile(record: dict) -> dict:
    """What the index keeps of a profile: its texts and its images' blob CIDs."""
    _record_type(record, PROFILE)
    kept = PROFILE_RECORD.conform(record)
    return {"displayName": kept.get("displayName"), "description": kept.get("description"),
            "avatar": _blob_cid(kept.get("avatar")), "banner": _blob_cid(kept.get("banner"))}


def _blob_cid(blob: dict | None) -> str | None:
    if blob is None:
        return None
    return blob["ref"]["$link"] if "ref" in blob else blob["cid"]


#: Short collection name -> the function that checks a record and returns what we keep.
SLIMMERS = {"post": slim_post, "like": _slim_subject(LIKE), "repost": _slim_subject(REPOST),
            "follow": slim_follow, "profile": slim_profile}
