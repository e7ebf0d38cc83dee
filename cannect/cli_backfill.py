"""``cannect backfill``: admin jobs over stored data, in resumable chunks (services/backfill/admin.py).

``start KIND --param key=value ...`` creates the job, commits it, sends its first chunk to the
``backfill`` queue and follows it with a progress bar until it ends; Ctrl-C (or ``--detach``)
leaves it running. ``list``, ``show``, ``cancel`` and ``resume`` act on jobs by id. A job
whose first message could not be sent stays ``queued``: ``resume`` starts it.
``reclassify`` is the older direct form (no job row), kept for scripts.
"""

from __future__ import annotations

import getpass
import sys
import time
from datetime import datetime

import click
import orjson

from .cli_queues import _fail_on_config_error, _terminal_safe  # cli.py's, looked up late (cli.py imports us)
from .config import ConfigError, load_settings

#: Seconds between two looks at a followed job.
FOLLOW_EVERY = 0.5


@click.group("backfill")
def backfill():
    """Admin jobs over stored data: start, list, show, cancel, resume (queue backfill)."""


def _parse_params(pairs: tuple[str, ...]) -> dict:
    """``key=value`` pairs; a value that reads as JSON (3, true, null, [..]) is that, else a string."""
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r} is not key=value", param_hint="--param")
        try:
            params[key.strip()] = orjson.loads(value)
        except orjson.JSONDecodeError:
            params[key.strip()] = value
    return params


def _line(job: dict) -> str:
    total = f"{job['total']:,}" if job["total"] is not None else "?"
    rate = f"{job['ratePerSecond']:g}/s" if job["ratePerSecond"] is not None else "-"
    eta = f"ETA {job['etaSeconds']:g}s" if job["etaSeconds"] is not None else ""
    return _terminal_safe(f"{job['jobId']}\t{job['kind']}\t{job['status']}\t{job['done']:,}/{total} "
                          f"{job['unit'] or ''}\t{rate}\t{eta}\t{job['error'] or ''}".rstrip())


def _show(job_id: int) -> dict:
    from services.backfill import admin
    from services.db import session_scope

    with session_scope() as session:
        return admin.show(session, job_id)


def _act(work):
    """Run ``work(session)`` in a transaction; unknown ids and wrong states exit 1 with the reason."""
    from services.backfill import admin
    from services.db import session_scope

    try:
        with session_scope() as session:
            return work(session, admin)
    except (admin.JobNotFound, admin.Conflict) as exc:
        click.echo(_terminal_safe(str(exc)), err=True)
        sys.exit(1)


def _send(job_id: int, chunk: int) -> None:
    from tasks.backfill import send_admin_chunk  # the broker lives with the actors

    if not send_admin_chunk(job_id, chunk):
        click.echo(f"job {job_id} saved but not sent (Redis?): cannect backfill resume {job_id}", err=True)
        sys.exit(1)


def _follow(job_id: int) -> dict:
    """A progress bar until the job ends; Ctrl-C detaches (the job keeps running)."""
    from tqdm import tqdm

    job = _show(job_id)
    with tqdm(total=job["total"], unit=f" {job['unit'] or 'unit'}", disable=None, file=sys.stderr,
              desc=f"job {job_id} {job['kind']}") as bar:
        try:
            while True:
                if job["total"] != bar.total:
                    bar.total = job["total"]
                bar.update(job["done"] - bar.n)
                if job["status"] not in ("queued", "running"):
                    return job
                time.sleep(FOLLOW_EVERY)
                job = _show(job_id)
        except KeyboardInterrupt:
            bar.close()
            click.echo(f"\ndetached; job {job_id} keeps running: cannect backfill show {job_id}", err=True)
            sys.exit(0)


def _end(job: dict) -> None:
    click.echo(_line(job))
    if job["status"] != "done":
        sys.exit(1)


@backfill.command("start")
@click.argument("kind")
@click.option("--param", "-p", "pairs", multiple=True, metavar="KEY=VALUE",
              help="A param of the kind (repeat); values that read as JSON are JSON.")
@click.option("--detach", is_flag=True, help="Print the job id and return at once.")
@_fail_on_config_error
def start(kind, pairs, detach):
    """Start a job of KIND (reclassify, recompute, ...) and follow its progress.

    \b
    reclassify: below_version, since, until (ISO), limit, mode=queue|inline, chunk_size
    recompute:  what=profiles|aggregates|views|all, since, until (the time series' range)
    """
    from services.backfill.kinds import InvalidParams

    params = _parse_params(pairs)
    try:
        job_id = _act(lambda session, admin: admin.create(session, kind, params, f"cli:{getpass.getuser()}"))
    except InvalidParams as exc:
        click.echo(_terminal_safe(f"invalid job: {exc}"), err=True)
        sys.exit(2)
    _send(job_id, 0)
    click.echo(f"job {job_id} started", err=True)
    if detach:
        click.echo(job_id)
        return
    _end(_follow(job_id))


