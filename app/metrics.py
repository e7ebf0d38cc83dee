"""Prometheus metrics at ``/metrics``: request latency per endpoint and errors."""

from __future__ import annotations

import time

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

REQUEST_LATENCY = Histogram("cannect_http_request_seconds", "HTTP request latency", ["endpoint", "method"],
                            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
REQUEST_ERRORS = Counter("cannect_http_errors_total", "HTTP responses with status >= 400",
                         ["endpoint", "method", "status"])


def init_app(app: Flask) -> None:
    @app.before_request
    def _start_timer():
        g._started = time.perf_counter()

    @app.after_request
    def _observe(response):
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        REQUEST_LATENCY.labels(endpoint, request.method).observe(time.perf_counter() - g.get("_started", time.perf_counter()))
        if response.status_code >= 400:
            REQUEST_ERRORS.labels(endpoint, request.method, str(response.status_code)).inc()
        return response

    @app.get("/metrics")
    def metrics():
        return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)
