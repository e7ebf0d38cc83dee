"""gunicorn settings for the web process (``gunicorn --config python:cannect.gunicorn_conf``)."""

import os

bind = f"0.0.0.0:{os.environ.get('PORT', '3000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "16"))
timeout = 30
graceful_timeout = 20
keepalive = 5
accesslog = "-" if os.environ.get("WEB_ACCESS_LOG") else None
# No preload: workers must not inherit database or broker connections across fork.
preload_app = False
