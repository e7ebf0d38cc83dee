"""``brands`` and ``strains`` statistics from the classifications that name them.

The classification pipeline resolves mentions to canonical names (and creates the rows it
knows); here every name that classifications use is matched to its row by *key* (lower case,
letters and digits only) against the row's normalized name, name or aliases, a row is created
for a key that has none, and mention_count, avg_sentiment (-1..1), first/last seen (and a
strain's common effects) are recomputed from all counted posts, so deleted posts drop out.
Rows no post names any more keep their identity with zero mentions.

Cost: one scan of the counted posts that name an entity, aggregated per spelling first (a few
thousand spellings), so the name matching runs per spelling, not per post.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from . import runs
from .base import CLASSIFIED, roomy, try_job_lock

#: Effects listed in ``strains.common_effects``.
COMMON_EFFECTS = 5

_KEY = "regexp_replace(lower({}), '[^[:alnum:]]+', '', 'g')"


def _statements(table: str, column: str) -> list[str]:
    strains = table == "strains"
    spellings = f"""CREATE TEMP TABLE entity_spellings ON COMMIT DROP AS
        SELECT s.*, {_KEY.format('s.name')} AS key FROM (
            SELECT pc.{column} AS name, count(*) AS n, sum(pc.sentiment_score) AS sentiment_sum,
                   count(pc.sentiment_score) AS sentiment_n, min(p.created_at) AS first_at,
                   max(p.created_at) AS last_at
            FROM {CLASSIFIED} WHERE pc.{column} IS NOT NULL GROUP BY 1) s"""
    effects = f"""CREATE TEMP TABLE entity_effects ON COMMIT DROP AS
        SELECT pc.{column} AS name, effect, count(*) AS n
        FROM {CLASSIFIED} CROSS JOIN LATERAL unnest(pc.effects_mentioned) AS effect
        WHERE pc.{column} IS NOT NULL GROUP BY 1, 2"""
    create = f"""INSERT INTO {table} (name, normalized_name, first_seen_at)
        SELECT DISTINCT ON (key) name, key, first_at FROM entity_spellings s
        WHERE key <> '' AND NOT EXISTS (
            SELECT 1 FROM {table} t WHERE t.normalized_name = s.key OR {_KEY.format('t.name')} = s.key
                OR s.key = ANY(SELECT {_KEY.format('a')} FROM unnest(t.aliases) a))
        ORDER BY key, n DESC, name
        ON CONFLICT (name) DO NOTHING"""
    keys = f"""keys AS (
            SELECT DISTINCT ON (k.key) k.key, t.id FROM {table} t
            CROSS JOIN LATERAL (SELECT t.normalized_name AS key UNION SELECT {_KEY.format('t.name')}
                                UNION SELECT {_KEY.format('a')} FROM unnest(t.aliases) a) k
            WHERE k.key <> '' ORDER BY k.key, t.id)"""
    top_effects = """, effects AS (
            SELECT id, array_agg(effect ORDER BY n DESC, effect) AS top FROM (
                SELECT keys.id, e.effect, sum(e.n) AS n,
                       row_number() OVER (PARTITION BY keys.id ORDER BY sum(e.n) DESC, e.effect) AS r
                FROM entity_effects e JOIN entity_spellings s USING (name) JOIN keys ON keys.key = s.key
                GROUP BY keys.id, e.effect) ranked
            WHERE r <= :effects GROUP BY id)"""
    update = f"""WITH {keys}, stats AS (
            SELECT keys.id, sum(s.n) AS n,
                   round(sum(s.sentiment_sum) / nullif(sum(s.sentiment_n), 0) / 100.0, 2) AS sentiment,
                   min(s.first_at) AS first_at, max(s.last_at) AS last_at
            FROM entity_spellings s JOIN keys ON keys.key = s.key GROUP BY keys.id
        ){top_effects if strains else ""}
        UPDATE {table} t SET mention_count = coalesce(s.n, 0), avg_sentiment = s.sentiment,
            first_seen_at = coalesce(s.first_at, t.first_seen_at),
            last_seen_at = s.last_at{", common_effects = coalesce(e.top, '{}')" if strains else ""}
        FROM {table} t2 LEFT JOIN stats s ON s.id = t2.id{" LEFT JOIN effects e ON e.id = t2.id" if strains else ""}
        WHERE t.id = t2.id AND (s.id IS NOT NULL OR t.mention_count <> 0 OR t.last_seen_at IS NOT NULL)"""
    return [spellings, *([effects] if strains else []), create, update, "DROP TABLE entity_spellings",
            *(["DROP TABLE entity_effects"] if strains else [])]


_BRANDS = [text(s) for s in _statements("brands", "brand_mentioned")]
_STRAINS = [text(s) for s in _statements("strains", "strain_mentioned")]


def recompute(session: Session) -> int:
    """The scheduled job: brand and strain statistics from all counted posts; rows written."""
    if not try_job_lock(session, "entities"):
        return 0
    with runs.recorded(session, "entities") as tally:
        roomy(session)
        for statement in _BRANDS + _STRAINS:
            result = session.execute(statement, {"effects": COMMON_EFFECTS})
            tally.rows += max(result.rowcount, 0) if statement.text.lstrip().startswith(("INSERT", "WITH")) else 0
    return tally.rows
