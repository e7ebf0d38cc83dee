"""The replay server against a real websocket-client, as the ingest listener uses it.

Each test starts ``cannect.replay.serve`` in a subprocess on port 0 (so SIGTERM, the way it
is stopped in production, is exercised too) and checks what arrives against an independent
reference filter written here from the Jetstream rules.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import websocket

from cannect.replay import MAX_DIDS, build_filter

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_783_173_600_000_000
A, B, C = ("did:plc:" + ch * 24 for ch in "abc")
NOBODY = "did:plc:" + "z" * 24


def commit(did, t, collection, op="create", rkey="3mpt7ukjhzijv"):
    body = {"rev": "3mpt7ukjhzijv", "operation": op, "collection": collection, "rkey": rkey}
    if op != "delete":
        body["record"] = {"$type": collection, "createdAt": "2026-07-04T14:00:00.000Z"}
        body["cid"] = "bafyreifzvwsimi4dffaicjyjjnrj24p5sjeqvjxfoklsalxzanhqijswme"
    # json.dumps writes spaces after separators, orjson does not: a re-serializing server
    # would change the bytes and fail the comparisons below.
    return json.dumps({"did": did, "time_us": t, "kind": "commit", "commit": body})


def identity(did, t):
    return json.dumps({"did": did, "time_us": t, "kind": "identity",
                       "identity": {"did": did, "seq": 1, "time": "2026-07-04T14:00:00.000Z"}})


def account(did, t):
    body = {"active": True, "did": did, "seq": 2, "time": "2026-07-04T14:00:00.000Z"}
    return json.dumps({"did": did, "time_us": t, "kind": "account", "account": body})


MALFORMED = '{"did": "did:plc:broken", "time_us": 17831736'  # cut off mid-line
LINES = [
    '"not an event at all"',  # before any valid line: position = start of file
    commit(A, T0 + 1_000, "app.bsky.feed.post"),
    commit(B, T0 + 2_000, "app.bsky.feed.like"),
    commit(A, T0 + 3_000, "app.bsky.graph.follow"),
    identity(B, T0 + 4_000),
    commit(C, T0 + 5_000, "app.bsky.graph.block"),
    MALFORMED,  # position of the line above: T0 + 5_000
    account(C, T0 + 6_000),
    commit(B, T0 + 7_000, "app.bsky.feed.repost"),
    commit(A, T0 + 8_000, "app.bsky.actor.profile", "update", "self"),
    commit(C, T0 + 9_000, "app.bsky.graph.listitem"),
    commit(B, T0 + 10_000, "app.bsky.feed.post", "delete"),
    commit(A, T0 + 11_000, "fm.teal.alpha.feed.play"),
    commit(C, T0 + 12_000, "app.bsky.feed.like"),
]


def reference(lines, cursor=None, collections=(), dids=()):
    """What Jetstream semantics say a client gets, computed without the server's code."""
    out, position = [], None
    for raw in lines:
        try:
            event = json.loads(raw)
            valid = isinstance(event, dict) and isinstance(event.get("time_us"), int)
        except ValueError:
            valid = False
        if not valid:
            if cursor is None or (position is not None and position >= cursor):
                out.append(raw)
            continue
        position = event["time_us"]
        if cursor is not None and position < cursor:
            continue
        if dids and event["did"] not in dids:
            continue
        if collections and event["kind"] == "commit":
            name = event["commit"]["collection"]
            if not any(name == w or (w.endswith(".*") and name.startswith(w[:-1]))
                       for w in collections):
                continue
        out.append(raw)
    return out


def is_event(raw: str) -> bool:
    return raw.startswith('{"did": "did:plc:') and raw != MALFORMED


def write_lines(path: Path, lines, mode="w"):
    with open(path, mode, encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)


@pytest.fixture
def capture_file(tmp_path) -> Path:
    """A capture of this test's own, for tests that append to it."""
    path = tmp_path / "capture.jsonl"
    write_lines(path, LINES)
    return path


