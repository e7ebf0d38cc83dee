"""AT Protocol identifier syntax, checked by the atproto SDK's validators.

One place for "is this a DID / handle / NSID / AT-URI / record key / CID / datetime / language
/ URI": the ingest edge (``services.jetstream``), members and the API all ask here, so the
rules are the SDK's (which follow the atproto specs) and not a scattering of hand-written
regexes. The ``is_*`` predicates never raise, whatever they are given; the ``require_*``
functions raise ``ValueError`` and fit pydantic's ``AfterValidator``.
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache
from typing import Callable



def _load_sdk_string_formats():
    """The SDK's ``atproto_client.models.string_formats``, loaded on its own.

    Importing it the usual way runs ``atproto_client/__init__`` first, which builds the whole
    XRPC client and every generated model: about 3 s and 60 MB in each process (listener, every
    worker, every CLI call) for a module that needs only ``atproto_core`` and pydantic.
    """
    import importlib.util
    import sys

    name = "atproto_client.models.string_formats"
    if name in sys.modules:
        return sys.modules[name]
    package = importlib.util.find_spec("atproto_client")
    path = f"{package.submodule_search_locations[0]}/models/string_formats.py"
    spec = importlib.util.spec_from_file_location("cannect_atproto_string_formats", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_sdk = _load_sdk_string_formats()

#: A DID method whose identifier we can resolve (the atproto "blessed" methods).
SUPPORTED_DID_PREFIXES = ("did:plc:", "did:web:")
_PLC_ALPHABET = frozenset("abcdefghijklmnopqrstuvwxyz234567")


def _sdk_check(validator, cache_size: int = 0) -> Callable[[object], bool]:
    """A predicate from an SDK validator (unwrapped from its "only when strict" gate).

    ``cache_size``: remember that many recent answers, for values that recur in the stream
    (DIDs of active accounts, URIs of popular posts).
    """
    check = getattr(validator, "__wrapped__", validator)

    def valid(value: str) -> bool:
        try:
            check(value, None)
        except ValueError:
            return False
        return True

    if cache_size:
        valid = lru_cache(maxsize=cache_size)(valid)

    def predicate(value: object) -> bool:
        return type(value) is str and valid(value)

    predicate.__name__ = f"is_{validator.__name__.removeprefix('validate_')}"
    return predicate


is_did = _sdk_check(_sdk.validate_did, cache_size=50_000)
is_nsid = _sdk_check(_sdk.validate_nsid, cache_size=1_000)
is_at_uri = _sdk_check(_sdk.validate_at_uri, cache_size=50_000)
is_record_key = _sdk_check(_sdk.validate_record_key)
is_cid = _sdk_check(_sdk.validate_cid)
is_tid = _sdk_check(_sdk.validate_tid)
is_language = _sdk_check(_sdk.validate_language)
_is_sdk_datetime = _sdk_check(_sdk.validate_datetime)
_is_sdk_handle = _sdk_check(_sdk.validate_handle)
_is_sdk_uri = _sdk_check(_sdk.validate_uri)


def is_handle(value: object) -> bool:
    """A syntactically valid handle (any case: handles are case-insensitive)."""
    return _is_sdk_handle(value)


#: The shape nearly every ``createdAt`` has; each string it matches (and whose date and time
#: exist) the SDK accepts too, so it answers first and the SDK judges the rest. (The SDK's
#: check is the slowest part of parsing an event; this one is a fifth of it.)
_COMMON_DATETIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])")


def is_datetime(value: object) -> bool:
    """An RFC 3339 datetime with a timezone, as the lexicon's ``datetime`` format requires."""
    if type(value) is not str:
        return False
    if _COMMON_DATETIME.fullmatch(value) and not value.endswith("-00:00"):
        try:
            datetime.fromisoformat(value[:19])
            return True
        except ValueError:
            pass
    return _is_sdk_datetime(value)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def is_uri(value: object) -> bool:
    """A URI with a scheme (the lexicon's ``uri`` format), without control characters (NUL...)."""
    return _is_sdk_uri(value) and not _CONTROL.search(value)


def is_supported_did(value: object) -> bool:
    """A DID we can resolve: ``did:plc:`` with 24 base32 characters, or ``did:web:<host>``."""
    if not is_did(value):
        return False
    if value.startswith("did:plc:"):
        ident = value[8:]
        return len(ident) == 24 and _PLC_ALPHABET.issuperset(ident)
    return value.startswith("did:web:")


#: Top-level domains the handle spec disallows; ``handle.invalid`` is what the network shows
#: for an account whose handle failed verification.
DISALLOWED_HANDLE_TLDS = frozenset({"alt", "arpa", "example", "internal", "invalid", "local", "localhost", "onion"})


def normalize_handle(value: object) -> str | None:
    """The handle in lower case (how it is stored and compared), or None when it is not a
    usable handle (bad syntax, or a disallowed TLD such as ``handle.invalid``)."""
    if not is_handle(value):
        return None
    handle = value.lower()
    return None if handle.rsplit(".", 1)[1] in DISALLOWED_HANDLE_TLDS else handle


def at_uri_parts(value: object) -> tuple[str, str, str] | None:
    """(authority, collection, rkey) of a valid record AT-URI, or None."""
    if not is_at_uri(value):
        return None
    parts = value[5:].split("/")
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 else None


def _requirement(predicate: Callable[[object], bool], what: str) -> Callable[[str], str]:
    def require(value: str) -> str:
        if not predicate(value):
            raise ValueError(f"not a valid {what}")
        return value

    require.__name__ = f"require_{what.replace(' ', '_').replace('-', '_').lower()}"
    return require


require_did = _requirement(is_did, "DID")
require_supported_did = _requirement(is_supported_did, "DID")
require_handle = _requirement(is_handle, "handle")
require_nsid = _requirement(is_nsid, "NSID")
require_at_uri = _requirement(is_at_uri, "AT-URI")
require_record_key = _requirement(is_record_key, "record key")
require_cid = _requirement(is_cid, "CID")
require_datetime = _requirement(is_datetime, "datetime")
require_language = _requirement(is_language, "language")
require_uri = _requirement(is_uri, "URI")
