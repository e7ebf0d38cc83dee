"""API keys: ``cnk_live_<key id>_<secret><checksum>``.

- key id: 12 base62 characters (~71 random bits), public, stored in ``api_clients.api_key``;
  it finds the client with one indexed read.
- secret: 43 base62 characters from ``secrets`` (256 random bits), never stored.
- checksum: CRC32 of everything before it, as 6 base62 characters. A mistyped or truncated
  key is refused before any database or Redis work, and secret scanners can recognise a
  real key (the GitHub token scheme).

Stored: SHA-256 of the whole key (``sha256$<hex>``). A slow password hash (bcrypt, argon2)
defends guessable human passwords against offline guessing; a 256-bit random secret cannot
be guessed, offline or not, so one fast hash is as safe and costs microseconds per request
rather than tens of milliseconds. The hashes are compared with ``hmac.compare_digest``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
import zlib
from dataclasses import dataclass

PREFIX = "cnk_live_"
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
KEY_ID_LENGTH = 12
SECRET_LENGTH = 43  # 43 * log2(62) = 256.03 bits
CHECKSUM_LENGTH = 6  # 62**6 > 2**32
KEY_LENGTH = len(PREFIX) + KEY_ID_LENGTH + 1 + SECRET_LENGTH + CHECKSUM_LENGTH
KEY_PATTERN = re.compile(rf"{PREFIX}([0-9A-Za-z]{{{KEY_ID_LENGTH}}})_([0-9A-Za-z]{{{SECRET_LENGTH}}})"
                         rf"([0-9A-Za-z]{{{CHECKSUM_LENGTH}}})")
HASH_SCHEME = "sha256$"


@dataclass(frozen=True)
class PresentedKey:
    """A key whose shape and checksum are right: its id to look up and the hash to compare."""

    key_id: str
    secret_hash: str


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        digits.append(BASE62[digit])
    return "".join(reversed(digits))


def _random_base62(length: int) -> str:
    return "".join(secrets.choice(BASE62) for _ in range(length))


def checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode("ascii")), CHECKSUM_LENGTH)


def hash_key(key: str) -> str:
    return HASH_SCHEME + hashlib.sha256(key.encode("ascii")).hexdigest()


def new_key() -> tuple[str, str, str]:
    """``(key to show once, key id, hash to store)``."""
    body = f"{PREFIX}{_random_base62(KEY_ID_LENGTH)}_{_random_base62(SECRET_LENGTH)}"
    key = body + checksum(body)
    return key, key[len(PREFIX):len(PREFIX) + KEY_ID_LENGTH], hash_key(key)


def parse(raw: str | None) -> PresentedKey | None:
    """The key id and hash of a well-formed key with a valid checksum; None for anything else."""
    if not raw or len(raw) != KEY_LENGTH:
        return None
    return _parse(raw)


@functools.lru_cache(maxsize=4096)
def _parse(raw: str) -> PresentedKey | None:
    """Remembered for the last 4,096 keys of the right length (a few hundred KB at most): a
    client sends the same key with every call, and the checksum and hash were 2.5 us of each
    replayed answer's ~19. A flood of made-up keys only pushes real ones out (each then costs
    what it did without the cache); the answer is the same either way, so nothing about a key's
    validity depends on the cache."""
    match = KEY_PATTERN.fullmatch(raw)
    if match is None or not hmac.compare_digest(checksum(raw[:-CHECKSUM_LENGTH]), match.group(3)):
        return None
    return PresentedKey(match.group(1), hash_key(raw))


def matches(presented_hash: str, stored_hash: str | None) -> bool:
    return stored_hash is not None and hmac.compare_digest(presented_hash.encode(), stored_hash.encode())
