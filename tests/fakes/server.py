"""The HTTP server under the fakes of outside peers: a real ThreadingHTTPServer on a free port
of 127.0.0.1, served from a daemon thread.

``stop()`` also cuts the keep-alive connections still open, so that a stopped fake behaves like
a peer that went down (clients pool connections and would otherwise keep talking to it).
"""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LocalHttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, handler: type[BaseHTTPRequestHandler], name: str, backlog: int = 5):
        self.request_queue_size = backlog  # read when the socket starts listening, in __init__
        super().__init__(("127.0.0.1", 0), handler)
        self.name = name
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def process_request_thread(self, request, client_address):
        with self._open_lock:
            self._open.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._open_lock:
                self._open.discard(request)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop listening and cut every open connection: the peer is down."""
        if self._thread is None:
            return
        self.shutdown()
        self.server_close()
        with self._open_lock:
            for connection in list(self._open):
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._thread.join(timeout=5)
        self._thread = None
