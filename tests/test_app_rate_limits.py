"""The app API's per-address and per-member limits (flask-limiter on app/ratelimit_storage.py).

Counted in Redis in leases: a process takes a few hits at once and spends them locally. These
tests hold it to what a client may rely on: never admitted past the limit, across processes
too; exact near the limit; headers that count down as if no lease were held.
"""

from __future__ import annotations

import threading

import redis as redis_lib
from limits import parse

from app.ratelimit_storage import MAX_EXTRA, CountingRedisStorage, LeasedFixedWindow


def strategy(redis_url: str) -> LeasedFixedWindow:
    """One web process's limiter (each has its own leases)."""
    return LeasedFixedWindow(CountingRedisStorage("cannect+" + redis_url))


def test_two_processes_racing_never_admit_past_the_limit(redis_url):
    limit = parse("100/minute")
    processes = [strategy(redis_url) for _ in range(2)]
    admitted = []

    def client(process):
        admitted.append(sum(process.hit(limit, "cannect", "ip:10.0.0.1") for _ in range(150)))
    threads = [threading.Thread(target=client, args=(process,)) for process in processes for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Extras held by one process can refuse early at the other, never admit late.
    assert 100 - 2 * MAX_EXTRA <= sum(admitted) <= 100
    assert not any(process.hit(limit, "cannect", "ip:10.0.0.1") for process in processes)


def test_one_process_is_exact_and_takes_a_script_per_lease(redis_url):
    limit = parse("50/minute")
    process = strategy(redis_url)
    takes = []
    take = process.storage.take
    process.storage.take = lambda *args: takes.append(args) or take(*args)
    assert [process.hit(limit, "cannect", "ip:a") for _ in range(52)] == [True] * 50 + [False] * 2
    assert len(takes) < 25  # most hits were spent from leases, the last ones one script each
    counted = int(redis_lib.Redis.from_url(redis_url).get(process.storage.prefixed_key(limit.key_for("cannect", "ip:a"))))
    assert counted == 52  # refused hits count, as with the stock fixed window


def test_other_keys_are_counted_apart(redis_url):
    limit = parse("3/minute")
    process = strategy(redis_url)
    assert all(process.hit(limit, "cannect", "ip:a") for _ in range(3))
    assert not process.hit(limit, "cannect", "ip:a")
    assert process.hit(limit, "cannect", "ip:b")


def test_responses_count_down_and_refuse_with_retry_after(make_api):
    api = make_api(RATE_LIMIT_IP="40/minute")
    seen = []
    for _ in range(40):
        response = api.get("/api/feed/global")
        assert response.status_code == 200
        assert response.headers["X-RateLimit-Limit"] == "40"
        seen.append(int(response.headers["X-RateLimit-Remaining"]))
    assert seen == list(range(39, -1, -1))  # one process: exact, leases or not
    refused = api.get("/api/feed/global")
    assert refused.status_code == 429
    assert refused.headers["Content-Type"].startswith("application/problem+json")
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    other = api.get("/api/feed/global", environ_base={"REMOTE_ADDR": "10.9.8.7"})
    assert other.status_code == 200
