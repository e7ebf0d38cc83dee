"""Tests of the reference model (tests/model.py) on small hand-written event sequences.

Each test pins one rule of docs/indexing-rules.md, and every test ends by checking the count
invariants with ``assert_invariants``.
"""

from __future__ import annotations

import glob
import hashlib
import os
import random
import time

import orjson
import pytest

try:  # `python -m pytest` puts the project root on sys.path; plain `pytest` puts tests/.
    from tests.model import CommunityModel, assert_invariants, extract_tags, invariant_violations
except ImportError:  # pragma: no cover
    from model import CommunityModel, assert_invariants, extract_tags, invariant_violations

SAMPLES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "jetstream-samples")

POST = "app.bsky.feed.post"
LIKE = "app.bsky.feed.like"
REPOST = "app.bsky.feed.repost"
FOLLOW = "app.bsky.graph.follow"
PROFILE = "app.bsky.actor.profile"

MEMBER = "did:plc:member"
MEMBER2 = "did:plc:member2"
ALICE = "did:plc:alice"
BOB = "did:plc:bob"
CAROL = "did:plc:carol"
TAGS = ["cannabis", "Weed", "#420"]


# ---- event builders ----------------------------------------------------------------------------

_clock = [1_780_000_000_000_000]


def _t() -> int:
    _clock[0] += 1
    return _clock[0]


def uri(did: str, collection: str, rkey: str) -> str:
    return f"at://{did}/{collection}/{rkey}"


def fake_cid(*parts: str) -> str:
    """A syntactically valid CID, the same for the same parts."""
    return "bafyrei" + hashlib.sha256("/".join(parts).encode()).hexdigest()[:40]


def commit(did, collection, rkey, operation="create", record=None, cid=None) -> str:
    body = {"rev": "3rev", "operation": operation, "collection": collection, "rkey": rkey}
    if operation != "delete":
        body["record"] = record if record is not None else {}
        body["cid"] = cid or fake_cid(collection, rkey)
    return orjson.dumps({"did": did, "time_us": _t(), "kind": "commit", "commit": body}).decode()


def post(did, rkey, text="hello", *, facets=None, tags=None, parent=None, root=None,
         operation="create", cid=None) -> str:
    record = {"$type": POST, "text": text, "createdAt": "2026-07-04T14:38:08.420Z"}
    if facets is not None:
        record["facets"] = facets
    if tags is not None:
        record["tags"] = tags
    if parent is not None:
        record["reply"] = {"parent": {"uri": parent, "cid": fake_cid(parent)},
                           "root": {"uri": root or parent, "cid": fake_cid(root or parent)}}
    return commit(did, POST, rkey, operation, record, cid)


def tag_facet(tag: str) -> list[dict]:
    return [{"index": {"byteStart": 0, "byteEnd": 3},
             "features": [{"$type": "app.bsky.richtext.facet#tag", "tag": tag}]}]


def like(did, rkey, subject_uri, collection=LIKE) -> str:
    return commit(did, collection, rkey, "create",
                  {"$type": collection, "subject": {"uri": subject_uri, "cid": fake_cid(subject_uri)},
                   "createdAt": "2026-07-04T14:38:08Z"})


def repost(did, rkey, subject_uri) -> str:
    return like(did, rkey, subject_uri, collection=REPOST)


def follow(did, rkey, subject_did) -> str:
    return commit(did, FOLLOW, rkey, "create",
                  {"$type": FOLLOW, "subject": subject_did, "createdAt": "2026-07-04T14:38:08Z"})


def delete(did, collection, rkey) -> str:
    return commit(did, collection, rkey, "delete")


def profile(did, operation="update", rkey="self", **fields) -> str:
    return commit(did, PROFILE, rkey, operation, {"$type": PROFILE, **fields})


def identity(did, handle=None) -> str:
    ident = {"did": did, "seq": 1, "time": "2026-07-04T14:38:07.877Z"}
    if handle is not None:
        ident["handle"] = handle
    return orjson.dumps({"did": did, "time_us": _t(), "kind": "identity", "identity": ident}).decode()


def account(did, status=None, active=False) -> str:
    acct = {"active": active, "did": did, "seq": 2, "time": "2026-07-04T14:38:07.877Z"}
    if status is not None:
        acct["status"] = status
    return orjson.dumps({"did": did, "time_us": _t(), "kind": "account", "account": acct}).decode()


def run(*lines, members=((MEMBER, "member.test"),), tags=TAGS) -> CommunityModel:
    model = CommunityModel(members, tags)
    for line in lines:
        assert model.apply_line(line), line
    assert model.rejected == 0
    assert_invariants(model.snapshot())
    return model


def P(did, rkey) -> str:
    return uri(did, POST, rkey)


# ---- initial state ---------------------------------------------------------------------------------


def test_members_get_profile_rows():
    snap = run(members=[(MEMBER, "member.test"), (MEMBER2, None)]).snapshot()
    assert snap == {
        "posts": {}, "likes": {}, "reposts": {}, "follows": {}, "notifications": {},
        "profiles": {
            MEMBER: {"handle": "member.test", "display_name": None, "is_cannect_user": True,
                     "followers_count": 0, "following_count": 0, "posts_count": 0},
            MEMBER2: {"handle": None, "display_name": None, "is_cannect_user": True,
                      "followers_count": 0, "following_count": 0, "posts_count": 0},
        },
    }


# ---- rule 1: tags ----------------------------------------------------------------------------------


