"""Who may call admin endpoints: a signed-in member listed in ``ADMIN_DIDS``, or any client
presenting ``ADMIN_TOKEN`` in the ``X-Admin-Token`` header (for scripts and operators)."""

from __future__ import annotations

import hmac

from flask import request

from .auth import require_viewer
from .errors import ApiError
from .extensions import settings

ADMIN_TOKEN_HEADER = "X-Admin-Token"
#: OpenAPI security of admin endpoints: a bearer token with the role "admin", or the admin token.
#: app/request_guards.py checks it (with require_admin) before the input is validated.
ADMIN_SCHEME = "adminToken"
ADMIN = [{"bearer": ["admin"]}, {ADMIN_SCHEME: []}]


def require_admin() -> str:
    """``"token"`` or the admin member's DID; 401 for an anonymous client, 403 for anyone else."""
    config = settings()
    token = request.headers.get(ADMIN_TOKEN_HEADER)
    if token is not None:
        if config.admin_token and hmac.compare_digest(token.encode(), config.admin_token.encode()):
            return "token"
        raise ApiError(403, "Forbidden", f"Wrong {ADMIN_TOKEN_HEADER}")
    viewer = require_viewer()
    if viewer not in config.admin_dids:
        raise ApiError(403, "Forbidden", "Only admins may do this")
    return viewer
