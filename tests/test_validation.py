"""The edge: hostile Jetstream events are rejected or cleaned before anything is queued.

``tests/hostile.py`` holds the table of hostile lines and what ``docs/indexing-rules.md`` says
must happen to each; here each one goes through ``parse_event`` and through the reference
model, then through the real listener process, and the queued events through the real worker.
"""

from __future__ import annotations

import asyncio
import copy
import threading
from collections import Counter
from pathlib import Path

import orjson
import pytest
import redis as redis_lib
import websockets
from sqlalchemy import text

from cannect.capture import DEFAULT_START_TIME_US
from cannect.config import DEFAULT_CANNABIS_TAGS
from cannect.embedded import free_port
from harness import System
from hostile import DEFAULT_DIDS, FAMILY, NUL, cid, hostile_cases
from model import CommunityModel
from services import atproto_syntax as syntax
from services import listener_state
from services.jetstream import MAX_DEPTH, Skip, encodes, parse_event
from services.members import add_member
from snapshot import db_snapshot, diff

CASES = hostile_cases()
POST, LIKE, FOLLOW, PROFILE = "app.bsky.feed.post", "app.bsky.feed.like", "app.bsky.graph.follow", "app.bsky.actor.profile"
ALICE = "did:plc:alicealicealicealicealic"
T0 = 1_783_173_600_000_000


def outcome(result) -> str:
    if isinstance(result, Skip):
        return f"rejected:{result.reason}" if result.outcome == "rejected" else result.outcome
    return "kept"


def depth(value) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 0


