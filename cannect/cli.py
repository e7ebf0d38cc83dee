"""``cannect``: one command line for every process and admin action.

Processes (``listen``, ``worker``, ``scheduler``, ``web``, ``replay``) run in the foreground
and stop cleanly on SIGTERM; admin actions (``migrate``, ``members``, ``identity``, ``status``,
``deadletters``) exit; ``notifications tail`` follows members' live notifications.
Configuration comes from the environment (see ``cannect/config.py``).
"""

from __future__ import annotations

import functools
import os
import sys

import click
import orjson

from .config import ConfigError, DatabaseSettings, get_settings, load_settings


def _fail_on_config_error(func):
    """Print a bad environment variable's message and exit 2, without a traceback."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            click.echo(str(exc), err=True)
            sys.exit(2)
    return wrapper


def _terminal_safe(text: str) -> str:
    """Escape control characters (as JSON ``\\u`` escapes) in text from the network, so that
    printing it cannot drive the operator's terminal. Valid JSON stays valid and equal."""
    return "".join(ch if ch.isprintable() or ch in "\n\t" else _u_escape(ord(ch)) for ch in text)


def _u_escape(code: int) -> str:
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """Cannect backend: Jetstream ingest, Dramatiq workers, Flask API."""


@main.command()
@click.option("--revision", default="head", show_default=True, help="Alembic revision to upgrade to.")
@_fail_on_config_error
def migrate(revision):
    """Upgrade the database schema (Alembic)."""
    from alembic import command

    from migrations import alembic_config

    command.upgrade(alembic_config(load_settings(DatabaseSettings).sqlalchemy_url), revision)
    click.echo(f"database at {revision}")


@main.command()
@_fail_on_config_error
def listen():
    """Follow JETSTREAM_URL and feed the ingest queue."""
    import redis

    from services.db import session_scope
    from services.ingest import read_state
    from tasks.ingest import apply_batch
    from tasks.listener import Listener

    def resume_from_db():
        with session_scope() as session:
            state = read_state(session)
            return (state.conn, state.seq, state.applied_time_us) if state and state.conn else None

    settings = get_settings()
    listener = Listener(settings, redis.Redis.from_url(settings.redis_url), apply_batch.send, resume_from_db)
    listener.install_signal_handlers()
    listener.run()


@main.command(context_settings={"ignore_unknown_options": True})
@click.option("--queues", "-Q", multiple=True, help="Queues to consume (repeatable; default: all).")
@click.option("--processes", "-p", type=int, default=1, show_default=True)
@click.option("--threads", "-t", type=int, default=4, show_default=True)
@click.argument("dramatiq_args", nargs=-1, type=click.UNPROCESSED)
@_fail_on_config_error
def worker(queues, processes, threads, dramatiq_args):
    """Run Dramatiq workers (``dramatiq tasks --queues ...``)."""
    get_settings()  # validate before forking workers
    # An idle consumer polls its queue with a backoff of up to this many ms (Dramatiq's default
    # is 1000). Each hop of a notification (ingest, notify, push) can wait that long, so keep it
    # short: polling an empty Redis queue ten times a second costs nothing noticeable.
    os.environ.setdefault("dramatiq_worker_timeout", "100")
    queue_args = [q for arg in queues for q in arg.replace(",", " ").split()]
    argv = [sys.executable, "-m", "dramatiq", "tasks", "--processes", str(processes), "--threads", str(threads)]
    if queue_args:
        argv += ["--queues", *queue_args]
    os.execv(sys.executable, argv + list(dramatiq_args))


@main.command()
@_fail_on_config_error
def scheduler():
    """Enqueue periodic work (exactly one per deployment)."""
    from tasks.scheduler import run

    run()


@main.command()
@click.option("--file", "path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--port", type=int, required=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--speed", type=float, default=0.0, show_default=True,
              help="Multiple of real time; 0 = as fast as the client reads.")
def replay(path, port, host, speed):
    """Serve a capture file as a Jetstream v1 /subscribe WebSocket."""
    if speed < 0:
        raise click.BadParameter("must be >= 0", param_hint="--speed")
    from .replay import main as serve

    serve(path, host, port, speed)


@main.command("generate-capture")
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@click.option("--events", type=click.IntRange(min=1), required=True)
@click.option("--seed", type=int, default=0, show_default=True)
def generate_capture(out, events, seed):
    """Write a synthetic capture of a cannabis community (and OUT.meta.json)."""
    from .capture import generate_capture as generate

    meta = generate(out, events, seed=seed, progress=sys.stderr.isatty())
    click.echo(f"wrote {meta['events']} events to {out} ({len(meta['members'])} members in {out}.meta.json)")


