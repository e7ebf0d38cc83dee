"""Prometheus metrics at ``/metrics``: request latency per endpoint and errors, WebSockets, push.

Each gunicorn worker process has its own registry: the WebSocket figures are per process.
Push figures come from every push worker, through Redis (:class:`PushCollector`), and so do the
listener's event counters (:class:`ListenerCollector`).
"""

from __future__ import annotations

import logging
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


_latency_of: dict[tuple[str, str], Histogram] = {}  # (route, method) -> its histogram child


def observe_latency(route: str | None, method: str, seconds: float) -> None:
    """One request's latency under its URL rule (``None``: no route matched)."""
    histogram = _latency_of.get((route, method))  # type: ignore[arg-type]
    if histogram is None:  # labels() validates and locks: once per route and method (a bounded set)
        histogram = REQUEST_LATENCY.labels(route or "unmatched", method)
        if route is not None:
            _latency_of[(route, method)] = histogram
    histogram.observe(seconds)


def init_app(app: Flask) -> None:
    @app.before_request
    def _start_timer():
        g._started = time.perf_counter()

    @app.after_request
    def _observe(response):
        rule = request.url_rule
        if rule is not None and rule.websocket:
            return response  # a socket's lifetime is not a request latency
        route, method = rule.rule if rule is not None else None, request.method
        observe_latency(route, method, time.perf_counter() - g.get("_started", time.perf_counter()))
        if response.status_code >= 400:
            REQUEST_ERRORS.labels(route or "unmatched", method, str(response.status_code)).inc()
        return response

    @app.get("/metrics")
    def metrics():
        return Response(generate_latest() + _shared_metrics(), mimetype=CONTENT_TYPE_LATEST)


class PushCollector:
    """Push counters of every worker process, read from Redis at scrape time (services/push/stats.py)."""

    def __init__(self, redis):
        self.redis = redis

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        from services.push import stats

        figures = stats.read(self.redis)
        yield CounterMetricFamily("cannect_push_sent", "Pushes the push service accepted (2xx)",
                                  value=figures["sent"])
        for name, label, help_text in (
                ("failed", "reason", "Pushes given up after their retries"),
                ("removed", "reason", "Subscriptions deleted: refused by the push service or by the address checks"),
                ("retried", "reason", "Push attempts that failed transiently (408, 429, 5xx, network): retried "
                 "unless out of retries"),
                ("skipped", "reason", "Pushes not sent: expired, deleted, unwanted, duplicate")):
            family = CounterMetricFamily(f"cannect_push_{name}", help_text, labels=[label])
            for reason, value in sorted(figures[name].items()):
                family.add_metric([reason], value)
            yield family
        latency = figures["latency"]
        yield HistogramMetricFamily("cannect_push_delivery_seconds",
                                    "From the notification (or broadcast) to the push service's 2xx",
                                    buckets=list(latency["buckets"].items()), sum_value=latency["sum"])


class ListenerCollector:
    """The listener's event counters (services/listener_state.py), read from Redis at scrape time:
    events seen and their outcome, and every skipped event by outcome and reason."""

    def __init__(self, redis):
        self.redis = redis

    def collect(self):
        from prometheus_client.core import CounterMetricFamily

        from services import listener_state

        counters = listener_state.counters(self.redis)
        events = CounterMetricFamily("cannect_listener_events", "Jetstream events the listener read, by outcome",
                                     labels=["outcome"])
        for outcome in listener_state.OUTCOMES:
            events.add_metric([outcome], counters.totals.get(outcome, 0))
        yield events
        skipped = CounterMetricFamily("cannect_listener_skipped_events",
                                      "Events the listener did not forward, by outcome and reason",
                                      labels=["outcome", "reason"])
        for (outcome, reason), value in sorted(counters.reasons.items()):
            skipped.add_metric([outcome, reason], value)
        yield skipped


class ClassificationCollector:
    """Classification progress and LLM spend (services/classify/stats.py), read from the database
    at scrape time; left out (and logged) when the database is not answering."""

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        from services.classify import stats
        from services.db import session_scope

        try:
            with session_scope() as session:
                figures = stats.summary(session)
        except Exception:  # a scrape must not fail because of one source
            logging.getLogger(__name__).warning("classification metrics left out: database not answering",
                                                exc_info=True)
            return
        posts = GaugeMetricFamily("cannect_classify_posts", "Indexed posts by classification state",
                                  labels=["state"])
        for state in ("classified", "outdated", "unprocessed", "failed_retrying", "failed"):
            posts.add_metric([state], figures[state])
        yield posts
        llm = figures["llm"]
        yield GaugeMetricFamily("cannect_llm_spend_today_usd", "LLM spend since midnight UTC (llm_calls)",
                                value=llm["spend_today_usd"] or 0.0)
        if llm["cost_per_1000_posts_usd_24h"] is not None:
            yield GaugeMetricFamily("cannect_llm_cost_per_1000_posts_usd",
                                    "LLM cost per 1,000 posts classified, last 24 hours",
                                    value=llm["cost_per_1000_posts_usd_24h"])


def _shared_metrics() -> bytes:
    """Figures kept in Redis by other processes; left out (and logged) when Redis is away."""
    from prometheus_client import CollectorRegistry
    from redis import RedisError

    from .extensions import get_redis

    registry = CollectorRegistry(auto_describe=False)
    registry.register(PushCollector(get_redis()))
    registry.register(ListenerCollector(get_redis()))
    registry.register(ClassificationCollector())
    try:
        return generate_latest(registry)
    except RedisError:
        logging.getLogger(__name__).warning("metrics kept in Redis left out: Redis is not answering")
        return b""