class Servers:
    """Replay servers in subprocesses, stopped with SIGTERM (as in production): exit 0."""

    def __init__(self, logs: Path):
        self.logs, self.procs, self.log_files = logs, [], []

    def start(self, path: Path, speed: float = 0.0, query: str = "") -> str:
        code = (
            "import sys; from cannect.replay import serve; "
            "serve(sys.argv[1], port=0, speed=float(sys.argv[2]), "
            "ready=lambda p: print(p, flush=True))"
        )
        log = self.logs / f"server{len(self.procs)}.log"
        self.log_files.append(open(log, "w"))
        python_path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        proc = subprocess.Popen(
            [sys.executable, "-c", code, str(path), str(speed)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=self.log_files[-1], text=True,
            env={**os.environ, "PYTHONPATH": python_path},
        )
        self.procs.append(proc)
        line = proc.stdout.readline()
        assert line.strip().isdigit(), f"server did not start: {log.read_text()}"
        return f"ws://127.0.0.1:{int(line)}/subscribe{query}"

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(timeout=10) for proc in self.procs]
        for proc in self.procs:
            proc.stdout.close()
        for log in self.log_files:
            log.close()
        assert codes == [0] * len(codes)


@pytest.fixture
def replay_servers(tmp_path):
    """Servers of this test's own (for appending, pacing and shutdown tests)."""
    started = Servers(tmp_path)
    yield started
    started.stop_all()


@pytest.fixture(scope="module")
def shared_url(tmp_path_factory):
    """One server over an unchanging copy of LINES, for the tests that only read."""
    root = tmp_path_factory.mktemp("shared")
    write_lines(root / "capture.jsonl", LINES)
    started = Servers(root)
    yield started.start(root / "capture.jsonl")
    started.stop_all()


@pytest.fixture
def connect(replay_servers):
    """Open clients; close them before the servers stop (a client that never closes its
    socket makes the server wait for its close timeout)."""
    clients = []

    def open_client(url: str) -> websocket.WebSocket:
        ws = websocket.create_connection(url, timeout=5, skip_utf8_validation=True)
        clients.append(ws)
        return ws

    yield open_client
    for ws in clients:
        ws.close(timeout=1)


def receive(ws, count: int) -> list[str]:
    return [ws.recv() for _ in range(count)]


def assert_quiet(ws, seconds: float = 0.25) -> None:
    """Nothing more arrives (and the connection stays open)."""
    ws.settimeout(seconds)
    with pytest.raises(websocket.WebSocketTimeoutException):
        ws.recv()
    ws.settimeout(5)


