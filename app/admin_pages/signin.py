"""Sign-in to the admin pages with ``ADMIN_TOKEN``, kept as a server-side session in Redis.

The token is typed once into the sign-in form, compared in constant time and never stored:
the browser gets a random session id in an HttpOnly, SameSite=Strict cookie scoped to
``/admin`` (Secure over https), and Redis keeps the session under the id's SHA-256 (a Redis
dump leaks no usable cookie). A session ends after ``ADMIN_SESSION_IDLE_SECONDS`` without a
request, ``MAX_AGE_SECONDS`` after sign-in, or at sign-out, which deletes it server-side (a
signed cookie could not be taken back), or when ``ADMIN_TOKEN`` changes.

Every POST form carries a CSRF token: the session's own (random, kept with the session);
the sign-in form, before any session exists, an HMAC (key derived from ``JWT_SECRET``) of a
random pre-session cookie. POSTs whose ``Origin`` names another site are refused as well.
Wrong tokens are counted per client IP: after ``ADMIN_SIGNIN_FAILURES`` in 15 minutes the
form answers 429 until the window ends, before the token is even compared.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import time
from urllib.parse import urlsplit

import orjson
from flask import abort, g, make_response, redirect, render_template, request, url_for

from ..extensions import client_ip, get_redis, settings

COOKIE = "cannect_admin"
PRE_COOKIE = "cannect_admin_signin"
COOKIE_PATH = "/admin"
SESSION_PREFIX = "cannect:admin:session:"
FAILURES_PREFIX = "cannect:admin:signin-failures:"
FAILURE_WINDOW_SECONDS = 15 * 60
MAX_AGE_SECONDS = 12 * 3600
CSRF_FIELD = "csrf_token"
#: Notices a redirect may name (?notice=...): fixed texts, nothing from the URL is shown.
NOTICES = {"signed_out": ("success", "Signed out."),
           "expired": ("warning", "Your admin session ended; sign in again."),
           "replayed": ("success", "Dead letter enqueued again (retries reset)."),
           "dropped": ("success", "Dead letter dropped."),
           "revoked": ("success", "Client revoked: its keys are refused from the next request on."),
           "tier": ("success", "Plan changed.")}


def notice() -> tuple[str, str] | None:
    """``(category, text)`` of the ``?notice=`` a redirect named, if it is one of NOTICES."""
    return NOTICES.get(request.args.get("notice", ""))


def _key() -> bytes:
    return hmac.new(settings().jwt_secret.encode(), b"cannect admin pages", hashlib.sha256).digest()


def _session_key(session_id: str) -> str:
    return SESSION_PREFIX + hashlib.sha256(session_id.encode()).hexdigest()


def _set_cookie(response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path=COOKIE_PATH, httponly=True, samesite="Strict",
                        secure=request.is_secure)


def _same_origin() -> bool:
    """A browser's POST names its page's origin: another site's must not act here. (Without
    the header, the SameSite cookie and the form token still have to match.) Hosts are
    compared, not schemes: behind a TLS proxy the process may see http."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc.lower() == request.host.lower()


def current() -> dict | None:
    """The signed-in session (sliding its idle timeout), or None."""
    session_id = request.cookies.get(COOKIE)
    if not session_id or len(session_id) > 100:
        return None
    redis, key = get_redis(), _session_key(session_id)
    raw = redis.get(key)
    if raw is None:
        return None
    data = orjson.loads(raw)
    if time.time() - data["created"] > MAX_AGE_SECONDS or data.get("token") != _token_fingerprint():
        redis.delete(key)
        return None
    redis.expire(key, settings().admin_session_idle_seconds)
    return data


def _token_fingerprint() -> str | None:
    """Ties a session to the ADMIN_TOKEN it was opened with: a new token ends every session."""
    token = settings().admin_token
    return hmac.new(_key(), token.encode(), hashlib.sha256).hexdigest()[:32] if token else None


def _csrf_ok(expected: str) -> bool:
    sent = request.form.get(CSRF_FIELD, "")
    return _same_origin() and bool(sent) and hmac.compare_digest(sent.encode(), expected.encode())


def required(view):
    """The view needs a signed-in admin; its POSTs need the session's CSRF token."""
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        session = current()
        if session is None:
            if request.method == "GET":
                return redirect(url_for("admin_pages.sign_in", notice="expired" if request.cookies.get(COOKIE)
                                        else None))
            abort(403, "Your admin session ended: sign in again.")
        if request.method == "POST" and not _csrf_ok(session["csrf"]):
            abort(403, "The form was stale or came from another site (CSRF check failed): reload the page.")
        g.admin_csrf = session["csrf"]
        return view(*args, **kwargs)
    return wrapper


def _pre_token(pre: str) -> str:
    return hmac.new(_key(), pre.encode(), hashlib.sha256).hexdigest()


def _render_sign_in(status: int = 200, error: str | None = None, headers: dict | None = None):
    pre = request.cookies.get(PRE_COOKIE)
    if not pre or len(pre) > 100:
        pre = secrets.token_urlsafe(32)
    response = make_response(render_template(
        "admin/sign_in.html", csrf=_pre_token(pre), error=error,
        configured=bool(settings().admin_token)), status)
    _set_cookie(response, PRE_COOKIE, pre, 3600)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def sign_in():
    """GET: the form. POST: check the token (after the CSRF token and the failure count)."""
    if request.method == "GET":
        if current() is not None:
            return redirect(url_for("admin_pages.farm"))
        return _render_sign_in()
    pre = request.cookies.get(PRE_COOKIE, "")
    if not pre or not _csrf_ok(_pre_token(pre)):
        return _render_sign_in(403, "The form was stale or came from another site: try again.")
    config, redis = settings(), get_redis()
    failures_key = FAILURES_PREFIX + client_ip()
    failures = int(redis.get(failures_key) or 0)
    if failures >= config.admin_signin_failures:
        wait = max(redis.ttl(failures_key), 1)
        return _render_sign_in(429, f"Too many wrong tokens from your address: try again in {wait} seconds.",
                               {"Retry-After": str(wait)})
    token = request.form.get("token", "")
    if not config.admin_token or not hmac.compare_digest(token.encode(), config.admin_token.encode()):
        pipe = redis.pipeline(transaction=True)
        pipe.set(failures_key, 0, nx=True, ex=FAILURE_WINDOW_SECONDS)  # the window starts at the first
        pipe.incr(failures_key)
        pipe.execute()
        return _render_sign_in(401, "That is not the admin token." if config.admin_token
                               else "Admin pages are off: ADMIN_TOKEN is not set.")
    session_id = secrets.token_urlsafe(32)
    data = {"created": time.time(), "csrf": secrets.token_urlsafe(32), "ip": client_ip(),
            "token": _token_fingerprint()}
    redis.set(_session_key(session_id), orjson.dumps(data), ex=config.admin_session_idle_seconds)
    response = redirect(url_for("admin_pages.farm"), 303)
    _set_cookie(response, COOKIE, session_id, MAX_AGE_SECONDS)
    response.delete_cookie(PRE_COOKIE, path=COOKIE_PATH)
    return response


@required
def sign_out():
    """End the session here and in Redis."""
    get_redis().delete(_session_key(request.cookies[COOKIE]))
    response = redirect(url_for("admin_pages.sign_in", notice="signed_out"), 303)
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="Strict", secure=request.is_secure)
    return response
