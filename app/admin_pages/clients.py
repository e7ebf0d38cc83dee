"""B2B clients: list (with this month's calls), create, rotate the key, revoke, change the
plan, and one client's usage: through services/b2b as ``/api/admin/clients`` does.

Form fields are checked with that API's own models (``CreateBody``, ``TierBody``,
``RotateBody``): one set of rules. A new key is shown once, in the answer to the POST
(``no-store``), never put in a redirect, a cookie or a log. Every change is committed, then
announced to the web processes (``limits.invalidate``).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from flask import abort, redirect, render_template, request, url_for
from pydantic import BaseModel, ValidationError
from redis import RedisError

from services.b2b import clients, limits, usage
from services.b2b.tiers import ENDPOINTS, TIERS
from services.db import session_scope

from ..api.admin_clients import CreateBody, RotateBody, TierBody
from ..extensions import get_redis, settings
from . import signin

log = logging.getLogger(__name__)

#: Days of usage on a client's page.
USAGE_DAYS = 30
_NUMBERS = ("monthlyQuota", "rateLimitPerMin", "expiresInDays", "overlapSeconds")


def _form(model: type[BaseModel]) -> BaseModel | str:
    """The POSTed form as ``model``, or what is wrong with it (one line per field)."""
    data = {}
    for name in model.model_fields:
        if name == "allowedEndpoints":
            chosen = request.form.getlist(name)
            data[name] = chosen or None
        elif name in request.form:
            value = request.form[name].strip()
            data[name] = None if value == "" and name in _NUMBERS else value
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'form'}: {e['msg']}" for e in exc.errors())


def _change(work):
    try:
        with session_scope() as session:
            return work(session)
    except clients.ClientNotFound as exc:
        abort(404, str(exc))
    except clients.ClientError as exc:
        abort(422, str(exc))


def _announce(client_id: int) -> None:
    try:
        limits.invalidate(get_redis(), client_id)
    except RedisError:
        log.exception("B2B client %s changed but web processes were not told", client_id)
        abort(503, "Saved, but Redis is not answering: web processes may use the old settings for up to 10 seconds.")


def _index_page(status: int = 200, error: str | None = None):
    listed = _change(clients.list_clients)
    redis = get_redis()
    for client in listed:
        client["usedThisMonth"] = limits.quota_used(redis, client["id"]) or 0
    return render_template("admin/clients.html", clients=listed, tiers=list(TIERS), endpoints=ENDPOINTS,
                           error=error), status


@signin.required
def index():
    return _index_page()


@signin.required
def create():
    body = _form(CreateBody)
    if isinstance(body, str):
        return _index_page(422, body)
    client, key = _change(lambda session: clients.create(
        session, body.name, body.tier, body.monthlyQuota, body.rateLimitPerMin, body.allowedEndpoints,
        body.expiresInDays))
    return render_template("admin/new_key.html", client=client, key=key, created=True), 201


def _usage(client_id: int) -> tuple[dict, dict]:
    now = datetime.now(timezone.utc)
    start = (now - timedelta(days=USAGE_DAYS - 1)).replace(hour=0, minute=0, second=0, microsecond=0)

    def read(session):
        client = clients.show(session, client_id)
        return client, usage.report(session, get_redis(), client["id"], client["monthlyQuota"],
                                    client["rateLimitPerMin"], start, now + timedelta(seconds=1))
    return _change(read)


def _usage_chart(report: dict) -> dict:
    """Calls per day (every day of the range, quiet ones as 0), stacked by endpoint."""
    first = datetime.fromisoformat(report["from"]).date()
    last = (datetime.fromisoformat(report["to"]) - timedelta(seconds=1)).date()  # "to" is exclusive
    days = [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
    endpoints = sorted({row["endpoint"] for row in report["days"]})
    calls = {(row["day"], row["endpoint"]): row["calls"] for row in report["days"]}
    return {"type": "bar", "stacked": True, "labels": days,
            "datasets": [{"label": name, "data": [calls.get((day, name), 0) for day in days]} for name in endpoints]}


@signin.required
def detail(client_id: int, status: int = 200, error: str | None = None):
    client, report = _usage(client_id)
    return render_template("admin/client.html", client=client, report=report, usage_chart=_usage_chart(report),
                           tiers=list(TIERS), endpoints=ENDPOINTS, error=error, days=USAGE_DAYS,
                           overlap=settings().b2b_key_overlap_seconds), status


@signin.required
def rotate(client_id: int):
    body = _form(RotateBody)
    if isinstance(body, str):
        return detail.__wrapped__(client_id, 422, body)
    overlap = body.overlapSeconds if body.overlapSeconds is not None else settings().b2b_key_overlap_seconds
    client, key = _change(lambda session: clients.rotate(session, client_id, overlap, body.expiresInDays))
    _announce(client_id)
    return render_template("admin/new_key.html", client=client, key=key, created=False, overlap=overlap)


@signin.required
def revoke(client_id: int):
    _change(lambda session: clients.revoke(session, client_id))
    _announce(client_id)
    return redirect(url_for("admin_pages.client", client_id=client_id, notice="revoked"), 303)


@signin.required
def set_tier(client_id: int):
    body = _form(TierBody)
    if isinstance(body, str):
        return detail.__wrapped__(client_id, 422, body)
    _change(lambda session: clients.set_tier(session, client_id, body.tier, body.monthlyQuota,
                                             body.rateLimitPerMin, body.allowedEndpoints))
    _announce(client_id)
    return redirect(url_for("admin_pages.client", client_id=client_id, notice="tier"), 303)