@main.group()
def members():
    """Register Cannect members."""


@members.command("add")
@click.argument("did")
@click.option("--handle")
@_fail_on_config_error
def members_add(did, handle):
    """Register DID as a member: from now on their posts (and those of whom they follow) are indexed."""
    from services.db import session_scope
    from services.members import NEW_BACKFILL_JOBS, InvalidMember, add_member

    try:
        with session_scope() as session:
            profile = add_member(session, did, handle)
            jobs = session.info.get(NEW_BACKFILL_JOBS, [])
            click.echo(f"member {profile.did} ({profile.handle or 'no handle'})")
    except InvalidMember as exc:
        raise click.BadParameter(str(exc)) from None
    _announce_profile_change(profile.did)
    if jobs:  # after the commit: their follows and recent posts (queue backfill)
        from tasks.backfill import start_jobs

        start_jobs(jobs)
        click.echo(f"backfill job {', '.join(map(str, jobs))} queued")


@members.command("remove")
@click.argument("did")
@_fail_on_config_error
def members_remove(did):
    """Stop treating DID as a member (what is indexed stays)."""
    from services.db import session_scope
    from services.members import remove_member

    with session_scope() as session:
        click.echo("removed" if remove_member(session, did) else "not a member")
    _announce_profile_change(did)


def _announce_profile_change(did: str) -> None:
    """After the commit: the web processes' read caches drop the profile (services/read_cache.py)."""
    import redis

    from cannect.config import get_settings
    from services.realtime import read_changed_event, try_publish

    try_publish(redis.Redis.from_url(get_settings().redis_url), read_changed_event(profiles=[did]))


@members.command("list")
@_fail_on_config_error
def members_list():
    from services.db import session_scope
    from services.members import list_members

    with session_scope() as session:
        for profile in list_members(session):
            click.echo(f"{profile.did}\t{profile.handle or ''}\t{profile.member_since:%Y-%m-%d %H:%M}")


@members.command("import")
@click.argument("meta", type=click.Path(exists=True, dir_okay=False))
@_fail_on_config_error
def members_import(meta):
    """Register the members listed in a capture's .meta.json."""
    from services.db import session_scope
    from services.members import add_member

    listed = orjson.loads(open(meta, "rb").read())["members"]
    with session_scope() as session:
        for member in listed:
            add_member(session, member["did"], member.get("handle"))
    click.echo(f"{len(listed)} members registered")


@main.group()
def notifications():
    """Members' notifications."""


@notifications.command("tail")
@click.argument("did", required=False)
@click.option("--from-start", is_flag=True, help="Begin with the oldest event the live stream keeps.")
@click.option("--count", type=click.IntRange(min=1), help="Stop after this many notifications.")
@_fail_on_config_error
def notifications_tail(did, from_start, count):
    """Print notifications as they go live (those of DID, or of every member), one JSON line each.

    Reads the realtime stream the web processes deliver to members' sockets, so what it shows
    is what a signed-in member's WebSocket receives. Ctrl-C to stop.
    """
    import redis as redis_lib

    from services import realtime

    client = redis_lib.Redis.from_url(get_settings().redis_url)
    after = (0, 0) if from_start else realtime.last_id(client)
    key = realtime.did_key(did) if did else None
    while True:
        for delivery in realtime.read_new(client, after, block_ms=5_000, count=500):
            after = delivery.id
            if delivery.type == "notification" and (key is None or delivery.key == key):
                click.echo(_terminal_safe(delivery.text))
                count = None if count is None else count - 1
                if count == 0:
                    return


@main.group()
def identity():
    """Handle verification: a DID's handle counts only when it resolves back to the DID."""


@identity.command("resolve")
@click.argument("actor")
@_fail_on_config_error
def identity_resolve(actor):
    """Resolve ACTOR (a DID, or a handle's DID) now, skipping caches; store the verdict if known.

    Prints the DID, its verified handle (or -) and why. Exits 1 when a resolver is unreachable
    or the handle names no DID.
    """
    import redis

    from services.db import session_scope
    from services.identity import IdentityResolver, Unreachable, resolve_and_store
    from services.realtime import try_publish

    settings = get_settings()
    client = redis.Redis.from_url(settings.redis_url)
    resolver = IdentityResolver(settings, client)
    try:
        did = actor if actor.startswith("did:") else resolver.handle_did(actor, fresh=True)
        if did is None:
            click.echo(_terminal_safe(f"{actor} names no DID"), err=True)
            sys.exit(1)
        outcome = resolve_and_store(session_scope, resolver, did, fresh=True, avatar_cdn=settings.avatar_cdn)
        verdict = outcome.verdict or resolver.verify(did, fresh=True)
    except Unreachable as exc:
        click.echo(_terminal_safe(f"unreachable: {exc}"), err=True)
        sys.exit(1)
    finally:
        resolver.close()
    try_publish(client, outcome.events)
    stored = "stored" if outcome.verdict else "not stored (no profile)"
    click.echo(_terminal_safe(f"{did}\t{verdict.handle or '-'}\t{verdict.reason}\t{stored}"))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--check", "max_silence", type=float, metavar="SECONDS",
              help="Exit 1 if the listener has not reported for this long (a health check).")
