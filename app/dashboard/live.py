"""The live feed's side of ``/ws``: ``{"type": "dashboard_feed", "ticket": "...", "since"?: "<event id>"}``.

The dashboard page carries a short-lived ticket naming its session (the cookie is HttpOnly and
never sent in a message). A genuine ticket of a live session whose plan has ``intents`` makes
the socket receive every ``high_intent_post`` event (``services/b2b/live.py``), after what it
missed since ``since``; anything else gets an ``invalid_ticket`` error and close 4401. Signing
out publishes the session's ``session_ended``, which closes its sockets in every process.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, StringConstraints

from services import realtime
from services.b2b import dashboard_sessions
from services.db import session_scope

EventId = Annotated[str, StringConstraints(pattern=r"^\d{1,20}-\d{1,20}$")]


class DashboardFeed(BaseModel):
    type: Literal["dashboard_feed"]
    ticket: Annotated[str, StringConstraints(max_length=300)]
    since: EventId | None = None


def start_feed(connection, message: DashboardFeed, max_age: int) -> None:
    """Check the ticket and its session, then listen to the feed and to the session's end."""
    feed_id = dashboard_sessions.read_ticket(connection.jwt_secret, message.ticket)
    client = None
    if feed_id is not None:
        with session_scope() as session:
            client = dashboard_sessions.feed_client(connection.hub.redis, session, feed_id, max_age)
    if client is None or not client.allows("intents"):
        connection._error("invalid_ticket", "this dashboard session has ended: reload the page")
        connection.ws.close(4401, "session ended")
        return
    # Listen to the session's end first: a sign-out between the check and here still closes it.
    connection.hub.listen(connection, [realtime.session_key(feed_id), realtime.HIGH_INTENT_KEY])
    connection._send({"type": "feed_ok"})
    if message.since:
        connection._replay([realtime.HIGH_INTENT_KEY], message.since, {"feed": "high_intent"})
