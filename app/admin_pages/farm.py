"""The farm page and Dramatiq's dead letters: show one, replay it, drop it.

Figures come from services/farm.py (status, queues, stats modules); dead letters from
services/queues.py, replayed through the broker's own enqueue (as ``cannect queues replay``).
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

from flask import abort, redirect, render_template, url_for

from services import farm as farm_figures
from services import queues
from services.db import session_scope

from ..api.admin_ops import enqueue_message
from ..extensions import get_redis, settings
from . import signin

#: Redis message ids are UUIDs; anything else is refused before Redis is asked.
_MESSAGE_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")


#: Webhook delivery states in the chart: good green, waiting blue, retrying amber, lost red.
_STATUS_COLOURS = {"delivered": "#1f6b3a", "pending": "#0b57d0", "failed": "#8a5a00", "given_up": "#b3261e"}


def _when(seconds) -> str:
    if not seconds:
        return "–"
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _charts(figures: dict) -> dict:
    """Chart.js-ready data (app/static/admin/charts.js); each chart's numbers are also in a table."""
    history = figures["queue_history"]
    names = [row["name"] for row in figures["queue_rows"]]
    webhooks = figures["webhooks"]["hours"]
    classification = figures.get("classification") or {}
    return {
        "queues": {"type": "line", "labels": [_when(s["at"])[11:16] for s in history],
                   "datasets": [{"label": name, "data": [s["depths"].get(name, 0) for s in history]}
                                for name in names]},
        "webhooks": {"type": "bar", "stacked": True, "labels": [row["hour"][11:] for row in webhooks],
                     "datasets": [{"label": status, "data": [row[status] for row in webhooks],
                                   "color": _STATUS_COLOURS.get(status)} for status in figures["webhooks"]["totals"]]},
        "classification": {"type": "bar", "labels": ["classified", "outdated", "unprocessed", "retrying", "failed"],
                           "datasets": [{"label": "posts", "data": [
                               classification.get(key, 0) for key in
                               ("classified", "outdated", "unprocessed", "failed_retrying", "failed")]}]},
    }


@signin.required
def farm():
    with session_scope() as session:
        figures = farm_figures.overview(get_redis(), session, settings().worker_heartbeat_timeout_ms)
    return render_template("admin/farm.html", f=figures, charts=_charts(figures), when=_when)


def _checked(message_id: str) -> str:
    if not _MESSAGE_ID.match(message_id):
        abort(404, "No such dead letter.")
    return message_id


@signin.required
def dead_letter(message_id: str):
    try:
        letter = queues.show(get_redis(), _checked(message_id))
    except queues.UnknownMessage:
        abort(404, f"No dead letter {message_id} (replayed or dropped meanwhile?).")
    return render_template("admin/dead_letter.html", letter=letter, when=_when)


def _done(notice: str):
    return redirect(url_for("admin_pages.farm", notice=notice, _anchor="dead-letters"), 303)


@signin.required
def replay(message_id: str):
    """Enqueue it again, retries reset (the dead copy is taken first: a double click enqueues once)."""
    try:
        queues.replay(get_redis(), _checked(message_id), enqueue_message)
    except queues.UnknownMessage:
        abort(404, f"No dead letter {message_id} (replayed or dropped meanwhile?).")
    except queues.Unreplayable as exc:
        abort(422, str(exc))
    return _done("replayed")


@signin.required
def drop(message_id: str):
    try:
        queues.drop(get_redis(), _checked(message_id))
    except queues.UnknownMessage:
        abort(404, f"No dead letter {message_id} (replayed or dropped meanwhile?).")
    return _done("dropped")

