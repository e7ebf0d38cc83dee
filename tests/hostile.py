"""Hostile Jetstream lines: what any account (or a broken relay) can put on the wire.

Every case is one JSONL line with what the edge must do with it (``docs/indexing-rules.md``,
"Rejected events" and "Cleaning"): ``rejected:<reason>``, ``kept`` (possibly cleaned) or
``ignored``. The posts carry cannabis tags and the accounts are the DIDs given, so that an
event the edge wrongly let through would show in the index. Each line gets its own
``time_us`` (``base_time_us``, then every ``spacing_us``), so the corpus can be mixed into a
normal capture. Used by ``tests/test_validation.py`` and written, as ``tests/data/hostile.jsonl``, by::

    python tests/hostile.py --out tests/data/hostile.jsonl [--base-time-us T] [--dids D1,D2,...]

(with ``.expected.json`` beside it: each line's time_us, case name and expected outcome). The
written corpus leaves out the few lines that are not UTF-8: a WebSocket text frame cannot
carry them, so through the replay server they would not arrive as written.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Collection

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cannect.capture import DEFAULT_START_TIME_US, tid  # noqa: E402

POST, LIKE, REPOST = "app.bsky.feed.post", "app.bsky.feed.like", "app.bsky.feed.repost"
FOLLOW, PROFILE = "app.bsky.graph.follow", "app.bsky.actor.profile"
TAG = "app.bsky.richtext.facet#tag"
#: The DIDs of the corpus in tests/data (did:plc, 24 base32 characters, like real ones).
DEFAULT_DIDS = ("did:plc:h7ostileaaaaaaaaaaaaaaa2", "did:plc:h7ostilebbbbbbbbbbbbbbb3",
                "did:plc:h7ostilecccccccccccccccc", "did:plc:h7ostileddddddddddddddd4")
MAX_EVENT_BYTES = 1_000_000
NUL = "\x00"
FAMILY = "\U0001F468\u200d\U0001F469\u200d\U0001F467"  # one grapheme, 18 UTF-8 bytes


@dataclass(frozen=True)
class Case:
    name: str
    line: bytes
    expected: str   # "kept", "ignored" or "rejected:<reason>"
    time_us: int | None  # the line's time_us, when it has a valid one


def cid(*parts: Any) -> str:
    """A syntactically valid CID (``bafyrei`` + 52 base32 characters), stable for its parts."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    bits = int.from_bytes(digest, "big")
    return "bafyrei" + "".join(alphabet[(bits >> (5 * i)) & 31] for i in range(52))


def blob(*parts: Any) -> dict:
    return {"$type": "blob", "ref": {"$link": cid("blob", *parts)}, "mimeType": "image/jpeg", "size": 123_456}


def nested(depth: int, leaf: Any = 1) -> Any:
    """``depth`` arrays inside each other around ``leaf``."""
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def deep_json(depth: int) -> dict[bytes, bytes]:
    """A ``replace`` turning the string "DEEP" into ``depth`` nested arrays (orjson itself
    refuses to write more than 254 levels)."""
    return {b'"DEEP"': b"[" * depth + b"1" + b"]" * depth}