def test_extract_tags_sources():
    record = {
        "text": "#first word#notatag #Second.\n#third_3 x #\t#ÉtéFleur",
        "tags": ["#Extra", "plain", 7],
        "facets": tag_facet("#FacetTag") + [
            {"features": [{"$type": "app.bsky.richtext.facet#mention", "did": "did:plc:x"},
                          {"$type": "app.bsky.richtext.facet#tag", "tag": "facet2"}]}],
    }
    assert extract_tags(record) == ["FacetTag", "facet2", "Extra", "plain",
                                    "first", "Second", "third_3", "ÉtéFleur"]


@pytest.mark.parametrize("kwargs", [
    {"facets": tag_facet("cannabis")},
    {"facets": tag_facet("#CANNABIS")},
    {"tags": ["WEED"]},
    {"tags": ["#weed"]},
    {"text": "#Cannabis at the start"},
    {"text": "ends with #weed"},
    {"text": "line one\n#420 on line two"},
    {"text": "punctuation after #cannabis, still a tag"},
], ids=["facet", "facet-hash", "tags", "tags-hash", "text-start", "text-end", "text-newline",
        "text-punct"])
def test_tag_rule_indexes_post(kwargs):
    kwargs.setdefault("text", "no tags here")
    model = run(post(ALICE, "p1", **kwargs))
    snap = model.snapshot()
    assert snap["posts"][P(ALICE, "p1")] == {
        "author_did": ALICE, "cid": fake_cid(POST, "p1"), "reply_parent_uri": None,
        "reply_root_uri": None, "like_count": 0, "repost_count": 0, "reply_count": 0,
        "has_cannabis_hashtag": True, "is_cannect_user": False,
    }
    # a profile row is created for the author, counting the post
    assert snap["profiles"][ALICE] == {
        "handle": None, "display_name": None, "is_cannect_user": False,
        "followers_count": 0, "following_count": 0, "posts_count": 1,
    }


@pytest.mark.parametrize("kwargs", [
    {"text": "no tags at all"},
    {"text": "glued#cannabis is not inline"},
    {"text": "#cannabisclub is another tag"},
    {"text": "#cannabis_ has an underscore"},
    {"text": "cannabis without hash"},
    {"tags": ["##cannabis"]},  # only one leading '#' is stripped
    {"facets": [{"index": {"byteStart": 0, "byteEnd": 1},
                 "features": [{"$type": "app.bsky.richtext.facet#link", "uri": "https://x.test/#cannabis"}]}]},
    {"facets": [{"index": {"byteStart": 0, "byteEnd": 1},
                 "features": [{"$type": "app.bsky.richtext.facet#mention", "did": ALICE, "tag": "cannabis"}]}]},
    {"facets": [{"index": {"byteStart": 0, "byteEnd": 1},
                 "features": [{"$type": "app.example.feature", "tag": "cannabis"}]}]},  # unknown type: left out
])
def test_non_matching_tags_do_not_index(kwargs):
    kwargs.setdefault("text", "plain")
    snap = run(post(ALICE, "p1", **kwargs)).snapshot()
    assert snap["posts"] == {}
    assert ALICE not in snap["profiles"]


@pytest.mark.parametrize("kwargs", [
    {"facets": [{"features": [{"$type": "app.bsky.richtext.facet#tag", "tag": "cannabis"}]}]},  # no index
    {"facets": [{"index": {"byteStart": 0, "byteEnd": 1},
                 "features": [{"$type": "app.bsky.richtext.facet#link", "uri": "#cannabis"}]}]},  # not a URI
    {"facets": [{"index": {"byteStart": 0, "byteEnd": 1},
                 "features": [{"$type": "app.bsky.richtext.facet#mention", "tag": "cannabis"}]}]},  # no did
    {"tags": "cannabis"},  # not an array
    {"tags": ["cannabis"] * 9},  # more than 8
    {"tags": ["x" * 65]},  # longer than 64 graphemes
    {"text": "#cannabis " + "x" * 300},  # longer than 300 graphemes
])
def test_posts_breaking_the_lexicon_are_rejected(kwargs):
    kwargs.setdefault("text", "plain")
    model = CommunityModel([(ALICE, None)], TAGS)
    assert model.apply_line(post(ALICE, "p1", **kwargs)) is False
    assert model.snapshot()["posts"] == {}


def test_nul_characters_are_removed_from_texts_before_the_rules():
    model = run(post(ALICE, "p1", "#can\u0000nabis"), post(BOB, "p2", "x", tags=["we\u0000ed"]),
                members=((MEMBER, None),))
    snap = model.snapshot()
    assert snap["posts"][P(ALICE, "p1")]["has_cannabis_hashtag"] and snap["posts"][P(BOB, "p2")]["has_cannabis_hashtag"]
    assert model.posts[P(ALICE, "p1")]["text"] == "#cannabis"


# ---- rule 1: member and followed-by-member authors --------------------------------------------------


def test_member_author_indexed_without_tag():
    snap = run(post(MEMBER, "m1", "just text")).snapshot()
    p = snap["posts"][P(MEMBER, "m1")]
    assert p["is_cannect_user"] is True and p["has_cannabis_hashtag"] is False
    assert snap["profiles"][MEMBER]["posts_count"] == 1


def test_member_author_with_tag_sets_both_flags():
    snap = run(post(MEMBER, "m1", "#weed")).snapshot()
    p = snap["posts"][P(MEMBER, "m1")]
    assert p["is_cannect_user"] is True and p["has_cannabis_hashtag"] is True


