"""PDS tokens at rest: Fernet (AES-128-CBC + HMAC-SHA256, with a timestamp).

The key is ``TOKEN_ENCRYPTION_KEY`` (urlsafe base64 of 32 bytes, as ``Fernet.generate_key()``
prints). Several keys may be given comma-separated: the first encrypts, all decrypt, so a key
can be rotated without signing everybody out. Without it the key is derived from
``JWT_SECRET`` with HKDF-SHA256, so a deployment that sets only JWT_SECRET still never
stores a token in clear. Tokens are never logged: errors here name no token.
"""

from __future__ import annotations

import base64
import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_SALT = b"cannect/token-encryption"
_INFO = b"pds-session-tokens v1"


class UnreadableToken(Exception):
    """A stored token cannot be decrypted (the key changed, or the bytes are damaged)."""


class TokenCipher:
    def __init__(self, fernet: MultiFernet):
        self._fernet = fernet

    def encrypt(self, token: str) -> bytes:
        return self._fernet.encrypt(token.encode())

    def decrypt(self, blob: bytes) -> str:
        try:
            return self._fernet.decrypt(bytes(blob)).decode()
        except (InvalidToken, UnicodeDecodeError):
            raise UnreadableToken("a stored PDS token cannot be decrypted with the current key") from None


def derive_key(jwt_secret: str) -> bytes:
    """A Fernet key from JWT_SECRET (HKDF-SHA256 with a fixed salt and purpose)."""
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=_INFO).derive(jwt_secret.encode())
    return base64.urlsafe_b64encode(raw)


@functools.lru_cache(maxsize=4)
def token_cipher(encryption_key: str | None, jwt_secret: str | None) -> TokenCipher:
    """The cipher for ``TOKEN_ENCRYPTION_KEY`` (comma-separated, newest first) or JWT_SECRET."""
    keys = [k.strip() for k in (encryption_key or "").split(",") if k.strip()]
    if not keys:
        if not jwt_secret:
            raise ValueError("TOKEN_ENCRYPTION_KEY or JWT_SECRET must be set to store PDS tokens")
        keys = [derive_key(jwt_secret).decode()]
    try:
        return TokenCipher(MultiFernet([Fernet(key) for key in keys]))
    except ValueError:
        raise ValueError("TOKEN_ENCRYPTION_KEY must be urlsafe base64 of 32 bytes (Fernet.generate_key())") from None


def cipher_for(settings) -> TokenCipher:
    return token_cipher(settings.token_encryption_key, settings.jwt_secret)
