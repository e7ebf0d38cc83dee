"""Verify a DID's handle in both directions.

A DID's handle is verified when its DID document names the handle (``alsoKnownAs``) *and*
the handle's own domain (or the configured resolver service) names the DID back. Either
direction alone is a claim anyone can make: a document can name any handle, and a domain
can name any DID.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis import Redis

from cannect.config import Settings

from .cache import Cache
from .dns import Dns
from .documents import Claim, fetch_claim, fetch_pds_endpoint
from .errors import Refused, Unreachable
from .guard import GuardedFetcher
from .handles import via_domain, via_service
from .names import checked_did, normalize_handle
from .services_client import ServiceClient


@dataclass(frozen=True)
class Verdict:
    """``handle`` is the verified handle of ``did``, or None when the DID proves none."""

    did: str
    handle: str | None
    claimed: str | None   # the handle the DID document names
    reason: str


class IdentityResolver:
    """Resolves DIDs and handles with the configured endpoints, cache and guards. Thread-safe."""

    def __init__(self, settings: Settings, redis: Redis | None = None):
        self.plc_url = settings.plc_directory_url
        self.resolver_url = settings.handle_resolver_url
        self.dns = Dns(settings.dns_nameservers, settings.identity_timeout_seconds)
        self.services = ServiceClient(settings.identity_timeout_seconds)
        self.web = GuardedFetcher(self.dns.addresses, timeout=settings.identity_timeout_seconds,
                                  allow_private=settings.identity_allow_private_addresses,
                                  ca_bundle=settings.identity_ca_bundle, port=settings.identity_https_port)
        self.cache = Cache(redis, settings.identity_cache_ttl_seconds, settings.identity_negative_cache_ttl_seconds)

    def verify(self, did: str, fresh: bool = False) -> Verdict:
        """The verified handle of ``did``; Unreachable when it cannot be decided now.

        ``fresh`` ignores cached answers (an identity event says they may be out of date).
        """
        if checked_did(did) is None:
            return Verdict(did, None, None, "not a resolvable DID")
        claim = self.claim(did, fresh)
        if claim.handle is None:
            return Verdict(did, None, None, claim.detail)
        named = self.handle_did(claim.handle, fresh)
        if named == did:
            return Verdict(did, claim.handle, claim.handle, "verified")
        reason = f"{claim.handle} names {named}" if named else f"{claim.handle} names no DID"
        return Verdict(did, None, claim.handle, reason)

    def claim(self, did: str, fresh: bool = False) -> Claim:
        cached = ... if fresh else self.cache.get("doc", did)
        if cached is not ...:
            return Claim(*cached)
        try:
            claim = fetch_claim(did, self.services, self.plc_url, self.web)
        except Refused as exc:
            claim = Claim(False, None, str(exc))
        self.cache.put("doc", did, [claim.found, claim.handle, claim.detail], positive=claim.found)
        return claim

    def pds_endpoint(self, did: str) -> str | None:
        """The PDS URL ``did``'s document names (backfills read its repository there); None when
        it names none; Unreachable when it cannot be decided now."""
        if checked_did(did) is None:
            return None
        cached = self.cache.get("pds", did)
        if cached is not ...:
            return cached
        endpoint = fetch_pds_endpoint(did, self.services, self.plc_url, self.web)
        self.cache.put("pds", did, endpoint, positive=endpoint is not None)
        return endpoint

    def handle_did(self, handle: str, fresh: bool = False) -> str | None:
        """The DID ``handle`` names, None when it names none; Unreachable when unknown now."""
        handle = normalize_handle(handle)
        if handle is None:
            return None
        cached = ... if fresh else self.cache.get("handle", handle)
        if cached is not ...:
            return cached
        try:
            did = (via_service(self.services, self.resolver_url, handle) if self.resolver_url
                   else via_domain(self.dns, self.web, handle))
        except Refused:
            did = None
        self.cache.put("handle", handle, did, positive=did is not None)
        return did

    def close(self) -> None:
        self.services.close()
        self.web.close()