def test_followed_by_member_before_and_after_post():
    model = run(
        post(ALICE, "before", "untagged"),        # not followed yet: dropped
        follow(MEMBER, "f1", ALICE),
        post(ALICE, "after", "untagged"),         # followed by a member: indexed
    )
    snap = model.snapshot()
    assert set(snap["posts"]) == {P(ALICE, "after")}
    assert snap["posts"][P(ALICE, "after")]["is_cannect_user"] is False
    assert snap["posts"][P(ALICE, "after")]["has_cannabis_hashtag"] is False
    # updating the earlier post re-evaluates it as a new post: now indexed
    model.apply_line(post(ALICE, "before", "untagged", operation="update", cid="bafyreiv2"))
    snap = model.snapshot()
    assert snap["posts"][P(ALICE, "before")]["cid"] == "bafyreiv2"
    assert snap["profiles"][ALICE]["posts_count"] == 2
    assert_invariants(snap)


def test_unfollow_stops_indexing_new_posts():
    snap = run(
        follow(MEMBER, "f1", ALICE),
        post(ALICE, "a1"),
        delete(MEMBER, FOLLOW, "f1"),
        post(ALICE, "a2"),
    ).snapshot()
    assert set(snap["posts"]) == {P(ALICE, "a1")}


def test_following_a_member_does_not_make_you_followed():
    snap = run(
        follow(ALICE, "f1", MEMBER),     # stored (subject is a member)
        follow(BOB, "f2", ALICE),        # not stored: neither side is a member
        post(ALICE, "a1"),               # ALICE follows a member but no member follows her
    ).snapshot()
    assert set(snap["follows"]) == {uri(ALICE, FOLLOW, "f1")}
    assert snap["posts"] == {}


def test_followed_by_non_member_through_stored_follow_does_not_count():
    # BOB -> ALICE is not stored; ALICE -> MEMBER is. A stored follow TO Alice must come
    # from a member: MEMBER -> ALICE qualifies, nothing else does.
    snap = run(follow(ALICE, "f1", MEMBER), follow(BOB, "f2", ALICE), post(BOB, "b1")).snapshot()
    assert snap["posts"] == {}


# ---- rule 1: replies -------------------------------------------------------------------------------


def test_reply_chain_indexed_through_parents():
    top = P(MEMBER, "top")
    r1 = P(ALICE, "r1")
    r2 = P(BOB, "r2")
    snap = run(
        post(MEMBER, "top", "root post"),
        post(ALICE, "r1", "reply", parent=top),
        post(BOB, "r2", "reply to reply", parent=r1, root=top),
        post(CAROL, "r3", "reply to unknown", parent=P(CAROL, "nothere")),
    ).snapshot()
    assert set(snap["posts"]) == {top, r1, r2}
    assert snap["posts"][top]["reply_count"] == 1
    assert snap["posts"][r1]["reply_count"] == 1
    assert snap["posts"][r2]["reply_count"] == 0
    assert snap["posts"][r1]["reply_parent_uri"] == top and snap["posts"][r1]["reply_root_uri"] == top
    assert snap["posts"][r2]["reply_parent_uri"] == r1 and snap["posts"][r2]["reply_root_uri"] == top
    assert snap["posts"][r2]["is_cannect_user"] is False
    assert snap["posts"][r2]["has_cannabis_hashtag"] is False
    assert CAROL not in snap["profiles"]


def test_reply_before_parent_is_not_indexed():
    top = P(MEMBER, "top")
    snap = run(post(ALICE, "r1", "early reply", parent=top), post(MEMBER, "top")).snapshot()
    assert set(snap["posts"]) == {top}
    assert snap["posts"][top]["reply_count"] == 0


def test_reply_indexed_by_tag_to_unindexed_parent_keeps_parent_uri():
    parent = P(BOB, "x")
    snap = run(post(ALICE, "r1", "#cannabis reply", parent=parent)).snapshot()
    assert snap["posts"][P(ALICE, "r1")]["reply_parent_uri"] == parent
    assert parent not in snap["posts"]


def test_parent_indexed_after_its_reply_counts_it():
    # The tagged reply is indexed first; its parent is indexed later (reordered stream).
    parent = P(MEMBER, "top")
    snap = run(post(ALICE, "r1", "#weed", parent=parent), post(MEMBER, "top")).snapshot()
    assert snap["posts"][parent]["reply_count"] == 1  # invariant: indexed replies of the post


# ---- rule 1: already indexed -----------------------------------------------------------------------


def test_duplicate_create_refreshes_content_only():
    top = P(MEMBER, "top")
    model = run(
        post(MEMBER, "top"),
        post(ALICE, "r1", "#weed", parent=top, cid="bafyreic1"),
        post(ALICE, "r1", "now untagged, no parent", cid="bafyreic2"),          # duplicate create
        post(ALICE, "r1", "again", operation="update", cid="bafyreic3"),       # update
    )
    snap = model.snapshot()
    r1 = snap["posts"][P(ALICE, "r1")]
    assert r1["cid"] == "bafyreic3"
    assert r1["has_cannabis_hashtag"] is True          # not recomputed
    assert r1["reply_parent_uri"] == top               # not recomputed
    assert snap["posts"][top]["reply_count"] == 1      # not incremented again
    assert snap["profiles"][ALICE]["posts_count"] == 1


# ---- rule 2: post delete ----------------------------------------------------------------------------


def test_post_delete_removes_likes_reposts_and_decrements_parent():
    top = P(MEMBER, "top")
    r1 = P(ALICE, "r1")
    model = run(
        post(MEMBER, "top"),
        post(ALICE, "r1", "reply", parent=top),
        like(BOB, "l1", r1),
        like(MEMBER, "l2", r1),
        repost(CAROL, "rp1", r1),
        like(BOB, "l3", top),
    )
    snap = model.snapshot()
    assert snap["posts"][r1]["like_count"] == 2 and snap["posts"][r1]["repost_count"] == 1
    assert snap["posts"][top]["reply_count"] == 1

    model.apply_line(delete(ALICE, POST, "r1"))
    snap = model.snapshot()
    assert_invariants(snap)
    assert set(snap["posts"]) == {top}
    assert snap["posts"][top]["reply_count"] == 0
    assert snap["posts"][top]["like_count"] == 1
    assert snap["likes"] == {uri(BOB, LIKE, "l3"): (BOB, top)}
    assert snap["reposts"] == {}
    assert snap["profiles"][ALICE]["posts_count"] == 0  # the row stays, with a zero count

    # deleting the like of the deleted post afterwards is a no-op
    assert model.apply_line(delete(BOB, LIKE, "l1"))
    assert model.snapshot() == snap


