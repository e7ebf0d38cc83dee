"""B2B access to the intelligence API: API keys, clients and their plans, per-minute limits and
monthly quotas in Redis, and the usage log (buffered in Redis, flushed to ``api_usage``).

Plain functions on a session and a Redis client; no Flask, no Dramatiq. The HTTP side is
``app/api/v1/access.py``, the flush actor ``tasks/b2b.py``, the commands ``cannect clients``.
"""
