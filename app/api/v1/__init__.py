"""``/api/v1``: the B2B intelligence API, for clients holding an API key.

``access.py`` checks the key, the plan and the limits before any handler runs and exposes
the caller as ``current_client()`` (also ``g.b2b_client``). An endpoint module declares its
operations with ``security=B2B_SECURITY`` and ``responses={..., **B2B_ERRORS}`` under the
``/api/v1`` prefix; its first path segment is the endpoint name plans list
(``services/b2b/tiers.py``). Add the module's blueprint to ``BLUEPRINTS``.
"""

from __future__ import annotations

from flask_openapi3 import OpenAPI

from . import explore, market, usage, webhooks
from .access import B2B_ERRORS, B2B_SECURITY, current_client, init_access
from .answer_replay import AnswerReplay

BLUEPRINTS = [usage.api, webhooks.api, market.api, explore.api]


def register_b2b_api(app: OpenAPI) -> None:
    from ..admin_clients import api as admin_clients

    init_access(app)
    for blueprint in (*BLUEPRINTS, admin_clients):
        app.register_api(blueprint)
    if app.config["SETTINGS"].b2b_answer_replay:  # (before ProxyFix wraps the app: inside it)
        app.wsgi_app = AnswerReplay(app.wsgi_app, app.extensions["b2b_gate"])


__all__ = ["B2B_ERRORS", "B2B_SECURITY", "BLUEPRINTS", "current_client", "register_b2b_api"]
