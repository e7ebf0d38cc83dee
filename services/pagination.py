"""Opaque keyset cursors over ``(sort time, cid)``, the AppView's convention.

Pages stay stable while new posts arrive: a page is "the next ``limit`` rows strictly after
this key", so nothing is skipped or repeated. The cursor is base64 of ``<µs since epoch>:<cid>``.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime, timedelta, timezone

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


class InvalidCursor(ValueError):
    pass


def encode_cursor(sort_at: datetime, cid: str) -> str:
    micros = (sort_at - _EPOCH) // _MICROSECOND
    return base64.urlsafe_b64encode(f"{micros}:{cid}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        micros, cid = raw.split(":", 1)
        if "\x00" in cid:  # PostgreSQL text cannot hold NUL
            raise ValueError(cid)
        return datetime.fromtimestamp(int(micros) / 1_000_000, tz=timezone.utc), cid
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError, OSError):
        raise InvalidCursor("cursor is not one this API returned") from None


def page(rows: list, limit: int, key) -> tuple[list, str | None]:
    """Split ``limit + 1`` fetched rows into the page and the cursor of the next one (or None)."""
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(*key(rows[-1]))
