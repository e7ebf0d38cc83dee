"""Run the real processes of the system (replay server, listener, workers) for tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psycopg
import redis

from cannect.embedded import free_port

ROOT = Path(__file__).resolve().parent.parent
from services.jetstream import Skip, parse_event
from services.status import queue_depths


def last_kept_time_us(capture: Path) -> int:
    """The time_us the index reaches once the whole capture is applied."""
    last = 0
    with open(capture, "rb") as lines:
        for line in lines:
            event = parse_event(line)
            if not isinstance(event, Skip):
                last = max(last, event["t"])
    return last



def wait_for(condition, what: str, timeout: float = 60.0):
    """``condition()``'s first true value, asked every 50 ms; an AssertionError naming ``what``
    when none comes within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"never: {what}")

class System:
    """Child processes of one system under test, with their logs in ``log_dir``."""

    def __init__(self, env: dict, log_dir: Path):
        self.env = dict(env)
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen] = {}
        self.db_url, self.redis_url = env["DATABASE_URL"], env["REDIS_URL"]

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "ab")
        proc = subprocess.Popen([sys.executable, "-m", "cannect.cli", *args], env=self.env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        return proc

    def start_replay(self, capture: Path, speed: float = 0, port: int | None = None) -> int:
        port = port or free_port()
        self.env["JETSTREAM_URL"] = f"ws://127.0.0.1:{port}/subscribe"
        # The replay server also plays the PLC directory and handle resolution (cannect/directory.py).
        self.env["PLC_DIRECTORY_URL"] = self.env["HANDLE_RESOLVER_URL"] = f"http://127.0.0.1:{port}"
        self.start("replay", "replay", "--file", str(capture), "--port", str(port), "--speed", str(speed))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return port
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("replay server did not start:\n" + self.log("replay"))

    def start_listener(self) -> subprocess.Popen:
        return self.start("listener", "listen")

    def start_worker(self, name: str = "worker", processes: int = 1, threads: int = 2) -> subprocess.Popen:
        return self.start(name, "worker", "--queues", "ingest", "--processes", str(processes),
                          "--threads", str(threads))

    def start_identity_worker(self, name: str = "worker-identity", threads: int = 4) -> subprocess.Popen:
        return self.start(name, "worker", "--queues", "identity", "--processes", "1", "--threads", str(threads))

    def start_notify_worker(self, name: str = "worker-notify", threads: int = 2) -> subprocess.Popen:
        return self.start(name, "worker", "--queues", "notify", "--processes", "1", "--threads", str(threads))

    def start_push_worker(self, name: str = "worker-push", threads: int = 8) -> subprocess.Popen:
        return self.start(name, "worker", "--queues", "push", "--processes", "1", "--threads", str(threads))

    def wait_until_resolved(self, timeout: float = 120) -> None:
        """Until the identity queue is empty (call once ingest is done: it queues resolutions)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if queue_depths(redis.Redis.from_url(self.redis_url))["identity"]["pending"] == 0:
                return
            time.sleep(0.2)
        raise AssertionError(f"identity queue not empty after {timeout}s\n{self.log('worker-identity')}")

    def kill(self, name: str) -> None:
        """SIGKILL the process and its children (a crash: nothing is cleaned up)."""
        proc = self.procs.pop(name)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)

    def stop_all(self) -> None:
        for name in list(self.procs):
            proc = self.procs.pop(name)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        time.sleep(0.2)

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def applied(self) -> tuple[int, int]:
        """(highest time_us applied, events applied)."""
        with psycopg.connect(self.db_url) as conn:
            row = conn.execute("SELECT applied_time_us, events_applied FROM ingest_state").fetchone()
        return row or (0, 0)

    def queue_empty(self) -> bool:
        return queue_depths(redis.Redis.from_url(self.redis_url))["ingest"]["pending"] == 0

    def wait_until_applied(self, time_us: int, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise AssertionError(f"{name} exited with {proc.returncode}:\n{self.log(name)}")
            if self.applied()[0] >= time_us and self.queue_empty():
                return
            time.sleep(0.2)
        raise AssertionError(f"not applied up to {time_us} in {timeout}s (at {self.applied()})\n"
                             + "\n".join(f"--- {n}\n{self.log(n)}" for n in ("listener", "worker", "replay")))


class Web:
    """A real gunicorn web process (the Procfile's command) on a free port, stopped by ``stop()``.

    Benchmarks serve their own app factory with ``app`` (and ``pythonpath`` to find it) and
    their own number of processes (``WEB_CONCURRENCY`` in ``env``).
    """

    def __init__(self, env: dict, log_path: Path, app: str = "app:create_app()", pythonpath: str | None = None,
                 **settings: str):
        self.port = free_port()
        self.env = dict(env, PORT=str(self.port), **settings)
        self.env.setdefault("WEB_CONCURRENCY", "1")  # one process: every socket sees every event
        self.log_path = log_path
        self.url = f"ws://127.0.0.1:{self.port}/ws"
        self.http = f"http://127.0.0.1:{self.port}"
        extra = ["--pythonpath", pythonpath] if pythonpath else []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", "python:cannect.gunicorn_conf", *extra, app],
            cwd=ROOT, env=self.env, stdout=open(log_path, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("gunicorn exited:\n" + self.log())
            try:
                if httpx.get(self.http + "/health/db", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("gunicorn did not start:\n" + self.log())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def token_for(env: dict, did: str, ttl: int = 3600) -> str:
    """An app access token for ``did``, signed with the environment's ``JWT_SECRET``."""
    from services.tokens import issue_access_token

    return issue_access_token(did, "session-1", env["JWT_SECRET"], ttl)


class Client:
    """A websocket-client connection to ``/ws`` that reads JSON messages."""

    def __init__(self, url: str, **options):
        import websocket

        self.ws = websocket.create_connection(url, timeout=15, **options)

    def send(self, message) -> None:
        self.ws.send(message if isinstance(message, str) else json.dumps(message))

    def recv(self) -> dict:
        return json.loads(self.ws.recv())

    def expect(self, kind: str) -> dict:
        message = self.recv()
        assert message["type"] == kind, message
        return message

    def subscribe(self, uris: list[str], since: str | None = None) -> dict:
        self.send({"type": "subscribe", "uris": uris, **({"since": since} if since else {})})
        return self.expect("subscribed")

    def auth(self, token: str, since: str | None = None) -> dict:
        self.send({"type": "auth", "token": token, **({"since": since} if since else {})})
        return self.expect("auth_ok")

    def sync(self) -> None:
        """Round trip: everything the server sent before the pong has been read by now."""
        self.send({"type": "ping"})
        self.expect("pong")

    def close(self) -> None:
        self.ws.close()


class Proxy:
    """A TCP proxy to Redis that the test can cut (every connection closed, new ones refused).
    ``delay`` (s) is added to every answer: a Redis on another host, for benchmarks."""

    def __init__(self, target: tuple[str, int], delay: float = 0.0):
        self.target, self.delay = target, delay
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open = True
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()  # a connection accepted while the test cuts is cut too
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                if not self.open:
                    client.close()
                    continue
                upstream = socket.create_connection(self.target)
                self.conns += [client, upstream]
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for a, b, answers in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(target=self._pipe, args=(a, b, answers), daemon=True).start()

    def _pipe(self, a, b, answers: bool):
        try:
            while data := a.recv(65536):
                if answers and self.delay:
                    time.sleep(self.delay)
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass

    def cut(self):
        with self.lock:
            self.open = False
            for conn in self.conns:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.conns = []

    def restore(self):
        self.open = True

    def close(self):
        self.cut()
        self.listener.close()


class RemoteRedis:
    """Redis as if on another host: a :class:`Proxy` adding ``delay`` (s) to every answer, in a
    process of its own (its threads would otherwise take the GIL from the process that measures).
    ``url`` is Redis's URL through it."""

    def __init__(self, redis_url: str, delay: float):
        from urllib.parse import urlparse

        target = urlparse(redis_url)
        code = ("import sys; sys.path[:0] = sys.argv[1:3]; from harness import Proxy; "
                f"proxy = Proxy(({target.hostname!r}, {target.port or 6379}), delay={delay!r}); "
                "print(proxy.port, flush=True); sys.stdin.read()")
        here = Path(__file__).resolve().parent
        self.process = subprocess.Popen([sys.executable, "-c", code, str(here), str(here.parent)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.url = f"redis://127.0.0.1:{int(self.process.stdout.readline())}{target.path or '/0'}"

    def close(self):
        self.process.stdin.close()  # its stdin ends: it exits
        self.process.wait(10)