def test_delete_parent_then_reply_keeps_counts_consistent():
    top = P(MEMBER, "top")
    model = run(post(MEMBER, "top"), post(ALICE, "r1", parent=top), delete(MEMBER, POST, "top"))
    snap = model.snapshot()
    assert set(snap["posts"]) == {P(ALICE, "r1")}
    model.apply_line(delete(ALICE, POST, "r1"))
    assert_invariants(model.snapshot())
    # recreating the parent: the reply is gone, so nothing to count
    model.apply_line(post(MEMBER, "top"))
    assert model.snapshot()["posts"][top]["reply_count"] == 0


def test_delete_of_unseen_records_changes_nothing():
    model = run(post(MEMBER, "m1"), follow(MEMBER, "f1", ALICE))
    before = model.snapshot()
    for line in (
        delete(ALICE, POST, "nope"),
        delete(ALICE, LIKE, "nope"),
        delete(ALICE, REPOST, "nope"),
        delete(ALICE, FOLLOW, "nope"),
        delete(MEMBER, POST, "m2"),
        profile(CAROL, operation="delete"),
        delete("did:plc:other", "app.bsky.graph.block", "x"),
    ):
        assert model.apply_line(line)
    assert model.snapshot() == before
    assert model.rejected == 0


# ---- rules 3 and 4: likes and reposts ------------------------------------------------------------------


def test_like_then_delete():
    m1 = P(MEMBER, "m1")
    model = run(post(MEMBER, "m1"), like(ALICE, "l1", m1), repost(ALICE, "r1", m1))
    snap = model.snapshot()
    assert snap["likes"] == {uri(ALICE, LIKE, "l1"): (ALICE, m1)}
    assert snap["reposts"] == {uri(ALICE, REPOST, "r1"): (ALICE, m1)}
    assert snap["posts"][m1]["like_count"] == 1 and snap["posts"][m1]["repost_count"] == 1
    assert ALICE not in snap["profiles"]  # likes create no profile rows

    model.apply_line(delete(ALICE, LIKE, "l1"))
    model.apply_line(delete(ALICE, REPOST, "r1"))
    snap = model.snapshot()
    assert_invariants(snap)
    assert snap["likes"] == {} and snap["reposts"] == {}
    assert snap["posts"][m1]["like_count"] == 0 and snap["posts"][m1]["repost_count"] == 0


def test_like_of_unindexed_post_dropped_and_duplicates_ignored():
    m1 = P(MEMBER, "m1")
    snap = run(
        like(ALICE, "early", m1),                 # post not indexed yet: dropped
        post(MEMBER, "m1"),
        like(ALICE, "l1", m1),
        like(ALICE, "l1", m1),                    # duplicate create
        like(ALICE, "l1", P(MEMBER, "other")),    # same URI, other subject: still a duplicate
        like(BOB, "l2", P(ALICE, "unindexed")),   # dropped
        repost(BOB, "r1", m1),
        repost(BOB, "r1", m1),
    ).snapshot()
    assert snap["likes"] == {uri(ALICE, LIKE, "l1"): (ALICE, m1)}
    assert snap["reposts"] == {uri(BOB, REPOST, "r1"): (BOB, m1)}
    assert snap["posts"][m1]["like_count"] == 1 and snap["posts"][m1]["repost_count"] == 1


def test_like_subject_uri_of_other_collection_dropped():
    snap = run(post(MEMBER, "m1"), like(ALICE, "l1", uri(MEMBER, "app.bsky.feed.generator", "m1"))).snapshot()
    assert snap["likes"] == {}


# ---- rules 5 and 6: follows -------------------------------------------------------------------------


def test_follow_counts():
    model = run(
        follow(MEMBER, "f1", ALICE),
        follow(MEMBER, "f1", ALICE),        # duplicate
        follow(BOB, "f2", MEMBER),
        follow(BOB, "f3", CAROL),           # neither is a member: not stored
        follow(MEMBER, "f4", MEMBER2),
        members=[(MEMBER, "m.test"), (MEMBER2, "m2.test")],
    )
    snap = model.snapshot()
    assert snap["follows"] == {
        uri(MEMBER, FOLLOW, "f1"): (MEMBER, ALICE),
        uri(BOB, FOLLOW, "f2"): (BOB, MEMBER),
        uri(MEMBER, FOLLOW, "f4"): (MEMBER, MEMBER2),
    }
    assert snap["profiles"][MEMBER]["following_count"] == 2
    assert snap["profiles"][MEMBER]["followers_count"] == 1
    assert snap["profiles"][MEMBER2]["followers_count"] == 1
    assert snap["profiles"][ALICE] == {"handle": None, "display_name": None,
                                        "is_cannect_user": False, "followers_count": 1,
                                        "following_count": 0, "posts_count": 0}
    assert snap["profiles"][BOB]["following_count"] == 1
    assert CAROL not in snap["profiles"]

    model.apply_line(delete(MEMBER, FOLLOW, "f1"))
    model.apply_line(delete(MEMBER, FOLLOW, "f1"))  # second delete: no-op
    model.apply_line(delete(BOB, FOLLOW, "f3"))     # never stored: no-op
    snap = model.snapshot()
    assert_invariants(snap)
    assert snap["profiles"][ALICE]["followers_count"] == 0   # row kept
    assert snap["profiles"][MEMBER]["following_count"] == 1


