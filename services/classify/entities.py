"""Brands and strains: the reference tables, and mentions resolved to their canonical names.

Classifiers name brands and strains in free text (an LLM writes what the post wrote: "gsc",
"Cookies SF", "blue dream"); ``post_classifications`` stores the canonical ``name`` of a
``brands`` / ``strains`` row instead, so that aggregates count one strain once. A mention
resolves, in this order, by:

1. the offline lexicon (``services/classify/lexicons``: canonical names, aliases, spellings);
2. the tables: ``normalized_name`` (lowercase letters and digits only, accents dropped) or a
   normalized alias (operators may add aliases to rows);
3. otherwise a new row named as first written, with its ``normalized_name``: the next
   mention in any spelling that normalizes alike resolves to it. An advisory lock per
   normalized name makes concurrent workers insert one row, not one each.

The tables are seeded from the lexicon (:func:`seed_from_lexicon`, idempotent: names,
normalized names, aliases merged with those operators added, type or category). Mention
counts and average sentiment are recomputed from ``post_classifications`` elsewhere; here
only ``last_seen_at`` moves (the newest mentioning post's creation time).
"""

from __future__ import annotations

import functools
import os
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Sequence

from sqlalchemy import func, literal_column, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from models.intelligence import Brand, Strain

#: ``last_seen_at`` moves only when a mention is this much newer (see :func:`_touch`).
LAST_SEEN_GRANULARITY = "1 minute"
#: Strain types the table accepts; anything else from a lexicon is stored as ``unknown``.
STRAIN_TYPES = ("indica", "sativa", "hybrid", "unknown")


def normalize_name(name: str) -> str:
    """``"Girl Scout Cookies"`` → ``girlscoutcookies``; ``"Açaí-Farms"`` → ``acaifarms``."""
    decomposed = unicodedata.normalize("NFKD", name).lower()
    return "".join(ch for ch in decomposed if ch.isalnum() and not unicodedata.combining(ch))


#: The same normalization for ASCII aliases, in SQL (accented aliases match by the lexicon).
_SQL_NORMALIZED_ALIAS = "regexp_replace(lower(a), '[^a-z0-9]+', '', 'g')"


@dataclass(frozen=True)
class Kind:
    """What differs between brands and strains."""

    model: type
    table: str
    field: str            # the post_classifications column holding the mention
    extra: str            # strain_type / category


BRANDS = Kind(Brand, "brands", "brand_mentioned", "category")
STRAINS = Kind(Strain, "strains", "strain_mentioned", "strain_type")


# -- seeding ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Seed:
    name: str
    aliases: tuple[str, ...]
    extra: str | None      # strain type or brand category


def lexicon_seeds(lexicon) -> dict[Kind, list[Seed]]:
    """The brands and strains of a loaded offline lexicon (``lexicon.load()``): names, every
    alias (ambiguous ones too: a name an LLM extracted is a mention, not a guess) and the
    entity's ``kind`` (strain type, brand category)."""
    return {kind: [Seed(entity.name, _aliases(entity), entity.kind or None) for entity in entities]
            for kind, entities in ((STRAINS, lexicon.strains), (BRANDS, lexicon.brands))}


def _aliases(entity) -> tuple[str, ...]:
    names = [*entity.aliases, *entity.ambiguous]
    return tuple(dict.fromkeys(a for a in names if a and a != entity.name))


def seed_from_lexicon(session: Session, lexicon: Any = None) -> dict[str, int]:
    """Upsert every lexicon brand and strain (idempotent); returns rows written per table."""
    lexicon = lexicon if lexicon is not None else _lexicon()
    written = {}
    for kind, seeds in lexicon_seeds(lexicon).items():
        written[kind.table] = _upsert_seeds(session, kind, sorted(seeds, key=lambda seed: seed.name))
    return written


def _upsert_seeds(session: Session, kind: Kind, seeds: Sequence[Seed]) -> int:
    if not seeds:
        return 0
    model = kind.model
    rows = [{"name": seed.name, "normalized_name": normalize_name(seed.name), "aliases": list(seed.aliases),
             kind.extra: _extra(kind, seed.extra)} for seed in seeds]
    statement = insert(model).values(rows)
    # Aliases: the lexicon's plus any an operator added to the row (kept, deduplicated).
    merged = literal_column(f"ARRAY(SELECT DISTINCT a FROM unnest(coalesce({kind.table}.aliases, '{{}}') "
                            f"|| excluded.aliases) AS a ORDER BY a)")
    session.execute(statement.on_conflict_do_update(index_elements=["name"], set_={
        "normalized_name": statement.excluded.normalized_name,
        "aliases": merged,
        kind.extra: func.coalesce(statement.excluded[kind.extra], getattr(model, kind.extra)),
    }))
    return len(rows)


def _extra(kind: Kind, value: str | None) -> str | None:
    if kind is STRAINS:
        return value if value in STRAIN_TYPES else "unknown"
    return value


@functools.lru_cache(maxsize=1)
def _lexicon():
    """The offline classifier's lexicon, with the operator's files (``CLASSIFIER_LEXICON_DIR``)."""
    from . import lexicon

    return lexicon.load(os.environ.get("CLASSIFIER_LEXICON_DIR") or None)


# -- resolving mentions ----------------------------------------------------------------------

