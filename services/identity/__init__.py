"""Identity: every handle the index shows is one its DID really holds.

An identity event from Jetstream, or any other claim, is never applied as it says: it only
prompts re-resolution. A DID's handle is the one its DID document names (the PLC directory
for did:plc, ``https://<host>/.well-known/did.json`` for did:web) *and* whose own domain
names the DID back (DNS TXT ``_atproto.<handle>`` or ``https://<handle>/.well-known/atproto-did``,
or the configured resolver service). Resolution runs on the ``identity`` queue
(``tasks/identity.py``), cached, with timeouts, retries and guards against hostile hosts.

- ``resolver``: the two-way check (``IdentityResolver.verify`` -> ``Verdict``);
- ``store``: applying a verdict to the profiles (a handle belongs to one DID);
- ``requests``: at most one queued resolution per DID;
- ``documents``, ``handles``, ``dns``, ``guard``, ``services_client``, ``cache``, ``names``:
  the parts.

When a resolver cannot be reached (:class:`Unreachable`) nothing is stored: the handle stays
as it was, and the lookup is retried. A lookup that answers but does not verify clears the
handle: the DID no longer proves it (docs/indexing-rules.md, rule 8).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Callable

from sqlalchemy.orm import Session

from services.realtime import profile_events, read_changed_event

from .errors import Refused, Unreachable
from .resolver import IdentityResolver, Verdict
from .store import HandleChange, apply_verdict, has_profile

__all__ = ["IdentityResolver", "Outcome", "Refused", "Unreachable", "Verdict", "resolve_and_store"]


@dataclass
class Outcome:
    """What one resolution did; ``verdict`` is None when the DID has no profile (not resolved)."""

    verdict: Verdict | None = None
    change: HandleChange | None = None
    events: list[dict] = field(default_factory=list)  # realtime events, to publish after commit

    @property
    def released(self) -> list[str]:
        return self.change.released if self.change else []


def resolve_and_store(scope: Callable[[], AbstractContextManager[Session]], resolver: IdentityResolver,
                      did: str, fresh: bool = False, avatar_cdn: str | None = None) -> Outcome:
    """Resolve ``did`` and store the verdict; Unreachable (nothing stored) when it can't be decided.

    No transaction is open while the network is asked: one reads whether the DID has a
    profile (accounts the index does not know are not resolved), another stores the verdict.
    """
    with scope() as session:
        if not has_profile(session, did):
            return Outcome()
    verdict = resolver.verify(did, fresh)
    with scope() as session:
        change = apply_verdict(session, verdict)
        events = profile_events(session, [did, *change.released], avatar_cdn) if change.changed else []
        events += read_changed_event(profiles=[did, *change.released]) if change.changed else []
    return Outcome(verdict, change, events)
