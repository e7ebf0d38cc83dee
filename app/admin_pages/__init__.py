"""``/admin``: server-rendered pages for operators, behind an ``ADMIN_TOKEN`` sign-in
(signin.py): the farm (queues, workers, lag, dead letters, backfills, costs, delivery rates;
farm.py) and the B2B clients (clients.py).

A plain Flask blueprint, so none of it appears in the OpenAPI document, and
app/request_guards.py checks only the body size here (its token checks follow the document).
Every answer is ``no-store`` under a CSP without inline scripts or styles.
"""

from __future__ import annotations

from flask import Blueprint, Flask, g, render_template
from werkzeug.exceptions import HTTPException

from . import clients, farm, signin

bp = Blueprint("admin_pages", __name__, url_prefix="/admin")

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
       "base-uri 'none'; frame-ancestors 'none'; form-action 'self'")

_ROUTES = [  # rule, endpoint, view, methods
    ("/sign-in", "sign_in", signin.sign_in, ["GET", "POST"]),
    ("/sign-out", "sign_out", signin.sign_out, ["POST"]),
    ("/", "farm", farm.farm, ["GET"]),
    ("/dead-letters/<message_id>", "dead_letter", farm.dead_letter, ["GET"]),
    ("/dead-letters/<message_id>/replay", "replay_dead_letter", farm.replay, ["POST"]),
    ("/dead-letters/<message_id>/drop", "drop_dead_letter", farm.drop, ["POST"]),
    ("/clients", "clients", clients.index, ["GET"]),
    ("/clients", "create_client", clients.create, ["POST"]),
    ("/clients/<int:client_id>", "client", clients.detail, ["GET"]),
    ("/clients/<int:client_id>/rotate", "rotate_key", clients.rotate, ["POST"]),
    ("/clients/<int:client_id>/revoke", "revoke_client", clients.revoke, ["POST"]),
    ("/clients/<int:client_id>/tier", "set_tier", clients.set_tier, ["POST"]),
]
for _rule, _endpoint, _view, _methods in _ROUTES:
    bp.add_url_rule(_rule, endpoint=_endpoint, view_func=_view, methods=_methods)


@bp.context_processor
def _page_context():
    return {"notice": signin.notice(), "csrf_token": g.get("admin_csrf"), "csrf_field": signin.CSRF_FIELD}


@bp.after_request
def _headers(response):
    response.headers["Content-Security-Policy"] = CSP
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


@bp.errorhandler(HTTPException)
def _error(exc: HTTPException):
    response = exc.get_response()
    page = render_template("admin/error.html", status=exc.code, title=exc.name, detail=exc.description)
    response.set_data(page)
    response.mimetype = "text/html"
    return response


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
