"""The names identity resolution reads from hostile input: DIDs, handles, did:web hosts.

Syntax is ``services.atproto_syntax``'s (the atproto SDK's validators). On top of it: only
did:plc and did:web resolve, a did:web must name a bare hostname (atproto allows no port or
path), and handles are lower-cased, with the TLDs the spec reserves refused.
"""

from __future__ import annotations

from services.atproto_syntax import is_supported_did, normalize_handle

__all__ = ["checked_did", "did_web_host", "normalize_handle"]


def checked_did(value) -> str | None:
    """``value`` when it is a did:plc or did:web DID we can resolve, else None."""
    if not is_supported_did(value):
        return None
    return value if value.startswith("did:plc:") or did_web_host(value) else None


def did_web_host(did: str) -> str | None:
    """The host of a did:web DID, which atproto allows only at a hostname (no port, no path)."""
    if not did.startswith("did:web:"):
        return None
    return normalize_handle(did.removeprefix("did:web:"))
