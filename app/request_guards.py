"""What every API request must pass before its input is validated: body size, then the token.

A body is at most ``MAX_REQUEST_BYTES``: a larger Content-Length is refused at once (413, even
where the view would not read the body), and a chunked body (no length) is read here, up to one
byte over the limit, and then handed on as if it had come with its length. Werkzeug caps such a
stream too, but reading it whole stops at the cap and returns the cut-off prefix without an
error (``LimitedStream.readall``): the view would parse a truncated body instead of refusing it.

flask-openapi3 validates path, query and body inside the view's wrapper, before the view runs.
A view that checked the token itself would answer an anonymous client 422 about input it had
no right to send, and tell it how the input should look. So the token is checked here, in a
``before_request`` hook, as the operation's OpenAPI ``security`` declares: one source of truth,
and the one clients read.

- ``BEARER`` (``[{"bearer": []}]``): a signed-in member is required, 401 otherwise.
- ``ADMIN`` (``[{"bearer": ["admin"]}, {"adminToken": []}]``): an admin, by member or by
  X-Admin-Token (``require_admin``: 401 anonymous, 403 anyone else).
- ``OPTIONAL_BEARER`` (``[{"bearer": []}, {}]``): anonymous is fine, a token sent must be valid.
- no ``security``: the Authorization header is not read (login and refresh, which a client
  holding an expired token must still reach).

The views still call ``require_viewer`` / ``optional_viewer`` (answered from ``g`` here):
an operation left out of the document stays protected, only its order of checks differs.
"""

from __future__ import annotations

import io
from enum import Enum

from flask import Flask, request
from flask_openapi3.utils import parse_rule
from werkzeug.exceptions import RequestEntityTooLarge

from .admin import ADMIN_SCHEME, require_admin
from .auth import optional_viewer, require_viewer


class Auth(Enum):
    ADMIN = "admin"
    REQUIRED = "required"
    OPTIONAL = "optional"


def _auth_of(security: list[dict[str, list[str]]]) -> Auth | None:
    if all(requirement and not {"bearer", ADMIN_SCHEME} & requirement.keys() for requirement in security):
        return None  # only schemes checked elsewhere: B2B API keys (app/api/v1/access.py)
    if any(ADMIN_SCHEME in requirement or "admin" in requirement.get("bearer", ()) for requirement in security):
        return Auth.ADMIN
    return Auth.OPTIONAL if any(not requirement for requirement in security) else Auth.REQUIRED


def auth_requirements(app: Flask) -> dict[tuple[str, str], Auth]:
    """``(endpoint, method)`` of every documented operation that declares a security requirement."""
    requirements = {}
    for rule in app.url_map.iter_rules():
        item = app.paths.get(parse_rule(rule.rule))
        for method in rule.methods or ():
            operation = getattr(item, method.lower(), None) if item is not None else None
            if operation is not None and operation.security and _auth_of(operation.security) is not None:
                requirements[(rule.endpoint, method)] = _auth_of(operation.security)
    return requirements


def _buffer_chunked_body(environ: dict, limit: int) -> None:
    """Read a body of unknown length now (413 past ``limit``) and present it with its length."""
    if not environ.get("wsgi.input_terminated"):
        return  # the server does not end the stream: werkzeug reads it as empty, so do we
    stream, parts, size = environ["wsgi.input"], [], 0
    while size <= limit:
        part = stream.read(limit + 1 - size)
        if not part:
            break
        parts.append(part)
        size += len(part)
    if size > limit:
        raise RequestEntityTooLarge()
    environ["wsgi.input"] = io.BytesIO(b"".join(parts))
    environ["CONTENT_LENGTH"] = str(size)
    environ.pop("HTTP_TRANSFER_ENCODING", None)


def init_app(app: Flask, max_request_bytes: int) -> None:
    """Install the checks; call after every blueprint is registered (the document must be complete)."""
    app.config["MAX_CONTENT_LENGTH"] = max_request_bytes  # also caps chunked bodies as they are read
    requirements = auth_requirements(app)
    app.extensions["auth_requirements"] = requirements

    @app.before_request
    def _check_size_then_token():
        if request.content_length is not None:
            if request.content_length > max_request_bytes:
                raise RequestEntityTooLarge()
        elif "chunked" in request.headers.get("Transfer-Encoding", "").lower():
            _buffer_chunked_body(request.environ, max_request_bytes)
        method = "GET" if request.method == "HEAD" else request.method
        need = requirements.get((request.endpoint, method))
        if need is Auth.REQUIRED:
            require_viewer()
        elif need is Auth.ADMIN:
            require_admin()
        elif need is Auth.OPTIONAL:
            optional_viewer()
