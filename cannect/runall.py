"""``cannect run`` (``make run``): the whole system on one machine, for trying it out.

Starts embedded PostgreSQL and Redis when ``DATABASE_URL`` / ``REDIS_URL`` are unset,
migrates, generates a sample capture unless given one, registers its members, then runs
the replay server, listener, ingest, identity, notify, push, classify, views, webhooks, reports,
backfill and b2b workers, scheduler and web app as child
processes of their own (as a deployment would) until Ctrl-C. The replay server also plays
the PLC directory and handle resolution for the capture's accounts, so handles are verified
offline as they would be against the real network.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from .embedded import ensure_services, free_port

STATE_DIR = Path(os.environ.get("CANNECT_HOME", ".cannect")).resolve()
REPLAY_PORT = 6008
#: The sample is ingested and classified within about a minute; its aggregates would otherwise
#: wait for their periodic jobs (5 to 60 minutes).
RECOMPUTE_AFTER_SECONDS = 60


def _cannect(*args: str) -> list[str]:
    return [sys.executable, "-m", "cannect.cli", *args]


def run_all(capture: str | None, events: int, speed: float, web_port: int) -> None:
    started = ensure_services(STATE_DIR)
    for name, url in started.items():
        click.echo(f"embedded {name.split('_')[0].lower()}: {name}={url}")
    replay_port = free_port() if _port_taken(REPLAY_PORT) else REPLAY_PORT
    os.environ.setdefault("JETSTREAM_URL", f"ws://127.0.0.1:{replay_port}/subscribe")
    os.environ.setdefault("PLC_DIRECTORY_URL", f"http://127.0.0.1:{replay_port}")
    os.environ.setdefault("HANDLE_RESOLVER_URL", f"http://127.0.0.1:{replay_port}")
    # Backfills ask the replay server, which knows no history before its capture.
    os.environ.setdefault("BACKFILL_APPVIEW_URL", f"http://127.0.0.1:{replay_port}")
    os.environ.setdefault("BACKFILL_INSECURE_TEST_ORIGINS", f"http://127.0.0.1:{replay_port}")
    os.environ["PORT"] = str(web_port)
    os.environ.setdefault("JWT_SECRET", _local_secret())
    os.environ.setdefault("ADMIN_TOKEN", _local_secret("admin_token"))
    if not os.environ.get("VAPID_PRIVATE_KEY"):
        public, private = _local_vapid_keys()
        os.environ.update(VAPID_PUBLIC_KEY=public, VAPID_PRIVATE_KEY=private)
        os.environ.setdefault("VAPID_EMAIL", "mailto:ops@localhost.test")

    subprocess.run(_cannect("migrate"), check=True)
    if capture is None:
        capture = _fresh_sample(events)
    if Path(capture + ".meta.json").exists():
        subprocess.run(_cannect("members", "import", capture + ".meta.json"), check=True)
    demo_key = _demo_client_key()

    processes = {
        "replay": _cannect("replay", "--file", capture, "--port", str(replay_port), "--speed", str(speed)),
        "worker": _cannect("worker", "--queues", "ingest", "--processes", "1", "--threads", "2"),
        "identity": _cannect("worker", "--queues", "identity", "--processes", "1", "--threads", "4"),
        "notify": _cannect("worker", "--queues", "notify", "--processes", "1", "--threads", "2"),
        "push": _cannect("worker", "--queues", "push", "--processes", "1", "--threads", "8"),
        "classify": _cannect("worker", "--queues", "classify", "--processes", "1", "--threads", "2"),
        "views": _cannect("worker", "--queues", "views", "--processes", "1", "--threads", "2"),
        "webhooks": _cannect("worker", "--queues", "webhooks", "--processes", "1", "--threads", "4"),
        "reports": _cannect("worker", "--queues", "reports", "--processes", "1", "--threads", "1"),
        "backfill": _cannect("worker", "--queues", "backfill", "--processes", "1", "--threads", "4"),
        "b2b": _cannect("worker", "--queues", "b2b", "--processes", "1", "--threads", "1"),
        "listener": _cannect("listen"),
        "scheduler": _cannect("scheduler"),
        "web": _cannect("web", "--port", str(web_port)),
    }
    children = {name: subprocess.Popen(argv) for name, argv in processes.items()}
    _recompute_after_sample(RECOMPUTE_AFTER_SECONDS)
    time.sleep(1.5)
    click.echo(click.style(f"""
