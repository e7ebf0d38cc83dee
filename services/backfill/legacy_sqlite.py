"""Read the old feed generator's SQLite ``posts.db``, whose schema was never written down.

Tables and columns are discovered (``PRAGMA table_info``) and matched by name against
:data:`FIELDS`. The file is hostile input like the stream: it is opened read-only, and every
value is read as bytes capped at ``MAX_VALUE_BYTES + 1``, so neither invalid UTF-8 (which
makes ``sqlite3`` raise for the whole row), a huge blob nor a number where text was expected
can break a chunk; the caller decides what each value means.
"""

from __future__ import annotations

import os
import re
import sqlite3
from dataclasses import dataclass
from urllib.parse import quote

#: Values longer than this are never needed whole (a post's text is at most 3,000 bytes).
MAX_VALUE_BYTES = 65_536

#: Our field -> the column names it is read from, in order of preference, compared lower-cased
#: without underscores (``indexedAt`` of the bluesky feed-generator template = ``indexed_at``).
FIELDS = {
    "uri": ("uri", "posturi", "aturi"),
    "cid": ("cid", "postcid"),
    "did": ("did", "authordid", "author", "creatordid", "creator", "repo"),
    "text": ("text", "content", "textcontent", "posttext", "recordtext", "body"),
    "created_at": ("createdat", "postcreatedat", "postedat", "created", "timestamp"),
    "indexed_at": ("indexedat", "insertedat", "ingestedat", "savedat", "seenat"),
    "langs": ("langs", "lang", "languages", "language"),
    "reply_parent": ("replyparent", "replyparenturi", "parenturi", "parent"),
    "reply_parent_cid": ("replyparentcid", "parentcid"),
    "reply_root": ("replyroot", "replyrooturi", "rooturi", "root"),
    "reply_root_cid": ("replyrootcid", "rootcid"),
    "flag": ("iscannabis", "cannabis", "iscannabisrelated", "isrelevant", "relevant", "approved"),
    "score": ("cannabisscore", "relevancescore", "aiscore", "score", "confidence"),
}
#: Without these a table's rows cannot become posts (each is skipped as ``missing_columns``).
REQUIRED = ("uri", "text")
DATES = ("created_at", "indexed_at")


class Unusable(Exception):
    """The file cannot be read as a legacy posts.db; the message says why."""


@dataclass(frozen=True)
class Table:
    name: str
    columns: dict[str, str]  # our field -> its column

    @property
    def missing(self) -> list[str]:
        """Fields the table lacks to make posts (a date is either of :data:`DATES`)."""
        gaps = [f for f in REQUIRED if f not in self.columns]
        return gaps + ([] if any(d in self.columns for d in DATES) else ["created_at"])


def open_readonly(path: str) -> sqlite3.Connection:
    """The file opened read-only; :class:`Unusable` for a missing, unreadable or non-SQLite file."""
    if not os.path.isfile(path):
        raise Unusable(f"{path}: no such file")
    if not os.access(path, os.R_OK):
        raise Unusable(f"{path}: not readable by this process")
    try:
        conn = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, timeout=5, check_same_thread=False)
    except sqlite3.Error as exc:
        raise Unusable(f"{path}: cannot be opened: {exc}") from None
    conn.text_factory = lambda raw: raw.decode("utf-8", "replace")
    try:
        conn.execute("PRAGMA query_only = ON")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        conn.close()
        raise Unusable(f"{path}: not a readable SQLite database: {exc}") from None
    return conn


def post_tables(conn: sqlite3.Connection) -> list[Table]:
    """Tables that hold posts, by name: a URI column and a text column, or "post" in the name."""
    tables = []
    names = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%' "
                         "ORDER BY name").fetchall()
    for (name,) in names:
        columns = {_norm(row[1]): row[1] for row in conn.execute(f"PRAGMA table_info({_quote(name)})")}
        found = {field: next((columns[s] for s in synonyms if s in columns), None) for field, synonyms in FIELDS.items()}
        mapped = {field: column for field, column in found.items() if column is not None}
        if "uri" in mapped and ("text" in mapped or "post" in name.lower()) and _has_rowid(conn, name):
            tables.append(Table(name, mapped))
    return tables


def count_rows(conn: sqlite3.Connection, table: Table) -> int:
    return conn.execute(f"SELECT count(*) FROM {_quote(table.name)}").fetchone()[0]


def read_rows(conn: sqlite3.Connection, table: Table, after: int, limit: int) -> list[tuple[int, dict]]:
    """Up to ``limit`` rows after rowid ``after``: (rowid, {field: bytes or None})."""
    fields = list(table.columns)
    values = ", ".join(_capped(table.columns[f]) for f in fields)
    rows = conn.execute(f"SELECT rowid, {values} FROM {_quote(table.name)} WHERE rowid > ? ORDER BY rowid LIMIT ?",
                        (after, limit)).fetchall()
    return [(row[0], dict(zip(fields, row[1:]))) for row in rows]


def first_rowids(conn: sqlite3.Connection, table: Table, uris: list[bytes]) -> dict[bytes, int]:
    """The lowest rowid holding each URI in the whole table (the copy that counts).

    The column is compared as it is stored (each URI asked as text and as bytes), not through
    :func:`_capped`: an index on it (``uri`` is usually the primary key) then answers, instead of
    a scan of the whole table per chunk, which made a big file's import quadratic."""
    wanted = sorted(set(uris))
    if not wanted:
        return {}
    as_text = [uri.decode() for uri in wanted if _decodes(uri)]
    column = _quote(table.columns["uri"])
    found: dict[bytes, int] = {}
    values, step = as_text + wanted, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    for at in range(0, len(values), step):
        batch = values[at:at + step]
        marks = ", ".join("?" * len(batch))
        for value, rowid in conn.execute(f"SELECT {column}, min(rowid) FROM {_quote(table.name)} "
                                         f"WHERE {column} IN ({marks}) GROUP BY 1", batch):
            key = value.encode() if isinstance(value, str) else bytes(value)
            found[key] = min(rowid, found.get(key, rowid))
    return found


def _decodes(raw: bytes) -> bool:
    try:
        raw.decode()
        return True
    except UnicodeDecodeError:
        return False


def _capped(column: str) -> str:
    return f"substr(CAST({_quote(column)} AS BLOB), 1, {MAX_VALUE_BYTES + 1})"


def _has_rowid(conn: sqlite3.Connection, name: str) -> bool:
    """Chunks are rowid ranges: a WITHOUT ROWID table cannot be read in chunks."""
    try:
        conn.execute(f"SELECT rowid FROM {_quote(name)} LIMIT 1").fetchall()
        return True
    except sqlite3.Error:
        return False


def _norm(column: str) -> str:
    return re.sub(r"[_\s-]", "", column.lower())


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'