def test_self_follow_of_member():
    snap = run(follow(MEMBER, "f1", MEMBER)).snapshot()
    assert snap["profiles"][MEMBER]["followers_count"] == 1
    assert snap["profiles"][MEMBER]["following_count"] == 1


@pytest.mark.parametrize("collection, record", [
    (FOLLOW, {"subject": {"did": ALICE}}),
    (FOLLOW, {"subject": "alice"}),
    (LIKE, {"subject": "not-a-strong-ref"}),
    (LIKE, {"subject": {"uri": "at://did:plc:member/app.bsky.feed.post/m1"}}),  # no cid
    (REPOST, {"subject": {"uri": "https://example.com", "cid": "bafyreicid1"}}),
])
def test_follows_likes_and_reposts_with_bad_subjects_are_rejected(collection, record):
    model = CommunityModel([(MEMBER, None)], TAGS)
    model.apply_line(post(MEMBER, "m1"))
    assert model.apply_line(commit(MEMBER, collection, "x1", "create", record)) is False
    snap = model.snapshot()
    assert snap["follows"] == {} and snap["likes"] == {} and snap["reposts"] == {}


def test_like_and_follow_updates_are_ignored():
    m1 = P(MEMBER, "m1")
    snap = run(
        post(MEMBER, "m1"),
        commit(ALICE, LIKE, "l1", "update", {"subject": {"uri": m1, "cid": fake_cid(m1)}}),
        commit(MEMBER, FOLLOW, "f1", "update", {"subject": ALICE}),
    ).snapshot()
    assert snap["likes"] == {} and snap["follows"] == {}


# ---- rule 7: profile records --------------------------------------------------------------------------


def test_profile_update_ignored_for_unknown_dids():
    snap = run(profile(ALICE, displayName="Alice", description="hi")).snapshot()
    assert ALICE not in snap["profiles"]


def test_profile_update_and_delete_for_known_dids():
    model = run(
        profile(MEMBER, operation="create", displayName="Member One", description="d",
                avatar={"$type": "blob", "ref": {"$link": "bafkreiavatar"}, "mimeType": "image/jpeg",
                        "size": 1}),
    )
    assert model.snapshot()["profiles"][MEMBER]["display_name"] == "Member One"
    assert model.profiles[MEMBER]["avatar_cid"] == "bafkreiavatar"

    model.apply_line(profile(MEMBER, rkey="other", displayName="Not the profile"))
    assert model.snapshot()["profiles"][MEMBER]["display_name"] == "Member One"

    model.apply_line(profile(MEMBER, description="only a description"))  # missing -> NULL
    assert model.snapshot()["profiles"][MEMBER]["display_name"] is None
    assert model.profiles[MEMBER]["description"] == "only a description"
    assert model.profiles[MEMBER]["avatar_cid"] is None

    model.apply_line(profile(MEMBER, displayName="Back"))
    model.apply_line(profile(MEMBER, operation="delete"))
    snap = model.snapshot()
    assert snap["profiles"][MEMBER]["display_name"] is None
    assert snap["profiles"][MEMBER]["is_cannect_user"] is True  # delete clears fields only
    assert snap["profiles"][MEMBER]["handle"] == "member.test"


def test_profile_update_applies_to_rows_created_by_posts():
    snap = run(post(ALICE, "a1", "#weed"), profile(ALICE, displayName="Alice")).snapshot()
    assert snap["profiles"][ALICE]["display_name"] == "Alice"


# ---- rule 8: identity ---------------------------------------------------------------------------------


def test_identity_events_only_prompt_resolution():
    model = run(
        follow(MEMBER, "f1", ALICE),            # ALICE gets a profile row
        identity(ALICE, "member.test"),         # claims the member's handle: a claim only
        identity(CAROL, "carol.test"),          # no row: ignored
        identity(MEMBER2),                      # no handle
        members=[(MEMBER, "member.test"), (MEMBER2, "m2.test")],
    )
    snap = model.snapshot()
    assert snap["profiles"][ALICE]["handle"] is None
    assert snap["profiles"][MEMBER]["handle"] == "member.test"
    assert snap["profiles"][MEMBER2]["handle"] == "m2.test"
    assert CAROL not in snap["profiles"]


def test_resolved_identities_keep_only_handles_that_verify_both_ways():
    model = run(
        follow(MEMBER, "f1", ALICE),
        follow(MEMBER, "f2", BOB),
        members=[(MEMBER, "member.test"), (MEMBER2, "m2.test")],
    )
    documents = {ALICE: "member.test", BOB: "Bob.Test", MEMBER: "member.test", MEMBER2: "m2-new.test"}
    domains = {"member.test": MEMBER, "bob.test": BOB}   # m2-new.test names nobody
    model.resolve_identities(documents.get, lambda handle: domains.get(handle.lower()))
    snap = model.snapshot()
    assert snap["profiles"][ALICE]["handle"] is None      # claims the member's handle: refused
    assert snap["profiles"][MEMBER]["handle"] == "member.test"
    assert snap["profiles"][BOB]["handle"] == "bob.test"
    assert snap["profiles"][MEMBER2]["handle"] is None    # the operator's handle no longer verifies
    domains["member.test"] = ALICE                          # the handle moved to ALICE
    model.resolve_identities(documents.get, domains.get)
    snap = model.snapshot()
    assert snap["profiles"][ALICE]["handle"] == "member.test"
    assert snap["profiles"][MEMBER]["handle"] is None


# ---- rule 9: account purge ------------------------------------------------------------------------------


