"""Sign-in with the API key, the session cookie, CSRF, and the headers of every page.

The cookie holds a random session id only: HttpOnly, SameSite=Strict, Secure when the request
came over https, no Max-Age (gone with the browser). The key is checked again at every request
(``services/b2b/dashboard_sessions.load``): revoked or rotated past its overlap, the session
ends at once. Every POST carries the session's CSRF token in a form field; the sign-in form,
before any session, carries a double-submit token (a cookie and the same value in the form).
Sign-in attempts are limited per client IP (``DASHBOARD_SIGNIN_PER_MINUTE``).
"""

from __future__ import annotations

import hmac
import secrets
from functools import wraps

from flask import abort, current_app, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from services.b2b import dashboard_sessions
from services.b2b.limits import Limiter
from services.db import session_scope

from ..extensions import client_ip, get_redis, settings
from . import bp

COOKIE = "cannect_dashboard"
SIGNIN_COOKIE = "cannect_dashboard_signin"
PUBLIC = {"dashboard.sign_in", "dashboard.sign_in_form"}


def _csp() -> str:
    scheme = "wss" if request.is_secure else "ws"
    return ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"connect-src 'self' {scheme}://{request.host}; frame-ancestors 'none'; base-uri 'none'; "
            "form-action 'self'; object-src 'none'")


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = _csp()
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


def _set_cookie(response: Response, name: str, value: str, path: str = "/dashboard") -> None:
    response.set_cookie(name, value, path=path, httponly=True, samesite="Strict", secure=request.is_secure)


@bp.before_request
def _load_session():
    """Every page but the sign-in needs a live session; every POST its CSRF token."""
    if request.endpoint in PUBLIC:
        return None
    s = settings()
    with session_scope() as db:
        g.dashboard = dashboard_sessions.load(get_redis(), db, request.cookies.get(COOKIE),
                                              s.dashboard_session_idle_seconds, s.dashboard_session_max_seconds)
    if g.dashboard is None:
        if request.method == "GET":
            response = redirect(url_for("dashboard.sign_in_form", next=request.full_path.rstrip("?")))
        else:
            response = Response("Your session has ended: sign in again.", 401, mimetype="text/plain")
        response.delete_cookie(COOKIE, path="/dashboard")
        return response
    if request.method == "POST" and not hmac.compare_digest(request.form.get("csrf", ""), g.dashboard.csrf):
        abort(403, "The form's security token is missing or wrong: reload the page and try again.")
    return None


def current():
    """The signed-in session of this request (``DashboardSession``)."""
    return g.get("dashboard")


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/dashboard") and "//" not in target and "\\" not in target:
        return target
    return url_for("dashboard.overview")


def _form(error: str | None = None, status: int = 200) -> Response:
    token = secrets.token_urlsafe(24)
    body = render_template("dashboard/sign_in.html", signin_token=token, error=error,
                           next=_safe_next(request.values.get("next")))
    response = Response(body, status, mimetype="text/html")
    _set_cookie(response, SIGNIN_COOKIE, token, path="/dashboard/sign-in")
    return response


@bp.get("/sign-in")
def sign_in_form():
    return _form()


@bp.post("/sign-in")
def sign_in():
    expected = request.cookies.get(SIGNIN_COOKIE, "")
    if not expected or not hmac.compare_digest(request.form.get("csrf", ""), expected):
        return _form("The form expired: please try again.", 403)
    verdict = Limiter(get_redis()).limit_key(f"dash:signin:{client_ip()}", settings().dashboard_signin_per_minute)
    if verdict.status == "rate":
        response = _form(f"Too many sign-in attempts: wait {verdict.retry_after} seconds.", 429)
        response.headers["Retry-After"] = str(verdict.retry_after)
        return response
    s = settings()
    with session_scope() as db:
        started = dashboard_sessions.sign_in(get_redis(), db, request.form.get("api_key", ""),
                                             s.dashboard_session_idle_seconds)
    if started is None:
        return _form("That API key is not valid (or no longer is).", 401)
    response = redirect(_safe_next(request.form.get("next")), 303)
    _set_cookie(response, COOKIE, started.session_id)
    response.delete_cookie(SIGNIN_COOKIE, path="/dashboard/sign-in")
    return response


@bp.post("/sign-out")
def sign_out():
    dashboard_sessions.sign_out(get_redis(), current().session_id)
    _end_feed_sockets(current().session_id)
    response = redirect(url_for("dashboard.sign_in_form"), 303)
    response.delete_cookie(COOKIE, path="/dashboard")
    return response


def _end_feed_sockets(session_id: str) -> None:
    """Close the live feed's sockets of this session in every web process."""
    from services import realtime

    realtime.try_publish(get_redis(), [realtime.session_ended_event(dashboard_sessions.feed_session_id(session_id))])


def requires(*endpoints: str):
    """A page that needs these plan endpoints: outside the plan it says so (403) instead."""
    def wrap(view):
        @wraps(view)
        def guarded(*args, **kwargs):
            missing = [e for e in endpoints if not current().credentials.allows(e)]
            if missing:
                return render_template("dashboard/not_in_plan.html", missing=missing), 403
            return view(*args, **kwargs)
        return guarded
    return wrap


def feed_ticket() -> str:
    return dashboard_sessions.feed_ticket(current_app.config["SETTINGS"].jwt_secret, current().session_id)
