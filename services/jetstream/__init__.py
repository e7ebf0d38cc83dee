"""Jetstream v1 events: check them at the edge, slim them for the ingest queue.

The listener calls :func:`parse_event` on every frame. It never raises: real streams carry
unknown collections and fields and missing optional fields, and any account can publish a
hostile record. An event comes back as a compact dict (the wire format of ``ingest``
messages) holding only lexicon fields, or as a :class:`Skip` saying why it was dropped:
``ignored`` for things we do not use, ``rejected`` for things that are broken.

- ``events``: the envelope (size, JSON, depth, did/time_us/kind, commit, identity, account);
- ``records``: the lexicons of the records we index and what of each we keep;
- ``lexicon``: the small schema interpreter ``records`` is written in;
- ``fields``: what the ingest reads out of a slim record (tags, reply refs, embeds, dates);
- ``names``: collection NSIDs, operations, account statuses.
"""

from .events import MAX_DEPTH, Skip, encodes, parse_event
from .fields import embed_summary, parse_datetime, post_tags, record_uri, reply_refs, uri_collection
from .names import (
    ACCOUNT_STATUSES,
    FOLLOW,
    INLINE_TAG,
    LIKE,
    NSIDS,
    OPERATIONS,
    POST,
    PROFILE,
    PURGE_STATUSES,
    REPOST,
    SHORT_NAMES,
    TAG_FEATURE,
)

__all__ = [
    "ACCOUNT_STATUSES", "FOLLOW", "INLINE_TAG", "LIKE", "MAX_DEPTH", "NSIDS", "OPERATIONS", "POST", "PROFILE",
    "PURGE_STATUSES", "REPOST", "SHORT_NAMES", "Skip", "TAG_FEATURE", "embed_summary", "encodes", "parse_datetime",
    "parse_event", "post_tags", "record_uri", "reply_refs", "uri_collection",
]