def test_account_deleted_purge_restores_counts_elsewhere():
    m1 = P(MEMBER, "m1")
    a1 = P(ALICE, "a1")
    a_reply = P(ALICE, "a2")
    model = run(
        post(MEMBER, "m1"),
        follow(MEMBER, "f1", ALICE),
        follow(ALICE, "f2", MEMBER),
        post(ALICE, "a1", "followed by a member"),
        post(ALICE, "a2", "reply", parent=m1),
        post(BOB, "b1", "reply to alice", parent=a1),
        like(BOB, "l1", a1),
        like(ALICE, "l2", m1),
        repost(ALICE, "r1", m1),
        repost(MEMBER, "r2", a1),
        like(ALICE, "l3", a1),                   # own like of own post
        identity(ALICE, "alice.test"),
    )
    snap = model.snapshot()
    assert snap["posts"][m1]["reply_count"] == 1
    assert snap["posts"][m1]["like_count"] == 1 and snap["posts"][m1]["repost_count"] == 1
    assert snap["profiles"][MEMBER]["followers_count"] == 1
    assert snap["profiles"][MEMBER]["following_count"] == 1

    assert model.apply_line(account(ALICE, "deleted"))
    snap = model.snapshot()
    assert_invariants(snap)
    assert set(snap["posts"]) == {m1, P(BOB, "b1")}    # BOB's reply stays, parent gone
    assert a_reply not in snap["posts"]
    assert snap["posts"][m1]["reply_count"] == 0
    assert snap["posts"][m1]["like_count"] == 0 and snap["posts"][m1]["repost_count"] == 0
    assert snap["likes"] == {} and snap["reposts"] == {} and snap["follows"] == {}
    assert ALICE not in snap["profiles"]
    assert snap["profiles"][MEMBER]["followers_count"] == 0
    assert snap["profiles"][MEMBER]["following_count"] == 0
    assert snap["profiles"][BOB]["posts_count"] == 1

    # the handle index forgot ALICE: another account can take the handle without side effects
    model.resolve_identities({MEMBER: "alice.test"}.get, {"alice.test": MEMBER}.get)
    assert model.snapshot()["profiles"][MEMBER]["handle"] == "alice.test"


def test_purge_of_thread_with_replies_to_own_posts():
    model = run(
        post(MEMBER, "m1"),
        post(ALICE, "a1", "#weed"),
        post(ALICE, "a2", parent=P(ALICE, "a1")),
        post(ALICE, "a3", parent=P(ALICE, "a2"), root=P(ALICE, "a1")),
        post(BOB, "b1", parent=P(ALICE, "a3"), root=P(ALICE, "a1")),
        account(ALICE, "takendown"),
    )
    snap = model.snapshot()
    assert set(snap["posts"]) == {P(MEMBER, "m1"), P(BOB, "b1")}


def test_purged_member_loses_membership():
    model = run(post(MEMBER, "m1"), account(MEMBER, "takendown"))
    snap = model.snapshot()
    assert snap["posts"] == {} and snap["profiles"] == {}
    model.apply_line(post(MEMBER, "m2", "untagged"))       # no longer a member: dropped
    model.apply_line(post(MEMBER, "m3", "#cannabis"))      # tag rule still applies
    snap = model.snapshot()
    assert_invariants(snap)
    assert set(snap["posts"]) == {P(MEMBER, "m3")}
    assert snap["posts"][P(MEMBER, "m3")]["is_cannect_user"] is False
    assert snap["profiles"][MEMBER]["is_cannect_user"] is False
    assert snap["profiles"][MEMBER]["handle"] is None


def test_purged_member_no_longer_makes_followed_authors_indexable():
    model = run(follow(MEMBER, "f1", ALICE), account(MEMBER, "deleted"), post(ALICE, "a1"))
    assert model.snapshot()["posts"] == {}


@pytest.mark.parametrize("status", [None, "deactivated", "suspended", "desynchronized", "throttled"])
def test_other_account_statuses_change_nothing(status):
    model = run(post(MEMBER, "m1"), follow(MEMBER, "f1", ALICE), post(ALICE, "a1"))
    before = model.snapshot()
    assert model.apply_line(account(MEMBER, status))
    assert model.apply_line(account(ALICE, status, active=True))
    assert model.snapshot() == before


def test_purge_of_unknown_account_is_noop():
    model = run(post(MEMBER, "m1"))
    before = model.snapshot()
    model.apply_line(account(CAROL, "deleted"))
    assert model.snapshot() == before


# ---- invalid lines ---------------------------------------------------------------------------------------


def _ev(**fields) -> str:
    return orjson.dumps(fields).decode()


GOOD_COMMIT = {"rev": "r", "operation": "create", "collection": POST, "rkey": "k",
               "record": {"text": "#cannabis"}, "cid": "bafyreigoodcommit"}


