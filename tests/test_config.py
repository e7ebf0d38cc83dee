"""Configuration: validated once, with messages that name the bad variable."""

import subprocess
import sys

import pytest

from cannect.config import ConfigError, load_settings

GOOD = {"DATABASE_URL": "postgresql://u@localhost/db", "REDIS_URL": "redis://localhost:6379/0"}


def _load(monkeypatch, **env):
    for name in ("DATABASE_URL", "REDIS_URL", "JETSTREAM_URL", "CANNABIS_TAGS", "INGEST_BATCH_SIZE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {**GOOD, **env}.items():
        if value is not None:
            monkeypatch.setenv(name, value)
    return load_settings()


@pytest.mark.parametrize("env, message", [
    ({"DATABASE_URL": None}, "DATABASE_URL: is not set"),
    ({"DATABASE_URL": "mysql://x/y"}, "DATABASE_URL: must be a postgresql:// URL"),
    ({"REDIS_URL": "http://x"}, "REDIS_URL: must be a redis://"),
    ({"JETSTREAM_URL": "https://jetstream"}, "JETSTREAM_URL: must be a ws://"),
    ({"INGEST_BATCH_SIZE": "lots"}, "INGEST_BATCH_SIZE: Input should be a valid integer"),
    ({"INGEST_BATCH_SIZE": "0"}, "INGEST_BATCH_SIZE: Input should be greater than or equal to 1"),
    ({"CANNABIS_TAGS": " , "}, "CANNABIS_TAGS: must list at least one tag"),
])
def test_bad_variables_are_named(monkeypatch, env, message):
    with pytest.raises(ConfigError) as error:
        _load(monkeypatch, **env)
    assert message in str(error.value)


def test_tags_are_normalised_and_the_driver_is_named(monkeypatch):
    settings = _load(monkeypatch, CANNABIS_TAGS="#Weed, THC,weed")
    assert settings.cannabis_tags == ("thc", "weed")
    assert settings.sqlalchemy_url == "postgresql+psycopg://u@localhost/db"


def test_the_cli_exits_2_with_the_message_and_no_traceback():
    result = subprocess.run([sys.executable, "-m", "cannect.cli", "status"], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "REDIS_URL": "redis://x", "DATABASE_URL": "oracle://x"})
    assert result.returncode == 2
    assert "DATABASE_URL: must be a postgresql:// URL" in result.stderr and "Traceback" not in result.stderr
