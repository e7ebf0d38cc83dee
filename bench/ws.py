"""WebSocket fan-out: published -> received latency over thousands of sockets, and web memory.

Starts gunicorn with the project's config (``cannect/gunicorn_conf.py``), connects
``--sockets`` WebSockets (asyncio + the ``websockets`` protocol, spread over ``--client-procs``
processes),
all subscribed to the same ``--uris`` post URIs, then publishes ``--events`` post_updated
events through ``services.realtime.publish``, one every ``--interval`` seconds, each carrying
its send time. Every socket gets every event; the latency of each (event, socket) pair is
the time its bytes reached the client's event loop minus its send time (one clock: same
machine). Reports p50/p95/p99/max,
events lost, and the resident memory of the web processes before and after the sockets.

Uses DATABASE_URL / REDIS_URL when set, else embedded servers. It publishes to the realtime
stream of that Redis: never point it at a Redis that serves real clients. Usage:
    python bench/ws.py [--sockets 2000] [--events 50] [--interval 0.25] [--workers N]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing
import os
import resource
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import httpx  # noqa: E402
import redis  # noqa: E402
from websockets.client import ClientProtocol  # noqa: E402
from websockets.frames import Frame, Opcode  # noqa: E402
from websockets.http11 import Response  # noqa: E402
from websockets.uri import parse_uri  # noqa: E402

from cannect.embedded import ensure_services  # noqa: E402
from harness import Web  # noqa: E402
from services.realtime import publish  # noqa: E402


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def raise_open_files_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# -- client processes ----------------------------------------------------------------------

def client_process(url: str, sockets: int, uris: list[str], events: int, conn, deadline_s: float) -> None:
    """Connect, subscribe, report ready, then collect (receive time, raw message) per socket."""
    raise_open_files_limit()
    try:
        asyncio.run(_client(url, sockets, uris, events, conn, deadline_s))
    except Exception as exc:  # tell the parent instead of leaving it waiting
        conn.send(f"client failed: {exc!r}")


class Receiver(asyncio.Protocol):
    """One client socket: websockets' protocol (Sans-I/O) on an asyncio transport.

    Each message is stamped in ``data_received``, when its bytes reach the client's event
    loop, and parsed only after the run: what is measured is the server's fan-out, not how
    fast this process can take 2,000 messages at once.
    """

    def __init__(self, url: str, uris: list[str], subscribed: asyncio.Future):
        self.protocol = ClientProtocol(parse_uri(url), max_size=None)
        self.uris, self.subscribed = uris, subscribed
        self.box: list[tuple[float, bytes]] = []

    def connection_made(self, transport):
        self.transport = transport
        self.protocol.send_request(self.protocol.connect())
        self._write()

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self.protocol.receive_data(data)
        for event in self.protocol.events_received():
            if isinstance(event, Response):
                self.protocol.send_text(json.dumps({"type": "subscribe", "uris": self.uris}).encode())
            elif isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                if self.subscribed.done():
                    self.box.append((now, event.data))
                elif b'"subscribed"' in event.data:
                    self.subscribed.set_result(True)
        self._write()

    def _write(self) -> None:
        for data in self.protocol.data_to_send():
            if data:
                self.transport.write(data)

    def connection_lost(self, exc) -> None:
        if not self.subscribed.done():
            self.subscribed.set_exception(ConnectionError(f"closed before subscribing: {exc}"))


async def _client(url, sockets, uris, events, conn, deadline_s):
    loop = asyncio.get_running_loop()
    host, port = url.split("//")[1].split("/")[0].split(":")
    receivers: list[Receiver] = []
    # Connect in waves of 50 handshakes in flight (each upgrade request also passes the rate
    # limiter, whose Redis pool allows 100 calls at once per process).
    gate = asyncio.Semaphore(50)

    async def open_one():
        async with gate:
            subscribed = loop.create_future()
            _, receiver = await loop.create_connection(lambda: Receiver(url, uris, subscribed), host, int(port))
            await asyncio.wait_for(subscribed, 60)
            receivers.append(receiver)

    await asyncio.gather(*(open_one() for _ in range(sockets)))
    # No collector pauses in the measuring client: they would be counted as server latency.
    gc.collect()
    gc.freeze()
    gc.disable()
    conn.send("ready")
    cpu_start = time.process_time()
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline and any(len(r.box) < events for r in receivers):
        await asyncio.sleep(0.2)
    cpu_used = time.process_time() - cpu_start
    latencies, lost = [], 0
    for receiver in receivers:
        lost += events - len(receiver.box)
        latencies += [at - json.loads(raw)["sentAt"] for at, raw in receiver.box]
    conn.send((latencies, lost, cpu_used))
    for receiver in receivers:
        receiver.transport.close()


# -- the benchmark -------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sockets", type=int, default=2000)
    parser.add_argument("--events", type=int, default=50)
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between events")
    parser.add_argument("--uris", type=int, default=20, help="post URIs every socket subscribes to")
    parser.add_argument("--workers", type=int, default=None, help="WEB_CONCURRENCY (default 2, as deployed)")
    parser.add_argument("--client-procs", type=int, default=2, help="processes holding the client sockets")
    args = parser.parse_args()

    raise_open_files_limit()
    ensure_services(ROOT / ".cannect" / "bench")
    # Every client socket comes from this one address.
    env = dict(os.environ, LOG_LEVEL="WARNING", RATE_LIMIT_IP="1000000/minute", WS_MAX_CONNECTIONS_PER_IP="100000")
    env.setdefault("JWT_SECRET", "bench-secret-" + "x" * 32)
    env["WEB_CONCURRENCY"] = str(args.workers or 2)
    stream = redis.Redis.from_url(env["REDIS_URL"])
    uris = [f"at://did:plc:{'b' * 24}/app.bsky.feed.post/3kbench{i:06d}" for i in range(args.uris)]

    with tempfile.TemporaryDirectory() as logs:
        server = Web(env, Path(logs) / "web.log")
        web, host = server.proc, f"127.0.0.1:{server.port}"
        try:
            time.sleep(1.0)
            workers = children(web.pid)
            idle = {pid: rss_mib(pid) for pid in [web.pid, *workers]}

            ctx = multiprocessing.get_context("fork")
            pipes, procs = [], []
            share = [args.sockets // args.client_procs + (i < args.sockets % args.client_procs)
                     for i in range(args.client_procs)]
            deadline = args.events * args.interval + 30
            started = time.perf_counter()
            for count in share:
                mine, theirs = ctx.Pipe()
                proc = ctx.Process(target=client_process,
                                   args=(f"ws://{host}/ws", count, uris, args.events, theirs, deadline))
                proc.start()
                pipes.append(mine)
                procs.append(proc)
            for pipe in pipes:
                answer = pipe.recv() if pipe.poll(300) else "no answer in 300 s"
                if answer != "ready":
                    raise RuntimeError(f"clients did not connect: {answer}")
            connect_s = time.perf_counter() - started
            time.sleep(1.0)
            loaded = {pid: rss_mib(pid) for pid in [web.pid, *workers]}
            cpu_before = sum(cpu_seconds(pid) for pid in workers)
            per_process = {}
            for _ in range(20):
                stats = httpx.get(f"http://{host}/health/ws", timeout=5).json()
                per_process[stats["pid"]] = stats["connections"]

            for n in range(args.events):
                event = {"type": "post_updated", "sentAt": time.time(),
                         "post": {"uri": uris[n % len(uris)], "likeCount": n, "repostCount": 0, "replyCount": 0}}
                publish(stream, [event])
                time.sleep(args.interval)
            results = [pipe.recv() if pipe.poll(deadline + 60) else ([], args.sockets, 0.0) for pipe in pipes]
            cpu_used = sum(cpu_seconds(pid) for pid in workers) - cpu_before
            after = {pid: rss_mib(pid) for pid in [web.pid, *workers]}
            for proc in procs:
                proc.join(timeout=30)
        finally:
            os.killpg(web.pid, signal.SIGTERM)
            web.wait(timeout=60)

    latencies = sorted(ms * 1000 for result in results for ms in result[0])
    lost = sum(result[1] for result in results)
    print(f"\nWebSocket fan-out benchmark: {args.sockets:,} sockets x {args.events} events "
          f"(1 every {args.interval * 1000:.0f} ms, each to every socket), {len(workers)} "
          f"{env.get('WEB_WORKER_CLASS', 'gevent')} worker(s), "
          f"{args.client_procs} client processes, {os.cpu_count()} cores")
    print(f"  sockets per worker        {', '.join(str(c) for c in per_process.values())} "
          f"(connected in {connect_s:.1f} s)")
    print(f"  deliveries measured       {len(latencies):,} ({lost} lost)")
    for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        print(f"  published -> received {name} {percentile(latencies, q):8.1f} ms")
    print(f"  published -> received max {latencies[-1]:8.1f} ms")
    print(f"  web CPU while publishing  {cpu_used:.1f} s for {len(latencies):,} deliveries "
          f"({cpu_used / max(1, len(latencies)) * 1e6:.0f} us each)")
    client_cpu = sum(result[2] for result in results)
    print(f"  client CPU while receiving {client_cpu:.1f} s ({client_cpu / max(1, len(latencies)) * 1e6:.0f} us "
          f"per message)")
    total_idle, total_loaded = sum(idle.values()), sum(after.values())
    print(f"  web RSS (master+workers)  {total_idle:.0f} MiB idle -> {sum(loaded.values()):.0f} MiB with sockets "
          f"-> {total_loaded:.0f} MiB after the events")
    for pid in workers:
        print(f"    worker {pid}: {idle[pid]:.0f} -> {loaded[pid]:.0f} -> {after[pid]:.0f} MiB")
    print(f"  per socket                {(sum(loaded.values()) - total_idle) * 1024 / args.sockets:.0f} KiB")


if __name__ == "__main__":
    main()
