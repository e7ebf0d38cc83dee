"""gunicorn settings for the web process (``gunicorn --config python:cannect.gunicorn_conf``).

The web process holds the app's WebSockets, thousands of them, mostly idle. gevent workers
(the default) hold each socket in two greenlets (its handler and simple-websocket's reader)
and need only ``worker_connections`` above the number of sockets plus requests in flight;
gthread workers need a thread per socket (``WEB_THREADS``) and then serve nothing else.
Under gevent the worker monkey-patches the standard library before the app is imported, which
psycopg 3 (>= 3.1.14), SQLAlchemy's pool and redis-py all cooperate with.

Environment: ``PORT``, ``WEB_CONCURRENCY`` (processes), ``WEB_WORKER_CLASS`` (gevent |
gthread), ``WEB_WORKER_CONNECTIONS`` (gevent), ``WEB_THREADS`` (gthread), ``WEB_REUSE_PORT``
(1: a listening socket per process), ``WEB_ACCESS_LOG``.
"""

import gc
import os
import resource
import threading
import time

bind = f"0.0.0.0:{os.environ.get('PORT', '3000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = os.environ.get("WEB_WORKER_CLASS", "gevent")
worker_connections = int(os.environ.get("WEB_WORKER_CONNECTIONS", "10000"))
threads = int(os.environ.get("WEB_THREADS", "16"))
timeout = 30
graceful_timeout = 20
keepalive = 5
# Each process listens on its own socket (SO_REUSEPORT) and the kernel spreads new connections
# among them. On one shared socket the process that wakes first takes a burst of connections:
# 16 keep-alive clients often all landed in one of two processes, which then served them with
# one core while the other idled (bench/b2b.py's segments at 16 clients: 1,440 → 2,495 req/s).
# The cost: a process that exits drops the connections still waiting in its own backlog, and a
# second server started by the same user on the same port shares it instead of failing.
reuse_port = os.environ.get("WEB_REUSE_PORT", "1").strip().lower() not in ("0", "false", "no", "off")
accesslog = "-" if os.environ.get("WEB_ACCESS_LOG") else None
# No preload: workers must not inherit database or broker connections across fork, and the
# gevent worker must patch the standard library before the app imports it.
preload_app = False
# gunicorn >= 25 opens a management socket at one fixed path per user; nothing here uses it,
# and two servers on one machine (tests, benchmarks) would take each other's.
control_socket_disable = True


def _raise_open_files_limit() -> None:
    """Every socket is a file descriptor: lift the soft limit (often 1024) to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 1 << 20, hard))
        except (ValueError, OSError):
            pass


_raise_open_files_limit()


def post_worker_init(worker):
    """Freeze the loaded app out of the garbage collector; close sockets promptly on stop.

    The app's modules are hundreds of thousands of long-lived objects that a full collection
    would walk again and again, pausing every socket of the process (measured: 150-230 ms with
    500 sockets); frozen, they are never scanned.

    When the worker is told to stop, its sockets are closed with 1001 at once. Otherwise
    gunicorn waits ``graceful_timeout`` for them (they never end by themselves) and then cuts
    them; closed properly, clients reconnect to another worker and resume.
    """
    gc.collect()
    gc.freeze()
    if hasattr(worker.wsgi, "extensions"):  # the read cache starts with the realtime reader
        from app import read_cache

        read_cache.start(worker.wsgi)

    def watch():
        while worker.alive:
            time.sleep(0.5)
        hub = getattr(worker.wsgi, "extensions", {}).get("realtime")
        if hub is not None:
            hub.shutdown_all(1001, "server restarting")

    threading.Thread(target=watch, name="cannect-ws-shutdown", daemon=True).start()
