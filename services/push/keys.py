"""Keys of web push: our VAPID pair (RFC 8292) and the browser's subscription keys (RFC 8291).

VAPID keys travel in the forms browsers and the ``web-push`` tools use: the public key as
base64url of the uncompressed P-256 point (65 bytes, the ``applicationServerKey``), the
private key as base64url of its 32-byte scalar (py_vapid also reads base64url DER).
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
import time

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid, Vapid01

_B64URL = re.compile(r"^[A-Za-z0-9_-]*={0,2}$")


class InvalidKey(ValueError):
    """A key that is not what it claims to be (encoding, length, curve point)."""


def b64url_decode(value: str, what: str = "key") -> bytes:
    """Strict base64url (padding optional): the alphabet browsers use for push keys."""
    if not isinstance(value, str) or not _B64URL.match(value):
        raise InvalidKey(f"{what} must be base64url")
    try:
        return base64.urlsafe_b64decode(value.rstrip("=") + "=" * (-len(value.rstrip("=")) % 4))
    except (binascii.Error, ValueError):
        raise InvalidKey(f"{what} must be base64url") from None


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def p256_point(value: str, what: str) -> ec.EllipticCurvePublicKey:
    """A base64url uncompressed P-256 point (65 bytes, 0x04 first) that lies on the curve."""
    raw = b64url_decode(value, what)
    if len(raw) != 65 or raw[0] != 4:
        raise InvalidKey(f"{what} must be an uncompressed P-256 point (65 bytes)")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError:
        raise InvalidKey(f"{what} is not a point on the P-256 curve") from None


def check_subscription_keys(p256dh: str, auth: str) -> None:
    """The browser's ECDH public key and its 16-byte authentication secret (RFC 8291)."""
    p256_point(p256dh, "keys.p256dh")
    if len(b64url_decode(auth, "keys.auth")) != 16:
        raise InvalidKey("keys.auth must be 16 bytes")


def generate_vapid_keys() -> tuple[str, str]:
    """A new (public, private) pair in the forms VAPID_PUBLIC_KEY / VAPID_PRIVATE_KEY take."""
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return b64url_encode(public), b64url_encode(key.private_numbers().private_value.to_bytes(32, "big"))


def public_key_of(signer: Vapid01) -> str:
    return b64url_encode(signer.public_key.public_bytes(serialization.Encoding.X962,
                                                        serialization.PublicFormat.UncompressedPoint))


@functools.lru_cache(maxsize=4)
def vapid_signer(private_key: str) -> Vapid01:
    """The py_vapid signer of a private key (raw or DER, base64url), parsed once per process."""
    try:
        return Vapid.from_string(private_key=private_key)
    except Exception:  # py_vapid raises whatever its parsers raise; never echo the key
        raise InvalidKey("VAPID_PRIVATE_KEY must be base64url of a P-256 private key "
                         "(32 bytes raw, or DER); `cannect vapid generate` makes one") from None


def check_vapid_pair(public_key: str, private_key: str) -> None:
    """Both keys readable, and the public one belongs to the private one."""
    p256_point(public_key, "VAPID_PUBLIC_KEY")
    if public_key_of(vapid_signer(private_key)) != b64url_encode(b64url_decode(public_key)):
        raise InvalidKey("VAPID_PRIVATE_KEY does not belong to VAPID_PUBLIC_KEY")


_signed: dict[tuple[str, str, str], tuple[dict, float]] = {}


def vapid_headers(private_key: str, contact: str, audience: str, validity: int) -> dict:
    """``Authorization`` (RFC 8292 ``vapid t=..., k=...``) for one push service, as a new dict.

    A signature stays valid for ``validity`` seconds, so one per push service is reused until
    half of that has passed instead of an ECDSA signature per push. Each signing gets a fresh
    claims dict: py_vapid fills in and keeps what it is given.
    """
    now = time.time()
    key = (private_key, contact, audience)
    headers, expires = _signed.get(key, (None, 0.0))
    if headers is None or expires - now < validity / 2:
        expires = int(now) + validity
        headers = vapid_signer(private_key).sign({"sub": contact, "aud": audience, "exp": expires})
        _signed[key] = (headers, expires)
    return dict(headers)
