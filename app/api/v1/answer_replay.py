"""Cached ``/api/v1`` answers replayed before Flask: the same bytes for the same URL, after the
same key check.

An answer that is the same for every client and comes whole from the answer cache
(``services/b2b/queries/cache.py``'s :class:`JsonAnswer`: ``segments``, ``brands``, ``strains``,
``timeseries``) costs nearly nothing to produce. What such a request still cost under Flask was
the framework: the request context, routing, query validation and the app's hooks, as much
again as an empty Flask route (``bench/b2b.py``'s stack ceiling). The view returns such an
answer through :func:`replayable`; this WSGI middleware then keeps the response (its body, and
the headers that are not per call) under the exact path and query string, and answers the next
requests for that URL itself, while the jobs behind the answer have not run again
(``cache.unchanged``):

- the key, the plan and the limits are checked by the same gate as under Flask
  (``Gate.check``); the answer carries the same limit headers, and is logged in ``api_usage``
  and in the request metrics under its route;
- a refusal goes on to Flask with the gate's decision, so it is answered as always and a
  request is checked and counted once; so do requests with anything unusual about them (not a
  GET, a body, an ``Origin`` header: CORS answers differ per origin) and requests the gate
  could not check (Redis or PostgreSQL not answering: Flask tries again and answers 503);
- only a URL Flask validated and answered 200 is replayed: input validation stays Flask's.

Each web process keeps its own (``MAX_ENTRIES`` URLs, the oldest kept dropped first).
``B2B_ANSWER_REPLAY=0`` serves every request through Flask.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Iterable

from flask import Response, current_app, request

from services.b2b.access import Gate
from services.b2b.queries import cache

from ...metrics import observe_latency
from .access import CHECKED, PREFIX, endpoint_name, limit_headers, presented_key, usage_name

MAX_ENTRIES = 1024
#: WSGI environ key the view sets on a replayable answer: (jobs, version, endpoint, route).
REPLAYABLE = "cannect.replayable"
_PER_CALL = frozenset({"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "ratelimit",
                       "ratelimit-policy"})


def replayable(answer: cache.JsonAnswer) -> Response:
    """The response of an answer that is the same for every client, marked for
    :class:`AnswerReplay` when it came from the cache."""
    if answer.version is not None:
        request.environ[REPLAYABLE] = (answer.jobs, answer.version, endpoint_name(request.path),
                                       request.url_rule.rule)
    return current_app.response_class(answer.body, mimetype="application/json")


@dataclass(frozen=True)
class _Kept:
    body: bytes
    headers: list[tuple[str, str]]  # the answer's, without the per-call limit headers
    jobs: tuple[str, ...]
    version: str
    endpoint: str  # as plans name it ("segments")
    route: str  # the URL rule ("/api/v1/segments"), for metrics and usage


def _plain(environ: dict) -> bool:
    """A GET whose answer depends on nothing but its URL and its key: no body, no CORS origin."""
    return (environ.get("CONTENT_LENGTH") in (None, "", "0") and "HTTP_TRANSFER_ENCODING" not in environ
            and "HTTP_ORIGIN" not in environ)


class AnswerReplay:
    """WSGI middleware: see the module's docstring. Install it inside ``ProxyFix`` (it limits
    failed keys by ``REMOTE_ADDR``)."""

    def __init__(self, wsgi_app: Callable, gate: Gate):
        self.wsgi_app = wsgi_app
        self.gate = gate
        self._kept: OrderedDict[tuple[str, str], _Kept] = OrderedDict()
        self._lock = threading.Lock()
        self.replayed = 0

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") != "GET" or not path.startswith(PREFIX + "/") or not _plain(environ):
            return self.wsgi_app(environ, start_response)
        url = (path, environ.get("QUERY_STRING", ""))
        kept = self._kept.get(url)
        if kept is not None and cache.unchanged(kept.jobs, kept.version):
            answer = self._replay(kept, environ, start_response)
            if answer is not None:
                return answer
        return self._through_flask(url, environ, start_response)

    def _replay(self, kept: _Kept, environ: dict, start_response: Callable) -> list[bytes] | None:
        """The kept answer, when the gate lets this call through; else None (Flask answers)."""
        started = time.perf_counter()
        try:
            decision = self.gate.check(presented_key(environ), kept.endpoint,
                                       lambda: environ.get("REMOTE_ADDR") or "unknown")
        except Exception:  # Redis or PostgreSQL away, or worse: Flask checks again, answers and logs it
            return None
        if decision.outcome != "ok":
            environ[CHECKED] = decision
            return None
        start_response("200 OK", [*kept.headers, *limit_headers(decision).items()])
        seconds = time.perf_counter() - started
        self.gate.log_usage(decision.client.client_id, usage_name(kept.route, kept.endpoint), "GET", 200,
                            round(seconds * 1000))
        observe_latency(kept.route, "GET", seconds)
        self.replayed += 1
        return [kept.body]

    def _through_flask(self, url: tuple[str, str], environ: dict, start_response: Callable) -> Iterable[bytes]:
        """Flask's answer; kept when the view marked it replayable and it is a 200."""
        answered: list = []

        def remember(status: str, headers: list[tuple[str, str]], exc_info=None):
            answered[:] = [status, headers]
            return start_response(status, headers, exc_info)

        result = self.wsgi_app(environ, remember)
        mark = environ.get(REPLAYABLE)
        if mark is None or not answered or not answered[0].startswith("200 "):
            return result
        try:
            body = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        headers = [(name, value) for name, value in answered[1] if name.lower() not in _PER_CALL]
        if not any(name.lower() == "set-cookie" for name, _ in headers):
            self._keep(url, _Kept(body, headers, *mark))
        return [body]

    def _keep(self, url: tuple[str, str], kept: _Kept) -> None:
        with self._lock:
            self._kept[url] = kept
            self._kept.move_to_end(url)
            while len(self._kept) > MAX_ENTRIES:
                self._kept.popitem(last=False)