def strings(value):
    """Every string in a JSON value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def commit_line(collection: str, record, *, did: str = ALICE, time_us: int = T0, rkey: str = "3mpt7ukl2zo4v",
                operation: str = "create") -> bytes:
    return orjson.dumps({"did": did, "time_us": time_us, "kind": "commit", "commit": {
        "rev": "3mpt7ukl2zo4v", "operation": operation, "collection": collection, "rkey": rkey,
        "record": record, "cid": cid("commit", rkey)}})


def kept(line: bytes) -> dict:
    result = parse_event(line)
    assert not isinstance(result, Skip), result
    return result


# ---- the table of hostile lines ------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_hostile_line_is_rejected_or_cleaned_as_the_rules_say(case):
    result = parse_event(case.line)
    assert outcome(result) == case.expected, getattr(result, "detail", None)
    model = CommunityModel([], ["cannabis"])
    assert model.apply_line(case.line) is not case.expected.startswith("rejected"), "the model disagrees"
    if isinstance(result, Skip):
        assert result.time_us in (case.time_us, None)
        return
    encoded = orjson.dumps(result)  # what the listener enqueues
    assert b"\\u0000" not in encoded and depth(result) <= MAX_DEPTH
    assert len(encoded) < 250_000 or case.name == "facets_1000"  # unknown bulk is gone


def test_every_rejection_reason_of_the_rules_is_exercised():
    reasons = {case.expected.split(":", 1)[1] for case in CASES if case.expected.startswith("rejected:")}
    assert reasons >= {"too_large", "invalid_unicode", "malformed_json", "not_an_object", "bad_time_us", "bad_did",
                       "too_deep", "bad_kind", "bad_commit", "bad_operation", "missing_record", "bad_cid",
                       "bad_post_record", "bad_like_record", "bad_repost_record", "bad_follow_record",
                       "bad_profile_record", "bad_identity", "bad_account"}


@pytest.mark.parametrize("levels, expected", [(31, "kept"), (32, "kept"), (33, "rejected:too_deep"),
                                              (200, "rejected:too_deep"), (1000, "rejected:too_deep"),
                                              (1100, "rejected:too_deep")])
@pytest.mark.parametrize("where", ["post", "identity", "account", "unwanted"])
def test_nesting_depth_is_limited_anywhere_in_the_event(levels, expected, where):
    """The event object is level 1: the placeholder below sits at level 3 in each shape."""
    shape = {"post": {"kind": "commit", "commit": {"collection": POST, "operation": "create", "rkey": "a",
                                                   "record": {"text": "x", "deep": "DEEP"}}},
             "identity": {"kind": "identity", "identity": {"handle": "a.test", "x": {"deep": "DEEP"}}},
             "account": {"kind": "account", "account": {"active": True, "x": {"deep": "DEEP"}}},
             "unwanted": {"kind": "commit", "commit": {"collection": "app.bsky.graph.block", "operation": "create",
                                                       "rkey": "a", "record": {"deep": "DEEP"}}}}[where]
    line = orjson.dumps({"did": ALICE, "time_us": T0, **shape})
    line = line.replace(b'"DEEP"', b"[" * (levels - 3) + b"0" + b"]" * (levels - 3))
    result = parse_event(line)
    if expected == "kept" and where == "unwanted":
        expected = "ignored"
    assert outcome(result) == expected


# ---- what is kept ---------------------------------------------------------------------------------


def _case(name: str) -> dict:
    return kept(next(case.line for case in CASES if case.name == name))


def test_nuls_are_removed_from_texts_and_facets_follow():
    assert _case("text_with_nuls")["rec"]["text"] == "#cannabis grows well"
    assert _case("text_only_nuls")["rec"]["text"] == ""
    shifted = _case("facets_with_nul_text_shifted")["rec"]
    assert shifted["text"] == "#cannabis" and shifted["facets"][0]["index"] == {"byteStart": 0, "byteEnd": 9}
    assert _case("facet_tag_with_nul")["rec"]["facets"][0]["features"][0]["tag"] == "cannabis"
    assert _case("tag_with_nul")["rec"]["tags"] == ["weed"]
    assert _case("image_alt_with_nul")["rec"]["embed"]["images"][0]["alt"] == "ab"
    assert _case("label_val_with_nul")["rec"]["labels"]["values"] == [{"val": "nudity"}]
    assert _case("profile_display_name_with_nul")["rec"]["displayName"] == "Buddy"
    assert _case("profile_description_with_nul")["rec"]["description"] == "grows"


def test_multibyte_facet_offsets_shift_by_nul_bytes_only():
    text_with_nuls = "\U0001F33F" + NUL + "é #can" + NUL + "nabis"
    start = len(("\U0001F33F" + NUL + "é ").encode())
    end = len(text_with_nuls.encode())
    rec = kept(commit_line(POST, {"text": text_with_nuls, "facets": [
        {"index": {"byteStart": start, "byteEnd": end}, "features": [{"$type": "app.bsky.richtext.facet#tag",
                                                                      "tag": "cannabis"}]}]}))["rec"]
    assert rec["text"] == "\U0001F33Fé #cannabis"
    index = rec["facets"][0]["index"]
    assert rec["text"].encode()[index["byteStart"]:index["byteEnd"]] == b"#cannabis"


def test_unknown_fields_are_dropped_at_every_level():
    rec = _case("unknown_fields_in_nested_objects")["rec"]
    assert "zzz" not in str(rec) and "junk" not in str(rec) and "secret" not in str(rec) and "more" not in str(rec)
    assert set(rec["reply"]["root"]) == {"uri", "cid"} and set(rec["reply"]["parent"]) == {"uri", "cid"}
    assert set(rec["embed"]["images"][0]) == {"image", "alt"}
    assert set(_case("unknown_top_level_fields")["rec"]) == {"$type", "text", "createdAt", "langs"}
    assert "entities" not in _case("deprecated_entities")["rec"]
    assert set(_case("profile_unknown_fields")["rec"]) == {"displayName", "description", "avatar", "banner"}
    like = _case("like_with_unknown_fields")["rec"]
    assert set(like) == {"subject", "createdAt"} and set(like["subject"]) == {"uri", "cid"}


def test_unknown_union_members_are_left_out_and_known_ones_keep_their_type():
    assert "embed" not in _case("embed_unknown_type")["rec"]
    assert _case("facet_feature_unknown_type")["rec"]["facets"][0]["features"] == []
    assert "labels" not in _case("labels_unknown_type")["rec"]
    assert "media" not in _case("record_with_media_unknown_media")["rec"]["embed"]
    assert _case("record_with_media_unknown_media")["rec"]["embed"]["record"]["$type"] == "app.bsky.embed.record"
    assert _case("embed_main_suffix")["rec"]["embed"]["$type"] == "app.bsky.embed.images"
    assert _case("image_legacy_blob")["rec"]["embed"]["images"][0]["image"] == {"cid": cid("legacy"),
                                                                                "mimeType": "image/jpeg"}


def test_duplicate_keys_the_last_counts():
    assert _case("duplicate_keys_last_wins")["rec"]["text"] == "second, untagged"


def test_identity_handles_are_syntax_checked():
    handles = {name: _case(name)["handle"] for name in (
        "identity_handle_invalid_syntax", "identity_handle_with_nul", "identity_handle_dot_invalid",
        "identity_handle_upper_case", "identity_handle_number")}
    assert handles == {"identity_handle_invalid_syntax": None, "identity_handle_with_nul": None,
                       "identity_handle_dot_invalid": None, "identity_handle_upper_case": "hostile-grower.bsky.social",
                       "identity_handle_number": None}
    event = _case("identity_handle_upper_case")
    assert set(event) == {"t", "did", "k", "handle"}


def test_account_status_must_be_a_known_one():
    event = _case("account_deactivated")
    assert {key: event[key] for key in ("k", "active", "status")} == {"k": "account", "active": False,
                                                                      "status": "deactivated"}


def test_graphemes_not_code_points_are_counted():
    assert _case("text_300_graphemes_of_combining_marks")["rec"]["text"].startswith("#cannabis e\u0301")
    ok = kept(commit_line(PROFILE, {"displayName": FAMILY * 35}, rkey="self"))  # 35 graphemes, 630 bytes
    assert ok["rec"]["displayName"] == FAMILY * 35


# ---- wrong types in every field ------------------------------------------------------------------------

CANDIDATES = {"null": None, "true": True, "int": 7, "float": 1.5, "str": "s", "list": [], "dict": {}}
BLOB = {"$type": "blob", "ref": {"$link": cid("b")}, "mimeType": "image/jpeg", "size": 10}
REF = {"uri": f"at://{ALICE}/{POST}/3mpt7ukl2zo4v", "cid": cid("r")}
FULL_POST = {
    "$type": POST, "text": "full #cannabis", "createdAt": "2026-07-04T14:00:00.000Z", "langs": ["en"],
    "tags": ["weed"], "reply": {"root": REF, "parent": REF},
    "labels": {"$type": "com.atproto.label.defs#selfLabels", "values": [{"val": "nudity"}]},
    "facets": [{"index": {"byteStart": 5, "byteEnd": 14}, "features": [
        {"$type": "app.bsky.richtext.facet#tag", "tag": "cannabis"},
        {"$type": "app.bsky.richtext.facet#mention", "did": ALICE},
        {"$type": "app.bsky.richtext.facet#link", "uri": "https://example.com"}]}],
    "embed": {"$type": "app.bsky.embed.recordWithMedia",
              "record": {"$type": "app.bsky.embed.record", "record": REF},
              "media": {"$type": "app.bsky.embed.images",
                        "images": [{"image": BLOB, "alt": "a", "aspectRatio": {"width": 3, "height": 2}}]}},
}
FULL_PROFILE = {"$type": PROFILE, "displayName": "D", "description": "d", "pronouns": "they", "website": "https://x.test",
                "avatar": BLOB, "banner": BLOB, "pinnedPost": REF, "joinedViaStarterPack": REF,
                "createdAt": "2026-07-04T14:00:00Z",
                "labels": {"$type": "com.atproto.label.defs#selfLabels", "values": [{"val": "x"}]}}
# (record, path, the candidates that stay valid there; every other one breaks the record)
TEXT, LIST, INT, ANY_TEXT = {"str"}, {"list"}, {"int"}, {"str"}
FIELDS = [
    (FULL_POST, ("text",), TEXT), (FULL_POST, ("createdAt",), set()), (FULL_POST, ("langs",), LIST),
    (FULL_POST, ("langs", 0), set()), (FULL_POST, ("tags",), LIST), (FULL_POST, ("tags", 0), TEXT),
    (FULL_POST, ("reply",), set()), (FULL_POST, ("reply", "root"), set()), (FULL_POST, ("reply", "parent", "uri"), set()),
    (FULL_POST, ("reply", "root", "cid"), set()), (FULL_POST, ("labels",), set()), (FULL_POST, ("labels", "values"), LIST),
    (FULL_POST, ("labels", "values", 0), set()), (FULL_POST, ("labels", "values", 0, "val"), TEXT),
    (FULL_POST, ("facets",), LIST), (FULL_POST, ("facets", 0), set()), (FULL_POST, ("facets", 0, "index"), set()),
    (FULL_POST, ("facets", 0, "index", "byteStart"), INT), (FULL_POST, ("facets", 0, "index", "byteEnd"), INT),
    (FULL_POST, ("facets", 0, "features"), LIST), (FULL_POST, ("facets", 0, "features", 0), set()),
    (FULL_POST, ("facets", 0, "features", 0, "tag"), TEXT), (FULL_POST, ("facets", 0, "features", 1, "did"), set()),
    (FULL_POST, ("facets", 0, "features", 2, "uri"), set()), (FULL_POST, ("facets", 0, "features", 0, "$type"), set()),
    (FULL_POST, ("embed",), set()), (FULL_POST, ("embed", "$type"), set()), (FULL_POST, ("embed", "record"), set()),
    (FULL_POST, ("embed", "record", "record"), set()), (FULL_POST, ("embed", "media"), set()),
    (FULL_POST, ("embed", "media", "images"), LIST), (FULL_POST, ("embed", "media", "images", 0), set()),
    (FULL_POST, ("embed", "media", "images", 0, "alt"), TEXT), (FULL_POST, ("embed", "media", "images", 0, "image"), set()),
    (FULL_POST, ("embed", "media", "images", 0, "image", "ref"), set()),
    (FULL_POST, ("embed", "media", "images", 0, "image", "size"), INT),
    (FULL_POST, ("embed", "media", "images", 0, "image", "mimeType"), TEXT),
    (FULL_POST, ("embed", "media", "images", 0, "aspectRatio"), set()),
    (FULL_POST, ("embed", "media", "images", 0, "aspectRatio", "width"), INT),
    (FULL_PROFILE, ("displayName",), TEXT), (FULL_PROFILE, ("description",), TEXT), (FULL_PROFILE, ("pronouns",), TEXT),
    (FULL_PROFILE, ("website",), set()), (FULL_PROFILE, ("avatar",), set()), (FULL_PROFILE, ("banner",), set()),
    (FULL_PROFILE, ("pinnedPost",), set()), (FULL_PROFILE, ("joinedViaStarterPack",), set()),
    (FULL_PROFILE, ("createdAt",), set()), (FULL_PROFILE, ("labels",), set()),
    ({"$type": LIKE, "subject": REF, "createdAt": "2026-07-04T14:00:00Z", "via": REF}, ("subject",), set()),
    ({"$type": LIKE, "subject": REF, "createdAt": "2026-07-04T14:00:00Z", "via": REF}, ("via",), set()),
    ({"$type": LIKE, "subject": REF, "createdAt": "2026-07-04T14:00:00Z"}, ("createdAt",), set()),
    ({"$type": FOLLOW, "subject": ALICE, "createdAt": "2026-07-04T14:00:00Z"}, ("subject",), set()),
    ({"$type": FOLLOW, "subject": ALICE, "createdAt": "2026-07-04T14:00:00Z"}, ("$type",), set()),
]


def _set(record: dict, path: tuple, value) -> dict:
    record = copy.deepcopy(record)
    node = record
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return record


@pytest.mark.parametrize("record, path, valid", FIELDS, ids=[f"{r['$type'].rsplit('.', 1)[1]}:{'.'.join(map(str, p))}"
                                                              for r, p, _ in FIELDS])
def test_wrong_types_in_every_field_break_the_record(record, path, valid):
    collection = record["$type"]
    assert not isinstance(parse_event(commit_line(collection, record, rkey="self")), Skip)
    for name, candidate in CANDIDATES.items():
        result = parse_event(commit_line(collection, _set(record, path, candidate), rkey="self"))
        expected = "kept" if name in valid else f"rejected:bad_{collection.rsplit('.', 1)[1]}_record"
        assert outcome(result) == expected, (name, getattr(result, "detail", None))


def test_a_full_post_keeps_every_lexicon_field():
    rec = kept(commit_line(POST, FULL_POST))["rec"]
    expected = copy.deepcopy(FULL_POST)
    assert rec == expected


def test_rejections_name_the_field_and_the_event_never_its_content():
    result = parse_event(commit_line(POST, _set(FULL_POST, ("embed", "media", "images", 0, "alt"), 5)))
    assert result.reason == "bad_post_record" and result.did == ALICE and result.time_us == T0
    assert result.where == f"{POST}/3mpt7ukl2zo4v" and result.detail == "embed.media.images.0.alt: not a string"
    result = parse_event(commit_line(POST, {"text": "secret words " * 30}))
    assert "secret" not in repr(result)


# ---- identifier syntax ------------------------------------------------------------------------------


@pytest.mark.parametrize("check, good, bad", [
    (syntax.is_did, ["did:plc:z72i7hdynmk6r22z27h6tvur", "did:web:example.com"],
     ["did:plc:", "did:PLC:x", "did:plc:a\x00", "plc:x", "did:plc:a b", "did:plc:x#frag", 5, None]),
    (syntax.is_handle, ["alice.bsky.social", "Alice.Test"], ["alice", "-a.test", "a_b.test", "al\x00.test", "a.1com"]),
    (syntax.is_nsid, ["app.bsky.feed.post"], ["app.bsky", "app bsky.x.y", "app.bsky.feed.post#x", ""]),
    (syntax.is_at_uri, [f"at://{ALICE}/{POST}/3mpt7ukl2zo4v", f"at://{ALICE}"],
     ["https://x.test", f"at://{ALICE}/{POST}/3m\x00", f"at://{ALICE}/{POST}/..", "at://"]),
    (syntax.is_record_key, ["self", "3mpt7ukl2zo4v", "a:b~c"], ["", ".", "..", "a/b", "a b", "x" * 513]),
    (syntax.is_cid, [cid("x")], ["c", "bafy-1234", "bafy\x001234", ""]),
    (syntax.is_datetime, ["2026-07-04T14:00:00Z", "2026-07-04T14:00:00.123456789+02:00", "2026-07-04T14:00:00+00:00"],
     ["2026-07-04T14:00:00", "2026-07-04 14:00:00Z", "2026-02-30T14:00:00Z", "2026-07-04T14:00:00-00:00",
      "2026-07-04T14:00:00Z\x00", "٢٠٢٦-07-04T14:00:00Z"]),
    (syntax.is_language, ["en", "pt-BR", "i-klingon"], ["english", "e", "en\x00", "EN!"]),
    (syntax.is_uri, ["https://example.com/a?b#c", "mailto:a@b.test"], ["no scheme", "https://x.test/\x00", "http:// x"]),
])
def test_identifier_syntax_comes_from_the_sdk(check, good, bad):
    assert all(check(value) for value in good), [v for v in good if not check(v)]
    assert not any(check(value) for value in bad), [v for v in bad if check(v)]


def test_handles_are_normalized_and_reserved_tlds_refused():
    assert syntax.normalize_handle("Alice.Bsky.Social") == "alice.bsky.social"
    assert syntax.normalize_handle("handle.invalid") is None and syntax.normalize_handle("x.local") is None
    assert syntax.is_supported_did("did:plc:z72i7hdynmk6r22z27h6tvur") and not syntax.is_supported_did("did:key:z6Mk")


def test_the_common_datetime_shortcut_agrees_with_the_sdk():
    from hypothesis import given, settings, strategies as st

    pieces = st.sampled_from(["2026", "0000", "9999", "-", "07", "13", "30", "T", "t", " ", "24", "23", ":", "59", "60",
                              ".", "1234567", "5", "Z", "+", "-00:00", "+01:30", "+24:00", "\x00", "٣"])

    @settings(max_examples=400, deadline=None)
    @given(st.lists(pieces, max_size=14).map("".join))
    def agree(value):
        sdk = syntax._is_sdk_datetime(value)
        assert syntax.is_datetime(value) == sdk

    agree()
    for value in ("2026-07-04T14:00:00Z", "2026-07-04T14:00:00.123+05:30", "2026-02-29T00:00:00Z",
                  "2024-02-29T00:00:00Z", "2026-07-04T23:59:60Z"):
        assert syntax.is_datetime(value) == syntax._is_sdk_datetime(value), value


# ---- the listener process and the ingest, end to end --------------------------------------------------------


class RawJetstream:
    """A Jetstream stand-in that sends fixed frames as text frames, byte for byte (invalid
    UTF-8 included, which a real server never sends but a test must), then keeps the socket open."""

    def __init__(self, frames: list[bytes]):
        self.frames, self.port, self.connections = frames, free_port(), 0
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Future | None = None
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        ready.wait(10)
        self.url = f"ws://127.0.0.1:{self.port}/subscribe"

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)

        async def serve():
            self._stop = self._loop.create_future()
            async with websockets.serve(self._handler, "127.0.0.1", self.port, max_size=None):
                ready.set()
                await self._stop

        self._loop.run_until_complete(serve())

    async def _handler(self, ws):
        self.connections += 1
        for frame in self.frames:
            await ws.send(frame, text=True)
        await asyncio.Future()  # stay open like a live tail

    def close(self) -> None:
        self._loop.call_soon_threadsafe(lambda: self._stop.done() or self._stop.set_result(None))
        self._thread.join(10)


@pytest.fixture
def system(env, tmp_path):
    system = System(env, tmp_path)
    yield system
    system.stop_all()


def test_hostile_lines_through_the_listener_and_worker(system, session, redis_url, tmp_path):
    """Every hostile line (invalid UTF-8 frames too) costs only itself: one connection, the
    counters by reason, the kept events applied, the index equal to the model's."""
    lines = [case.line for case in CASES]
    marker_time = max(case.time_us or 0 for case in CASES) + 1_000
    lines.append(orjson.dumps({"did": DEFAULT_DIDS[0], "time_us": marker_time, "kind": "account",
                               "account": {"active": True}}))
    for did in DEFAULT_DIDS:  # members: their posts are indexed, so what was let through shows
        add_member(session, did)
    session.commit()
    server = RawJetstream(lines)
    try:
        system.env.update(JETSTREAM_URL=server.url, INGEST_BATCH_MS="50")
        system.start_listener()
        system.start_worker()
        system.wait_until_applied(marker_time, timeout=240)
        assert server.connections == 1, system.log("listener")
    finally:
        server.close()
    stats = listener_state.counters(redis_lib.Redis.from_url(redis_url))
    expected = Counter(case.expected for case in CASES)
    assert stats.totals["seen"] == len(lines)
    assert stats.totals["rejected"] == sum(n for name, n in expected.items() if name.startswith("rejected:"))
    for name, count in expected.items():
        if name.startswith("rejected:"):
            assert stats.reasons[("rejected", name.split(":", 1)[1])] == count, name
    log = system.log("listener")
    assert "lorem ipsum" not in log and "Hostile Client" not in log and "\\x00" not in log
    assert "rejected event: bad_kind (did=did:plc:" in log  # the event's name; at most 20 lines a minute
    assert log.count("rejected event:") == 20

    model = CommunityModel([(did, None) for did in DEFAULT_DIDS], DEFAULT_CANNABIS_TAGS)
    model.apply_lines(lines)
    session.rollback()
    actual = db_snapshot(session)
    for snap in (actual, expected_snap := model.snapshot()):
        for profile in snap["profiles"].values():
            profile.pop("handle")  # handles are verified asynchronously (identity), not by this edge
    assert not diff(expected_snap, actual), diff(expected_snap, actual)
    assert actual["posts"], "the members' valid posts were indexed"
    no_nul = session.scalar(text("SELECT count(*) FROM posts WHERE strpos(raw_record::text, '\\u0000') > 0"))
    assert no_nul == 0