@pytest.mark.parametrize("line", [
    "not json",
    "",
    "{\"did\": \"did:plc:x\", ",
    "[1, 2]",
    "\"a string\"",
    "null",
    _ev(time_us=1, kind="commit", commit=GOOD_COMMIT),                      # no did
    _ev(did=5, time_us=1, kind="commit", commit=GOOD_COMMIT),               # did not a string
    _ev(did=ALICE, kind="commit", commit=GOOD_COMMIT),                      # no time_us
    _ev(did=ALICE, time_us="1", kind="commit", commit=GOOD_COMMIT),         # time_us a string
    _ev(did=ALICE, time_us=1.5, kind="commit", commit=GOOD_COMMIT),         # time_us a float
    _ev(did=ALICE, time_us=True, kind="commit", commit=GOOD_COMMIT),        # time_us a bool
    _ev(did=ALICE, time_us=1, commit=GOOD_COMMIT),                          # no kind
    _ev(did=ALICE, time_us=1, kind=None, commit=GOOD_COMMIT),               # null kind
    _ev(did=ALICE, time_us=1, kind="commit"),                               # no commit object
    _ev(did=ALICE, time_us=1, kind="commit", commit="x"),
    _ev(did=ALICE, time_us=1, kind="commit", commit={**GOOD_COMMIT, "collection": None}),
    _ev(did=ALICE, time_us=1, kind="commit",
        commit={k: v for k, v in GOOD_COMMIT.items() if k != "operation"}),
    _ev(did=ALICE, time_us=1, kind="commit",
        commit={k: v for k, v in GOOD_COMMIT.items() if k != "rkey"}),
    _ev(did=ALICE, time_us=1, kind="commit",
        commit={k: v for k, v in GOOD_COMMIT.items() if k != "record"}),    # create, no record
    _ev(did=ALICE, time_us=1, kind="commit", commit={**GOOD_COMMIT, "operation": "update",
                                                      "record": "text"}),
    _ev(did=ALICE, time_us=1, kind="commit",                                # collection not an NSID
        commit={"operation": "create", "collection": "not an nsid", "rkey": "b", "record": {}}),
    _ev(did=ALICE, time_us=1, kind="commit", commit={**GOOD_COMMIT, "rkey": ".."}),  # not a record key
    _ev(did=ALICE, time_us=1, kind="commit", commit={**GOOD_COMMIT, "cid": "c"}),    # not a CID
    _ev(did=ALICE, time_us=1, kind="commit", commit={**GOOD_COMMIT, "operation": "resync"}),
    _ev(did="alice", time_us=1, kind="commit", commit=GOOD_COMMIT),            # not a DID
    _ev(did=ALICE, time_us=0, kind="commit", commit=GOOD_COMMIT),              # time_us not positive
    _ev(did=ALICE, time_us=1, kind="identity"),                                # no identity object
    _ev(did=ALICE, time_us=1, kind="account"),                                 # no account object
    _ev(did=ALICE, time_us=1, kind="account", account={"active": "yes"}),
    _ev(did=ALICE, time_us=1, kind="account", account={"active": False, "status": "gone"}),
])
def test_malformed_lines_rejected(line):
    model = CommunityModel([(MEMBER, None)], TAGS)
    assert model.apply_line(line) is False
    assert model.apply_line(line.encode()) is False
    assert model.rejected == 2
    assert model.snapshot()["posts"] == {}


def test_rejected_count_and_valid_edge_events():
    model = CommunityModel([(MEMBER, None)], TAGS)
    lines = [
        "garbage",
        _ev(did=ALICE, time_us=1, kind="commit", commit=GOOD_COMMIT),                # valid
        _ev(did=ALICE, time_us=2, kind="commit",                                     # delete, no record
            commit={"operation": "delete", "collection": POST, "rkey": "k"}),
        _ev(did=ALICE, time_us=3, kind="something-new", extra={"a": 1}),             # unknown kind
        _ev(did=ALICE, time_us=4, kind="commit", cursor=99,                         # unknown field
            commit={"operation": "delete", "collection": POST, "rkey": "k", "new": 1}),
        _ev(did=ALICE, time_us=5, kind="identity", identity={}),                     # no handle
        _ev(did=ALICE, time_us=6, kind="account", account={"active": True}),         # no status
        _ev(did=ALICE, time_us=7),                                                   # rejected
        _ev(did=ALICE, time_us=8, kind="commit",                                     # other collection,
            commit={"operation": "create", "collection": "app.bsky.graph.block", "rkey": "b"}),  # ignored
    ]
    results = [model.apply_line(line) for line in lines]
    assert results == [False, True, True, True, True, True, True, False, True]
    assert model.rejected == 2
    assert model.accepted == 7
    assert model.snapshot()["posts"] == {}  # created, then deleted
    assert_invariants(model.snapshot())


def test_apply_file_skips_blank_lines(tmp_path):
    path = tmp_path / "capture.jsonl"
    path.write_text("\n".join([post(MEMBER, "m1"), "", "   ", "oops", like(ALICE, "l1", P(MEMBER, "m1"))]) + "\n")
    model = CommunityModel([(MEMBER, None)], TAGS).apply_file(str(path))
    assert model.rejected == 1
    assert model.snapshot()["posts"][P(MEMBER, "m1")]["like_count"] == 1


# ---- assert_invariants itself -------------------------------------------------------------------------------


def test_assert_invariants_detects_inconsistencies():
    snap = run(post(MEMBER, "m1"), like(ALICE, "l1", P(MEMBER, "m1")),
               post(ALICE, "a1", "#weed", parent=P(MEMBER, "m1")),
               follow(MEMBER, "f1", ALICE)).snapshot()
    assert invariant_violations(snap) == []

    broken = orjson.loads(orjson.dumps(snap))  # deep copy (tuples become lists: fine here)
    broken["posts"][P(MEMBER, "m1")]["like_count"] = 2
    broken["posts"][P(MEMBER, "m1")]["reply_count"] = 0
    broken["profiles"][ALICE]["followers_count"] = 0
    broken["profiles"][MEMBER]["posts_count"] = 3
    broken["likes"]["at://x/app.bsky.feed.like/y"] = (BOB, P(BOB, "ghost"))
    with pytest.raises(AssertionError) as info:
        assert_invariants(broken)
    message = str(info.value)
    for expected in ("like_count=2", "reply_count=0", "followers_count=0", "posts_count=3",
                     "is not an indexed post"):
        assert expected in message
    # without referential checks, only counts are compared
    problems = invariant_violations(broken, referential=False)
    assert not any("indexed post" in p for p in problems)

    del broken["profiles"][ALICE]
    assert any("no profile row" in p for p in invariant_violations(broken))


