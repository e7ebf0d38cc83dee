"""Handle -> DID: which DID a handle's own domain names.

Without a configured resolver service: the ``_atproto.<handle>`` DNS TXT record
(``did=<did>``) first, then ``https://<handle>/.well-known/atproto-did`` through the guarded
fetcher, as the atproto spec describes. With ``HANDLE_RESOLVER_URL``: that service's
``com.atproto.identity.resolveHandle`` (an AppView or PDS does this resolution itself).

Each returns the DID, None when the handle definitely names no DID, or raises
:class:`Unreachable` when that cannot be known now.
"""

from __future__ import annotations

import orjson

from .dns import Dns
from .errors import Refused, Unreachable
from .guard import GuardedFetcher
from .names import checked_did
from .services_client import ServiceClient

#: A DID is at most 2 KB; the well-known answer is that DID and perhaps a newline.
MAX_WELL_KNOWN_BYTES = 4096
MAX_XRPC_BYTES = 16 * 1024


def via_dns(dns: Dns, handle: str) -> str | None:
    dids = {record.removeprefix("did=").strip() for record in dns.txt(f"_atproto.{handle}")
            if record.startswith("did=")}
    # Several different DIDs: the handle names none of them.
    return checked_did(dids.pop()) if len(dids) == 1 else None


def via_well_known(web: GuardedFetcher, handle: str) -> str | None:
    try:
        status, body = web.get(handle, "/.well-known/atproto-did", MAX_WELL_KNOWN_BYTES, b"text/plain")
    except Refused:
        return None
    if status >= 500:
        raise Unreachable(f"https://{handle}/.well-known/atproto-did answers {status}")
    if status != 200:
        return None
    try:
        return checked_did(body.decode("ascii").strip())
    except UnicodeDecodeError:
        return None


def via_domain(dns: Dns, web: GuardedFetcher, handle: str) -> str | None:
    """DNS first; HTTPS when DNS names no DID. Unreachable only if neither could answer."""
    dns_failed: Unreachable | None = None
    try:
        did = via_dns(dns, handle)
        if did:
            return did
    except Unreachable as exc:
        dns_failed = exc
    did = via_well_known(web, handle)
    if did is None and dns_failed is not None:
        raise dns_failed
    return did


def via_service(client: ServiceClient, resolver_url: str, handle: str) -> str | None:
    url = f"{resolver_url}/xrpc/com.atproto.identity.resolveHandle"
    status, body = client.get(url, MAX_XRPC_BYTES, params={"handle": handle})
    if status == 400:  # InvalidRequest / HandleNotFound: the handle does not resolve
        return None
    if status != 200:
        raise Unreachable(f"{url} answers {status}")
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise Unreachable(f"{url} answers something that is not JSON") from None
    return checked_did(answer.get("did")) if isinstance(answer, dict) else None