@_fail_on_config_error
def status(as_json, max_silence):
    """Listener cursor and lag, event counters, queue depths, ingest progress."""
    import time

    import redis

    from services.db import session_scope
    from services.status import gather

    settings = get_settings()
    with session_scope() as session:
        report = gather(redis.Redis.from_url(settings.redis_url), session,
                        heartbeat_timeout_ms=settings.worker_heartbeat_timeout_ms)
    if as_json:
        click.echo(_terminal_safe(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode()))
    if max_silence is not None:
        saved_at = report["listener_saved_at"]
        if saved_at is None or time.time() - saved_at > max_silence:
            click.echo(f"listener silent for more than {max_silence:g}s", err=True)
            sys.exit(1)
    if as_json:
        return
    lag = f"{report['lag_seconds']:.1f}s behind" if report["lag_seconds"] is not None else "no cursor yet"
    events = report["events"]
    click.echo(f"listener cursor  {report['cursor']} ({lag})")
    click.echo(f"events           seen {events['seen']:,}  kept {events['kept']:,}  "
               f"rejected {events['rejected']:,}  ignored {events['ignored']:,}")
    ingest = report["ingest"]
    click.echo(f"ingest applied   {ingest['events_applied']:,} events in {ingest['batches_applied']:,} batches "
               f"({ingest['duplicates_skipped']:,} duplicates skipped, {ingest['batches_waiting']} waiting, "
               f"{ingest['gaps_accepted']} gaps)")
    letters = report["ingest_dead_letters"]
    click.echo(f"dead-lettered    {letters['held']:,} events held ({letters['total']:,} ever)"
               + (" - cannect deadletters list" if letters["held"] else ""))
    for letter in letters["latest"]:
        click.echo(_terminal_safe(f"  {letter['id']:>6}  {_label(letter)}: {letter['reason']}"))
    _echo_classification(report["classification"])
    runs = report.get("intelligence") or {}  # last run (UTC) of each aggregate, view and trend job
    click.echo("intelligence     " + ("  ".join(f"{job} {run['finished_at'][:19]}Z" for job, run in runs.items())
                                      or "no aggregate computed yet"))
    for name, depth in report["queues"].items():
        dead = report["dead_letters"][name]
        click.echo(f"queue {name:<10} {depth:,} pending" + (f", {dead:,} dead letters" if dead else ""))
    workers = report["workers"]
    click.echo(f"workers          {workers['alive']} alive, {workers['dead']} dead (Dramatiq heartbeats)")
    click.echo("backfills        " + (f"{len(report['backfills'])} open" if report["backfills"] else "none open"))
    for job in report["backfills"]:
        rate = f"{job['rate_per_second']:g}/s" if job["rate_per_second"] is not None else "no rate yet"
        eta = f", ETA {job['eta_seconds']:g}s" if job["eta_seconds"] is not None else ""
        click.echo(_terminal_safe(f"  {job['id']:>6}  {job['kind']} {job['subject'] or '-'} {job['status']} "
                                  f"{job['done']:,}/{job['total'] if job['total'] is not None else '?'} ({rate}{eta})"))
    push, latency = report["push"], report["push"]["latency_seconds"]
    click.echo(f"push             sent {push['sent']:,}  failed {push['failed']:,}  removed {push['removed']:,}  "
               f"retried {push['retried']:,}  skipped {push['skipped']:,}"
               + (f"  (latency mean {latency['mean']:.2f}s, p95 <= {latency['p95_le']:g}s)"
                  if latency["mean"] is not None else ""))


def _echo_classification(figures: dict) -> None:
    llm = figures["llm"]
    per_1000 = llm["cost_per_1000_posts_usd_24h"]
    click.echo(f"classified       {figures['classified']:,} posts (version {figures['version']}), "
               f"{figures['unprocessed']:,} unprocessed, {figures['failed_retrying']:,} failed (to retry), "
               f"{figures['failed']:,} failed, {figures['outdated']:,} at an older version")
    click.echo(f"llm spend        ${llm['spend_today_usd']:.4f} today, "
               + (f"${per_1000:.4f} per 1,000 posts (24 h)" if per_1000 is not None else "no LLM answers in 24 h"))