# ---- real captures -------------------------------------------------------------------------------------------------


def _sample_files() -> list[str]:
    return sorted(glob.glob(os.path.join(SAMPLES_DIR, "*.jsonl")))


@pytest.mark.skipif(not _sample_files(), reason="no Jetstream samples")
@pytest.mark.parametrize("path", _sample_files(), ids=os.path.basename)
def test_real_samples_process_without_error(path):
    with open(path, "rb") as fh:
        lines = [line for line in fh if line.strip()]
        events = [orjson.loads(line) for line in lines]
    # members: every DID that does something in the capture, so that most rules fire
    dids = sorted({e["did"] for e in events})
    for members in ([], [(did, None) for did in dids]):
        model = CommunityModel(members, ["cannabis", "weed"])
        for line in lines:
            assert model.apply_line(line), line[:200]
        assert model.rejected == 0
        snap = model.snapshot()
        assert_invariants(snap)
        if members:
            posts = [e for e in events if e["kind"] == "commit"
                     and e["commit"]["collection"] == POST and e["commit"]["operation"] == "create"]
            assert len(snap["posts"]) >= len(posts) - 1  # all created posts (minus a deleted one)


def test_real_sample_shapes_parsed():
    path = os.path.join(SAMPLES_DIR, "golden-2026-05-25.jsonl")
    if not os.path.exists(path):
        pytest.skip("no golden sample")
    model = CommunityModel([("did:plc:mxwlsvdgs6tn75lq6jrr2vp7", "f.test"),
                            ("did:plc:o6t5vwyr7ae73foww7bgye4r", None)], [])
    model.apply_file(path)
    snap = model.snapshot()
    assert model.rejected == 0
    # the follow by a member is stored; the member's profile update is applied
    assert snap["follows"] == {
        "at://did:plc:mxwlsvdgs6tn75lq6jrr2vp7/app.bsky.graph.follow/3mmoojocxvr2s":
            ("did:plc:mxwlsvdgs6tn75lq6jrr2vp7", "did:plc:anc6s2kher6ltrhhglxrzxsa")}
    assert snap["profiles"]["did:plc:o6t5vwyr7ae73foww7bgye4r"]["display_name"] == "Multiversal Lokis Unit🔞"
    assert model.profiles["did:plc:o6t5vwyr7ae73foww7bgye4r"]["avatar_cid"].startswith("bafkrei")
    assert snap["posts"] == {}  # the one post replies to an unindexed post, untagged
    assert_invariants(snap)


# ---- randomized consistency and speed ------------------------------------------------------------------------------


def _random_stream(rng: random.Random, n: int, n_dids: int = 40) -> list[str]:
    dids = [f"did:plc:u{i}" for i in range(n_dids)]
    texts = ["plain", "#cannabis", "#WEED!", "nothing #else", "x #420 y"]
    lines: list[str] = []
    for _ in range(n):
        did = rng.choice(dids)
        other = rng.choice(dids)
        rkey = f"k{rng.randrange(30)}"
        target = P(other, f"k{rng.randrange(30)}")
        r = rng.random()
        if r < 0.30:
            parent = target if rng.random() < 0.5 else None
            lines.append(post(did, rkey, rng.choice(texts), parent=parent,
                              operation=rng.choice(["create", "create", "update"])))
        elif r < 0.40:
            lines.append(delete(did, POST, rkey))
        elif r < 0.55:
            lines.append(like(did, rkey, target))
        elif r < 0.60:
            lines.append(delete(did, LIKE, rkey))
        elif r < 0.68:
            lines.append(repost(did, rkey, target))
        elif r < 0.71:
            lines.append(delete(did, REPOST, rkey))
        elif r < 0.83:
            lines.append(follow(did, rkey, other))
        elif r < 0.88:
            lines.append(delete(did, FOLLOW, rkey))
        elif r < 0.92:
            lines.append(profile(did, displayName=f"name {rkey}"))
        elif r < 0.95:
            lines.append(identity(did, f"h{rng.randrange(10)}.test"))
        elif r < 0.97:
            lines.append(account(did, rng.choice(["deleted", "takendown", "deactivated"])))
        else:
            lines.append(rng.choice(["{}", "nope", _ev(did=did, time_us=1, kind="commit")]))
    return lines


@pytest.mark.parametrize("seed", range(5))
def test_random_streams_keep_invariants(seed):
    rng = random.Random(seed)
    members = [(f"did:plc:u{i}", f"h{i}.test") for i in range(0, 40, 7)]
    model = CommunityModel(members, ["cannabis", "weed", "420"])
    seen = {"posts": 0, "likes": 0, "reposts": 0, "follows": 0}
    for i, line in enumerate(_random_stream(rng, 3000)):
        model.apply_line(line)
        if i % 100 == 0:
            snap = model.snapshot()
            assert_invariants(snap)
            for table in seen:
                seen[table] = max(seen[table], len(snap[table]))
    snap = model.snapshot()
    assert_invariants(snap)
    # at most one profile holds each handle
    handles = [p["handle"] for p in snap["profiles"].values() if p["handle"] is not None]
    assert len(handles) == len(set(handles))
    assert all(seen.values()), seen  # the stream exercised every table
    assert model.rejected > 0


def test_a_long_random_stream_keeps_the_invariants():
    rng = random.Random(1)
    members = [(f"did:plc:u{i}", None) for i in range(0, 2000, 50)]
    model = CommunityModel(members, ["cannabis", "weed", "420"])
    for line in _random_stream(rng, 100_000, n_dids=2000):
        model.apply_line(line.encode())
    assert_invariants(model.snapshot())
