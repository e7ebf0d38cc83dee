"""What the B2B read endpoints share: a session opened only when used, the cursor signing key
and their error responses."""

from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache
from typing import Iterator

from sqlalchemy.orm import Session

from services.b2b.queries import cursors
from services.db import session_scope

from ...errors import ApiError

from ...extensions import settings
from ...schemas import Problem
from .access import B2B_ERRORS

#: 400: a cursor that was altered, or that belongs to a query with other filters.
PAGE_ERRORS = {400: Problem, **B2B_ERRORS}
#: The answer session's connection: no transaction (the pool restores the level on return).
AUTOCOMMIT = {"isolation_level": "AUTOCOMMIT"}


def cursor_key() -> bytes:
    return _key(settings().jwt_secret)


@lru_cache(maxsize=4)
def _key(secret: str) -> bytes:
    return cursors.signing_key(secret)


class _LazySession:
    """A ``session_scope`` opened at its first use: an answer served whole from the answer cache
    (``services/b2b/queries/cache.py``) needs none, and opening and committing an empty one costs
    about a tenth of such a request.

    Its connection runs in autocommit: the answers only read, each statement on its own snapshot
    (what a page needs: keyset cursors, posts looked up live), and BEGIN and COMMIT would be two
    more round trips to PostgreSQL for every request that reads (one or two statements)."""

    def __init__(self):
        self._scope = None
        self._session: Session | None = None

    def __getattr__(self, name):
        if self._session is None:
            self._scope = session_scope()
            self._session = self._scope.__enter__()
            self._session.connection(execution_options=AUTOCOMMIT)
        return getattr(self._session, name)

    def _finish(self, exc_type=None, exc=None, tb=None) -> None:
        if self._scope is not None:
            self._scope.__exit__(exc_type, exc, tb)


@contextmanager
def answer_session() -> Iterator[Session]:
    """``paging_session`` (a foreign cursor is a 400), opened lazily."""
    lazy = _LazySession()
    try:
        yield lazy  # type: ignore[misc]
    except BaseException as exc:
        lazy._finish(type(exc), exc, exc.__traceback__)
        if isinstance(exc, cursors.InvalidCursor):
            raise ApiError(400, "Bad Request", "The cursor is not one this API returned") from None
        raise
    lazy._finish()