def test_listener_counters_are_exposed_as_prometheus_metrics(api, redis_url):
    client = redis_lib.Redis.from_url(redis_url)
    listener_state.save(client, 5, (1, 1), {"seen": 10, "kept": 6, "ignored": 1, "rejected": 3,
                                            "rejected:bad_did": 2, "rejected:too_deep": 1, "ignored:unknown_kind": 1})
    body = api.get("/metrics").get_data(as_text=True)
    assert 'cannect_listener_events_total{outcome="seen"} 10.0' in body
    assert 'cannect_listener_events_total{outcome="rejected"} 3.0' in body
    assert 'cannect_listener_skipped_events_total{outcome="rejected",reason="bad_did"} 2.0' in body
    assert 'cannect_listener_skipped_events_total{outcome="ignored",reason="unknown_kind"} 1.0' in body


def test_what_cannot_be_encoded_is_recognised():
    """The listener drops (and counts as ``unencodable``) an event that fails this check."""
    assert encodes({"t": 1, "rec": {"text": "fine"}})
    assert not encodes({"t": 1, "rec": {"text": "\ud800"}})  # a lone surrogate in a str
    deep: list = []
    node = deep
    for _ in range(300):
        node.append([])
        node = node[0]
    assert not encodes({"t": 1, "rec": deep})
    assert not encodes({"t": 1, "rec": {"n": 2**70}})


def test_the_stored_corpus_is_what_the_generator_writes(tmp_path):
    from hostile import write_corpus

    write_corpus(tmp_path / "hostile.jsonl", DEFAULT_START_TIME_US + 3_600_000_000, list(DEFAULT_DIDS))
    data = Path(__file__).resolve().parent / "data"
    assert (tmp_path / "hostile.jsonl").read_bytes() == (data / "hostile.jsonl").read_bytes()
    assert (tmp_path / "hostile.expected.json").read_text() == (data / "hostile.expected.json").read_text()
