"""The identity world of a capture: DID documents and handle resolution for its accounts.

Why: handles are shown only once verified (``services/identity``), and ``make run`` and the
end-to-end tests have no network. The replay server therefore also plays the PLC directory
(``GET /<did>``) and an AppView's ``com.atproto.identity.resolveHandle`` for the accounts of
the capture it serves, answering what the capture implies:

- every DID the capture shows (an event's author, a follow's subject) has a DID document;
- its handle is, in order of precedence: the last handle an identity event of that DID
  carried, its handle in the capture's ``.meta.json`` (members), or a name derived from the
  DID (``<word><word>-<hex>.bsky.social``);
- a handle resolves to the last DID that took it that way. So when a handle moves from one
  account to another, the first account's document still names it but the handle no longer
  names that account: its handle does not verify, as on the real network.

The answers describe the end of the capture, not the moment an event is replayed.
"""

from __future__ import annotations

import hashlib

import orjson

from .capture import NAME_PARTS_A, NAME_PARTS_B

FOLLOW = "app.bsky.graph.follow"


class Directory:
    def __init__(self, members: dict[str, str] | None = None):
        self.accounts: set[str] = set()
        self.claims: dict[str, str] = {}   # did -> handle its document names (claimed or given)
        self.owners: dict[str, str] = {}   # handle -> did it resolves to
        self._derived: dict[str, str] = {}  # derived handle -> did, rebuilt when accounts grow
        self._derived_size = -1
        for did, handle in (members or {}).items():
            self._claim(did, handle)

    @classmethod
    def for_capture(cls, path: str) -> "Directory":
        """The directory of the capture at ``path``, with the members of ``path.meta.json`` if any."""
        try:
            with open(path + ".meta.json", "rb") as f:
                meta = orjson.loads(f.read())
        except (OSError, orjson.JSONDecodeError):
            return cls()
        members = meta.get("members") if isinstance(meta, dict) else None
        return cls({m["did"]: m["handle"] for m in members or []
                    if isinstance(m, dict) and isinstance(m.get("did"), str) and isinstance(m.get("handle"), str)})

    def observe(self, event: dict) -> None:
        """Take in one valid event of the capture, in file order."""
        did = event.get("did")
        if not isinstance(did, str) or not did.startswith("did:"):
            return
        self.accounts.add(did)
        kind = event.get("kind")
        if kind == "identity":
            identity = event.get("identity")
            handle = identity.get("handle") if isinstance(identity, dict) else None
            if isinstance(handle, str) and handle:
                self._claim(did, handle)
        elif kind == "commit":
            commit = event.get("commit")
            if not isinstance(commit, dict) or commit.get("collection") != FOLLOW:
                return
            record = commit.get("record")
            if isinstance(record, dict):
                subject = record.get("subject")
                if isinstance(subject, str) and subject.startswith("did:"):
                    self.accounts.add(subject)

    def _claim(self, did: str, handle: str) -> None:
        handle = handle.lower()
        self.accounts.add(did)
        self.claims[did] = handle
        self.owners[handle] = did

    def handle_of(self, did: str) -> str | None:
        """The handle ``did``'s document names; None for a DID the capture never showed."""
        if did in self.claims:
            return self.claims[did]
        if did not in self.accounts:
            return None
        handle = derived_handle(did)
        return None if self.owners.get(handle, did) != did else handle

    def did_of(self, handle: str) -> str | None:
        """The DID ``handle`` resolves to, or None."""
        handle = handle.lower()
        if handle in self.owners:
            return self.owners[handle]
        for did in self._derived_candidates(handle):
            if self.handle_of(did) == handle:
                return did
        return None

    def _derived_candidates(self, handle: str):
        # The reverse index of derived handles is built on first use, again when accounts grew.
        if self._derived_size != len(self.accounts):
            self._derived = {derived_handle(did): did for did in self.accounts}
            self._derived_size = len(self.accounts)
        did = self._derived.get(handle)
        return [did] if did else []

    def document(self, did: str) -> dict | None:
        """A PLC directory document for ``did``, or None when the capture never showed it."""
        if did not in self.accounts:
            return None
        handle = self.handle_of(did)
        return {
            "@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"],
            "id": did,
            "alsoKnownAs": [f"at://{handle}"] if handle else [],
            "verificationMethod": [],
            "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer",
                         "serviceEndpoint": "https://pds.invalid"}],
        }

    def verified(self) -> dict[str, str]:
        """Every DID whose handle verifies (its document names it, it names the DID back)."""
        return {did: handle for did in self.accounts
                if (handle := self.handle_of(did)) is not None and self.did_of(handle) == did}


def derived_handle(did: str) -> str:
    """A stable, readable handle for an account the capture gives none."""
    digest = hashlib.sha256(did.encode()).digest()
    return (f"{NAME_PARTS_A[digest[0] % len(NAME_PARTS_A)]}{NAME_PARTS_B[digest[1] % len(NAME_PARTS_B)]}"
            f"-{digest[2:5].hex()}.bsky.social")
