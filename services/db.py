"""Engine and session factory, one per process, built from ``DATABASE_URL``."""

from __future__ import annotations

import functools
import os
from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from cannect.config import DatabaseSettings, load_settings


def make_engine(url: str, **kwargs) -> Engine:
    """An engine with pooling suited to threaded workers and gevent web processes.

    Requests beyond the pool wait for a connection rather than open and close overflow
    connections under load (which costs PostgreSQL a backend start each time). Errors never
    print their statement's parameters: those are records from the network (a failing ingest
    batch would otherwise write kilobytes of other people's posts into the log per attempt).
    """
    options = dict(pool_size=int(os.environ.get("DB_POOL_SIZE", "20")), max_overflow=5, pool_timeout=10,
                   pool_pre_ping=True, pool_recycle=1800, hide_parameters=True)
    options.update(kwargs)
    return create_engine(url, **options)


@functools.lru_cache(maxsize=1)
def get_engine() -> Engine:
    return make_engine(load_settings(DatabaseSettings).sqlalchemy_url)


@functools.lru_cache(maxsize=1)
def _session_factory() -> sessionmaker[Session]:
    return sessionmaker(get_engine(), expire_on_commit=False)


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on error."""
    session = _session_factory()()
    try:
        with session.begin():
            yield session
    finally:
        session.close()
