"""A fake PDS: a real XRPC server on 127.0.0.1 with the four calls Cannect makes.

It answers like a real PDS does (status codes, ``{"error", "message"}`` bodies, rate-limit
headers), so ``services/pds.py`` talks to it exactly as it talks to bsky.social:

- ``com.atproto.server.createSession`` ``{identifier, password}`` (handle or DID);
- ``com.atproto.server.refreshSession`` with the refresh token as bearer (rotates the pair);
- ``com.atproto.repo.createRecord`` / ``deleteRecord`` with the access token as bearer.

Tests configure accounts and switches (``fail_next``, ``rate_limit_next``, ``stall_next``,
``expire_access_tokens``, ``revoke_sessions``) and read back ``records`` and ``calls``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

import jwt

from .server import LocalHttpServer

NSID = re.compile(r"^[a-zA-Z]([a-zA-Z0-9-]{0,62})(\.[a-zA-Z0-9-]{1,63}){2,}$")
TID_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"
ACCESS, REFRESH = "com.atproto.access", "com.atproto.refresh"


@dataclass
class Account:
    did: str
    handle: str
    password: str
    active: bool = True
    status: str | None = None


@dataclass
class Token:
    did: str
    scope: str
    expires_at: float
    revoked: bool = False


@dataclass
class Failure:
    """Fail ``count`` calls (of ``method``, or any), after letting ``after`` of them through."""

    status: int
    error: str | None
    message: str
    count: int = 1
    method: str | None = None
    after: int = 0
    headers: dict = field(default_factory=dict)
    stall_seconds: float = 0.0


class XrpcError(Exception):
    def __init__(self, status: int, error: str, message: str):
        super().__init__(message)
        self.status, self.error, self.message = status, error, message


def make_tid(micros: int, clock_id: int) -> str:
    """A 13-character TID: 53 bits of microseconds and 10 bits of clock id, base32-sortable."""
    value = (micros << 10) | (clock_id & 0x3FF)
    return "".join(TID_ALPHABET[(value >> shift) & 31] for shift in range(60, -1, -5))


def make_cid(record: dict) -> str:
    """A CIDv1 (dag-cbor, sha-256) in base32: the real shape (``bafyrei...``), JSON-hashed."""
    digest = hashlib.sha256(json.dumps(record, sort_keys=True, separators=(",", ":")).encode()).digest()
    raw = bytes([0x01, 0x71, 0x12, 0x20]) + digest
    return "b" + base64.b32encode(raw).decode().lower().rstrip("=")


class FakePds:
    """The PDS. Use as a context manager, or ``start()`` / ``stop()``."""

    def __init__(self, access_ttl: float = 7200.0, refresh_ttl: float = 90 * 86400.0):
        self.access_ttl, self.refresh_ttl = access_ttl, refresh_ttl
        self.accounts: dict[str, Account] = {}
        #: did -> collection -> rkey -> {"cid", "value"}
        self.records: dict[str, dict[str, dict[str, dict]]] = {}
        #: NSIDs of the calls received, in order (failed ones too).
        self.calls: list[str] = []
        self._tokens: dict[str, Token] = {}
        self._failures: list[Failure] = []
        self._signing_key = secrets.token_hex(32)
        self._last_micros = 0
        self._clock_id = secrets.randbelow(1024)
        self._lock = threading.RLock()
        self._server = LocalHttpServer(_handler_for(self), "fake-pds")

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self._server.url

    def start(self) -> "FakePds":
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection: the PDS is down."""
        self._server.stop()

    def __enter__(self) -> "FakePds":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- configuration by tests ------------------------------------------------------------

    def add_account(self, handle: str, password: str, did: str | None = None) -> Account:
        did = did or "did:plc:" + "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz234567") for _ in range(24))
        account = Account(did, handle.lower(), password)
        with self._lock:
            self.accounts[did] = account
        return account

    def fail_next(self, count: int = 1, status: int = 503, error: str | None = "InternalServerError",
                  message: str = "Service unavailable", method: str | None = None, after: int = 0) -> None:
        """The next ``count`` calls (to ``method`` only, if given; after ``after`` of them succeed)
        fail with this XRPC error; ``error=None`` sends a non-JSON body, as a proxy in front would."""
        self._add_failure(Failure(status, error, message, count, method, after))

    def rate_limit_next(self, count: int = 1, reset_after: int = 120, method: str | None = None) -> None:
        """The next ``count`` calls get 429 RateLimitExceeded with the PDS's ratelimit headers."""
        reset = int(time.time()) + reset_after
        headers = {"RateLimit-Limit": "30", "RateLimit-Remaining": "0", "RateLimit-Reset": str(reset),
                   "RateLimit-Policy": "30;w=300"}
        self._add_failure(Failure(429, "RateLimitExceeded", "Rate Limit Exceeded", count, method, headers=headers))

    def stall_next(self, count: int = 1, seconds: float = 5.0) -> None:
        """The next ``count`` calls wait this long before answering 503 (for client timeouts)."""
        self._add_failure(Failure(503, "InternalServerError", "slow", count, stall_seconds=seconds))

    def _add_failure(self, failure: Failure) -> None:
        if failure.count > 0:
            with self._lock:
                self._failures.append(failure)

    def _take_failure(self, nsid: str) -> Failure | None:
        """The failure this call gets: the first rule that matches it, unless it lets it through."""
        for failure in self._failures:
            if failure.method not in (None, nsid):
                continue
            if failure.after > 0:
                failure.after -= 1
                return None
            failure.count -= 1
            if failure.count == 0:
                self._failures.remove(failure)
            return failure
        return None

    def expire_access_tokens(self, did: str | None = None) -> None:
        """Every access token (of ``did``) expires now, as after the real ~2 h lifetime."""
        with self._lock:
            for token in self._tokens.values():
                if token.scope == ACCESS and did in (None, token.did):
                    token.expires_at = 0.0

    def revoke_sessions(self, did: str) -> None:
        """Every token of ``did`` dies (password change, session deleted): only a new login helps."""
        with self._lock:
            for token in self._tokens.values():
                if token.did == did:
                    token.revoked = True

    def live_tokens(self, did: str) -> list[str]:
        with self._lock:
            return [value for value, token in self._tokens.items()
                    if token.did == did and not token.revoked and token.expires_at > time.time()]

    def list_records(self, did: str, collection: str) -> dict[str, dict]:
        """rkey -> {"cid", "value"} of one collection of a repo."""
        with self._lock:
            return dict(self.records.get(did, {}).get(collection, {}))

    # -- the XRPC methods ------------------------------------------------------------------

    def handle(self, nsid: str, headers, body: dict | None) -> tuple[int, dict, dict]:
        """(status, JSON body, extra headers) of one call."""
        with self._lock:
            self.calls.append(nsid)
            failure = self._take_failure(nsid)
        if failure is not None:
            if failure.stall_seconds:
                time.sleep(failure.stall_seconds)
            payload = {"error": failure.error, "message": failure.message} if failure.error else None
            return failure.status, payload, failure.headers
        method = _METHODS.get(nsid)
        if method is None:
            return 501, {"error": "MethodNotImplemented", "message": f"Method Not Implemented: {nsid}"}, {}
        try:
            with self._lock:
                return 200, method(self, headers, body), {}
        except XrpcError as exc:
            return exc.status, {"error": exc.error, "message": exc.message}, {}

    def _create_session(self, headers, body):
        body = _require_body(body)
        identifier, password = body.get("identifier"), body.get("password")
        if not isinstance(identifier, str) or not isinstance(password, str):
            raise XrpcError(400, "InvalidRequest", "Input must have the property \"identifier\" and \"password\"")
        account = self._find_account(identifier.lower().removeprefix("@"))
        if account is None or not secrets.compare_digest(account.password.encode(), password.encode()):
            raise XrpcError(401, "AuthenticationRequired", "Invalid identifier or password")
        return self._session_answer(account)

    def _refresh_session(self, headers, body):
        token = self._bearer(headers, REFRESH)
        token.revoked = True  # the pair rotates: the old refresh token is spent
        return self._session_answer(self.accounts[token.did])

    def _create_record(self, headers, body):
        token = self._bearer(headers, ACCESS)
        body = _require_body(body)
        did = self._repo_did(body.get("repo"), token)
        collection, record = body.get("collection"), body.get("record")
        if not isinstance(collection, str) or not NSID.match(collection):
            raise XrpcError(400, "InvalidRequest", "Input/collection must be a valid NSID")
        if not isinstance(record, dict):
            raise XrpcError(400, "InvalidRequest", "Input/record must be an object")
        if record.get("$type", collection) != collection:
            raise XrpcError(400, "InvalidRequest", f"Invalid $type: expected {collection}, got {record['$type']}")
        _validate(collection, record)
        repo = self.records.setdefault(did, {}).setdefault(collection, {})
        rkey = body.get("rkey") or self._next_tid()
        if rkey in repo:
            raise XrpcError(400, "InvalidRequest", f"Record already exists: {collection}/{rkey}")
        cid = make_cid(record)
        repo[rkey] = {"cid": cid, "value": record}
        return {"uri": f"at://{did}/{collection}/{rkey}", "cid": cid,
                "commit": {"cid": make_cid({"commit": cid}), "rev": self._next_tid()}, "validationStatus": "valid"}

    def _delete_record(self, headers, body):
        token = self._bearer(headers, ACCESS)
        body = _require_body(body)
        did = self._repo_did(body.get("repo"), token)
        collection, rkey = body.get("collection"), body.get("rkey")
        if not isinstance(collection, str) or not isinstance(rkey, str):
            raise XrpcError(400, "InvalidRequest", "Input must have the property \"collection\" and \"rkey\"")
        removed = self.records.get(did, {}).get(collection, {}).pop(rkey, None)
        return {"commit": {"cid": make_cid({"delete": rkey}), "rev": self._next_tid()}} if removed else {}

    # -- helpers ---------------------------------------------------------------------------

    def _find_account(self, identifier: str) -> Account | None:
        if identifier in self.accounts:
            return self.accounts[identifier]
        return next((a for a in self.accounts.values() if a.handle == identifier), None)

    def _session_answer(self, account: Account) -> dict:
        answer = {"accessJwt": self._issue(account.did, ACCESS, self.access_ttl),
                  "refreshJwt": self._issue(account.did, REFRESH, self.refresh_ttl),
                  "handle": account.handle, "did": account.did, "active": account.active,
                  "didDoc": {"id": account.did, "alsoKnownAs": [f"at://{account.handle}"],
                             "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer",
                                          "serviceEndpoint": self.url}]}}
        if account.status:
            answer["status"] = account.status
        return answer

    def _issue(self, did: str, scope: str, ttl: float) -> str:
        now = time.time()
        value = jwt.encode({"scope": scope, "sub": did, "aud": "did:web:127.0.0.1", "iat": int(now),
                            "exp": int(now + ttl) + 1, "jti": secrets.token_hex(8)}, self._signing_key, "HS256")
        self._tokens[value] = Token(did, scope, now + ttl)
        return value

    def _bearer(self, headers, scope: str) -> Token:
        scheme, _, value = (headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not value:
            raise XrpcError(401, "AuthenticationRequired", "Authentication Required")
        token = self._tokens.get(value.strip())
        if token is None:
            raise XrpcError(401, "InvalidToken", "Token could not be verified")
        if token.scope != scope:
            raise XrpcError(400, "InvalidToken", "Bad token scope")
        if token.revoked:
            raise XrpcError(400, "ExpiredToken", "Token has been revoked")
        if token.expires_at <= time.time():
            raise XrpcError(400, "ExpiredToken", "Token has expired")
        return token

    def _repo_did(self, repo, token: Token) -> str:
        account = self._find_account(repo) if isinstance(repo, str) else None
        if account is None:
            raise XrpcError(400, "InvalidRequest", f"Could not find repo: {repo}")
        if account.did != token.did:
            raise XrpcError(401, "AuthenticationRequired", "Authentication Required")
        return account.did

    def _next_tid(self) -> str:
        micros = max(time.time_ns() // 1000, self._last_micros + 1)
        self._last_micros = micros
        return make_tid(micros, self._clock_id)


def _require_body(body):
    if not isinstance(body, dict):
        raise XrpcError(400, "InvalidRequest", "Request encoding (Content-Type) required but not provided")
    return body


def _validate(collection: str, record: dict) -> None:
    """The lexicon checks a real PDS makes on the records Cannect writes (the ones it knows)."""
    def invalid(why: str):
        raise XrpcError(400, "InvalidRecord", f"Invalid {collection} record: {why}")

    if not isinstance(record.get("createdAt"), str):
        invalid('Record must have the property "createdAt"')
    if collection == "app.bsky.feed.post":
        text = record.get("text")
        if not isinstance(text, str):
            invalid('Record must have the property "text"')
        if len(text.encode()) > 3000:
            invalid("Record/text must not be longer than 3000 characters")
    elif collection in ("app.bsky.feed.like", "app.bsky.feed.repost"):
        subject = record.get("subject")
        if not (isinstance(subject, dict) and isinstance(subject.get("uri"), str) and isinstance(subject.get("cid"), str)):
            invalid('Record/subject must have the properties "uri" and "cid"')
    elif collection == "app.bsky.graph.follow":
        if not (isinstance(record.get("subject"), str) and record["subject"].startswith("did:")):
            invalid("Record/subject must be a did")


_METHODS = {
    "com.atproto.server.createSession": FakePds._create_session,
    "com.atproto.server.refreshSession": FakePds._refresh_session,
    "com.atproto.repo.createRecord": FakePds._create_record,
    "com.atproto.repo.deleteRecord": FakePds._delete_record,
}


def _handler_for(pds: FakePds) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real clients pool connections

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = None
            if raw:
                if not (self.headers.get("Content-Type") or "").startswith("application/json"):
                    return self._send(400, {"error": "InvalidRequest", "message": "Wrong request encoding"}, {})
                try:
                    body = json.loads(raw)
                except ValueError:
                    return self._send(400, {"error": "InvalidRequest", "message": "Invalid JSON body"}, {})
            if not self.path.startswith("/xrpc/"):
                return self._send(404, {"error": "NotFound", "message": "Not Found"}, {})
            self._send(*pds.handle(self.path[len("/xrpc/"):].split("?")[0], self.headers, body))

        def do_GET(self):
            self._send(501, {"error": "MethodNotImplemented", "message": "Method Not Implemented"}, {})

        def _send(self, status: int, payload: dict | None, headers: dict):
            data = json.dumps(payload).encode() if payload is not None else b"<html>Bad Gateway</html>"
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8" if payload is not None else "text/html")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format, *args):  # quiet, and never prints a token
            pass

    return Handler
