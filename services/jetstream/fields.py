"""What the ingest reads out of a slim event: URIs, tags, reply refs, embed summary, dates."""

from __future__ import annotations

from datetime import datetime, timezone

from .names import INLINE_TAG, NSIDS, POST, TAG_FEATURE


def record_uri(did: str, short_collection: str, rkey: str) -> str:
    return f"at://{did}/{NSIDS[short_collection]}/{rkey}"


def uri_collection(uri: str) -> str | None:
    """The collection NSID of an AT-URI, or None if it is not one."""
    parts = uri.split("/", 4)
    return parts[3] if len(parts) >= 4 and uri.startswith("at://") else None


def post_tags(record: dict) -> set[str]:
    """Every hashtag of a post, lower-cased: facet tags, the ``tags`` array, inline ``#words``."""
    tags: set[str] = set()
    facets = record.get("facets")
    for facet in facets if isinstance(facets, list) else ():
        features = facet.get("features") if isinstance(facet, dict) else None
        for feature in features if isinstance(features, list) else ():
            if isinstance(feature, dict) and feature.get("$type") == TAG_FEATURE and isinstance(feature.get("tag"), str):
                tags.add(feature["tag"].lstrip("#").lower())
    extra = record.get("tags")
    for tag in extra if isinstance(extra, list) else ():
        if isinstance(tag, str):
            tags.add(tag.lstrip("#").lower())
    text = record.get("text")
    if isinstance(text, str) and "#" in text:
        tags.update(match.lower() for match in INLINE_TAG.findall(text))
    return tags


def parse_datetime(value, fallback_time_us: int) -> datetime:
    """A record's ``createdAt``, parsed leniently; the event's own time when it is unusable."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=timezone.utc)
            if 1990 <= parsed.year <= 2100:
                return parsed
        except ValueError:
            pass
    return datetime.fromtimestamp(fallback_time_us / 1_000_000, tz=timezone.utc)


def reply_refs(record: dict) -> tuple[str | None, str | None]:
    """(parent URI, root URI) of a reply post, or (None, None)."""
    reply = record.get("reply")
    if not isinstance(reply, dict):
        return None, None

    def ref_uri(key):
        ref = reply.get(key)
        return ref["uri"] if isinstance(ref, dict) and isinstance(ref.get("uri"), str) else None

    return ref_uri("parent"), ref_uri("root")


_EMBED_TYPES = {"images": "images", "video": "video", "gallery": "gallery", "external": "external",
                "record": "quote", "recordWithMedia": "quote_with_media"}


def embed_summary(record: dict) -> tuple[dict | None, str | None, str | None, int]:
    """(embed, embed type, quoted post URI, media count) of a post record."""
    embed = record.get("embed")
    if not isinstance(embed, dict):
        return None, None, None, 0
    kind = str(embed.get("$type", "")).removeprefix("app.bsky.embed.")
    quoted, media = None, embed
    if kind == "record":
        quoted = _dig(embed, "record", "uri")
    elif kind == "recordWithMedia":
        quoted = _dig(embed, "record", "record", "uri")
        media = embed.get("media") if isinstance(embed.get("media"), dict) else {}
    if quoted is not None and uri_collection(quoted) != POST:
        quoted = None  # feeds, lists and starter packs can be embedded too
    media_kind = str(media.get("$type", "")).removeprefix("app.bsky.embed.")
    items = media.get("images") if media_kind == "images" else media.get("items") if media_kind == "gallery" else None
    count = len(items) if isinstance(items, list) else int(media_kind == "video")
    return embed, _EMBED_TYPES.get(kind, kind or None), quoted, count


def _dig(value, *keys):
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value if isinstance(value, str) else None
