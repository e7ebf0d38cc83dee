"""The synthetic capture generator: exact shape, determinism, and the situations it promises.

Checks read the written file back (not the generator's internals), as ingest will.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from cannect.capture import CANNABIS_TAGS, DEFAULT_START_TIME_US, generate_capture
from cannect.config import DEFAULT_CANNABIS_TAGS

pytestmark = pytest.mark.timeout(120)

DID = re.compile(r"^did:plc:[a-z2-7]{24}$")
TID = re.compile(r"^[2-7a-j][2-7a-z]{12}$")
CID = re.compile(r"^bafyrei[a-z2-7]{52}$")
INLINE_TAG = re.compile(r"(?:^|\s)#(\w+)")  # the rule of docs/indexing-rules.md
CANNABIS = set(DEFAULT_CANNABIS_TAGS)
POST, LIKE, REPOST, FOLLOW = ("app.bsky.feed.post", "app.bsky.feed.like",
                              "app.bsky.feed.repost", "app.bsky.graph.follow")


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """20,000 events: large enough for every scripted story, the takedown included."""
    path = tmp_path_factory.mktemp("capture") / "big.jsonl"
    meta = generate_capture(str(path), 20_000, seed=3)
    return meta, read(path), path


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    path = tmp_path_factory.mktemp("capture") / "small.jsonl"
    meta = generate_capture(str(path), 2_000, seed=11)
    return meta, read(path)


def commits(events, collection=None, op=None):
    return [
        e for e in events if e["kind"] == "commit"
        and (collection is None or e["commit"]["collection"] == collection)
        and (op is None or e["commit"]["operation"] == op)
    ]


def uri(event) -> str:
    c = event["commit"]
    return f"at://{event['did']}/{c['collection']}/{c['rkey']}"


def tags_of(record: dict) -> set[str]:
    """All tags of a post as the indexing rules define them, lower-cased."""
    found = [t for t in record.get("tags", [])]
    for facet in record.get("facets", []):
        found += [f["tag"] for f in facet["features"] if f["$type"].endswith("#tag")]
    found += INLINE_TAG.findall(record["text"])
    return {t.lstrip("#").lower() for t in found}


def is_cannabis(record: dict) -> bool:
    return bool(tags_of(record) & CANNABIS)


# --------------------------------------------------------------------------- file and meta


def test_exact_count_every_line_parses_and_time_strictly_increases(big):
    meta, events, path = big
    assert len(events) == 20_000 == meta["events"]
    assert path.read_bytes().endswith(b"\n")
    times = [e["time_us"] for e in events]
    assert all(a < b for a, b in zip(times, times[1:]))
    assert (meta["first_time_us"], meta["last_time_us"]) == (times[0], times[-1])
    assert DEFAULT_START_TIME_US < times[0] < DEFAULT_START_TIME_US + 1_000_000
    rate = len(times) / ((times[-1] - times[0]) / 1e6)
    assert 600 < rate < 1_600  # about 1,000 events/s


def test_meta_sidecar_matches_the_file(big):
    meta, events, path = big
    assert json.loads(Path(str(path) + ".meta.json").read_text()) == meta
    assert meta["seed"] == 3
    assert sum(meta["counts"].values()) == len(events)
    recount = Counter(
        e["kind"] if e["kind"] != "commit"
        else f"commit/{e['commit']['collection']}/{e['commit']['operation']}"
        for e in events
    )
    assert recount == Counter(meta["counts"])
    members = meta["members"]
    assert len(members) >= 10 and len({m["did"] for m in members}) == len(members)
    for m in members:
        assert DID.match(m["did"]) and m["handle"].endswith(".cannect.space")


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    meta_a = generate_capture(str(a), 3_000, seed=5)
    meta_b = generate_capture(str(b), 3_000, seed=5)
    generate_capture(str(c), 3_000, seed=6)
    assert a.read_bytes() == b.read_bytes() and meta_a == meta_b
    assert a.read_bytes() != c.read_bytes()


def test_start_time_and_tiny_captures(tmp_path):
    path = tmp_path / "tiny.jsonl"
    meta = generate_capture(str(path), 1, start_time_us=1_700_000_000_000_000, progress=True)
    (event,) = read(path)
    assert meta["first_time_us"] == meta["last_time_us"] == event["time_us"]
    assert 1_700_000_000_000_000 < event["time_us"] < 1_700_000_001_000_000
    for n in (2, 7, 50):
        generate_capture(str(path), n, seed=n)
        assert len(read(path)) == n


# --------------------------------------------------------------------------- shapes


def test_event_shapes_follow_jetstream_v1(big):
    _, events, _ = big
    kinds = Counter(e["kind"] for e in events)
    assert set(kinds) == {"commit", "identity", "account"}
    for e in events:
        assert DID.match(e["did"]) and isinstance(e["time_us"], int)
        if e["kind"] == "commit":
            c = e["commit"]
            assert list(c)[:4] == ["rev", "operation", "collection", "rkey"] and TID.match(c["rev"])
            assert c["rkey"] == "self" or TID.match(c["rkey"])
            if c["operation"] == "delete":
                assert "record" not in c and "cid" not in c
            else:
                assert c["record"]["$type"] == c["collection"] and CID.match(c["cid"])
        elif e["kind"] == "identity":
            assert e["identity"]["did"] == e["did"]
            assert set(e["identity"]) <= {"did", "seq", "time", "handle"}
        else:
            assert e["account"]["did"] == e["did"]
            assert set(e["account"]) <= {"active", "did", "seq", "time", "status"}


def test_created_records_have_unique_uris(big):
    _, events, _ = big
    created = [uri(e) for e in commits(events) if e["commit"]["operation"] == "create"]
    assert len(created) == len(set(created))


def test_created_at_uses_both_suffixes(big):
    _, events, _ = big
    stamps = [e["commit"]["record"]["createdAt"] for e in commits(events, LIKE, "create")]
    assert any(s.endswith("Z") for s in stamps) and any(s.endswith("+00:00") for s in stamps)


def test_facets_carry_utf8_byte_offsets(big):
    _, events, _ = big
    checked = 0
    for e in commits(events, POST, "create"):
        record = e["commit"]["record"]
        text = record["text"].encode()
        for facet in record.get("facets", []):
            span = text[facet["index"]["byteStart"]:facet["index"]["byteEnd"]].decode()
            for feature in facet["features"]:
                if feature["$type"].endswith("#tag"):
                    assert span == "#" + feature["tag"]
                    checked += 1
                elif feature["$type"].endswith("#mention"):
                    assert span.startswith("@")
    assert checked > 100


def test_proportions_look_like_the_real_stream(big):
    meta, events, _ = big
    n = len(events)
    counts = meta["counts"]

    def share(*keys):
        return sum(counts.get(k, 0) for k in keys) / n

    assert 0.62 <= share(f"commit/{LIKE}/create", f"commit/{LIKE}/delete") <= 0.72
    assert 0.07 <= share(f"commit/{POST}/create") <= 0.13
    assert 0.05 <= share(f"commit/{REPOST}/create") <= 0.11
    assert 0.04 <= share(f"commit/{FOLLOW}/create") <= 0.10
    assert 0.005 <= share("identity") <= 0.03 and 0.005 <= share("account") <= 0.03
    for key in (f"commit/{POST}/delete", f"commit/{REPOST}/delete", f"commit/{FOLLOW}/delete",
                f"commit/{LIKE}/delete", "commit/app.bsky.actor.profile/update",
                "commit/app.bsky.graph.block/create"):
        assert counts.get(key, 0) > 0, key
    posts = commits(events, POST, "create")
    tagged = sum(is_cannabis(e["commit"]["record"]) for e in posts)
    assert 0.02 <= tagged / len(posts) <= 0.15  # most posts carry no cannabis tag


# --------------------------------------------------------------------------- community content


def test_cannabis_tags_come_in_every_form(big):
    _, events, _ = big
    assert {t.lower() for t in CANNABIS_TAGS} <= CANNABIS
    records = [e["commit"]["record"] for e in commits(events, POST, "create")]
    by_facet = by_record_tags = inline_only = mixed_case = 0
    for r in records:
        facet_tags = {f["tag"] for fc in r.get("facets", []) for f in fc["features"]
                      if f["$type"].endswith("#tag")}
        if {t.lower() for t in facet_tags} & CANNABIS:
            by_facet += 1
        if {t.lower() for t in r.get("tags", [])} & CANNABIS:
            by_record_tags += 1
        inline = set(INLINE_TAG.findall(r["text"]))
        if not facet_tags and {t.lower() for t in inline} & CANNABIS:
            inline_only += 1
        mixed_case += any(t.lower() in CANNABIS and t != t.lower() for t in inline)
    assert by_facet > 20 and by_record_tags > 5 and inline_only > 5 and mixed_case > 10
    decoys = [r for r in records if "#weed" in r["text"].lower() and "weed" not in tags_of(r)]
    assert decoys  # e.g. "faq#weed": not a tag by the rule


def test_members_post_and_threads_go_deep(big):
    meta, events, _ = big
    members = {m["did"] for m in meta["members"]}
    posts = commits(events, POST, "create")
    assert sum(e["did"] in members for e in posts) > 20
    parent_of = {uri(e): e["commit"]["record"].get("reply", {}).get("parent", {}).get("uri")
                 for e in posts}

    def depth(u):
        d = 0
        while parent_of.get(u):
            u, d = parent_of[u], d + 1
        return d

    depths = Counter(depth(u) for u in parent_of)
    assert max(depths) >= 4
    unseen_parents = [p for p in parent_of.values() if p and p not in parent_of]
    assert unseen_parents  # replies to posts from before the capture
    community_roots = {uri(e) for e in posts
                       if is_cannabis(e["commit"]["record"]) or e["did"] in members}
    assert any(p in community_roots for p in parent_of.values())


def test_embeds_and_langs(big):
    _, events, _ = big
    records = [e["commit"]["record"] for e in commits(events, POST, "create")]
    embeds = Counter(r["embed"]["$type"] for r in records if "embed" in r)
    for kind in ("images", "record", "recordWithMedia", "external"):
        assert embeds[f"app.bsky.embed.{kind}"] > 0, kind
    quoted = [r["embed"]["record"]["uri"] for r in records
              if r.get("embed", {}).get("$type") == "app.bsky.embed.record"]
    assert any("/app.bsky.feed.post/" in u for u in quoted)
    assert any("/app.bsky.feed.post/" not in u for u in quoted)  # feeds, lists, starter packs
    langs = Counter(lang for r in records for lang in r.get("langs", []))
    assert langs["en"] > langs["ja"] > 0 and any("langs" not in r for r in records)


def test_member_follows_outsider_who_then_posts_without_tags(big):
    meta, events, _ = big
    members = {m["did"] for m in meta["members"]}
    followed_at = {}
    for i, e in enumerate(commits(events, FOLLOW, "create")):
        if e["did"] in members and e["commit"]["record"]["subject"] not in members:
            followed_at.setdefault(e["commit"]["record"]["subject"], e["time_us"])
    later_plain = [
        e for e in commits(events, POST, "create")
        if e["did"] in followed_at and e["time_us"] > followed_at[e["did"]]
        and not is_cannabis(e["commit"]["record"])
    ]
    assert len(later_plain) > 5
    assert any(e["commit"]["record"]["subject"] in members and e["did"] not in members
               for e in commits(events, FOLLOW, "create"))


def test_deletes_include_engaged_posts_and_records_never_seen(big):
    _, events, _ = big
    created = {uri(e) for e in commits(events) if e["commit"]["operation"] == "create"}
    for collection in (LIKE, REPOST, FOLLOW, POST):
        deletes = [uri(e) for e in commits(events, collection, "delete")]
        assert any(u in created for u in deletes), collection
        assert any(u not in created for u in deletes), collection
    engaged = Counter()
    for e in commits(events, LIKE, "create") + commits(events, REPOST, "create"):
        engaged[(e["commit"]["collection"], e["commit"]["record"]["subject"]["uri"])] += 1
    replied = {e["commit"]["record"]["reply"]["parent"]["uri"]
               for e in commits(events, POST, "create") if "reply" in e["commit"]["record"]}
    deleted_posts = {uri(e) for e in commits(events, POST, "delete")}
    assert any((LIKE, u) in engaged and (REPOST, u) in engaged and u in replied
               for u in deleted_posts)


def test_profiles_of_members_and_community(big):
    meta, events, _ = big
    members = {m["did"] for m in meta["members"]}
    profiles = commits(events, "app.bsky.actor.profile")
    assert any(e["did"] in members for e in profiles)
    record = next(e["commit"]["record"] for e in profiles
                  if "avatar" in e["commit"].get("record", {}))
    assert record["avatar"]["ref"]["$link"].startswith("bafkrei") and "displayName" in record


# --------------------------------------------------------------------------- identity, account


def test_identity_events_mostly_without_handle(big):
    meta, events, _ = big
    identities = [e["identity"] for e in events if e["kind"] == "identity"]
    with_handle = [i for i in identities if "handle" in i]
    assert 0 < len(with_handle) < len(identities) / 3
    member_handles = {m["did"]: m["handle"] for m in meta["members"]}
    for i in with_handle:
        if i["did"] in member_handles:
            assert i["handle"] == member_handles[i["did"]]


def statuses(events):
    return [(i, e["account"].get("status"), e["did"]) for i, e in enumerate(events)
            if e["kind"] == "account" and not e["account"]["active"]]


def test_one_deactivation_one_deletion_one_takedown(big):
    meta, events, _ = big
    found = Counter(status for _, status, _ in statuses(events))
    assert found == Counter({"deactivated": 1, "deleted": 1, "takendown": 1})
    assert sum(e["kind"] == "account" and e["account"]["active"] for e in events) > 50
    members = {m["did"] for m in meta["members"]}
    (_, _, victim), = [s for s in statuses(events) if s[1] == "takendown"]
    assert victim in members and victim == meta["special"]["takendown_account"]


@pytest.mark.parametrize("which", ["big", "small"])
def test_deleted_account_was_active_in_the_community(which, request):
    meta, events = request.getfixturevalue(which)[:2]
    members = {m["did"] for m in meta["members"]}
    (index, _, doomed), = [s for s in statuses(events) if s[1] == "deleted"]
    assert doomed == meta["special"]["deleted_account"] and doomed not in members
    assert index >= len(events) // 2
    before, after = events[:index], events[index + 1:]
    own_posts = [e for e in commits(before, POST, "create") if e["did"] == doomed]
    assert any(is_cannabis(e["commit"]["record"]) for e in own_posts)
    assert any(e["did"] == doomed for e in commits(before, LIKE, "create"))
    assert any(e["did"] == doomed and e["commit"]["record"]["subject"] in members
               for e in commits(before, FOLLOW, "create"))
    assert any(e["did"] in members and e["commit"]["record"]["subject"] == doomed
               for e in commits(before, FOLLOW, "create"))
    assert not any(e["did"] == doomed for e in after)


def test_no_deletion_below_2000_events(tmp_path):
    path = tmp_path / "c.jsonl"
    meta = generate_capture(str(path), 1_999, seed=1)
    found = Counter(status for _, status, _ in statuses(read(path)))
    assert found == Counter({"deactivated": 1}) and meta["special"]["deleted_account"] is None


def test_reference_model_indexes_the_stories(big):
    """Through the independent model of the rules (tests/model.py): a sane share of the
    capture is indexed, outsiders' untagged posts get in through member follows, and the
    deleted account still had indexed posts, likes and follows just before its deletion."""
    model_module = pytest.importorskip("model")
    meta, events, path = big
    lines = path.read_bytes().splitlines()
    (index, _, doomed), = [s for s in statuses(events) if s[1] == "deleted"]
    model = model_module.CommunityModel(
        members=[(m["did"], m["handle"]) for m in meta["members"]],
        cannabis_tags=DEFAULT_CANNABIS_TAGS,
    )
    model.apply_lines(lines[:index])
    before = model.snapshot()
    mine = f"at://{doomed}/"
    assert any(p["author_did"] == doomed for p in before["posts"].values())
    assert any(u.startswith(mine) for u in before["likes"])
    assert any(u.startswith(mine) for u in before["follows"])
    assert any(doomed in pair for u, pair in before["follows"].items() if not u.startswith(mine))

    model.apply_lines(lines[index:])
    after = model.snapshot()
    assert model.rejected == 0
    posts = after["posts"].values()
    by_follow = [p for p in posts if not p["has_cannabis_hashtag"] and not p["is_cannect_user"]
                 and p["reply_parent_uri"] is None]
    assert by_follow
    post_creates = meta["counts"][f"commit/{POST}/create"]
    assert 0.05 <= len(after["posts"]) / post_creates <= 0.35
    likes = meta["counts"][f"commit/{LIKE}/create"]
    assert 0.03 <= len(after["likes"]) / likes <= 0.35  # most likes are of outside posts
    assert not any(p["author_did"] == doomed for p in posts)
