"""Webhooks: the client's endpoints with their delivery log, and a "send test event" button."""

from __future__ import annotations

import logging

from dramatiq.errors import BrokerError
from flask import abort, redirect, request, url_for
from redis import RedisError

from services.db import session_scope
from services.webhooks import endpoints, events
from services.webhooks.endpoints import EndpointNotFound

from .. import bp, filters
from ..session import current, requires
from ..tables import Column, Table, page
from .common import reading

log = logging.getLogger(__name__)
DELIVERIES = 20


def delivery_table(endpoint: dict, rows: list[dict]) -> Table:
    return Table(f"deliveries-{endpoint['id']}", f"Deliveries to {endpoint['url']}", [
        Column("id", "Delivery"), Column("event_type", "Event"), Column("status", "Status"),
        Column("attempts", "Attempts", True), Column("last_status_code", "Last HTTP status", True),
        Column("last_error", "Last error"), Column("created_at", "Created"), Column("delivered_at", "Delivered")],
        [{**r, "created_at": r["created_at"].isoformat() if r["created_at"] else None,
          "delivered_at": r["delivered_at"].isoformat() if r["delivered_at"] else None} for r in rows])


@bp.get("/webhooks")
@requires("webhooks")
def webhooks():
    client_id = current().credentials.client_id
    with reading() as session:
        found = endpoints.list_for(session, client_id)
        logs = {e["id"]: endpoints.deliveries(session, client_id, e["id"], limit=DELIVERIES) for e in found}
    tables = [delivery_table(e, logs[e["id"]]) for e in found]
    sent = request.args.get("sent", type=int)
    return page("dashboard/webhooks.html", tables, endpoints=[(e, f"deliveries-{e['id']}") for e in found], sent=sent)


@bp.post("/webhooks/<int:endpoint_id>/test")
@requires("webhooks")
def send_test(endpoint_id: int):
    """Queue a ``webhook.test`` event for one of the client's endpoints (another's is a 404)."""
    try:
        with session_scope() as session:
            delivery_id, _ = events.send_test(session, current().credentials.client_id, endpoint_id)
    except EndpointNotFound:
        abort(404, "No such webhook endpoint")
    try:
        from tasks.webhooks import request as enqueue  # the broker lives with the actors

        enqueue([delivery_id])
    except (RedisError, BrokerError):
        log.exception("could not enqueue webhook test delivery %s", delivery_id)  # the sweep sends it later
    return redirect(url_for("dashboard.webhooks", sent=delivery_id, **filters.current().args()), 303)
