"""One Jetstream v1 frame in, one slim ingest event (or a :class:`Skip`) out.

The edge of the system: any account can publish a record, and whatever it publishes reaches
us as valid JSON. So nothing is forwarded before it is checked (size, JSON, nesting depth,
envelope fields, identifier syntax, the record's lexicon), and what is forwarded holds only
the fields we know, so every event orjson-encodes and fits PostgreSQL. ``docs/indexing-rules.md``
lists every reason an event is rejected or cleaned.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from services import atproto_syntax as syntax

from .lexicon import Invalid, too_deep
from .names import ACCOUNT_STATUSES, OPERATIONS, SHORT_NAMES
from .records import SLIMMERS

#: Arrays and objects may nest this deep in an event (the envelope is level 1); a PDS caps
#: records at 32 levels too.
MAX_DEPTH = 32
_MAX_TIME_US = 2**63 - 1  # a PostgreSQL bigint


@dataclass(frozen=True, slots=True)
class Skip:
    """Why an event was not forwarded: ``outcome`` is ``ignored`` or ``rejected``.

    ``did``, ``where`` (``collection/rkey``) and ``detail`` (the field and the problem) name
    the event in logs; they hold only values that passed their syntax check, never record
    content.
    """

    outcome: str
    reason: str
    time_us: int | None = None
    did: str | None = None
    where: str | None = None
    detail: str | None = None


def _reject(reason: str, time_us: int | None = None, did: str | None = None, where: str | None = None,
            detail: str | None = None) -> Skip:
    return Skip("rejected", reason, time_us, did, where, detail)


def parse_event(raw: str | bytes, max_bytes: int = 1_000_000) -> dict | Skip:
    """Turn one Jetstream frame into a slim ingest event, or say why not. Never raises."""
    try:
        return _parse(raw, max_bytes)
    except Exception as exc:  # a bug must cost one event, never the listener
        return _reject("parser_error", detail=type(exc).__name__)


def _parse(raw, max_bytes: int) -> dict | Skip:
    if isinstance(raw, (bytearray, memoryview)):
        raw = bytes(raw)
    elif not isinstance(raw, (bytes, str)):
        return _reject("malformed_json")
    if len(raw) > max_bytes or (type(raw) is str and len(raw) * 4 > max_bytes
                                and len(raw.encode("utf-8", "surrogatepass")) > max_bytes):
        return _reject("too_large")
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return _reject(_json_problem(str(exc)))
    if type(event) is not dict:
        return _reject("not_an_object")
    did, time_us, kind = event.get("did"), event.get("time_us"), event.get("kind")
    if type(time_us) is not int or not 0 < time_us <= _MAX_TIME_US:
        return _reject("bad_time_us")
    if not syntax.is_did(did):
        return _reject("bad_did", time_us)
    if _brackets(raw) > MAX_DEPTH and too_deep(event, MAX_DEPTH):
        return _reject("too_deep", time_us, did)
    if kind == "commit":
        return _parse_commit(did, time_us, event.get("commit"))
    if kind == "identity":
        return _parse_identity(did, time_us, event.get("identity"))
    if kind == "account":
        return _parse_account(did, time_us, event.get("account"))
    if type(kind) is not str:
        return _reject("bad_kind", time_us, did)
    return Skip("ignored", "unknown_kind", time_us, did)


def _json_problem(message: str) -> str:
    """orjson's message -> our reason (the input is rejected either way)."""
    if "surrogate" in message or "UTF-8" in message:
        return "invalid_unicode"
    if "depth" in message or "ecursion" in message:
        return "too_deep"
    return "malformed_json"


def _brackets(raw: str | bytes) -> int:
    """Opening brackets in the frame: a cheap upper bound of its nesting depth."""
    return raw.count(b"{") + raw.count(b"[") if type(raw) is bytes else raw.count("{") + raw.count("[")


def _parse_commit(did: str, time_us: int, commit) -> dict | Skip:
    if type(commit) is not dict:
        return _reject("bad_commit", time_us, did)
    collection, operation, rkey = commit.get("collection"), commit.get("operation"), commit.get("rkey")
    if type(collection) is not str or type(rkey) is not str:
        return _reject("bad_commit", time_us, did)
    short = SHORT_NAMES.get(collection)
    if short is None:
        if not syntax.is_nsid(collection):
            return _reject("bad_commit", time_us, did, detail="collection: not a valid NSID")
        return Skip("ignored", "unwanted_collection", time_us, did)
    if not syntax.is_record_key(rkey):
        return _reject("bad_commit", time_us, did, collection, "rkey: not a valid record key")
    where = f"{collection}/{rkey}"
    op = OPERATIONS.get(operation) if type(operation) is str else None
    if op is None:
        return _reject("bad_operation", time_us, did, where)
    event = {"t": time_us, "did": did, "k": "commit", "col": short, "op": op, "rkey": rkey}
    if op == "d":
        return event
    record = commit.get("record")
    if type(record) is not dict:
        return _reject("missing_record", time_us, did, where)
    cid = commit.get("cid")
    if cid is not None and not syntax.is_cid(cid):
        return _reject("bad_cid", time_us, did, where)
    try:
        slim = SLIMMERS[short](record)
    except Invalid as invalid:
        return _reject(f"bad_{short}_record", time_us, did, where, invalid.describe())
    event["cid"] = cid
    event["rec"] = slim
    return event


def encodes(event: dict) -> bool:
    """Whether ``event`` encodes as the queue's messages do (orjson, ``tasks.broker``).

    True of everything :func:`parse_event` returns (depth, strings and integers are all
    checked); the listener asks anyway, so that should it ever be false, one event is dropped
    instead of its whole batch failing at enqueue time, again after every reconnect."""
    try:
        orjson.dumps(event)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return False
    return True


def _parse_identity(did: str, time_us: int, identity) -> dict | Skip:
    if type(identity) is not dict:
        return _reject("bad_identity", time_us, did)
    return {"t": time_us, "did": did, "k": "identity", "handle": syntax.normalize_handle(identity.get("handle"))}


def _parse_account(did: str, time_us: int, account) -> dict | Skip:
    if type(account) is not dict:
        return _reject("bad_account", time_us, did)
    active, status = account.get("active"), account.get("status")
    if type(active) is not bool:
        return _reject("bad_account", time_us, did, detail="active: not a boolean")
    if status is not None and (type(status) is not str or status not in ACCOUNT_STATUSES):
        return _reject("bad_account", time_us, did, detail="status: not a known status")
    return {"t": time_us, "did": did, "k": "account", "active": active, "status": status}
