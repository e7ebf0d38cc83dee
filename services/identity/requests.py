"""Which DIDs to send a resolution message for: at most one queued per DID.

A busy account must not enqueue a message per event. ``claim`` marks a DID as queued in
Redis (SET NX with a TTL) and returns only the DIDs that were not queued yet; the worker
clears the mark when it has stored a verdict. While a resolver is unreachable the mark stays,
so the retrying message stays the only one; it expires after ``QUEUED_TTL`` (longer than the
retries take), after which the scheduler's sweep may queue the DID again.

An identity event must be answered with fresh lookups even when a message is already queued
or running (it may have read the old document). ``claim(refresh=True)`` therefore also sets
an "again" flag: the next run of that DID skips the cache, and a run that finishes while the
flag is set queues one more run.
"""

from __future__ import annotations

from typing import Iterable

from redis import Redis

QUEUED = "cannect:identity:queued:"
AGAIN = "cannect:identity:again:"
#: Longer than a message's retries take (tasks/identity.py).
QUEUED_TTL = 3600


def claim(redis: Redis, dids: Iterable[str], refresh: bool = False) -> list[str]:
    """The DIDs (of ``dids``) not queued yet, now marked as queued: send one message for each."""
    dids = sorted(set(dids))
    if not dids:
        return []
    pipe = redis.pipeline(transaction=False)
    for did in dids:
        if refresh:
            pipe.set(AGAIN + did, 1, ex=QUEUED_TTL)
        pipe.set(QUEUED + did, 1, nx=True, ex=QUEUED_TTL)
    results = pipe.execute()[1::2] if refresh else pipe.execute()
    return [did for did, new in zip(dids, results) if new]


def start(redis: Redis, did: str) -> bool:
    """Begin a run of ``did``: True when it must skip the cache (an identity event asked)."""
    return redis.getdel(AGAIN + did) is not None


def finish(redis: Redis, did: str) -> list[str]:
    """End a run of ``did``: [did] when an identity event came during the run (run again)."""
    pipe = redis.pipeline(transaction=False)
    pipe.delete(QUEUED + did)
    pipe.exists(AGAIN + did)
    _, again = pipe.execute()
    return claim(redis, [did]) if again else []