def resolve_mentions(session: Session, rows: list[dict], seen_at: Sequence[datetime | None],
                     lexicon: Any = None) -> None:
    """Replace ``brand_mentioned`` / ``strain_mentioned`` of each classification row by the
    canonical name (inserting unknown names), and move ``last_seen_at`` of those mentioned."""
    lexicon = lexicon if lexicon is not None else _lexicon()
    for kind, by_lexicon in ((BRANDS, lexicon.resolve_brand), (STRAINS, lexicon.resolve_strain)):
        mentions = {row[kind.field] for row in rows if row.get(kind.field)}
        canonical = _resolve(session, kind, mentions, by_lexicon)
        latest: dict[str, datetime | None] = {}
        for row, when in zip(rows, seen_at):
            name = canonical.get(row.get(kind.field)) if row.get(kind.field) else None
            row[kind.field] = name
            if name is not None:
                latest[name] = max(filter(None, (latest.get(name), when)), default=None)
        _touch(session, kind, latest)


def _resolve(session: Session, kind: Kind, mentions: set[str], by_lexicon) -> dict[str, str | None]:
    canonical: dict[str, str | None] = {}
    unresolved: dict[str, str] = {}                       # normalized -> first spelling seen
    for mention in sorted(mentions):
        name = by_lexicon(mention)
        if name:
            canonical[mention] = name
        elif normalize_name(mention):
            unresolved.setdefault(normalize_name(mention), mention)
        else:
            canonical[mention] = None                     # nothing but punctuation: no entity
    known = _lookup(session, kind, set(unresolved))
    for normalized in sorted(set(unresolved) - set(known)):
        known[normalized] = _insert_once(session, kind, normalized, unresolved[normalized])
    for mention in mentions:
        if mention not in canonical:
            canonical[mention] = known[normalize_name(mention)]
    # Lexicon names must exist as rows too (a lexicon extended after the last seeding).
    _ensure_rows(session, kind, {name for name in canonical.values() if name} - set(known.values()))
    return canonical


#: Lexicon names known to have a row, per table, in this process (the pipeline never deletes
#: rows): saves an INSERT per message.
_existing: dict[str, set[str]] = {"brands": set(), "strains": set()}


def _lookup(session: Session, kind: Kind, normalized: set[str]) -> dict[str, str]:
    """normalized name -> canonical name, by ``normalized_name`` first, then by alias."""
    if not normalized:
        return {}
    rows = session.execute(text(
        f"SELECT name, normalized_name, ARRAY(SELECT {_SQL_NORMALIZED_ALIAS} FROM unnest(aliases) a) AS aliases "
        f"FROM {kind.table} WHERE normalized_name = ANY(:wanted) OR EXISTS "
        f"(SELECT 1 FROM unnest(aliases) a WHERE {_SQL_NORMALIZED_ALIAS} = ANY(:wanted)) ORDER BY id"),
        {"wanted": sorted(normalized)}).all()
    found: dict[str, str] = {}
    for row in rows:                                      # a name beats an alias; the oldest row wins
        if row.normalized_name in normalized:
            found.setdefault(row.normalized_name, row.name)
    for row in rows:
        for alias in row.aliases or ():
            if alias in normalized:
                found.setdefault(alias, row.name)
    return found


def _insert_once(session: Session, kind: Kind, normalized: str, spelling: str) -> str:
    """The row for a name no table row matched, inserted by exactly one transaction."""
    session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
                    {"key": f"{kind.table}:{normalized}"})
    existing = _lookup(session, kind, {normalized}).get(normalized)
    if existing:
        return existing
    values = {"name": spelling, "normalized_name": normalized}
    if kind is STRAINS:
        values["strain_type"] = "unknown"
    inserted = session.execute(insert(kind.model).values(**values).on_conflict_do_nothing(index_elements=["name"])
                               .returning(kind.model.name)).scalar()
    return inserted or spelling                           # same spelling already a row: that row


def _ensure_rows(session: Session, kind: Kind, names: set[str]) -> None:
    names = names - _existing[kind.table]
    if not names:
        return
    rows = [{"name": name, "normalized_name": normalize_name(name)} for name in sorted(names)]
    if kind is STRAINS:
        for row in rows:
            row["strain_type"] = "unknown"
    session.execute(insert(kind.model).values(rows).on_conflict_do_nothing(index_elements=["name"]))
    # Lexicon names are seeded when a worker starts, so this is a fallback; were this
    # transaction rolled back, the next worker start would seed the row.
    _existing[kind.table].update(names)


def _touch(session: Session, kind: Kind, latest: dict[str, datetime | None]) -> None:
    """Move ``last_seen_at`` forward, to the minute. A popular strain is in most messages: a
    row another transaction is updating right now is skipped (it is moving it forward too), so
    concurrent workers never wait for each other's commits here."""
    if not latest:
        return
    names = sorted(latest)
    session.execute(text(
        f"WITH m AS (SELECT name, LEAST(coalesce(seen, now()), now()) AS seen "
        f"FROM unnest(CAST(:names AS text[]), CAST(:seen AS timestamptz[])) AS m(name, seen)), "
        f"due AS (SELECT t.id, m.seen FROM {kind.table} t JOIN m ON t.name = m.name "
        f"WHERE t.last_seen_at IS NULL OR t.last_seen_at < m.seen - interval '{LAST_SEEN_GRANULARITY}' "
        f"ORDER BY t.id FOR NO KEY UPDATE OF t SKIP LOCKED) "
        f"UPDATE {kind.table} t SET last_seen_at = GREATEST(t.last_seen_at, due.seen) FROM due WHERE t.id = due.id"),
        {"names": names, "seen": [latest[name] for name in names]})
