"""Every error as RFC 9457 ``application/problem+json``; never a stack trace.

Handlers raise :class:`ApiError` (or a werkzeug HTTPException); request validation failures
become 422 with the offending fields listed; a body over ``MAX_REQUEST_BYTES`` is a 413 naming
the limit; anything unexpected becomes a logged 500.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, json, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error the client can act on: rendered as problem+json with ``status``."""

    def __init__(self, status: int, title: str, detail: str | None = None, headers: dict | None = None, **extra):
        super().__init__(detail or title)
        self.status, self.title, self.detail, self.headers, self.extra = status, title, detail, headers, extra


def problem(status: int, title: str, detail: str | None = None, headers: dict | None = None, **extra) -> Response:
    body = {"type": "about:blank", "title": title, "status": status, "instance": request.path}
    if detail:
        body["detail"] = detail
    body.update(extra)
    response = Response(json.dumps(body), status=status, mimetype="application/problem+json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def validation_problem(error: ValidationError) -> Response:
    """flask-openapi3's callback for invalid path, query, headers or body."""
    errors = [{"loc": [str(part) for part in e["loc"]], "msg": e["msg"]} for e in error.errors()]
    fields = ", ".join(".".join(e["loc"]) or "body" for e in errors)
    return problem(422, "Invalid request", f"Invalid or missing: {fields}", errors=errors)


def init_app(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(exc: ApiError):
        return problem(exc.status, exc.title, exc.detail, exc.headers, **exc.extra)

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc: RequestEntityTooLarge):
        limit = request.max_content_length
        return problem(413, "Content Too Large", f"The request body may be at most {limit} bytes"
                       if limit else exc.description, maxBytes=limit)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        headers = {"Retry-After": exc.retry_after} if getattr(exc, "retry_after", None) else None
        if exc.code == 429 and getattr(exc, "limit", None) is not None:
            headers = {"Retry-After": str(int(exc.limit.limit.get_expiry()))}
        return problem(exc.code or 500, exc.name, exc.description, headers)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem(500, "Internal Server Error", "The server failed to handle this request.")