@backfill.command("list")
@click.option("--status", type=click.Choice(["queued", "running", "done", "failed", "cancelled"]))
@click.option("--kind")
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True, help="Newest first.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_fail_on_config_error
def list_jobs(status, kind, limit, as_json):
    """ID, kind, status, done/total, rate, ETA and error of each admin job."""
    listed, _ = _act(lambda session, admin: admin.list_jobs(session, status, kind, limit))
    if as_json:
        click.echo(_terminal_safe(orjson.dumps(listed, option=orjson.OPT_INDENT_2).decode()))
        return
    for job in listed:
        click.echo(_line(job))


@backfill.command("show")
@click.argument("job_id", type=int)
@click.option("--follow", "-f", is_flag=True, help="Follow with a progress bar until it ends.")
@_fail_on_config_error
def show(job_id, follow):
    """The job as JSON: params, progress, rate, ETA, cursor, report, error."""
    job = _act(lambda session, admin: admin.show(session, job_id))
    if follow:
        _end(_follow(job_id))
        return
    click.echo(_terminal_safe(orjson.dumps(job, option=orjson.OPT_INDENT_2).decode()))


@backfill.command("cancel")
@click.argument("job_id", type=int)
@_fail_on_config_error
def cancel(job_id):
    """Stop the job before its next chunk (a chunk in flight finishes and is counted)."""
    click.echo(_line(_act(lambda session, admin: admin.cancel(session, job_id))))


@backfill.command("resume")
@click.argument("job_id", type=int)
@click.option("--detach", is_flag=True, help="Return at once.")
@_fail_on_config_error
def resume(job_id, detach):
    """Continue a failed job from its cursor, or start a queued one whose first message was lost."""
    chunk, job = _act(lambda session, admin: admin.resume(session, job_id))
    _send(job_id, chunk)
    click.echo(f"job {job_id} resumed at chunk {chunk}", err=True)
    if not detach:
        _end(_follow(job_id))


@backfill.command("reclassify")
@click.option("--since", help="Only posts created at or after this ISO date/time (UTC unless it says).")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many posts.")
@click.option("--version", "below", type=int, help="Only posts below this classification version "
              "(default: the current one).")
@click.option("--inline", is_flag=True, help="Classify here, in this process, instead of queueing.")
def reclassify(since, limit, below, inline):
    """Reclassify posts whose classification_version is below the current one, in chunks (no job
    row; ``start reclassify`` makes a resumable job)."""
    from tqdm import tqdm

    from services.classify import CLASSIFICATION_VERSION, batch_size
    from services.classify.pipeline import count_outdated, outdated_post_ids
    from services.db import session_scope

    since_at = _parse_since(since)
    below = CLASSIFICATION_VERSION if below is None else below
    if not 1 <= below <= CLASSIFICATION_VERSION:
        raise click.BadParameter(f"must be between 1 and the current version {CLASSIFICATION_VERSION}",
                                 param_hint="--version")
    try:
        settings = load_settings()
        with session_scope() as session:
            total = count_outdated(session, below, since_at)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
    total = min(total, limit) if limit else total
    send = _inline_runner(settings) if inline else _queue_sender(settings)
    # A page is one classify call inline; queued, ten messages' worth (request() splits it).
    chunk_size, after_id, done = batch_size(settings) * (1 if inline else 10), 0, 0
    with tqdm(total=total, unit="post", disable=None, file=sys.stderr) as bar:
        while done < total:
            with session_scope() as session:
                ids = outdated_post_ids(session, below, after_id, min(chunk_size, total - done), since_at)
            if not ids:
                break
            send(ids)
            after_id, done = ids[-1], done + len(ids)
            bar.update(len(ids))
    click.echo(f"{done:,} posts {'reclassified' if inline else 'queued for reclassification'} "
               f"(below version {below})")


def _parse_since(since: str | None) -> datetime | None:
    from services.backfill.kinds import InvalidParams
    from services.backfill.reclassify import parse_time

    try:
        return parse_time("since", since)
    except InvalidParams as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None


def _inline_runner(settings):
    import redis

    from services.classify import costs, entities, get_classifier, pipeline
    from services.db import session_scope

    classifier = get_classifier(settings, redis.Redis.from_url(settings.redis_url, socket_timeout=5),
                                costs.db_recorder())
    with session_scope() as session:
        entities.seed_from_lexicon(session)
    return lambda ids: pipeline.classify_posts(session_scope, classifier, ids)


def _queue_sender(settings):
    import redis

    from services.backfill.reclassify import QUEUE_CEILING
    from services.status import queue_depths
    from tasks import classify as classify_tasks

    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5)

    def send(ids):
        while queue_depths(client)["classify"]["pending"] > QUEUE_CEILING:
            time.sleep(0.5)
        classify_tasks.request(ids)

    return send
