"""Shared fixtures: real PostgreSQL and Redis, a fresh database per test.

``TEST_DATABASE_URL`` / ``TEST_REDIS_URL`` point the suite at existing servers; without
them it starts embedded ones under ``.cannect/test`` (so ``make test`` needs only Python).
The schema is migrated once into a template database; every test that asks for ``db_url``
gets its own copy (``CREATE DATABASE ... TEMPLATE``), dropped when the test ends.
"""

from __future__ import annotations

import logging
import os
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
import redis as redis_lib
from sqlalchemy.orm import Session

from cannect.config import get_settings
from services import db
from services import pds as pds_module

ROOT = Path(__file__).resolve().parent.parent
# The B2B usage pusher of every app a test made tries its last push at interpreter exit, after the
# embedded Redis stopped and pytest closed its capture streams: those entries are test traffic, and
# the "--- Logging error ---" traces that logging prints for the closed stream are noise in CI's log.
logging.raiseExceptions = False
sys.path.insert(0, str(ROOT / "tests"))
SAMPLES = ROOT / "tests" / "data" / "jetstream-samples"  # real Jetstream captures (see its README)
TEMPLATE = f"cannect_template_{os.getpid()}"
JWT_SECRET = "test-secret-" + "x" * 32


def _with_database(url: str, name: str) -> str:
    """The same server URL, naming another database (URL or socket-dir form)."""
    head, _, tail = url.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{name}" + (f"?{tail}" if tail else "")


@pytest.fixture(scope="session")
def servers(tmp_path_factory):
    """(admin PostgreSQL URL, Redis URL) of real servers."""
    from cannect.embedded import start_postgres, start_redis

    state = ROOT / ".cannect" / "test"
    pg = os.environ.get("TEST_DATABASE_URL") or start_postgres(state / "postgres", database="postgres")
    if os.environ.get("TEST_REDIS_URL"):
        yield pg, os.environ["TEST_REDIS_URL"]
        return
    url, process = start_redis(tmp_path_factory.mktemp("redis"))
    yield pg, url
    process.terminate()


@pytest.fixture(scope="session")
def template_db(servers):
    from alembic import command

    from migrations import alembic_config

    admin = servers[0]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}"')
        conn.execute(f'CREATE DATABASE "{TEMPLATE}"')
    url = _with_database(admin, TEMPLATE)
    command.upgrade(alembic_config(url.replace("postgresql://", "postgresql+psycopg://", 1)), "head")
    yield TEMPLATE
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)')


def _scratch_database(admin: str, template: str | None = None):
    """Create a uniquely named database (optionally from a template); drop it when done."""
    name = f"cannect_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    yield _with_database(admin, name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def empty_db_url(servers):
    """A new, empty database (no schema), dropped after the test."""
    yield from _scratch_database(servers[0])


@pytest.fixture
def db_url(servers, template_db):
    """A new migrated database, dropped after the test."""
    yield from _scratch_database(servers[0], template_db)


@pytest.fixture
def engine(db_url):
    from services.db import make_engine

    engine = make_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1), pool_size=2)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine):
    with Session(engine) as session:
        yield session


@pytest.fixture
def redis_url(servers):
    """The Redis server, flushed for this test."""
    url = servers[1]
    redis_lib.Redis.from_url(url).flushdb()
    return url


@pytest.fixture
def env(db_url, redis_url):
    """Environment for child processes of the system under test."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_", "JETSTREAM_"))}
    environ.update(DATABASE_URL=db_url, REDIS_URL=redis_url, LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1",
                   JWT_SECRET=JWT_SECRET)
    return environ


@pytest.fixture
def fake_pds():
    """A running fake PDS (a real XRPC server, tests/fakes/pds.py), stopped after the test."""
    from fakes.pds import FakePds

    with FakePds() as pds:
        yield pds


@pytest.fixture
def make_api(monkeypatch, db_url, redis_url, fake_pds):
    """Build the app (Flask test client) on the fake PDS, with extra environment if given."""
    def build(**environ):
        monkeypatch.setenv("DATABASE_URL", db_url)
        monkeypatch.setenv("REDIS_URL", redis_url)
        monkeypatch.setenv("JWT_SECRET", JWT_SECRET)
        monkeypatch.setenv("PDS_URL", fake_pds.url)
        for name, value in environ.items():
            monkeypatch.setenv(name, value)
        for cached in (get_settings, db.get_engine, db._session_factory):
            cached.cache_clear()
        from app import create_app

        return create_app().test_client()

    yield build
    db.get_engine().dispose()
    for cached in (get_settings, db.get_engine, db._session_factory, pds_module.pds_client):
        cached.cache_clear()


@pytest.fixture
def api(make_api):
    return make_api()
