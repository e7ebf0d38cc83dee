"""``cannect queues``: Dramatiq's queue depths and dead-lettered messages (services/queues.py).

A message is dead-lettered once its actor's retries are spent; it stays in Redis for seven
days. ``replay`` enqueues it again as a fresh message (retries reset) once the cause is
fixed; ``drop`` forgets it. IDs are the Redis message ids ``cannect queues dead`` prints.
An unknown ID exits 1 after the others are done.
"""

from __future__ import annotations

import functools
import sys
from datetime import datetime, timezone

import click
import orjson

from .config import get_settings


def _terminal_safe(text: str) -> str:
    """cannect/cli.py's escaping of control characters (imported late: cli.py imports this module)."""
    from .cli import _terminal_safe as escape

    return escape(text)


def _fail_on_config_error(func):
    """cannect/cli.py's guard: a bad environment variable exits 2 with its message."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from .cli import _fail_on_config_error as guard

        return guard(func)(*args, **kwargs)
    return wrapper


def _redis():
    import redis

    return redis.Redis.from_url(get_settings().redis_url)


def _broker_enqueue():
    """The broker's own enqueue (the tasks package configures Dramatiq's broker on import)."""
    import dramatiq

    import tasks  # noqa: F401  (sets the global broker)

    broker = dramatiq.get_broker()
    return lambda fields: broker.enqueue(dramatiq.Message(**fields))


def _when(seconds: float | None) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if seconds else "?"


@click.group()
def queues():
    """Dramatiq queues: depths, dead letters, replay and drop."""


@queues.command("list")
@_fail_on_config_error
def queues_list():
    """Each queue's pending messages and dead letters."""
    from services.status import queue_depths

    for name, depth in queue_depths(_redis()).items():
        click.echo(_terminal_safe(f"{name:<12} {depth['pending']:>8,} pending {depth['dead_letters']:>6,} dead"))


@queues.command("dead")
@click.option("--queue", "-q", help="Only this queue.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="Newest first.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_fail_on_config_error
def queues_dead(queue, limit, as_json):
    """ID, queue, time, actor, arguments (summarized), retries and last error of each."""
    from services.queues import dead_letters

    listed = dead_letters(_redis(), queue, limit)
    if as_json:
        click.echo(_terminal_safe(orjson.dumps(listed, option=orjson.OPT_INDENT_2).decode()))
        return
    for view in listed:
        click.echo(_terminal_safe(f"{view['id']}\t{view['queue']}\t{_when(view['failed_at'])}\t{view['actor']}"
                                  f"({', '.join(view['args'])})\tretries {view['retries']}\t{view['error'] or '-'}"))


@queues.command("show")
@click.argument("message_id")
@_fail_on_config_error
def queues_show(message_id):
    """The dead letter as JSON: summary and whole message (with its traceback)."""
    from services.queues import UnknownMessage, show

    try:
        view = show(_redis(), message_id)
    except UnknownMessage as exc:
        click.echo(_terminal_safe(str(exc)), err=True)
        sys.exit(1)
    click.echo(_terminal_safe(orjson.dumps(view, option=orjson.OPT_INDENT_2).decode()))


def _each(message_ids, act) -> None:
    missing = 0
    for message_id in message_ids:
        try:
            view = act(message_id)
        except (LookupError, ValueError) as exc:  # unknown, or not replayable
            click.echo(_terminal_safe(str(exc)), err=True)
            missing += 1
            continue
        click.echo(_terminal_safe(f"{view['id']}\t{view['queue']}\t{view['actor']}"))
    if missing:
        sys.exit(1)


def _check_selection(message_ids, every, queue) -> None:
    if bool(message_ids) == every:
        raise click.UsageError("give message IDs or --all")
    if queue and not every:
        raise click.UsageError("--queue goes with --all")


@queues.command("replay")
@click.argument("message_ids", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Every dead letter (of --queue).")
@click.option("--queue", "-q", help="With --all: only this queue.")
@_fail_on_config_error
def queues_replay(message_ids, every, queue):
    """Enqueue dead letters again (retries reset) and remove them from the dead letters."""
    from services import queues as dead

    _check_selection(message_ids, every, queue)
    redis, enqueue = _redis(), _broker_enqueue()
    if every:
        click.echo(f"replayed {dead.replay_all(redis, enqueue, queue)}")
        return
    _each(message_ids, lambda message_id: dead.replay(redis, message_id, enqueue))


@queues.command("drop")
@click.argument("message_ids", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Every dead letter (of --queue).")
@click.option("--queue", "-q", help="With --all: only this queue.")
@_fail_on_config_error
def queues_drop(message_ids, every, queue):
    """Forget dead letters for good."""
    from services import queues as dead

    _check_selection(message_ids, every, queue)
    redis = _redis()
    if every:
        click.echo(f"dropped {dead.drop_all(redis, queue)}")
        return
    _each(message_ids, lambda message_id: dead.drop(redis, message_id))
