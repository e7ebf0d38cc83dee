"""Property tests of ``parse_event``: whatever arrives, it answers, and what it forwards is safe.

For any bytes, any JSON-like structure in any field, and random mutations of real Jetstream
events: ``parse_event`` never raises (nor reports ``parser_error``, which would be a bug); an
event it returns encodes with orjson, nests at most 32 levels, holds no NUL, and holds only
lexicon fields; and the reference model (``tests/model_edge.py``, written separately from the
rules) rejects exactly the events ``parse_event`` rejects and cleans posts the same way.
"""

from __future__ import annotations

import copy
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from model_edge import accept_line
from services.jetstream import MAX_DEPTH, Skip, parse_event

SAMPLES = Path(__file__).resolve().parent / "data" / "jetstream-samples"
SAMPLE_LINES = [line for path in sorted(SAMPLES.glob("*.jsonl")) for line in path.read_bytes().splitlines() if line]
SAMPLE_EVENTS = [orjson.loads(line) for line in SAMPLE_LINES]
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: Every field name the lexicons define for what we keep (docs/indexing-rules.md, "Records").
RECORD_KEYS = {
    "$type", "text", "facets", "reply", "embed", "langs", "labels", "tags", "createdAt",    # post
    "index", "byteStart", "byteEnd", "features", "did", "uri", "tag",                       # facets
    "root", "parent", "cid", "values", "val",                                              # refs, labels
    "images", "image", "alt", "aspectRatio", "width", "height", "ref", "$link", "mimeType", "size",
    "video", "captions", "lang", "file", "presentation", "items", "external", "title", "description",
    "thumb", "associatedRefs", "record", "media",                                           # embeds
    "subject", "displayName", "avatar", "banner",                                           # likes, follows, profiles
}
EVENT_KEYS = {"t", "did", "k", "col", "op", "rkey", "cid", "rec", "handle", "active", "status"}

json_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2**63, max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40),
    st.sampled_from(["\x00", "did:plc:z72i7hdynmk6r22z27h6tvur", "app.bsky.feed.post", "app.bsky.embed.images",
                     "app.bsky.richtext.facet#tag", "blob", "#cannabis", "2026-07-04T14:00:00Z", "en",
                     "at://did:plc:z72i7hdynmk6r22z27h6tvur/app.bsky.feed.post/3mpt7ukl2zo4v"]))
json_values = st.recursive(json_leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=5),
    st.dictionaries(st.sampled_from(sorted(RECORD_KEYS | {"junk", "", "\x00"})) | st.text(max_size=8), inner, max_size=6)),
    max_leaves=40)


def check_event(result) -> None:
    """The properties of every result of ``parse_event``."""
    if isinstance(result, Skip):
        assert result.outcome in ("ignored", "rejected") and result.reason != "parser_error", result
        return
    encoded = orjson.dumps(result)
    assert b"\\u0000" not in encoded
    assert set(result) <= EVENT_KEYS
    assert nesting(result) <= MAX_DEPTH
    assert keys(result.get("rec", {})) <= RECORD_KEYS


def nesting(value) -> int:
    if isinstance(value, dict):
        return 1 + max(map(nesting, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(nesting, value), default=0)
    return 0


def keys(value) -> set:
    if isinstance(value, dict):
        return set(value).union(*(keys(item) for item in value.values()))
    if isinstance(value, list):
        return set().union(*(keys(item) for item in value))
    return set()


def agree_with_the_model(line: bytes, result) -> None:
    cleaned = accept_line(line)
    assert (cleaned is None) == (isinstance(result, Skip) and result.outcome == "rejected"), (line[:300], result)
    if cleaned is not None and not isinstance(result, Skip) and result.get("col") == "post" and result["op"] != "d":
        assert result["rec"] == cleaned["commit"]["record"]


@FUZZ
@given(st.binary(max_size=300))
def test_any_bytes(raw):
    check_event(parse_event(raw))


@FUZZ
@given(st.text(max_size=200))
def test_any_text(raw):
    check_event(parse_event(raw))


@FUZZ
@given(st.sampled_from(["app.bsky.feed.post", "app.bsky.feed.like", "app.bsky.feed.repost", "app.bsky.graph.follow",
                        "app.bsky.actor.profile"]), json_values)
def test_any_record(collection, record):
    line = orjson.dumps({"did": "did:plc:z72i7hdynmk6r22z27h6tvur", "time_us": 1_783_173_600_000_000, "kind": "commit",
                         "commit": {"operation": "create", "collection": collection, "rkey": "3mpt7ukl2zo4v",
                                    "cid": "bafyreibjifzpqj6o6wcq3hejh7y4z4z2vmiklkvykc57tw3pcbx3kxifpm",
                                    "record": record}})
    result = parse_event(line)
    check_event(result)
    agree_with_the_model(line, result)


@FUZZ
@given(json_values)
def test_any_event(event):
    try:
        line = orjson.dumps(event)
    except TypeError:
        assume(False)
    result = parse_event(line)
    check_event(result)
    agree_with_the_model(line, result)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, prefix + (index,))


def _mutate(event, path, how, value):
    event = copy.deepcopy(event)
    if not path:
        return value if how == "replace" else event
    node = event
    for step in path[:-1]:
        node = node[step]
    last = path[-1]
    if how == "replace":
        node[last] = value
    elif how == "delete" and isinstance(node, dict):
        del node[last]
    elif how == "nul" and isinstance(node[last], str):
        node[last] = node[last][:3] + "\x00" + node[last][3:]
    elif how == "deepen":
        for _ in range(value if isinstance(value, int) and 0 < value < 60 else 31):
            node[last] = [node[last]]
    elif how == "extra" and isinstance(node[last], dict):
        node[last]["zzUnknown"] = value
    return event


@FUZZ
@given(st.sampled_from(SAMPLE_EVENTS), st.data(), st.sampled_from(["replace", "delete", "nul", "deepen", "extra"]),
       json_values)
def test_mutations_of_real_events(event, data, how, value):
    path = data.draw(st.sampled_from(list(_paths(event))))
    mutated = _mutate(event, path, how, value)
    try:
        line = orjson.dumps(mutated)
    except TypeError:
        assume(False)
    result = parse_event(line)
    check_event(result)
    agree_with_the_model(line, result)


@pytest.mark.parametrize("line", SAMPLE_LINES[:40] + SAMPLE_LINES[-20:])
def test_real_events_are_kept_as_they_are(line):
    result = parse_event(line)
    check_event(result)
    agree_with_the_model(line, result)
    if not isinstance(result, Skip) and result.get("col") == "post" and result["op"] != "d":
        assert result["rec"] == orjson.loads(line)["commit"]["record"]  # real posts hold lexicon fields only
