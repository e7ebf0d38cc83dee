"""What a push carries: a compact JSON the app's service worker can show as it is.

Every payload has ``v`` (format version), ``type``, ``title``, ``body`` and ``url`` (a path
of the app to open). A notification adds ``id``, ``actor {did, handle, displayName, avatar}``,
``subject`` (AT-URI) and ``createdAt``; a broadcast adds ``id``. Text is cut to whole
characters (grapheme clusters), and the whole stays under :data:`MAX_PAYLOAD_BYTES` so the
encrypted message fits the 4,096 bytes push services accept.
"""

from __future__ import annotations

import orjson
import regex

from services.views import image_url, iso

#: Push services take 4,096 bytes of encrypted body: 86 of header, 17 of padding and tag.
MAX_PAYLOAD_BYTES = 3000
SNIPPET_GRAPHEMES = 140
NAME_GRAPHEMES = 64
MAX_URI_CHARS = 512

TITLES = {
    "like": "{name} liked your post",
    "repost": "{name} reposted your post",
    "follow": "{name} followed you",
    "reply": "{name} replied to you",
    "mention": "{name} mentioned you",
    "quote": "{name} quoted your post",
}
#: Types whose text is the actor's own post (the reply, the mention, the quote).
ACTOR_POST_TYPES = ("reply", "mention", "quote")
_GRAPHEME = regex.compile(r"\X")


def clip(text: str | None, graphemes: int) -> str | None:
    """At most ``graphemes`` user-perceived characters, with an ellipsis when cut."""
    if not text:
        return None
    if len(text) <= graphemes:
        return text
    clusters = _GRAPHEME.findall(text[: graphemes * 8])
    if len(clusters) <= graphemes and len(text) <= graphemes * 8:
        return text
    return "".join(clusters[: graphemes - 1]).rstrip() + "…"


def post_path(uri: str | None) -> str | None:
    """``at://did/app.bsky.feed.post/rkey`` -> ``/profile/did/post/rkey`` (the app's post route)."""
    if not uri or not uri.startswith("at://"):
        return None
    parts = uri[5:].split("/")
    if len(parts) != 3 or parts[1] != "app.bsky.feed.post":
        return None
    return f"/profile/{parts[0]}/post/{parts[2]}"


def notification_payload(row, avatar_cdn: str) -> bytes:
    """The push of one notification (``row``: the notification, its actor's profile, the post text)."""
    name = clip(row.display_name, NAME_GRAPHEMES) or (f"@{row.handle}" if row.handle else "Someone")
    post_uri = row.reason_uri if row.type in ACTOR_POST_TYPES else row.subject_uri
    url = (f"/profile/{row.actor_did}" if row.type == "follow" else post_path(post_uri)) or "/notifications"
    payload = {
        "v": 1,
        "type": row.type,
        "id": str(row.notification_id),
        "title": TITLES.get(row.type, "{name}").format(name=name),
        "body": clip(row.post_text, SNIPPET_GRAPHEMES) or "",
        "url": url,
        "actor": {"did": row.actor_did, "handle": row.handle, "displayName": clip(row.display_name, NAME_GRAPHEMES),
                  "avatar": image_url(avatar_cdn, "avatar", row.actor_did, row.avatar_cid)},
        "subject": row.subject_uri if row.subject_uri and len(row.subject_uri) <= MAX_URI_CHARS else None,
        "createdAt": iso(row.created_at),
    }
    return fit(payload)


def broadcast_payload(broadcast: dict) -> bytes:
    return fit({"v": 1, "type": "broadcast", "id": broadcast["id"], "title": broadcast["title"],
                "body": broadcast["body"], "url": broadcast.get("url") or "/"})


def fit(payload: dict) -> bytes:
    """The JSON, shortened until it fits: body first, then the optional parts."""
    data = orjson.dumps(payload)
    for shrink in (_shorter_body, _drop("avatar"), _drop("subject"), _drop("actor")):
        while len(data) > MAX_PAYLOAD_BYTES and shrink(payload):
            data = orjson.dumps(payload)
    if len(data) > MAX_PAYLOAD_BYTES:  # only a pathological title or URL gets here
        data = orjson.dumps({"v": 1, "type": payload["type"], "id": payload.get("id"),
                             "title": clip(payload["title"], 64), "body": "", "url": "/"})
    return data


def _shorter_body(payload: dict) -> bool:
    body = payload.get("body") or ""
    if not body:
        return False
    payload["body"] = clip(body, max(1, len(_GRAPHEME.findall(body)) // 2)) if len(body) > 1 else ""
    return True


def _drop(key: str):
    def drop(payload: dict) -> bool:
        if key == "avatar" and payload.get("actor"):
            found = payload["actor"].pop("avatar", None) is not None
            return found
        return payload.pop(key, None) is not None
    return drop
