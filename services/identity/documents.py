"""DID documents: where they come from, and the handle one names.

did:plc documents come from the PLC directory (``GET <directory>/<did>``), did:web ones from
``https://<host>/.well-known/did.json`` through the guarded fetcher (the host is the DID's
owner's to point anywhere). A document is used only when it is a JSON object of sane size
whose ``id`` is the DID; its handle is the first ``at://`` entry of ``alsoKnownAs``, as the
atproto spec says, and only when that entry is a valid handle.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from .errors import Refused, Unreachable
from .guard import GuardedFetcher
from .names import did_web_host, normalize_handle
from .services_client import ServiceClient

#: A PLC document is about 1 KB; a did:web document has no reason to be much larger.
MAX_DOCUMENT_BYTES = 64 * 1024
MAX_ALSO_KNOWN_AS = 32


@dataclass(frozen=True)
class Claim:
    """What a DID's document says: ``found`` False when there is no usable document."""

    found: bool
    handle: str | None
    detail: str


def fetch_claim(did: str, plc: ServiceClient, plc_url: str, web: GuardedFetcher) -> Claim:
    """The handle ``did``'s document claims; Unreachable when the document cannot be had now."""
    if did.startswith("did:plc:"):
        status, body = plc.get(f"{plc_url}/{did}", MAX_DOCUMENT_BYTES)
        if status in (404, 410):  # unknown, or tombstoned (deactivated for good)
            return Claim(False, None, f"the PLC directory answers {status}")
    else:
        host = did_web_host(did)
        if host is None:
            return Claim(False, None, "not a resolvable did:web")
        try:
            status, body = web.get(host, "/.well-known/did.json", MAX_DOCUMENT_BYTES, b"application/json")
        except Refused as exc:
            return Claim(False, None, str(exc))
        if 400 <= status < 500:
            return Claim(False, None, f"https://{host}/.well-known/did.json answers {status}")
        if status >= 500:
            raise Unreachable(f"https://{host}/.well-known/did.json answers {status}")
    if status != 200:
        return Claim(False, None, f"document answered {status}")
    return claim_from_document(did, body)


def claim_from_document(did: str, body: bytes) -> Claim:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return Claim(False, None, "the document is not JSON")
    if not isinstance(document, dict) or document.get("id") != did:
        return Claim(False, None, "the document is not this DID's")
    aliases = document.get("alsoKnownAs") or []
    if not isinstance(aliases, list):
        return Claim(False, None, "alsoKnownAs is not a list")
    for alias in aliases[:MAX_ALSO_KNOWN_AS]:
        if isinstance(alias, str) and alias.startswith("at://"):
            handle = normalize_handle(alias.removeprefix("at://"))
            return Claim(True, handle, "names a handle" if handle else f"names an invalid handle {alias[:80]!r}")
    return Claim(True, None, "names no handle")


def fetch_pds_endpoint(did: str, plc: ServiceClient, plc_url: str, web: GuardedFetcher) -> str | None:
    """The PDS ``did``'s document names (its ``#atproto_pds`` service), None when it names none
    or there is no usable document; Unreachable when the document cannot be had now."""
    if did.startswith("did:plc:"):
        status, body = plc.get(f"{plc_url}/{did}", MAX_DOCUMENT_BYTES)
    else:
        host = did_web_host(did)
        if host is None:
            return None
        try:
            status, body = web.get(host, "/.well-known/did.json", MAX_DOCUMENT_BYTES, b"application/json")
        except Refused:
            return None
        if status >= 500:
            raise Unreachable(f"https://{host}/.well-known/did.json answers {status}")
    return pds_from_document(did, body) if status == 200 else None


def pds_from_document(did: str, body: bytes) -> str | None:
    """The ``serviceEndpoint`` of the document's ``#atproto_pds`` service (an http(s) URL)."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(document, dict) or document.get("id") != did or not isinstance(document.get("service"), list):
        return None
    for service in document["service"][:MAX_ALSO_KNOWN_AS]:
        if (isinstance(service, dict) and service.get("id") in ("#atproto_pds", f"{did}#atproto_pds")
                and service.get("type") == "AtprotoPersonalDataServer"):
            endpoint = service.get("serviceEndpoint")
            if isinstance(endpoint, str) and endpoint.startswith(("https://", "http://")) and len(endpoint) < 512:
                return endpoint.rstrip("/")
            return None
    return None
