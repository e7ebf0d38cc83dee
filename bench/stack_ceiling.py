"""The web stack's own ceiling: what the deployed gunicorn serves when the answer costs nothing.

Two apps that answer every request with the same bytes (read once from the file named by
``STACK_CEILING_BODY``), served like the real app (``cannect/gunicorn_conf.py``, the same
processes and worker class) and loaded by the same client:

- ``wsgi``: a bare WSGI function: gunicorn, gevent and the load generator, nothing else;
- ``flask``: a Flask app with one route: what the framework adds before any of our code runs.

Next to an endpoint whose answer comes from memory (``segments``), these say how much of what
is left is ours: no handler under Flask can serve more than the ``flask`` figure, so when that
is below a goal (half of bare SQL, for a query that PostgreSQL answers in well under a
millisecond), the goal is out of reach for the framework, not for the handler.
"""

from __future__ import annotations

import os
from pathlib import Path

KINDS = ("wsgi", "flask")


def _body() -> bytes:
    return Path(os.environ["STACK_CEILING_BODY"]).read_bytes()


def wsgi_app():
    body = _body()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]

    def answer(environ, start_response):
        start_response("200 OK", headers)
        return [body]

    return answer


def flask_app():
    from flask import Flask, Response

    body = _body()
    app = Flask(__name__)

    @app.get("/", defaults={"path": ""})
    @app.get("/<path:path>")
    def answer(path: str):
        return Response(body, mimetype="application/json")

    return app


def start(kind: str, env: dict, body: bytes, logs: Path):
    """A gunicorn server of ``kind`` (see :data:`KINDS`) answering ``body``; ``stop()`` ends it."""
    from harness import Web

    assert kind in KINDS, kind
    path = logs / "stack-ceiling-body"
    path.write_bytes(body)
    return Web(dict(env, STACK_CEILING_BODY=str(path)), logs / f"stack-{kind}.log", app=f"stack_ceiling:{kind}_app()",
               pythonpath=str(Path(__file__).resolve().parent))
