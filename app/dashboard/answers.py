"""Tables from an answer of any shape (the seven time-analysis questions): the page shows what
the service returned, nothing recomputed.

- a list of objects: one row each;
- an object of numbers: one row per name;
- an object of equally long lists (``weeks`` with ``posts``): one row per position;
- other objects: their scalar fields as a summary, and a table per nested value.
"""

from __future__ import annotations

from .tables import Column, Table, slug


def _scalar(value) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _numeric(values) -> bool:
    present = [v for v in values if v is not None]
    return bool(present) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)


def _title(text: str) -> str:
    return text.replace("_", " ").replace("-", " ").capitalize()


def _from_rows(table_id: str, title: str, rows: list[dict]) -> Table:
    keys = list(dict.fromkeys(k for row in rows for k, v in row.items() if _scalar(v) or
                              (isinstance(v, list) and all(_scalar(x) for x in v))))
    columns = [Column(k, _title(k), _numeric(r.get(k) for r in rows)) for k in keys]
    for column in columns[1:]:  # the first column labels the rows (an hour, a week, a name)
        column.series = column.numeric
    chart = "bar" if any(c.series for c in columns) else None
    return Table(table_id, title, columns, rows, chart=chart)


def _join(title: str, part: str) -> str:
    return f"{title}: {part}" if title else part


def tables_from(prefix: str, title: str, value) -> list[Table]:
    """The tables of ``value``; ``title`` ("" inside a section already titled) prefixes theirs."""
    if isinstance(value, list):
        if value and all(isinstance(v, dict) for v in value):
            return [_from_rows(slug(prefix), title or "Rows", value)]
        return []
    if not isinstance(value, dict):
        return []
    if value and all(_scalar(v) for v in value.values()):
        numeric = _numeric(value.values())
        columns = [Column("name", "Name"), Column("value", "Value", numeric, numeric)]
        return [Table(slug(prefix), title or "Values", columns, [{"name": k, "value": v} for k, v in value.items()],
                      chart="bar" if numeric else None)]
    lists = {k: v for k, v in value.items() if isinstance(v, list) and v and all(_scalar(x) for x in v)}
    lengths = {len(v) for v in lists.values()}
    tables: list[Table] = []
    if len(lists) >= 2 and len(lengths) == 1:
        keys = list(lists)
        rows = [{k: lists[k][i] for k in keys} for i in range(lengths.pop())]
        tables.append(_from_rows(slug(prefix), title or "By position", rows))
    else:
        lists = {}
    scalars = {k: v for k, v in value.items() if _scalar(v)}
    if scalars:
        tables.append(Table(slug(prefix + "-summary"), _join(title, "Summary"),
                            [Column("name", "Name"), Column("value", "Value")],
                            [{"name": _title(k), "value": v} for k, v in scalars.items()]))
    for key, nested in value.items():
        if key not in lists and not _scalar(nested):
            tables += tables_from(f"{prefix}-{key}", _join(title, _title(key)), nested)
    return tables
