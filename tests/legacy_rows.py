"""A large legacy ``posts.db`` (the old feed generator's SQLite file) for end-to-end tests and
bench/admin_backfill.py: many plain rows with an odd one every ``odd_every`` rows (a duplicate
URI, a bad date, a NUL in the text, a row the old feed flagged as not cannabis, no date at all,
invalid UTF-8), and the URIs the import must index, so results can be checked exactly.
tests/test_legacy_import.py covers every odd case in detail; this one is about volume.
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

from fakes.pds import make_cid, make_tid

POST = "app.bsky.feed.post"
BASE32 = "abcdefghijklmnopqrstuvwxyz234567"
COLUMNS = ("uri", "cid", "author", "text", "created_at", "indexed_at", "langs", "is_cannabis")
#: The odd rows, in turn; those marked True are still imported.
ODD = (("duplicate", False), ("bad_date", False), ("nul_in_text", True), ("not_cannabis", False),
       ("missing_date", False), ("invalid_unicode", False))
WORDS = ("#cannabis", "#weed", "indica", "sativa", "edibles", "rosin", "terpenes", "grow", "harvest", "dispensary",
         "gummies", "vape", "pre-roll", "sleep", "anxiety", "relaxed", "first", "time", "tried", "today")
START_US = 1_709_287_200_000_000  # 2024-03-01T10:00:00Z


def author(n: int) -> str:
    return "did:plc:legacy" + "".join(BASE32[(n >> (5 * i)) & 31] for i in range(18))


def write_posts_db(path: Path, rows: int, seed: int = 0, authors: int = 200, odd_every: int = 25) -> set[str]:
    """Write ``rows`` rows to a new ``posts`` table at ``path``; the URIs the import indexes."""
    rng = random.Random(seed)
    imported: list[str] = []
    conn = sqlite3.connect(path)
    conn.execute(f"CREATE TABLE posts ({', '.join(COLUMNS)})")  # untyped, as SQLite lets it be
    batch = []
    for n in range(rows):
        time_us = START_US + n * 7_000_000
        did = author(rng.randrange(authors))
        uri = f"at://{did}/{POST}/{make_tid(time_us, n & 1023)}"
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12)))
        created = f"2024-03-{1 + n % 28:02d}T{n % 24:02d}:{n % 60:02d}:00.000Z"
        values = [uri, make_cid({"n": n, "seed": seed}), did, text, created, created, "en", 1]
        odd, kept = ODD[(n // odd_every) % len(ODD)] if n % odd_every == odd_every - 1 else (None, True)
        if odd == "duplicate" and imported:
            values[0] = imported[rng.randrange(len(imported))]
        elif odd == "bad_date":
            values[4] = values[5] = "yesterday"
        elif odd == "nul_in_text":
            values[3] = text + "\x00 nul"
        elif odd == "not_cannabis":
            values[7] = 0
        elif odd == "missing_date":
            values[4] = values[5] = None
        elif odd == "invalid_unicode":
            values[3] = text.encode() + b" \xff\xfe"
        if kept and odd != "duplicate":
            imported.append(uri)
        batch.append(values)
        if len(batch) >= 5000:
            _insert(conn, batch)
            batch = []
    _insert(conn, batch)
    conn.commit()
    conn.close()
    return set(imported)


def _insert(conn: sqlite3.Connection, batch: list[list]) -> None:
    for values in batch:  # bytes go in as TEXT with invalid UTF-8, as a careless writer left them
        marks = ", ".join("CAST(? AS TEXT)" if isinstance(v, bytes) else "?" for v in values)
        conn.execute(f"INSERT INTO posts VALUES ({marks})", values)
