"""XRPC client for the user's PDS: sign in, refresh, create and delete records.

Every call has a timeout. A PDS that answers with an XRPC error raises :class:`PdsError`
(its status, ``error`` name and ``message``, and for 429 how long to wait); a PDS that cannot
be reached, or does not answer in time, raises :class:`PdsUnavailable`. Tokens are passed
in, never stored or logged here.
"""

from __future__ import annotations

import functools
import time
from email.utils import parsedate_to_datetime

import httpx

#: Seconds: connecting, and the whole answer. A write on a busy PDS takes well under a second.
TIMEOUT = httpx.Timeout(10.0, connect=5.0)


class PdsError(Exception):
    """The PDS answered with an XRPC error."""

    def __init__(self, status: int, error: str, message: str = "", retry_after: int | None = None):
        super().__init__(f"{status} {error}: {message}" if message else f"{status} {error}")
        self.status, self.error, self.message, self.retry_after = status, error, message, retry_after

    @property
    def token_rejected(self) -> bool:
        """The access token is expired or no longer accepted: refreshing the session may help."""
        return self.error == "ExpiredToken" or self.status == 401

    @property
    def server_side(self) -> bool:
        return self.status >= 500


class PdsUnavailable(Exception):
    """The PDS could not be reached or did not answer in time."""


class PdsClient:
    """One PDS (by base URL); thread-safe, with a connection pool."""

    def __init__(self, base_url: str, timeout: httpx.Timeout | float = TIMEOUT):
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, follow_redirects=False,
                                  headers={"User-Agent": "cannect-backend", "Accept": "application/json"})

    def close(self) -> None:
        self._http.close()

    def create_session(self, identifier: str, password: str) -> dict:
        """``{accessJwt, refreshJwt, handle, did, active?, status?}``."""
        answer = self._call("com.atproto.server.createSession", {"identifier": identifier, "password": password})
        return _session_answer(answer)

    def refresh_session(self, refresh_jwt: str) -> dict:
        """A new token pair; the refresh token given is spent."""
        return _session_answer(self._call("com.atproto.server.refreshSession", None, refresh_jwt))

    def create_record(self, access_jwt: str, repo: str, collection: str, record: dict,
                      rkey: str | None = None) -> dict:
        """``{uri, cid, commit?}`` of the new record."""
        body = {"repo": repo, "collection": collection, "record": record}
        if rkey is not None:
            body["rkey"] = rkey
        answer = self._call("com.atproto.repo.createRecord", body, access_jwt)
        if not (isinstance(answer.get("uri"), str) and isinstance(answer.get("cid"), str)):
            raise PdsError(502, "InvalidResponse", "createRecord answered without uri and cid")
        return answer

    def delete_record(self, access_jwt: str, repo: str, collection: str, rkey: str) -> None:
        """Idempotent: deleting a record that is not there succeeds."""
        self._call("com.atproto.repo.deleteRecord", {"repo": repo, "collection": collection, "rkey": rkey},
                   access_jwt)

    def _call(self, nsid: str, body: dict | None, token: str | None = None) -> dict:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            response = self._http.post(f"/xrpc/{nsid}", json=body, headers=headers)
        except httpx.TimeoutException:
            raise PdsUnavailable(f"{nsid}: the PDS did not answer in time") from None
        except httpx.TransportError as exc:
            raise PdsUnavailable(f"{nsid}: the PDS cannot be reached ({type(exc).__name__})") from None
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.is_success:
            if not isinstance(payload, dict):
                raise PdsError(502, "InvalidResponse", f"{nsid} answered {response.status_code} without a JSON object")
            return payload
        payload = payload if isinstance(payload, dict) else {}
        error = payload.get("error") if isinstance(payload.get("error"), str) else response.reason_phrase or "Error"
        message = payload.get("message") if isinstance(payload.get("message"), str) else ""
        raise PdsError(response.status_code, error, message[:500], _retry_after(response))


def _session_answer(answer: dict) -> dict:
    for name in ("accessJwt", "refreshJwt", "did", "handle"):
        if not isinstance(answer.get(name), str) or not answer[name]:
            raise PdsError(502, "InvalidResponse", f"the session answer has no {name}")
    if not answer["did"].startswith("did:"):
        raise PdsError(502, "InvalidResponse", "the session answer names no DID")
    return answer


def _retry_after(response: httpx.Response) -> int | None:
    """Seconds to wait, from ``Retry-After`` or the PDS's ``RateLimit-Reset`` (epoch seconds)."""
    if response.status_code not in (429, 503):
        return None
    value = response.headers.get("Retry-After")
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            try:
                return max(1, int(parsedate_to_datetime(value).timestamp() - time.time()))
            except (TypeError, ValueError):
                pass
    reset = response.headers.get("RateLimit-Reset")
    if reset and reset.isdigit():
        return max(1, int(reset) - int(time.time()))
    return None


@functools.lru_cache(maxsize=8)
def pds_client(base_url: str) -> PdsClient:
    """The process's client for one PDS, so connections are reused across requests."""
    return PdsClient(base_url)
