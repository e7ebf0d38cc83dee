"""``cannect clients``: B2B API clients for operators (the same as ``/api/admin/clients``).

``create`` and ``rotate`` print the key once (it is stored hashed); ``--json`` prints the
client as JSON (with ``apiKey`` for those two). Bad input exits 2 with a message, an unknown
client exits 1.
"""

from __future__ import annotations

import sys

import click
import orjson

from .config import ConfigError, get_settings

TIERS = ("starter", "growth", "enterprise", "custom")


def _fail(message: str, status: int = 2):
    click.echo(f"error: {message}", err=True)
    sys.exit(status)


def _run(work, *, announce: int | None = None):
    """Run ``work(session)`` in one transaction; tell the web processes after the commit."""
    from services.b2b import clients, limits
    from services.db import session_scope

    try:
        with session_scope() as session:
            result = work(session)
    except ConfigError as exc:
        _fail(str(exc))
    except clients.ClientNotFound as exc:
        _fail(str(exc), 1)
    except clients.ClientError as exc:
        _fail(str(exc))
    if announce is not None:
        import redis

        try:
            limits.invalidate(redis.Redis.from_url(get_settings().redis_url, socket_timeout=5), announce)
        except redis.RedisError as exc:
            _fail(f"saved, but Redis is not answering ({exc}): web processes may use the old settings "
                  "for up to 10 seconds", 1)
    return result


def _endpoints(value: str | None) -> list[str] | None:
    return None if value is None else [part.strip() for part in value.split(",") if part.strip()]


def _print(client: dict, key: str | None, as_json: bool) -> None:
    if as_json:
        click.echo(orjson.dumps({**client, **({"apiKey": key} if key else {})}).decode())
        return
    state = "active" if client["active"] else f"revoked {client['revokedAt']}"
    click.echo(f"{client['id']:>5}  {client['name']}  [{client['tier']}]  {state}")
    quota = f"{client['monthlyQuota']:,}" if client["monthlyQuota"] else "unlimited"
    click.echo(f"       {quota} calls/month, {client['rateLimitPerMin']:,}/minute, "
               f"endpoints: {', '.join(client['allowedEndpoints']) or '-'}")
    click.echo(f"       key {client['keyId']}" + (f" (expires {client['keyExpiresAt']})" if client["keyExpiresAt"] else "")
               + (f", previous {client['previousKeyId']} until {client['previousKeyExpiresAt']}"
                  if client["previousKeyId"] else "")
               + f", last used {client['lastUsedAt'] or 'never'}")
    if key:
        click.echo(f"\nAPI key (shown once, store it now):\n{key}")


def _plan_options(func):
    func = click.option("--quota", type=int, help="Calls per month (overrides the tier's).")(func)
    func = click.option("--rate", type=int, help="Calls per minute (overrides the tier's).")(func)
    func = click.option("--endpoints", help="Comma-separated endpoints (overrides the tier's).")(func)
    return func


@click.group()
def clients():
    """B2B API clients: keys, plans, usage."""


@clients.command()
@click.argument("name")
@click.option("--tier", type=click.Choice(TIERS), default="starter", show_default=True)
@_plan_options
@click.option("--expires-in-days", type=float, help="The key stops working after this many days.")
@click.option("--json", "as_json", is_flag=True)
def create(name, tier, quota, rate, endpoints, expires_in_days, as_json):
    """Create a client and print its key (once)."""
    from services.b2b import clients as service

    client, key = _run(lambda s: service.create(s, name, tier, quota, rate, _endpoints(endpoints), expires_in_days))
    _print(client, key, as_json)


@clients.command(name="list")
@click.option("--active", is_flag=True, help="Leave out revoked clients.")
@click.option("--json", "as_json", is_flag=True)
def list_(active, as_json):
    """Every client."""
    from services.b2b import clients as service

    found = _run(lambda s: service.list_clients(s, include_revoked=not active))
    if as_json:
        click.echo(orjson.dumps(found).decode())
    for client in [] if as_json else found:
        _print(client, None, False)


@clients.command()
@click.argument("client_id", type=int)
@click.option("--json", "as_json", is_flag=True)
def show(client_id, as_json):
    """One client, with this month's usage."""
    import redis

    from services.b2b import clients as service, usage

    def work(session):
        client = service.show(session, client_id)
        report = usage.report(session, redis.Redis.from_url(get_settings().redis_url, socket_timeout=5),
                              client_id, client["monthlyQuota"], client["rateLimitPerMin"])
        return client, report

    client, report = _run(work)
    if as_json:
        click.echo(orjson.dumps({**client, "usage": report}).decode())
        return
    _print(client, None, False)
    quota = report["quota"]
    click.echo(f"       this month: {quota['used']:,} calls counted"
               + (f", {quota['remaining']:,} left" if quota["remaining"] is not None else ""))


@clients.command()
@click.argument("client_id", type=int)
@click.option("--overlap", type=int, help="Seconds the current key keeps working (default B2B_KEY_OVERLAP_SECONDS; 0: stops now).")
@click.option("--expires-in-days", type=float, help="The new key stops working after this many days.")
@click.option("--json", "as_json", is_flag=True)
def rotate(client_id, overlap, expires_in_days, as_json):
    """A new key; the current one keeps working for the overlap."""
    from services.b2b import clients as service

    overlap = get_settings().b2b_key_overlap_seconds if overlap is None else overlap
    client, key = _run(lambda s: service.rotate(s, client_id, overlap, expires_in_days), announce=client_id)
    _print(client, key, as_json)


@clients.command()
@click.argument("client_id", type=int)
@click.option("--json", "as_json", is_flag=True)
def revoke(client_id, as_json):
    """Switch a client off: its keys are refused from the next request on."""
    from services.b2b import clients as service

    _print(_run(lambda s: service.revoke(s, client_id), announce=client_id), None, as_json)


@clients.command(name="set-tier")
@click.argument("client_id", type=int)
@click.argument("tier", type=click.Choice(TIERS))
@_plan_options
@click.option("--json", "as_json", is_flag=True)
def set_tier(client_id, tier, quota, rate, endpoints, as_json):
    """Move a client to a tier (its defaults, with the overrides given)."""
    from services.b2b import clients as service

    client = _run(lambda s: service.set_tier(s, client_id, tier, quota, rate, _endpoints(endpoints)),
                  announce=client_id)
    _print(client, None, as_json)


@clients.command(name="set-report")
@click.argument("client_id", type=int)
@click.option("--email", "emails", multiple=True,
              help="Where reports go (repeat or comma-separate; replaces the list; 'none' clears it).")
@click.option("--frequency", type=click.Choice(["daily", "weekly", "off"]), help="How often the report is sent.")
@click.option("--json", "as_json", is_flag=True)
def set_report(client_id, emails, frequency, as_json):
    """A client's scheduled email report: addresses and daily, weekly or off."""
    from services.reports.delivery import ReportError
    from services.reports.subscriptions import set_report as service

    if not emails and frequency is None:
        _fail("give --email and/or --frequency")
    addresses = None if not emails else [a.strip() for e in emails for a in e.split(",")
                                         if a.strip() and a.strip().lower() != "none"]
    try:
        found = _run(lambda s: service(s, client_id, addresses, frequency))
    except ReportError as exc:
        _fail(str(exc))
    if as_json:
        click.echo(orjson.dumps(found).decode())
        return
    click.echo(f"{found['clientId']:>5}  {found['name']}: {found['frequency']} report"
               f" to {', '.join(found['emails']) or 'nobody'}")
