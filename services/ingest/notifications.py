"""Who a record notifies, by the rules of ``docs/notification-rules.md``.

Pure functions on one event's record and the set of members the run knows: the run
(:mod:`services.ingest.changes`) calls them as it applies each event, so notifications are
created and removed in the same transaction, order and exactly-once as the index itself.
Recipients are named by the authority of a URI (``at://DID/...``) or a mention facet's DID,
so no lookup beyond the members of the run's view is needed.
"""

from __future__ import annotations

#: Fields of a post record a notification keeps, so the app can show a post it has not indexed.
SHOWN_FIELDS = ("text", "facets", "embed", "langs", "createdAt", "reply")
MENTION = "app.bsky.richtext.facet#mention"
#: A post names at most this many DIDs to consider (mentions beyond it are not notified).
MAX_MENTIONS = 50


def uri_authority(uri: str | None) -> str | None:
    """The DID of an ``at://DID/...`` URI (None for anything else)."""
    if not isinstance(uri, str) or not uri.startswith("at://did:"):
        return None
    return uri[5:].split("/", 1)[0]


def mentioned_dids(record: dict) -> list[str]:
    """The DIDs of the record's mention facets, in order, each once."""
    facets = record.get("facets")
    found: list[str] = []
    if not isinstance(facets, list):
        return found
    for facet in facets:
        features = facet.get("features") if isinstance(facet, dict) else None
        for feature in features if isinstance(features, list) else ():
            if isinstance(feature, dict) and feature.get("$type") == MENTION:
                did = feature.get("did")
                if isinstance(did, str) and did.startswith("did:") and did not in found:
                    found.append(did)
                    if len(found) >= MAX_MENTIONS:
                        return found
    return found


def post_dids(record: dict, parent: str | None, root: str | None, quote: str | None) -> set[str]:
    """Every DID a post could notify (for the run's view to know which are members)."""
    dids = {uri_authority(parent), uri_authority(root), uri_authority(quote), *mentioned_dids(record)}
    dids.discard(None)
    return dids


def post_recipients(author: str, record: dict, parent: str | None, root: str | None, quote: str | None,
                    members: set[str]) -> list[tuple[str, str, str | None]]:
    """``(recipient, type, subject uri)`` for a new post: one per member, never its author.

    A member named several ways gets the first of: reply (to their parent, then their root),
    quote, mention.
    """
    candidates = [(uri_authority(parent), "reply", parent), (uri_authority(root), "reply", root),
                  (uri_authority(quote), "quote", quote)]
    candidates += [(did, "mention", None) for did in mentioned_dids(record)]
    seen: set[str] = set()
    out = []
    for recipient, kind, subject in candidates:
        if recipient is None or recipient == author or recipient in seen or recipient not in members:
            continue
        seen.add(recipient)
        out.append((recipient, kind, subject))
    return out


def shown_record(record: dict) -> dict:
    """The slim post record a notification keeps."""
    return {name: record[name] for name in SHOWN_FIELDS if name in record}
