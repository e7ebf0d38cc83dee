"""Tables: what a page shows, charts and CSV downloads come from.

A page builds ``Table`` objects from the service answers; the template renders each as an
HTML table (with its chart above it: ``dashboard.js`` reads the numbers from the table), and
``?csv=<table id>`` on the same URL answers that table as CSV. One list of numbers feeds all
three, so the chart, the table and the download cannot disagree.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field

from flask import Response, abort, render_template, request

_SAFE_ID = re.compile(r"[^a-z0-9-]+")


@dataclass
class Column:
    key: str
    label: str
    numeric: bool = False
    series: bool = False  # drawn in the chart


@dataclass
class Table:
    id: str
    title: str
    columns: list[Column]
    rows: list[dict]
    chart: str | None = None  # "bar" | "line" | "heat" | None
    note: str | None = None
    links: dict[str, str] = field(default_factory=dict)  # column key -> key of the row's link

    def value(self, row: dict, column: Column):
        return row.get(column.key)


def slug(text: str) -> str:
    return _SAFE_ID.sub("-", text.lower()).strip("-")[:60] or "table"


def shown(value) -> str:
    """A cell as the page and the CSV both show it (numbers to 4 decimals at most)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        value = round(value, 4)
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {shown(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ("; " if any(isinstance(v, dict) for v in value) else ", ").join(shown(v) for v in value)
    return value if isinstance(value, str) else str(value)


def _cell(value) -> str:
    text = shown(value)
    # A spreadsheet runs a cell starting with = + - @ as a formula: quote those (OWASP CSV injection).
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not _is_number(text) else text


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def to_csv(table: Table) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([c.label for c in table.columns])
    for row in table.rows:
        writer.writerow([_cell(table.value(row, c)) for c in table.columns])
    return out.getvalue()


def page(template: str, tables: list[Table], **context) -> Response | str:
    """Render the page, or (``?csv=<id>``) one of its tables as a CSV download."""
    wanted = request.args.get("csv")
    if wanted is not None:
        table = next((t for t in tables if t.id == wanted), None)
        if table is None:
            abort(404, "No such table on this page")
        return Response(to_csv(table), mimetype="text/csv", headers={
            "Content-Disposition": f'attachment; filename="{table.id}.csv"'})
    return render_template(template, tables={t.id: t for t in tables}, table_list=tables, **context)
