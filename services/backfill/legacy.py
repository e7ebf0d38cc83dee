"""Admin kind ``legacy_import``: the posts of the old feed generator's SQLite ``posts.db``.

Each legacy row becomes the Jetstream create event its post would have been, goes through
the stream's edge checks (``services.jetstream.parse_event``: AT-URI, DID, CID, the post
lexicon's text limits, languages, dates) and is applied as a backfilled record
(docs/indexing-rules.md, "Backfilled records"): stored once by URI, never over what the
stream stored, never over a stream delete (tombstone), notifying nobody, and only if the
numbered rules index it. So a second run imports nothing, and no count moves twice.

Chunks are rowid ranges of one table (cursor ``{"table", "rowid"}``). The report counts
``imported`` rows, ``skipped`` rows by reason and ``cleaned`` ones (NULs removed from the
text, as the edge does), and lists in ``_classify_post_ids`` the ids of the posts the chunk
indexed, for the runner to queue for classification after its commit.

``path`` names a file inside ``LEGACY_IMPORT_DIR`` (a relative path is taken from there): the
server reads what an admin names, so it reads only where the operator put files to import,
checked again (symlinks resolved) each time the file is opened.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from collections import Counter
from contextlib import closing
from datetime import datetime, timezone

import orjson
from sqlalchemy import text

from cannect.config import get_settings
from services import atproto_syntax as syntax
from services.classify.pipeline import post_ids_of
from services.ingest import lock_index
from services.jetstream import POST, Skip, parse_event, record_uri
from services.realtime import read_changed_events

from . import legacy_sqlite as legacy
from .kinds import (CLASSIFY_KEY, REALTIME_KEY, ChunkResult, InvalidParams, register, require_known,
                    yield_to_live_ingest)
from .pages import LOCKED_SLICE, apply_isolated

#: Edge reasons -> ours (a post record's field at fault names its own reason).
_EDGE_REASONS = {"bad_did": "bad_uri", "bad_commit": "bad_uri", "bad_cid": "bad_cid", "too_large": "too_large"}
_RECORD_FIELDS = {"text": "text_too_long", "createdAt": "bad_date", "langs": "bad_langs", "reply": "bad_reply"}
_NUMBER = re.compile(r"-?[0-9]{1,20}(\.[0-9]+)?")
_FALSE = {"0", "0.0", "false", "f", "no", "n", "off"}
#: Rows per chunk at most: a chunk is one transaction under the ingest lock (~0.4 s per 500 rows).
MAX_CHUNK = 2000
_STORED = text("SELECT uri FROM posts WHERE uri = ANY(:uris)")
_GONE = text("SELECT uri FROM record_tombstones WHERE uri = ANY(:uris)")


class LegacyImport:
    """``{"path": str, "table"?: str, "chunk_size"?: int (500), "min_score"?: number}``."""

    name = "legacy_import"
    unit = "rows"

    def __init__(self, settings=get_settings):
        self.settings = settings

    def validate(self, params: dict) -> dict:
        if not isinstance(params, dict):
            raise InvalidParams("params: must be an object")
        require_known(params, {"path", "table", "chunk_size", "min_score"})
        path, table = params.get("path"), params.get("table")
        if type(path) is not str or not path.strip() or "\x00" in path:
            raise InvalidParams("path: a server-side file path of the legacy posts.db is required")
        if table is not None and type(table) is not str:
            raise InvalidParams("table: must be a table name")
        chunk_size, min_score = params.get("chunk_size", 500), params.get("min_score")
        if type(chunk_size) is not int or not 1 <= chunk_size <= MAX_CHUNK:
            raise InvalidParams(f"chunk_size: must be an integer from 1 to {MAX_CHUNK}")
        if min_score is not None and (type(min_score) not in (int, float) or min_score != min_score):
            raise InvalidParams("min_score: must be a number")
        normalized = {"path": self._inside(path), "table": table, "chunk_size": chunk_size, "min_score": min_score}
        with closing(self._open(normalized["path"])) as conn:
            _readable(lambda: _tables(conn, normalized))
        return normalized

    def plan(self, session, params: dict) -> int | None:
        with closing(self._open(params["path"])) as conn:
            return _readable(lambda: sum(legacy.count_rows(conn, t) for t in _tables(conn, params)))

    def _inside(self, path: str) -> str:
        """The real path of ``path`` (relative: to ``LEGACY_IMPORT_DIR``); InvalidParams outside it."""
        root = os.path.realpath(self.settings().legacy_import_dir)
        full = os.path.realpath(os.path.join(root, path))
        if os.path.commonpath([root, full]) != root:
            raise InvalidParams(f"path: must name a file inside LEGACY_IMPORT_DIR ({root})")
        if not os.path.isdir(root):
            raise InvalidParams(f"path: LEGACY_IMPORT_DIR ({root}) is not a directory on this server")
        return full

    def _open(self, path: str):
        try:
            return legacy.open_readonly(self._inside(path))
        except legacy.Unusable as exc:
            raise InvalidParams(f"path: {exc}") from None

    def run_chunk(self, sessions, params: dict, cursor: dict | None) -> ChunkResult:
        with closing(self._open(params["path"])) as conn:
            tables = _tables(conn, params)
            at = cursor or {"table": tables[0].name, "rowid": 0}
            for table in (t for t in tables if t.name >= at["table"]):
                after = at["rowid"] if table.name == at["table"] else 0
                rows = legacy.read_rows(conn, table, after, params["chunk_size"])
                if rows:
                    firsts = legacy.first_rowids(conn, table, [v["uri"] for _, v in rows if v.get("uri")])
                    report = self._import(sessions, params, table, rows, firsts)
                    return ChunkResult(len(rows), {"table": table.name, "rowid": rows[-1][0]}, report)
        return ChunkResult(0, None, {})

    def _import(self, sessions, params: dict, table, rows: list, firsts: dict) -> dict:
        settings = self.settings()
        now_us = time.time_ns() // 1000
        skipped, cleaned, events = Counter(), Counter(), []
        for rowid, values in rows:
            event = _event(table, rowid, values, firsts, params["min_score"], now_us, settings.max_event_bytes)
            if isinstance(event, str):
                skipped[event] += 1
                continue
            if "\x00" in values["text"].decode():
                cleaned["nul_in_text"] += 1
            events.append(event)
        uris = [record_uri(e["did"], "post", e["rkey"]) for e in events]
        stored, gone, indexed, new_ids, failed, changed = set(), set(), set(), [], 0, []
        tags = frozenset(settings.cannabis_tags)
        for at in range(0, len(events), LOCKED_SLICE):  # short holds of the ingest lock: live ingest goes between
            yield_to_live_ingest()
            part, part_uris = events[at:at + LOCKED_SLICE], uris[at:at + LOCKED_SLICE]
            with sessions() as session:
                lock_index(session)  # applied between two stream batches, like a backfill page
                stored |= set(session.scalars(_STORED, {"uris": part_uris}))
                gone |= set(session.scalars(_GONE, {"uris": part_uris + [e["did"] for e in part]}))
                changes, refused = apply_isolated(session, part, tags)
                new = {uri for c in changes for uri in c.indexed_posts}
                new_ids += post_ids_of(session, sorted(new))
            indexed |= new
            failed += refused
            changed += read_changed_events(changes)
        for event, uri in zip(events, uris):
            if uri not in indexed:
                skipped["already_indexed" if uri in stored else "deleted_on_stream"
                        if uri in gone or event["did"] in gone else "not_indexed"] += 1
        if failed:
            skipped["db_refused"] += failed
            skipped["not_indexed"] -= failed
        report = {"imported": len(indexed), "skipped": dict(+skipped), CLASSIFY_KEY: new_ids, REALTIME_KEY: changed}
        if cleaned:
            report["cleaned"] = dict(cleaned)
        return report


def _readable(read):
    """``read()``; a file that opened but breaks when read (corrupt pages) is InvalidParams."""
    try:
        return read()
    except sqlite3.DatabaseError as exc:
        raise InvalidParams(f"path: the file cannot be read as SQLite: {exc}") from None


def _tables(conn, params: dict) -> list:
    tables = legacy.post_tables(conn)
    if params.get("table") is not None:
        tables = [t for t in tables if t.name == params["table"]]
        if not tables:
            raise InvalidParams(f"table: {params['table'][:100]!r} is not a table of posts in the file")
    if not tables:
        raise InvalidParams("path: no table of posts in the file (a rowid table with a uri column, and a "
                            "text column or 'post' in its name)")
    return tables


def _event(table, rowid: int, raw: dict, firsts: dict, min_score, now_us: int, max_bytes: int) -> dict | str:
    """The row as a checked, slim backfill event, or the reason it is skipped."""
    if table.missing:
        return "missing_columns"
    try:
        values = {f: None if v is None else v.decode() for f, v in raw.items()}
    except UnicodeDecodeError:
        return "invalid_unicode"
    if any(v is not None and len(raw[f]) > legacy.MAX_VALUE_BYTES for f, v in values.items()):
        return "text_too_long" if len(raw["text"] or b"") > legacy.MAX_VALUE_BYTES else "too_large"
    if any("\x00" in v for f, v in values.items() if v is not None and f != "text"):
        return "nul_byte"
    parts = syntax.at_uri_parts(values["uri"])
    if parts is None or not syntax.is_did(parts[0]):
        return "bad_uri"
    did, collection, rkey = parts
    if collection != POST:
        return "not_a_post"
    if firsts.get(raw["uri"], rowid) < rowid:
        return "duplicate"
    if values.get("did") not in (None, "", did):
        return "author_mismatch"
    if values["text"] is None:
        return "null_text"
    if values.get("flag") is not None and values["flag"].strip().lower() in _FALSE:
        return "not_cannabis"
    if min_score is not None and not _at_least(values.get("score"), min_score):
        return "below_min_score"
    created = values.get("created_at") or values.get("indexed_at")
    if created is None:
        return "missing_date"
    created = _datetime(created)
    if created is None:
        return "bad_date"
    record = {"$type": POST, "text": values["text"], "createdAt": created}
    if values.get("langs"):
        record["langs"] = _langs(values["langs"])
    if values.get("reply_parent") or values.get("reply_root"):
        refs = [values.get(k) for k in ("reply_parent", "reply_parent_cid", "reply_root", "reply_root_cid")]
        if not all(refs):
            return "incomplete_reply"
        record["reply"] = {"parent": {"uri": refs[0], "cid": refs[1]}, "root": {"uri": refs[2], "cid": refs[3]}}
    frame = {"did": did, "time_us": now_us, "kind": "commit",
             "commit": {"operation": "create", "collection": POST, "rkey": rkey, "cid": values.get("cid") or None,
                        "record": record}}
    event = parse_event(orjson.dumps(frame), max_bytes)
    if isinstance(event, Skip):
        if event.reason == "bad_post_record":
            return _RECORD_FIELDS.get((event.detail or "").split(".")[0].split(":")[0], "bad_record")
        return _EDGE_REASONS.get(event.reason, event.reason)
    event["bf"] = {"as_of": now_us, "counts": None, "legacy": True}  # a backfilled record; counts = stored rows
    return event


def _datetime(value: str) -> str | None:
    """A legacy date as the lexicon's datetime (the edge checks it again), or None.

    The feed generator stored ISO strings (``toISOString()``), SQLite ``datetime('now')``
    strings (UTC, no zone) or unix times; anything before 1990 or after 2100 is no date.
    """
    value = value.strip()
    try:
        if _NUMBER.fullmatch(value):
            number = float(value)
            scale = 1e6 if abs(number) >= 1e14 else 1e3 if abs(number) >= 1e11 else 1
            moment = datetime.fromtimestamp(number / scale, tz=timezone.utc)
        else:
            moment = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value)
            moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    except (ValueError, OverflowError, OSError):
        return None
    if not 1990 <= moment.year <= 2100:
        return None
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _langs(value: str):
    """A JSON array (``["en"]``) or a comma-separated list (``en,pt``); the edge checks each."""
    if value.lstrip().startswith("["):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return [lang.strip() for lang in value.split(",") if lang.strip()]


def _at_least(score: str | None, minimum: float) -> bool:
    try:
        return score is not None and float(score) >= minimum
    except ValueError:
        return False


KIND = register(LegacyImport())