def close_code(ws) -> int:
    while True:
        opcode, data = ws.recv_data(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:  # websocket-client has answered it
            ws.shutdown()
            return int.from_bytes(data[:2], "big")


def query(**params) -> str:
    parts = []
    for name, values in params.items():
        for value in values if isinstance(values, (list, tuple)) else [values]:
            parts.append(f"{name}={value}")
    return "?" + "&".join(parts)


# --------------------------------------------------------------------------- filters


def test_sends_every_line_unchanged_in_file_order(shared_url, connect):
    ws = connect(shared_url)
    assert receive(ws, len(LINES)) == LINES
    assert_quiet(ws)


@pytest.mark.parametrize("cursor", [T0 + 5_000, T0 + 5_001, T0 + 8_000, T0 + 99_000, 0])
def test_cursor_sends_lines_at_or_after_it(shared_url, connect, cursor):
    expected = reference(LINES, cursor=cursor)
    ws = connect(shared_url + query(cursor=cursor))
    assert receive(ws, len(expected)) == expected
    assert_quiet(ws)


def test_malformed_line_takes_the_position_of_the_previous_line(shared_url, connect):
    at = connect(shared_url + query(cursor=T0 + 5_000))
    assert MALFORMED in receive(at, len(reference(LINES, cursor=T0 + 5_000)))
    after = connect(shared_url + query(cursor=T0 + 5_001))
    assert MALFORMED not in receive(after, len(reference(LINES, cursor=T0 + 5_001)))


def test_wanted_collections_exact_and_prefix_pass_identity_and_account(shared_url, connect):
    wanted = ["app.bsky.feed.post", "app.bsky.graph.*"]
    expected = reference(LINES, collections=wanted)
    ws = connect(shared_url + query(wantedCollections=wanted))
    got = receive(ws, len(expected))
    assert got == expected
    assert identity(B, T0 + 4_000) in got and account(C, T0 + 6_000) in got
    assert not any('"app.bsky.feed.like"' in line for line in got)
    assert_quiet(ws)


def test_wanted_dids_filter_every_kind_but_not_malformed_lines(shared_url, connect):
    expected = reference(LINES, dids=[B])
    ws = connect(shared_url + query(wantedDids=B))
    got = receive(ws, len(expected))
    assert got == expected
    assert identity(B, T0 + 4_000) in got and MALFORMED in got
    assert account(C, T0 + 6_000) not in got
    assert_quiet(ws)


def test_unknown_did_still_gets_the_malformed_lines(shared_url, connect):
    ws = connect(shared_url + query(wantedDids=NOBODY))
    assert receive(ws, 2) == [LINES[0], MALFORMED]
    assert_quiet(ws)


def test_max_message_size_drops_larger_events(shared_url, connect):
    of_a = reference(LINES, dids=[A])
    limit = sorted(len(line.encode()) for line in of_a if is_event(line))[1]
    expected = [line for line in of_a if not is_event(line) or len(line.encode()) <= limit]
    assert 2 < len(expected) < len(of_a)
    ws = connect(shared_url + query(maxMessageSizeBytes=limit, wantedDids=A))
    assert receive(ws, len(expected)) == expected
    assert_quiet(ws)


def test_clients_keep_their_own_positions(shared_url, connect):
    first, second = connect(shared_url), connect(shared_url + query(cursor=T0 + 8_000))
    later = reference(LINES, cursor=T0 + 8_000)
    assert receive(second, len(later)) == later
    assert receive(first, len(LINES)) == LINES


# --------------------------------------------------------------------------- client messages


def test_options_update_replaces_filters_for_later_events(capture_file, replay_servers, connect):
    ws = connect(replay_servers.start(capture_file, query=query(wantedDids=A)))
    first = reference(LINES, dids=[A])
    assert receive(ws, len(first)) == first
    ws.send("this is not JSON and is ignored")
    ws.send(json.dumps({"type": "something_else", "payload": {}}))
    ws.send(json.dumps({"type": "options_update",
                        "payload": {"wantedDids": [B], "wantedCollections": ["app.bsky.feed.*"]}}))
    time.sleep(0.1)
    appended = [
        commit(A, T0 + 20_000, "app.bsky.feed.post"),
        commit(B, T0 + 21_000, "app.bsky.graph.follow"),
        commit(B, T0 + 22_000, "app.bsky.feed.like"),
        identity(B, T0 + 23_000),
    ]
    write_lines(capture_file, appended, "a")
    assert receive(ws, 2) == [appended[2], appended[3]]
    assert_quiet(ws)


def test_require_hello_waits_for_the_first_options_update(shared_url, connect):
    ws = connect(shared_url + query(requireHello="true"))
    assert_quiet(ws)
    hello = {"type": "options_update", "payload": {"wantedCollections": ["app.bsky.feed.like"]}}
    ws.send(json.dumps(hello))
    expected = reference(LINES, collections=["app.bsky.feed.like"])
    assert receive(ws, len(expected)) == expected


def test_invalid_options_update_closes_with_1008(shared_url, connect):
    ws = connect(shared_url)
    receive(ws, len(LINES))
    too_many = ["did:plc:%024d" % i for i in range(MAX_DIDS + 1)]
    ws.send(json.dumps({"type": "options_update", "payload": {"wantedDids": too_many}}))
    assert close_code(ws) == 1008


# --------------------------------------------------------------------------- live tail, pacing


def test_stays_open_after_the_end_and_streams_appended_lines(capture_file, replay_servers, connect):
    url = replay_servers.start(capture_file, query=query(wantedCollections="app.bsky.feed.post"))
    ws = connect(url)
    expected = reference(LINES, collections=["app.bsky.feed.post"])
    assert receive(ws, len(expected)) == expected
    assert_quiet(ws, 0.5)

    post = commit(C, T0 + 30_000, "app.bsky.feed.post")
    like = commit(C, T0 + 31_000, "app.bsky.feed.like")
    late = commit(A, T0 + 32_000, "app.bsky.feed.post")
    with open(capture_file, "a", encoding="utf-8") as f:
        f.write(post + "\n" + like + "\n" + "{broken\n" + late[:20])  # last line incomplete
    assert receive(ws, 2) == [post, "{broken"]
    assert_quiet(ws, 0.5)
    with open(capture_file, "a", encoding="utf-8") as f:
        f.write(late[20:] + "\n")
    assert receive(ws, 1) == [late]


def test_speed_paces_by_time_us(tmp_path, replay_servers, connect):
    path = tmp_path / "paced.jsonl"
    write_lines(path, [commit(A, T0 + k * 100_000, "app.bsky.feed.like") for k in range(21)])
    ws = connect(replay_servers.start(path, speed=10))
    ws.recv()
    started = time.monotonic()
    receive(ws, 20)
    elapsed = time.monotonic() - started  # 2 s of stream at 10x: about 0.2 s
    assert 0.12 <= elapsed <= 1.5


# --------------------------------------------------------------------------- handshake, shutdown


@pytest.mark.parametrize("params", [
    query(cursor="abc"),
    query(cursor="12.5"),
    query(cursor="1_783_173_600_000_000"),
    query(wantedCollections=[f"app.bsky.feed.c{i}" for i in range(101)]),
    query(wantedCollections="notacollection"),
    query(wantedDids="alice.bsky.social"),
    query(compress="true"),
])
def test_invalid_parameters_are_refused_with_400(shared_url, connect, params):
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        connect(shared_url + params)
    assert refused.value.status_code == 400


def test_more_than_10000_dids_are_refused_but_10000_are_fine(shared_url, connect):
    dids = ["did:plc:%024d" % i for i in range(MAX_DIDS + 1)]
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        connect(shared_url + query(wantedDids=dids))
    assert refused.value.status_code == 400
    ws = connect(shared_url + query(wantedDids=dids[:MAX_DIDS]))
    assert receive(ws, 2) == [LINES[0], MALFORMED]


def test_other_paths_get_404(shared_url, connect):
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        connect(shared_url.replace("/subscribe", "/firehose"))
    assert refused.value.status_code == 404


def test_author_feeds_are_empty_the_replayed_network_has_no_past(shared_url):
    import httpx

    base = shared_url.replace("ws://", "http://").replace("/subscribe", "")
    answer = httpx.get(f"{base}/xrpc/app.bsky.feed.getAuthorFeed", params={"actor": "did:plc:" + "a" * 24})
    assert answer.status_code == 200 and answer.json() == {"feed": []}
    assert httpx.get(f"{base}/xrpc/app.bsky.feed.getAuthorFeed").status_code == 400


def test_sigterm_closes_clients_with_1001_and_exits_cleanly(capture_file, replay_servers, connect):
    ws = connect(replay_servers.start(capture_file))
    receive(ws, len(LINES))
    proc = replay_servers.procs[-1]
    proc.send_signal(signal.SIGTERM)
    assert close_code(ws) == 1001
    assert proc.wait(timeout=10) == 0


def test_build_filter_keeps_the_dot_of_prefixes():
    flt = build_filter(["app.bsky.graph.*", "app.bsky.feed.post"], [])
    assert flt.accepts(A, "app.bsky.graph.follow", 10)
    assert not flt.accepts(A, "app.bsky.graphx.follow", 10)
    assert flt.accepts(A, "", 10)  # identity and account events
    assert not flt.accepts(A, "app.bsky.feed.like", 10)
