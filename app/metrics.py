"""Prometheus metrics at ``/metrics``: request latency per endpoint and errors, WebSockets.

Each gunicorn worker process has its own registry: the WebSocket figures are per process.
"""

from __future__ import annotations

import time

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

REQUEST_LATENCY = Histogram("cannect_http_request_seconds", "HTTP request latency", ["endpoint", "method"],
                            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
REQUEST_ERRORS = Counter("cannect_http_errors_total", "HTTP responses with status >= 400",
                         ["endpoint", "method", "status"])
WS_CONNECTIONS = Gauge("cannect_ws_connections", "Open WebSockets in this process")
WS_EVENTS = Counter("cannect_ws_events_total", "Realtime events this process read from the stream", ["type"])
WS_DELIVERIES = Counter("cannect_ws_deliveries_total", "Realtime events queued to this process's sockets",
                        ["type"])
WS_DROPPED = Counter("cannect_ws_dropped_total", "Sockets the server dropped", ["reason"])


def init_app(app: Flask) -> None:
    @app.before_request
    def _start_timer():
        g._started = time.perf_counter()

    @app.after_request
    def _observe(response):
        if request.url_rule is not None and request.url_rule.websocket:
            return response  # a socket's lifetime is not a request latency
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        REQUEST_LATENCY.labels(endpoint, request.method).observe(time.perf_counter() - g.get("_started", time.perf_counter()))
        if response.status_code >= 400:
            REQUEST_ERRORS.labels(endpoint, request.method, str(response.status_code)).inc()
        return response

    @app.get("/metrics")
    def metrics():
        return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)
