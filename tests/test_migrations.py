"""Alembic: forward on an empty database, down and up again, and models in step with migrations."""

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect

import models
from migrations import alembic_config


def _config(url):
    return alembic_config(url.replace("postgresql://", "postgresql+psycopg://", 1))


def test_upgrade_from_empty_then_downgrade_and_upgrade_again(empty_db_url):
    config = _config(empty_db_url)
    command.upgrade(config, "head")
    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    assert set(inspect(engine).get_table_names()) >= set(models.metadata.tables)
    for revision in ScriptDirectory.from_config(config).walk_revisions():  # each step down and back up
        command.downgrade(config, revision.down_revision or "base")
        command.upgrade(config, revision.revision)
    command.downgrade(config, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    command.upgrade(config, "head")
    engine.dispose()


def test_models_match_the_migrations(db_url):
    command.check(_config(db_url))  # raises if autogenerate would emit any operation


def test_timestamps_are_timezone_aware():
    naive = [f"{table.name}.{column.name}" for table in models.metadata.tables.values()
             for column in table.columns
             if column.type.__class__.__name__ == "DateTime" and not column.type.timezone]
    assert not naive
