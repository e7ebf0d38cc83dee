"""What the page modules share: a database session for reads, and the cursor key of /api/v1."""

from __future__ import annotations

from contextlib import contextmanager

from services.db import session_scope

from ...api.v1.paging import cursor_key  # noqa: F401  (re-exported for the feed)


@contextmanager
def reading():
    """A session for the page's reads (the services commit nothing for them)."""
    with session_scope() as session:
        yield session