def _label(letter: dict) -> str:
    """did/collection/rkey at time_us, as logs name an event."""
    where = "/".join(part or "?" for part in (letter["did"], letter["collection"]))
    return where + (f"/{letter['rkey']}" if letter["rkey"] else "") + f" at {letter['time_us'] or '?'}"


@main.group()
def deadletters():
    """Events left out of their batch because applying them failed on their own data."""


@deadletters.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Newest first.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_fail_on_config_error
def deadletters_list(limit, as_json):
    """ID, time, batch, event (did/collection/rkey at time_us) and reason of each."""
    from services.db import session_scope
    from services.ingest import deadletters as letters

    with session_scope() as session:
        listed = [letters.as_dict(letter) for letter in letters.latest(session, limit)]
    if as_json:
        click.echo(_terminal_safe(orjson.dumps(listed, option=orjson.OPT_INDENT_2).decode()))
        return
    for letter in listed:
        conn, seq = letter["batch"]
        click.echo(_terminal_safe(f"{letter['id']}\t{letter['created_at'][:19]}\t{conn}/{seq}\t{_label(letter)}"
                                  f"\t{letter['reason']}"))


@deadletters.command("show")
@click.argument("letter_id", type=int)
@_fail_on_config_error
def deadletters_show(letter_id):
    """The dead letter as JSON, with the whole event."""
    from services.db import session_scope
    from services.ingest import deadletters as letters

    with session_scope() as session:
        letter = letters.get(session, letter_id)
        view = letters.as_dict(letter, with_event=True) if letter else None
    if view is None:
        click.echo(f"no dead letter {letter_id}", err=True)
        sys.exit(1)
    click.echo(_terminal_safe(orjson.dumps(view, option=orjson.OPT_INDENT_2).decode()))


@deadletters.command("drop")
@click.argument("letter_ids", type=int, nargs=-1)
@click.option("--all", "drop_all", is_flag=True, help="Drop every dead letter.")
@_fail_on_config_error
def deadletters_drop(letter_ids, drop_all):
    """Forget the given dead letters (or --all)."""
    from services.db import session_scope
    from services.ingest import deadletters as letters

    if bool(letter_ids) == drop_all:
        raise click.UsageError("give dead letter IDs or --all")
    with session_scope() as session:
        dropped = letters.drop(session, None if drop_all else list(letter_ids))
    click.echo(f"dropped {dropped}")


@main.group()
def vapid():
    """Web push (VAPID) keys."""


@vapid.command("generate")
def vapid_generate():
    """Print a new VAPID key pair as VAPID_PUBLIC_KEY / VAPID_PRIVATE_KEY lines for .env.

    Changing the keys invalidates every existing push subscription: browsers subscribed with
    the old public key must subscribe again.
    """
    from services.push.keys import generate_vapid_keys

    public, private = generate_vapid_keys()
    click.echo(f"VAPID_PUBLIC_KEY={public}")
    click.echo(f"VAPID_PRIVATE_KEY={private}")


@main.command()
@click.option("--port", type=int, help="Default: $PORT or 3000.")
def web(port):
    """Serve the HTTP API with gunicorn."""
    if port:
        os.environ["PORT"] = str(port)
    os.execvp(sys.executable, [sys.executable, "-m", "gunicorn", "--config", "python:cannect.gunicorn_conf",
                               "app:create_app()"])


@main.command()
@click.option("--capture", type=click.Path(dir_okay=False), help="Capture to replay (default: a generated one).")
@click.option("--events", type=int, default=100_000, show_default=True, help="Size of the generated capture.")
@click.option("--speed", type=float, default=20.0, show_default=True, help="Replay speed (0 = as fast as possible).")
@click.option("--port", type=int, default=3000, show_default=True, help="Web port.")
def run(capture, events, speed, port):
    """The whole system on this machine: services, replay, listener, workers, web."""
    from .runall import run_all

    run_all(capture, events, speed, port)


from .cli_classify import classify as _classify  # noqa: E402
from .cli_backfill import backfill as _backfill  # noqa: E402  (cannect backfill start|list|show|cancel|resume)

main.add_command(_classify)
main.add_command(_backfill)
main.add_command(__import__("cannect.cli_clients", fromlist=["clients"]).clients)  # cannect clients ...
main.add_command(__import__("cannect.cli_queues", fromlist=["queues"]).queues)  # cannect queues ...
main.add_command(__import__("cannect.cli_reports", fromlist=["reports"]).reports)  # cannect reports ...

if __name__ == "__main__":
    main()
