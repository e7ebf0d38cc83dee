"""Load the slice of the index a run of events touches, in a few set-based queries."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from services.jetstream import embed_summary, record_uri, reply_refs

from .changes import PostRef, View
from .notifications import post_dids
from .params import arrays

_MEMBERS = text("SELECT did, is_cannect_user FROM profiles WHERE did = ANY(:dids)")
_ONLY_MEMBERS = text("SELECT did FROM profiles WHERE did = ANY(:dids) AND is_cannect_user")
_MEMBER_FOLLOWERS = text("""
    SELECT f.following_did, count(*) FROM follows f
    JOIN profiles m ON m.did = f.follower_did AND m.is_cannect_user
    WHERE f.following_did = ANY(:dids) GROUP BY f.following_did""")
_POSTS = text("SELECT uri, author_did, reply_parent_uri, counts_as_of_us FROM posts WHERE uri = ANY(:uris)")
_TOMBSTONES = text("SELECT uri FROM record_tombstones WHERE uri = ANY(:uris)")
_ORPHAN_REPLIES = text("""
    SELECT reply_parent_uri, count(*) FROM posts WHERE reply_parent_uri = ANY(:uris) GROUP BY 1""")
_LIKES = text("SELECT uri, actor_did, subject_uri FROM likes WHERE uri = ANY(:uris)")
_REPOSTS = text("SELECT uri, actor_did, subject_uri FROM reposts WHERE uri = ANY(:uris)")
_FOLLOWS = text("SELECT uri, follower_did, following_did FROM follows WHERE uri = ANY(:uris)")
# Likes/reposts of posts a run deletes must be known so later events see them gone.
_LIKES_OF = text("SELECT uri, actor_did, subject_uri FROM likes WHERE subject_uri = ANY(:uris)")
_REPOSTS_OF = text("SELECT uri, actor_did, subject_uri FROM reposts WHERE subject_uri = ANY(:uris)")


def load_view(session: Session, events: list[dict]) -> View:
    dids: set[str] = set()
    authors: set[str] = set()
    created_posts: set[str] = set()
    deleted_posts: set[str] = set()
    post_uris: set[str] = set()
    uris = {"like": set(), "repost": set(), "follow": set()}
    notified: set[str] = set()  # who the run's records could notify: only their membership is read
    backfilled: set[str] = set()  # URIs and DIDs of backfilled records: were they deleted?
    for event in events:
        did = event["did"]
        dids.add(did)
        if event["k"] != "commit":
            continue
        col, uri = event["col"], record_uri(did, event["col"], event["rkey"])
        if "bf" in event:
            backfilled.update((uri, did))
        record = event.get("rec")
        if col == "post":
            post_uris.add(uri)
            if record is None:
                deleted_posts.add(uri)
                continue
            created_posts.add(uri)
            authors.add(did)
            parent, root = reply_refs(record)
            if parent:
                post_uris.add(parent)
            if event["op"] == "c":
                notified |= post_dids(record, parent, root, embed_summary(record)[2])
        elif col in uris:
            uris[col].add(uri)
            if record is not None and col == "follow":
                dids.add(record["subject"])
                authors.add(record["subject"])
            elif record is not None:
                post_uris.add(record["subject"]["uri"])

    follows = _refs(session, _FOLLOWS, uris["follow"])
    likes, reposts = _refs(session, _LIKES, uris["like"]), _refs(session, _REPOSTS, uris["repost"])
    # A stored like or repost deleted in this run: does its subject's count move? (counts_as_of)
    post_uris.update(subject for _, subject in (*likes.values(), *reposts.values()))
    # A follow deleted in this run names its subject only in the stored row; whether that
    # subject is a member decides whose viewer state (followed_by) is refreshed.
    dids.update(subject for _, subject in follows.values())
    notified.discard(None)
    rows = session.execute(_MEMBERS, arrays({"dids": list(dids | notified)})).all()
    view = View(
        members={did for did, member in rows if member},
        profiles={did for did, _ in rows if did in dids},
        member_followers=dict(session.execute(_MEMBER_FOLLOWERS, arrays({"dids": list(authors)})).all())
        if authors else {},
        posts={uri: PostRef(author, parent, as_of)
               for uri, author, parent, as_of in session.execute(_POSTS, arrays({"uris": list(post_uris)}))},
        likes=likes,
        reposts=reposts,
        follows=follows,
        orphan_replies=dict(session.execute(_ORPHAN_REPLIES, arrays({"uris": list(created_posts)})).all())
        if created_posts else {},
        tombstones=set(session.execute(_TOMBSTONES, arrays({"uris": list(backfilled)})).scalars())
        if backfilled else set(),
    )
    # A like or repost notifies the author of an indexed subject: is that author a member?
    authors_of_posts = {ref.author for ref in view.posts.values()} - dids - notified
    if authors_of_posts:
        view.members.update(session.execute(_ONLY_MEMBERS, arrays({"dids": list(authors_of_posts)})).scalars())
    doomed = [uri for uri in deleted_posts if uri in view.posts]
    if doomed:
        # A deleted reply decrements its parent: the parent must be in the view too.
        parents = {view.posts[uri].parent for uri in doomed} - set(view.posts) - {None}
        if parents:
            rows = session.execute(_POSTS, arrays({"uris": list(parents)}))
            view.posts.update({uri: PostRef(author, parent, as_of) for uri, author, parent, as_of in rows})
        view.likes.update(_refs(session, _LIKES_OF, doomed))
        view.reposts.update(_refs(session, _REPOSTS_OF, doomed))
    return view


def _refs(session: Session, query, uris) -> dict[str, tuple[str, str]]:
    if not uris:
        return {}
    return {uri: (a, b) for uri, a, b in session.execute(query, arrays({"uris": list(uris)}))}