class _Builder:
    def __init__(self, base_time_us: int, dids: list[str], spacing_us: int, taken: Collection[int] = ()):
        self.dids, self.spacing, self.taken = list(dids), spacing_us, frozenset(taken)
        self.next_time = base_time_us
        self.cases: list[Case] = []
        self.n = 0

    # -- identities of the next event ------------------------------------------------------

    def stamp(self) -> tuple[int, str, str]:
        while self.next_time in self.taken:
            self.next_time += 1
        time_us, did = self.next_time, self.dids[self.n % len(self.dids)]
        self.next_time += self.spacing
        self.n += 1
        return time_us, did, tid(time_us - 50_000, self.n % 1024)

    def uri(self, collection: str = POST, k: int = 1) -> str:
        did = self.dids[(self.n + k) % len(self.dids)]
        return f"at://{did}/{collection}/{tid(self.next_time - 10_000_000 * k, k)}"

    def ref(self, k: int = 1) -> dict:
        target = self.uri(POST, k)
        return {"uri": target, "cid": cid(target)}

    def created_at(self, time_us: int) -> str:
        seconds, micros = divmod(time_us - 300_000, 1_000_000)
        return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{micros // 1000:03d}Z"

    # -- lines -------------------------------------------------------------------------------

    def add(self, name: str, expected: str, line: bytes, time_us: int | None) -> None:
        assert b"\n" not in line and b"\r" not in line, name
        self.cases.append(Case(name, line, expected, time_us))

    def event(self, name: str, expected: str, body: dict, replace: dict[bytes, bytes] | None = None) -> None:
        """An event built from ``body`` (did/time_us filled in unless given); ``replace`` swaps
        byte strings of the encoded line for what orjson would never write (raw bytes, escapes)."""
        time_us, did, _ = self.stamp()
        body = {"did": did, "time_us": time_us, **body}
        line = orjson.dumps(body)
        for old, new in (replace or {}).items():
            assert old in line, (name, old)
            line = line.replace(old, new)
        time_us = body["time_us"]
        self.add(name, expected, line, time_us if type(time_us) is int and 0 < time_us < 2**63 else None)

    def commit(self, name: str, expected: str, collection: str, record: Any, *, operation: str = "create",
               rkey: str | None = None, commit_fields: dict | None = None, replace: dict | None = None,
               did: str | None = None) -> None:
        time_us, default_did, default_rkey = self.stamp()
        commit = {"rev": tid(time_us, 7), "operation": operation, "collection": collection,
                  "rkey": default_rkey if rkey is None else rkey}
        if operation != "delete":
            commit["record"] = record
            commit["cid"] = cid(name)
        commit.update(commit_fields or {})
        body = {"did": did or default_did, "time_us": time_us, "kind": "commit", "commit": commit}
        line = orjson.dumps(body)
        for old, new in (replace or {}).items():
            assert old in line, (name, old)
            line = line.replace(old, new)
        self.add(name, expected, line, time_us)

    def post(self, name: str, expected: str, text: Any = "Growing well this week #cannabis", *,
             replace: dict | None = None, **fields) -> None:
        time_us = self.next_time
        record = {"$type": POST, "text": text, "createdAt": self.created_at(time_us), "langs": ["en"], **fields}
        if text is None:
            del record["text"]
        self.commit(name, expected, POST, record, replace=replace)


def hostile_cases(base_time_us: int = DEFAULT_START_TIME_US + 3_600_000_000, dids: list[str] | tuple = DEFAULT_DIDS,
                  spacing_us: int = 1_000, taken_time_us: Collection[int] = ()) -> list[Case]:
    """Every hostile case, in a fixed order, with unique time_us values from ``base_time_us``.

    ``taken_time_us``: time_us values of the capture the corpus is mixed into; none is reused
    (the ingest skips an event whose time_us it has just applied, as a replay).
    """
    b = _Builder(base_time_us, list(dids), spacing_us, taken_time_us)
    rej = "rejected:"
    tag_facet = lambda tag, start=0, end=8: {"index": {"byteStart": start, "byteEnd": end},  # noqa: E731
                                             "features": [{"$type": TAG, "tag": tag}]}

    # -- the frame, JSON and Unicode ----------------------------------------------------------
    time_us, did, _ = b.stamp()
    b.add("truncated_json", rej + "malformed_json", f'{{"did":"{did}","time_us":{time_us},"kind":"com'.encode(), time_us)
    time_us, did, _ = b.stamp()
    b.add("not_an_object", rej + "not_an_object", f'[{{"did":"{did}","time_us":{time_us}}}]'.encode(), time_us)
    b.post("invalid_utf8_in_text", rej + "invalid_unicode", "bad bytes XX here #cannabis",
           replace={b"XX": b"\xff\xfe"})
    b.post("overlong_utf8_in_text", rej + "invalid_unicode", "overlong XX #cannabis", replace={b"XX": b"\xc0\xaf"})
    b.post("utf8_encoded_surrogate_in_text", rej + "invalid_unicode", "XX #cannabis", replace={b"XX": b"\xed\xa0\x80"})
    b.post("lone_high_surrogate_escape", rej + "invalid_unicode", "XX #cannabis", replace={b"XX": rb"\ud800"})
    b.post("lone_low_surrogate_escape", rej + "invalid_unicode", "XX #cannabis", replace={b"XX": rb"\udc00"})
    b.post("reversed_surrogate_pair", rej + "invalid_unicode", "XX #cannabis", replace={b"XX": rb"\ude00\ud83d"})
    b.post("valid_surrogate_pair_escape", "kept", "XX #cannabis", replace={b"XX": rb"\ud83c\udf3f"})
    b.post("too_large", rej + "too_large", "#cannabis " + "x" * MAX_EVENT_BYTES)
    b.post("duplicate_keys_last_wins", "kept", "DUPLICATE", replace={
        b'"text":"DUPLICATE"': b'"text":"#cannabis first","text":"second, untagged"'})

    # -- the envelope -----------------------------------------------------------------------------
    b.event("time_us_string", rej + "bad_time_us", {"time_us": "1783173600000000", "kind": "identity", "identity": {}})
    b.event("time_us_float", rej + "bad_time_us", {"time_us": 1.7831736e15, "kind": "identity", "identity": {}})
    b.event("time_us_true", rej + "bad_time_us", {"time_us": True, "kind": "identity", "identity": {}})
    b.event("time_us_zero", rej + "bad_time_us", {"time_us": 0, "kind": "identity", "identity": {}})
    b.event("time_us_negative", rej + "bad_time_us", {"time_us": -5, "kind": "identity", "identity": {}})
    b.event("time_us_beyond_bigint", rej + "bad_time_us", {"time_us": 2**63, "kind": "identity", "identity": {}})
    b.event("did_missing", rej + "bad_did", {"did": None, "kind": "identity", "identity": {}})
    b.event("did_with_nul", rej + "bad_did", {"did": "did:plc:abc" + NUL, "kind": "identity", "identity": {}})
    b.event("did_with_space", rej + "bad_did", {"did": "did:plc:a b", "kind": "identity", "identity": {}})
    b.event("did_is_a_handle", rej + "bad_did", {"did": "alice.bsky.social", "kind": "identity", "identity": {}})
    b.event("kind_missing", rej + "bad_kind", {"identity": {}})
    b.event("kind_number", rej + "bad_kind", {"kind": 7})
    b.event("kind_unknown", "ignored", {"kind": "sync", "sync": {"blocks": "AAAA"}})

    # -- nesting ------------------------------------------------------------------------------------
    # The event is level 1, commit 2, record 3: an unknown record field holding n arrays reaches 3 + n.
    for depth in (31, 32, 33, 200, 1000, 1100):
        expected = "kept" if depth <= 32 else rej + "too_deep"
        b.post(f"depth_{depth}_in_unknown_post_field", expected, deep="DEEP", replace=deep_json(depth - 3))
    b.post("deep_reply_record", rej + "too_deep", "@someone deep reply #cannabis",
           reply={"root": b.ref(1), "parent": b.ref(1), "thread": "DEEP"}, replace=deep_json(300))
    b.event("depth_40_in_identity", rej + "too_deep", {"kind": "identity", "identity": {"handle": "x.test", "x": nested(40)}})
    b.commit("depth_40_in_unwanted_collection", rej + "too_deep", "app.bsky.graph.block", {"subject": nested(40)})

    # -- commits -------------------------------------------------------------------------------------
    b.event("commit_not_an_object", rej + "bad_commit", {"kind": "commit", "commit": "create"})
    b.commit("collection_not_an_nsid", rej + "bad_commit", "app bsky feed post", {"text": "#cannabis"})
    b.commit("collection_with_nul", rej + "bad_commit", POST + NUL, {"text": "#cannabis"})
    b.commit("unwanted_collection", "ignored", "app.bsky.graph.block", {"subject": dids[0]})
    b.commit("rkey_dotdot", rej + "bad_commit", POST, {"text": "#cannabis"}, rkey="..")
    b.commit("rkey_with_slash", rej + "bad_commit", POST, {"text": "#cannabis"}, rkey="a/b")
    b.commit("rkey_with_nul", rej + "bad_commit", POST, {"text": "#cannabis"}, rkey="3k" + NUL)
    b.commit("rkey_empty", rej + "bad_commit", POST, {"text": "#cannabis"}, rkey="")
    b.commit("operation_unknown", rej + "bad_operation", POST, {"text": "#cannabis"}, operation="resync")
    b.commit("create_without_record", rej + "missing_record", POST, None, commit_fields={"record": None})
    b.commit("cid_with_nul", rej + "bad_cid", POST, {"text": "#cannabis"}, commit_fields={"cid": "bafyrei" + NUL + "x"})
    b.commit("cid_number", rej + "bad_cid", POST, {"text": "#cannabis"}, commit_fields={"cid": 12345678})
    b.commit("delete_of_post", "kept", POST, None, operation="delete")

    # -- posts: text ----------------------------------------------------------------------------------
    b.post("text_3000_bytes", "kept", "#cannabis " + FAMILY * 166 + "ab")  # 10 + 2988 + 2 bytes, 178 graphemes
    b.post("text_3001_bytes", rej + "bad_post_record", "#cannabis " + FAMILY * 166 + "abc")
    b.post("text_301_graphemes", rej + "bad_post_record", "#cannabis " + "x" * 291)
    b.post("text_300_graphemes_of_combining_marks", "kept", "#cannabis " + "e\u0301" * 290)  # 590 code points
    b.post("text_200_emoji_families_3600_bytes", rej + "bad_post_record", FAMILY * 200 + " #cannabis")
    b.post("text_750kb_tagged", rej + "bad_post_record", "#cannabis " + "lorem ipsum " * 64_000)
    b.post("text_not_a_string", rej + "bad_post_record", 420)
    b.post("text_with_nuls", "kept", "#cann" + NUL + "abis grows" + NUL * 3 + " well")
    b.post("text_only_nuls", "kept", NUL * 10)
    b.post("text_missing", "kept", None, embed={"$type": "app.bsky.embed.images", "images": [
        {"image": blob("missing-text"), "alt": "a plant"}]}, tags=["cannabis"])

    # -- posts: facets --------------------------------------------------------------------------------
    b.post("facet_negative_offset", rej + "bad_post_record", facets=[tag_facet("cannabis", -1, 9)])
    b.post("facet_offset_string", rej + "bad_post_record", facets=[tag_facet("cannabis", "0", 9)])
    b.post("facet_offset_bool", rej + "bad_post_record", facets=[tag_facet("cannabis", True, 9)])
    b.post("facet_offset_float", rej + "bad_post_record", facets=[tag_facet("cannabis", 0.5, 9)])
    b.post("facet_offset_huge", "kept", facets=[tag_facet("cannabis", 0, 2**64 - 1)])
    b.post("facet_without_index", rej + "bad_post_record", facets=[{"features": [{"$type": TAG, "tag": "cannabis"}]}])
    b.post("facet_features_not_array", rej + "bad_post_record",
           facets=[{"index": {"byteStart": 0, "byteEnd": 9}, "features": {"$type": TAG, "tag": "cannabis"}}])
    b.post("facet_feature_without_type", rej + "bad_post_record",
           facets=[{"index": {"byteStart": 0, "byteEnd": 9}, "features": [{"tag": "cannabis"}]}])
    b.post("facet_feature_type_not_nsid", rej + "bad_post_record",
           facets=[{"index": {"byteStart": 0, "byteEnd": 9}, "features": [{"$type": "not a type", "tag": "x"}]}])
    feature = lambda **fields: [{"index": {"byteStart": 0, "byteEnd": 5}, "features": [fields]}]  # noqa: E731
    b.post("facet_feature_unknown_type", "kept", "plain text, the tag is in an unknown feature",
           facets=feature(**{"$type": "com.example.richtext#tag", "tag": "cannabis"}))
    b.post("facet_mention_bad_did", rej + "bad_post_record",
           facets=feature(**{"$type": "app.bsky.richtext.facet#mention", "did": "@alice"}))
    b.post("facet_link_with_nul", rej + "bad_post_record",
           facets=feature(**{"$type": "app.bsky.richtext.facet#link", "uri": "https://x.test/" + NUL}))
    b.post("facet_link_not_uri", rej + "bad_post_record",
           facets=feature(**{"$type": "app.bsky.richtext.facet#link", "uri": "no scheme"}))
    b.post("facet_tag_65_graphemes", rej + "bad_post_record", facets=[tag_facet("c" * 65)])
    b.post("facet_tag_648_bytes", rej + "bad_post_record", facets=[tag_facet(FAMILY * 36)])  # 36 graphemes
    b.post("facet_tag_with_nul", "kept", "plain untagged text", facets=[tag_facet("can" + NUL + "nabis")])
    b.post("facet_tag_not_string", rej + "bad_post_record", facets=[tag_facet(["cannabis"])])
    b.post("facets_1001", rej + "bad_post_record", facets=[tag_facet("cannabis")] * 1001)
    b.post("facets_1000", "kept", facets=[tag_facet("cannabis")] * 1000)
    b.post("facet_with_101_features", rej + "bad_post_record",
           facets=[{"index": {"byteStart": 0, "byteEnd": 9}, "features": [{"$type": TAG, "tag": "cannabis"}] * 101}])
    b.post("facets_not_array", rej + "bad_post_record", facets={"0": tag_facet("cannabis")})
    b.post("facets_with_nul_text_shifted", "kept", NUL + NUL + "#cannabis", facets=[tag_facet("cannabis", 2, 11)])

    # -- posts: tags, langs, labels, createdAt, reply ------------------------------------------------
    b.post("tags_9", rej + "bad_post_record", "untagged", tags=["cannabis"] * 9)
    b.post("tags_8", "kept", "untagged", tags=["cannabis"] * 8)
    b.post("tag_65_graphemes", rej + "bad_post_record", "untagged", tags=["w" * 65])
    b.post("tag_not_string", rej + "bad_post_record", "untagged", tags=[420])
    b.post("tag_with_nul", "kept", "untagged", tags=["we" + NUL + "ed"])
    b.post("tags_huge_array", rej + "bad_post_record", "untagged", tags=["cannabis"] * 50_000)
    b.post("langs_4", rej + "bad_post_record", langs=["en", "de", "fr", "es"])
    b.post("langs_huge_array", rej + "bad_post_record", langs=["en"] * 20_000)
    b.post("lang_invalid", rej + "bad_post_record", langs=["english!"])
    b.post("lang_with_nul", rej + "bad_post_record", langs=["en" + NUL])
    b.post("langs_not_array", rej + "bad_post_record", langs="en")
    b.post("labels_11_values", rej + "bad_post_record",
           labels={"$type": "com.atproto.label.defs#selfLabels", "values": [{"val": "nudity"}] * 11})
    b.post("label_val_129_bytes", rej + "bad_post_record",
           labels={"$type": "com.atproto.label.defs#selfLabels", "values": [{"val": "x" * 129}]})
    b.post("label_val_with_nul", "kept",
           labels={"$type": "com.atproto.label.defs#selfLabels", "values": [{"val": "nud" + NUL + "ity"}]})
    b.post("labels_unknown_type", "kept", labels={"$type": "com.example.labels", "values": [{"val": "x"}]})
    b.post("labels_without_type", rej + "bad_post_record", labels={"values": [{"val": "porn"}]})
    b.post("created_at_invalid", rej + "bad_post_record", createdAt="yesterday")
    b.post("created_at_with_nul", rej + "bad_post_record", createdAt="2026-07-04T14:00:00Z" + NUL)
    b.post("created_at_without_timezone", rej + "bad_post_record", createdAt="2026-07-04T14:00:00")
    b.post("created_at_number", rej + "bad_post_record", createdAt=1783173600)
    b.post("created_at_far_future", "kept", createdAt="9999-12-31T23:59:59Z")
    b.post("reply_parent_uri_with_nul", rej + "bad_post_record", "reply #cannabis",
           reply={"root": b.ref(2), "parent": {"uri": b.uri(POST, 2) + NUL, "cid": cid("p")}})
    b.post("reply_parent_not_at_uri", rej + "bad_post_record", "reply #cannabis",
           reply={"root": b.ref(2), "parent": {"uri": "https://bsky.app/profile/x/post/y", "cid": cid("p")}})
    b.post("reply_without_root", rej + "bad_post_record", "reply #cannabis", reply={"parent": b.ref(2)})
    b.post("reply_ref_without_cid", rej + "bad_post_record", "reply #cannabis",
           reply={"root": b.ref(2), "parent": {"uri": b.uri(POST, 2)}})
    b.post("reply_not_object", rej + "bad_post_record", "reply #cannabis", reply=b.uri(POST, 2))
    b.post("record_type_of_another_collection", rej + "bad_post_record", **{"$type": LIKE})
    b.post("record_not_an_object", rej + "missing_record", replace={b'"record":{': b'"record":[{', b',"cid":': b'],"cid":'})

    # -- posts: embeds ---------------------------------------------------------------------------------
    image = lambda alt="a plant", **extra: {"image": blob(alt), "alt": alt, **extra}  # noqa: E731
    b.post("images_5", rej + "bad_post_record", embed={"$type": "app.bsky.embed.images", "images": [image()] * 5})
    b.post("images_4", "kept", embed={"$type": "app.bsky.embed.images", "images": [image()] * 4})
    b.post("image_without_alt", rej + "bad_post_record",
           embed={"$type": "app.bsky.embed.images", "images": [{"image": blob("no-alt")}]})
    b.post("image_alt_with_nul", "kept", embed={"$type": "app.bsky.embed.images", "images": [image("a" + NUL + "b")]})
    images = lambda *items: {"$type": "app.bsky.embed.images", "images": list(items)}  # noqa: E731
    b.post("image_blob_without_ref", rej + "bad_post_record",
           embed=images({"image": {"$type": "blob", "mimeType": "image/png", "size": 1}, "alt": ""}))
    b.post("image_blob_cid_with_nul", rej + "bad_post_record", embed=images(
        {"image": {"$type": "blob", "ref": {"$link": "bafy" + NUL}, "mimeType": "image/png", "size": 1}, "alt": ""}))
    b.post("image_mime_type_with_nul", "kept", embed={"$type": "app.bsky.embed.images", "images": [
        {"image": {**blob("m"), "mimeType": "image/" + NUL + "png"}, "alt": ""}]})
    b.post("image_legacy_blob", "kept",
           embed=images({"image": {"cid": cid("legacy"), "mimeType": "image/jpeg"}, "alt": ""}))
    b.post("image_aspect_ratio_zero", rej + "bad_post_record",
           embed={"$type": "app.bsky.embed.images", "images": [image(aspectRatio={"width": 0, "height": 10})]})
    b.post("embed_unknown_type", "kept", embed={"$type": "com.example.embed.poll", "options": ["yes", "no"]})
    b.post("embed_main_suffix", "kept", embed={"$type": "app.bsky.embed.images#main", "images": [image()]})
    b.post("embed_without_type", rej + "bad_post_record", embed={"images": [image()]})
    b.post("embed_not_object", rej + "bad_post_record", embed=[{"$type": "app.bsky.embed.images", "images": []}])
    b.post("embed_record_bad_uri", rej + "bad_post_record",
           embed={"$type": "app.bsky.embed.record", "record": {"uri": "at://" + NUL, "cid": cid("q")}})
    b.post("embed_record_of_a_feed", "kept",
           embed={"$type": "app.bsky.embed.record", "record": {"uri": b.uri("app.bsky.feed.generator", 3), "cid": cid("f")}})
    b.post("record_with_media_without_media", rej + "bad_post_record",
           embed={"$type": "app.bsky.embed.recordWithMedia", "record": {"$type": "app.bsky.embed.record", "record": b.ref(3)}})
    b.post("record_with_media_unknown_media", "kept",
           embed={"$type": "app.bsky.embed.recordWithMedia", "record": {"$type": "app.bsky.embed.record", "record": b.ref(3)},
                  "media": {"$type": "com.example.embed.audio", "track": "x"}})
    b.post("video_captions_21", rej + "bad_post_record",
           embed={"$type": "app.bsky.embed.video", "video": blob("v"), "captions": [{"lang": "en", "file": blob("c")}] * 21})
    b.post("video_alt_with_nul", "kept", embed={"$type": "app.bsky.embed.video", "video": blob("v"), "alt": "clip" + NUL})
    b.post("gallery_21_items", rej + "bad_post_record", embed={"$type": "app.bsky.embed.gallery", "items": [
        {"$type": "app.bsky.embed.gallery#image", "image": blob("g"), "alt": "",
         "aspectRatio": {"width": 1, "height": 1}}] * 21})
    b.post("external_uri_with_nul", rej + "bad_post_record", embed={"$type": "app.bsky.embed.external", "external": {
        "uri": "https://example.com/" + NUL, "title": "t", "description": "d"}})
    b.post("external_title_with_nul", "kept", embed={"$type": "app.bsky.embed.external", "external": {
        "uri": "https://example.com/a", "title": "t" + NUL, "description": "d"}})

    # -- posts: unknown fields ---------------------------------------------------------------------------
    b.post("unknown_top_level_fields", "kept", via="Hostile Client", bridgyOriginalText="<p>hi</p>", extra={"a": [1, 2]})
    b.post("unknown_field_500kb", "kept", blob_of_junk="j" * 500_000)
    b.post("unknown_fields_in_nested_objects", "kept",
           reply={"root": {**b.ref(4), "junk": "x" * 1000}, "parent": {**b.ref(4), "$type": "com.atproto.repo.strongRef"}},
           facets=[{**tag_facet("cannabis"), "junk": [1, 2, 3]}],
           embed={"$type": "app.bsky.embed.images", "images": [image(secret="x" * 2000)], "more": {"a": 1}})
    b.post("deprecated_entities", "kept", entities=[{"index": {"start": 0, "end": 1}, "type": "mention", "value": "x"}])

    # -- likes, reposts, follows ----------------------------------------------------------------------------
    now = lambda: b.created_at(b.next_time)  # noqa: E731
    b.commit("like_subject_uri_with_nul", rej + "bad_like_record", LIKE,
             {"$type": LIKE, "subject": {"uri": b.uri(POST, 5) + NUL, "cid": cid("s")}, "createdAt": now()})
    b.commit("like_subject_without_cid", rej + "bad_like_record", LIKE,
             {"$type": LIKE, "subject": {"uri": b.uri(POST, 5)}, "createdAt": now()})
    b.commit("like_subject_string", rej + "bad_like_record", LIKE,
             {"$type": LIKE, "subject": b.uri(POST, 5), "createdAt": now()})
    b.commit("like_subject_cid_with_nul", rej + "bad_like_record", LIKE,
             {"$type": LIKE, "subject": {"uri": b.uri(POST, 5), "cid": "bafy" + NUL}, "createdAt": now()})
    b.commit("like_subject_not_at_uri", rej + "bad_like_record", LIKE,
             {"$type": LIKE, "subject": {"uri": "https://bsky.app", "cid": cid("s")}, "createdAt": now()})
    b.commit("like_created_at_number", rej + "bad_like_record", LIKE,
             {"$type": LIKE, "subject": b.ref(5), "createdAt": 5})
    b.commit("like_via_bad", rej + "bad_like_record", LIKE,
             {"$type": LIKE, "subject": b.ref(5), "createdAt": now(), "via": {"uri": "x"}})
    b.commit("like_with_unknown_fields", "kept", LIKE,
             {"$type": LIKE, "subject": {**b.ref(5), "x": NUL}, "createdAt": now(), "junk": "y" * 10_000})
    b.commit("repost_subject_uri_with_nul", rej + "bad_repost_record", REPOST,
             {"$type": REPOST, "subject": {"uri": b.uri(POST, 5) + NUL, "cid": cid("s")}, "createdAt": now()})
    b.commit("follow_subject_with_nul", rej + "bad_follow_record", FOLLOW,
             {"$type": FOLLOW, "subject": dids[0] + NUL, "createdAt": now()})
    b.commit("follow_subject_handle", rej + "bad_follow_record", FOLLOW,
             {"$type": FOLLOW, "subject": "alice.bsky.social", "createdAt": now()})
    b.commit("follow_subject_number", rej + "bad_follow_record", FOLLOW, {"$type": FOLLOW, "subject": 42, "createdAt": now()})
    b.commit("follow_subject_missing", rej + "bad_follow_record", FOLLOW, {"$type": FOLLOW, "createdAt": now()})
    b.commit("follow_type_of_like", rej + "bad_follow_record", FOLLOW, {"$type": LIKE, "subject": dids[0], "createdAt": now()})

    # -- profiles ------------------------------------------------------------------------------------
    profile = lambda **fields: {"$type": PROFILE, "createdAt": now(), **fields}  # noqa: E731
    b.commit("profile_display_name_65_graphemes", rej + "bad_profile_record", PROFILE, profile(displayName="n" * 65),
             rkey="self")
    b.commit("profile_display_name_648_bytes", rej + "bad_profile_record", PROFILE,
             profile(displayName=FAMILY * 36), rkey="self")
    b.commit("profile_description_2574_bytes", rej + "bad_profile_record", PROFILE,
             profile(description=FAMILY * 143), rkey="self")
    b.commit("profile_description_with_nul", "kept", PROFILE, profile(description="grows" + NUL), rkey="self")
    b.commit("profile_description_257_graphemes", rej + "bad_profile_record", PROFILE,
             profile(description="d" * 257), rkey="self")
    b.commit("profile_display_name_with_nul", "kept", PROFILE, profile(displayName="Bud" + NUL + "dy"), rkey="self")
    b.commit("profile_avatar_bad_blob", rej + "bad_profile_record", PROFILE, profile(avatar={"$type": "blob"}), rkey="self")
    b.commit("profile_pinned_post_bad", rej + "bad_profile_record", PROFILE,
             profile(pinnedPost={"uri": "x", "cid": "y"}), rkey="self")
    b.commit("profile_website_bad", rej + "bad_profile_record", PROFILE, profile(website="javascript alert(1)"), rkey="self")
    b.commit("profile_labels_unknown_type", "kept", PROFILE, profile(labels={"$type": "com.example.l"}), rkey="self")
    b.commit("profile_unknown_fields", "kept", PROFILE, profile(displayName="Grower", theme={"x": "y" * 5000}), rkey="self")

    # -- identity and account -------------------------------------------------------------------------
    b.event("identity_not_object", rej + "bad_identity", {"kind": "identity", "identity": "alice.test"})
    b.event("identity_handle_invalid_syntax", "kept", {"kind": "identity", "identity": {"handle": "not a handle!"}})
    b.event("identity_handle_with_nul", "kept", {"kind": "identity", "identity": {"handle": "alice" + NUL + ".test"}})
    b.event("identity_handle_dot_invalid", "kept", {"kind": "identity", "identity": {"handle": "handle.invalid"}})
    b.event("identity_handle_upper_case", "kept", {"kind": "identity", "identity": {"handle": "Hostile-Grower.Bsky.Social"}})
    b.event("identity_handle_number", "kept", {"kind": "identity", "identity": {"handle": 5}})
    b.event("account_not_object", rej + "bad_account", {"kind": "account", "account": None})
    b.event("account_unknown_status", rej + "bad_account",
            {"kind": "account", "account": {"active": False, "status": "banned"}})
    b.event("account_status_with_nul", rej + "bad_account",
            {"kind": "account", "account": {"active": False, "status": "deleted" + NUL}})
    b.event("account_status_list", rej + "bad_account",
            {"kind": "account", "account": {"active": False, "status": ["deleted"]}})
    b.event("account_active_string", rej + "bad_account", {"kind": "account", "account": {"active": "false"}})
    b.event("account_deactivated", "kept", {"kind": "account", "account": {"active": False, "status": "deactivated"}})
    return b.cases


def is_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def hostile_lines(base_time_us: int, dids: list[str], spacing_us: int = 1_000, text_frames: bool = True,
                  taken_time_us: Collection[int] = ()) -> list[bytes]:
    """The lines alone, for mixing into a capture. ``text_frames``: leave out the lines that are
    not UTF-8, which a WebSocket text frame cannot carry (the replay server repairs them)."""
    return [case.line for case in hostile_cases(base_time_us, dids, spacing_us, taken_time_us)
            if not text_frames or is_utf8(case.line)]


def write_corpus(path: Path, base_time_us: int, dids: list[str], spacing_us: int = 1_000,
                 text_frames: bool = True) -> list[Case]:
    cases = [case for case in hostile_cases(base_time_us, dids, spacing_us) if not text_frames or is_utf8(case.line)]
    path.write_bytes(b"".join(case.line + b"\n" for case in cases))
    expected = [{"time_us": case.time_us, "name": case.name, "expected": case.expected} for case in cases]
    path.with_suffix(".expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--base-time-us", type=int, default=DEFAULT_START_TIME_US + 3_600_000_000)
    parser.add_argument("--spacing-us", type=int, default=1_000)
    parser.add_argument("--dids", default=",".join(DEFAULT_DIDS), help="comma-separated DIDs the events come from")
    parser.add_argument("--with-invalid-utf8", action="store_true",
                        help="keep the lines that are not UTF-8 (only for readers that take raw bytes)")
    args = parser.parse_args()
    cases = write_corpus(args.out, args.base_time_us, args.dids.split(","), args.spacing_us,
                         text_frames=not args.with_invalid_utf8)
    print(f"{len(cases)} hostile lines written to {args.out}")


if __name__ == "__main__":
    main()
