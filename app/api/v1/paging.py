"""What the paginated B2B endpoints share: the cursor signing key and their error responses."""

from __future__ import annotations

from functools import lru_cache

from services.b2b.queries import cursors

from ...extensions import settings
from ...schemas import Problem
from .access import B2B_ERRORS

#: 400: a cursor that was altered, or that belongs to a query with other filters.
PAGE_ERRORS = {400: Problem, **B2B_ERRORS}


def cursor_key() -> bytes:
    return _key(settings().jwt_secret)


@lru_cache(maxsize=4)
def _key(secret: str) -> bytes:
    return cursors.signing_key(secret)
