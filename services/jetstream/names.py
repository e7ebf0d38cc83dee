"""Collection NSIDs and the short names ingest messages use for them."""

from __future__ import annotations

import re

POST = "app.bsky.feed.post"
LIKE = "app.bsky.feed.like"
REPOST = "app.bsky.feed.repost"
FOLLOW = "app.bsky.graph.follow"
PROFILE = "app.bsky.actor.profile"

#: Collection NSID -> the short name used in ingest messages.
SHORT_NAMES = {POST: "post", LIKE: "like", REPOST: "repost", FOLLOW: "follow", PROFILE: "profile"}
NSIDS = {short: nsid for nsid, short in SHORT_NAMES.items()}
OPERATIONS = {"create": "c", "update": "u", "delete": "d"}

#: Account statuses of ``com.atproto.sync.subscribeRepos#account`` (its knownValues).
ACCOUNT_STATUSES = frozenset({"takendown", "suspended", "deleted", "deactivated", "desynchronized", "throttled"})
PURGE_STATUSES = frozenset({"deleted", "takendown"})

TAG_FEATURE = "app.bsky.richtext.facet#tag"
INLINE_TAG = re.compile(r"(?:^|\s)#(\w+)")
