"""``/dashboard``: the client dashboard, server-rendered pages over the B2B intelligence.

A plain Flask blueprint (not in the OpenAPI document; ``request_guards`` sees no security
requirement for it). A client signs in with its API key once (``session.py``); every page
reads the same service functions as ``/api/v1`` (``services/b2b/queries``,
``services/b2b/usage``, ``services/webhooks``) and shows only what the client's plan allows.
Every chart is drawn from the table under it by ``static/js/dashboard.js``, and every table
downloads as CSV from the same numbers (``tables.py``).
"""

from __future__ import annotations

from flask import Blueprint, Flask

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")


def init_app(app: Flask) -> None:
    from . import session  # noqa: F401  (sign-in, sign-out, the session check, headers)
    from .views import VIEWS  # noqa: F401  (the pages register their routes)

    app.register_blueprint(bp)
