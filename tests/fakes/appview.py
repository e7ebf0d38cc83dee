"""A fake PDS repository host and AppView: real XRPC GETs on 127.0.0.1 for backfills.

One :class:`FakeAtproto` server answers both reads a backfill makes, so a test can run two
(one playing the PDS, one the AppView: two hosts for the per-host limit):

- ``com.atproto.repo.listRecords?repo&collection&limit&cursor`` (newest rkey first);
- ``app.bsky.feed.getAuthorFeed?actor&limit&cursor&filter`` with ``likeCount``,
  ``repostCount`` and ``replyCount`` per post.

Records are added with :meth:`put` (``counts`` for the AppView) and removed with
:meth:`delete`; ``stale`` deletes keep serving the record, as a lagging AppView does.
Switches: ``delay`` (seconds before every answer), :meth:`fail_next` (a status, with
``Retry-After``), and the record of what happened: ``requests`` (path and query of each),
``answers`` (each successful page: arrival time in µs, path, query and the records served,
so a test can tell exactly what a backfill saw) and ``max_in_flight`` (the most requests it
was answering at once).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

import orjson

from .server import LocalHttpServer


@dataclass
class Failure:
    status: int
    count: int
    retry_after: str | None


class FakeAtproto:
    def __init__(self, name: str = "fake-atproto", delay: float = 0.0):
        self.delay = delay
        # did -> collection -> rkey -> (cid, record, counts)
        self.repos: dict[str, dict[str, dict[str, tuple[str, dict, tuple[int, int, int]]]]] = {}
        self.failures: list[Failure] = []
        self.requests: list[tuple[str, dict]] = []
        self.answers: list[tuple[int, str, dict, list[dict]]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self.server = LocalHttpServer(_handler_for(self), name, backlog=64)
        # A client killed mid-request (a worker SIGKILLed in a test) resets its connection: expected.
        self.server.handle_error = lambda request, client_address: None

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> "FakeAtproto":
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> "FakeAtproto":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def put(self, did: str, collection: str, rkey: str, cid: str, record: dict,
            counts: tuple[int, int, int] = (0, 0, 0)) -> str:
        with self._lock:
            self.repos.setdefault(did, {}).setdefault(collection, {})[rkey] = (cid, record, counts)
        return f"at://{did}/{collection}/{rkey}"

    def delete(self, did: str, collection: str, rkey: str) -> None:
        with self._lock:
            self.repos.get(did, {}).get(collection, {}).pop(rkey, None)

    def fail_next(self, count: int = 1, status: int = 503, retry_after: str | None = None) -> None:
        with self._lock:
            self.failures.append(Failure(status, count, retry_after))

    def calls(self, nsid: str) -> list[dict]:
        return [query for path, query in self.requests if path == f"/xrpc/{nsid}"]

    def _take_failure(self) -> Failure | None:
        with self._lock:
            if not self.failures:
                return None
            failure = self.failures[0]
            failure.count -= 1
            if failure.count <= 0:
                self.failures.pop(0)
            return failure

    def answer(self, path: str, query: dict) -> tuple[int, dict, dict]:
        arrival = time.time_ns() // 1000
        with self._lock:
            self.requests.append((path, query))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                time.sleep(self.delay)
            failure = self._take_failure()
            if failure is not None:
                headers = {"Retry-After": failure.retry_after} if failure.retry_after else {}
                error = "RateLimitExceeded" if failure.status == 429 else "InternalServerError"
                return failure.status, {"error": error, "message": "failing on request"}, headers
            with self._lock:  # a consistent view of the records while one page is read
                if path == "/xrpc/com.atproto.repo.listRecords":
                    status, payload, items = self._list_records(query)
                elif path == "/xrpc/app.bsky.feed.getAuthorFeed":
                    status, payload, items = self._author_feed(query)
                else:
                    return 501, {"error": "MethodNotImplemented", "message": path}, {}
                if status == 200:
                    self.answers.append((arrival, path, query, items))
            return status, payload, {}
        finally:
            with self._lock:
                self.in_flight -= 1

    def _page(self, did: str, collection: str, query: dict):
        limit = max(1, min(100, int(query.get("limit", 50))))
        cursor = query.get("cursor")
        rkeys = sorted(self.repos.get(did, {}).get(collection, {}), reverse=True)
        if cursor:
            rkeys = [rkey for rkey in rkeys if rkey < cursor]
        page = rkeys[:limit]
        rows = self.repos[did][collection] if page else {}
        return [(rkey, *rows[rkey]) for rkey in page], (page[-1] if len(rkeys) > limit else None)

    def _list_records(self, query: dict):
        did, collection = query.get("repo"), query.get("collection")
        if did not in self.repos:
            return 400, {"error": "RepoNotFound", "message": f"Could not find repo: {did}"}, []
        rows, cursor = self._page(did, collection, query)
        records = [{"uri": f"at://{did}/{collection}/{rkey}", "cid": cid, "value": record}
                   for rkey, cid, record, _ in rows]
        items = [{"did": did, "collection": collection, "rkey": rkey, "cid": cid, "record": record, "counts": None}
                 for rkey, cid, record, _ in rows]
        return 200, {"records": records, **({"cursor": cursor} if cursor else {})}, items

    def _author_feed(self, query: dict):
        did = query.get("actor")
        if did not in self.repos:
            return 400, {"error": "InvalidRequest", "message": "Profile not found"}, []
        rows, cursor = self._page(did, "app.bsky.feed.post", query)
        feed = [{"post": {"uri": f"at://{did}/app.bsky.feed.post/{rkey}", "cid": cid,
                          "author": {"did": did, "handle": "author.test"}, "record": record,
                          "likeCount": counts[0], "repostCount": counts[1], "replyCount": counts[2],
                          "indexedAt": record.get("createdAt")}}
                for rkey, cid, record, counts in rows]
        items = [{"did": did, "collection": "app.bsky.feed.post", "rkey": rkey, "cid": cid, "record": record,
                  "counts": counts} for rkey, cid, record, counts in rows]
        return 200, {"feed": feed, **({"cursor": cursor} if cursor else {})}, items


def _handler_for(fake: FakeAtproto) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            parts = urlsplit(self.path)
            query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
            status, payload, headers = fake.answer(parts.path, query)
            body = orjson.dumps(payload)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):
            pass

    return Handler