Cannect is running.
  Global feed:     http://127.0.0.1:{web_port}/api/feed/global
  API docs:        http://127.0.0.1:{web_port}/api/swagger   (OpenAPI: /api/openapi.json)
  Indexer health:  http://127.0.0.1:{web_port}/health/indexer
  Metrics:         http://127.0.0.1:{web_port}/metrics
  Dashboard:       http://127.0.0.1:{web_port}/dashboard/   (B2B demo client's API key: {demo_key})
                   (its numbers appear after a recompute of the intelligence, {RECOMPUTE_AFTER_SECONDS} s from now)
  Admin pages:     http://127.0.0.1:{web_port}/admin/       (ADMIN_TOKEN: {os.environ['ADMIN_TOKEN']})
  Notifications:   DATABASE_URL='{os.environ['DATABASE_URL']}' REDIS_URL='{os.environ['REDIS_URL']}' \\
                   .venv/bin/cannect notifications tail      (members' live notifications as they happen)
  Status:          DATABASE_URL='{os.environ['DATABASE_URL']}' REDIS_URL='{os.environ['REDIS_URL']}' \\
                   .venv/bin/cannect status
  Replaying {capture} at {'full speed' if speed == 0 else f'{speed:g}x real time'} from {os.environ['JETSTREAM_URL']}
Press Ctrl-C to stop.
""", fg="green"))
    _supervise(children)


def _recompute_after_sample(seconds: int) -> None:
    """Once the sample is in: an admin ``recompute`` job (profiles, aggregates, views), so the
    dashboard shows the sample's numbers at once instead of after the periodic jobs."""
    import threading

    start = _cannect("backfill", "start", "recompute", "-p", "what=all", "--detach")
    timer = threading.Timer(seconds, lambda: subprocess.run(start, stdout=subprocess.DEVNULL, check=False))
    timer.daemon = True
    timer.start()


def _fresh_sample(events: int) -> str:
    """A new sample capture that ends now (about 1,000 events a second), so lag reads true."""
    from .capture import generate_capture

    path = STATE_DIR / "sample.jsonl"
    click.echo(f"generating a {events:,}-event sample capture ...")
    generate_capture(str(path), events, seed=int(time.time()), start_time_us=time.time_ns() // 1000 - events * 1000,
                     progress=sys.stderr.isatty())
    return str(path)


def _local_secret(name: str = "jwt_secret") -> str:
    """A secret (the JWT secret, the admin token) for this machine's trial runs, kept so
    sessions survive a restart."""
    import secrets

    path = STATE_DIR / name
    if not path.exists():
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def _demo_client_key() -> str:
    """The API key of an enterprise demo client for the dashboard, kept in ``.cannect/demo-key``;
    a new client when the key no longer opens one (a fresh database, a revoked key)."""
    import json

    from services.b2b import clients, keys
    from services.db import session_scope

    path = STATE_DIR / "demo-key"
    if path.exists():
        key = path.read_text().strip()
        presented = keys.parse(key)
        with session_scope() as session:
            found = clients.credentials(session, presented.key_id) if presented else None
        if found is not None and found.active and keys.matches(presented.secret_hash, found.secret_hash):
            return key
    created = subprocess.run(_cannect("clients", "create", "Demo Co", "--tier", "enterprise", "--json"),
                             check=True, capture_output=True, text=True).stdout
    key = json.loads(created)["apiKey"]
    path.write_text(key)
    path.chmod(0o600)
    return key


def _local_vapid_keys() -> tuple[str, str]:
    """A VAPID key pair for this machine's trial runs, kept so browser subscriptions stay valid."""
    import json

    from services.push.keys import generate_vapid_keys

    path = STATE_DIR / "vapid.json"
    if not path.exists():
        public, private = generate_vapid_keys()
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"public": public, "private": private}))
        path.chmod(0o600)
    keys = json.loads(path.read_text())
    return keys["public"], keys["private"]


def _port_taken(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _supervise(children: dict[str, subprocess.Popen]) -> None:
    stop = False

    def request_stop(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        while not stop:
            for name, child in children.items():
                if child.poll() is not None:
                    click.echo(f"{name} exited with status {child.returncode}; stopping", err=True)
                    stop = True
            time.sleep(0.5)
    finally:
        for child in children.values():
            if child.poll() is None:
                child.terminate()
        for child in children.values():
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
