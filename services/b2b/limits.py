"""Per-minute rate limits and calendar-month quotas in Redis: one atomic script per request.

The script (``ADMIT``) runs in Redis as one step, so requests racing at the edge of a limit
from any number of web processes see each other's counts: exactly the allowed number pass.
It does, in order:

1. checks the client's version (``b2b:ver:<id>``) against the one the caller cached its
   client row with; a different one answers ``stale`` without counting (the caller reloads
   the row from PostgreSQL and runs again). Every change to a client (revoke, rotate, new
   plan) bumps the version after its commit, so a revoked key stops at the next request in
   every process, and the per-process cache needs no pub/sub;
2. reads the month's call counter (``b2b:quota:<id>:<YYYYMM>``, UTC); when it is missing
   (first call of the month, or Redis lost it) it answers ``seed``: the caller counts the
   month's calls in ``api_usage`` (``seed_quota``) and runs again;
3. applies the per-minute limit as GCRA (generic cell rate algorithm, one timestamp per
   client: the "theoretical arrival time"); a limit of L per minute lets a burst of L through
   from rest, then one call every 60/L seconds;
4. counts the call against the month only when it passes both.

A caller may ask for ``extra`` calls on top (a *lease*, ``access.Gate``): they are admitted in
the same step, as if that many more requests had arrived at the same instant, but only up to a
quarter of what the minute and the month still allow after the call itself, so a lease never
takes a client to its edge: near a limit every call is one script, and exact. The answer says
how many calls were ``granted`` (1 + extras). Leased calls not used in time are given back to
the month (``refund``), not to the minute (giving them back there could let more than the limit
through), so an unused lease can only make a refusal come early, never late.

Before all that it appends the usage entries the caller hands it (calls this process
finished since its last script, ``access.Gate``) to the usage buffer: the usage log rides
on the limiter's round trip instead of costing one of its own.

With ``consume`` 0 it only reads (for the headers of a 403). Time is Redis's clock
(``TIME``), the same for every web process, in microseconds since 2026-01-01 so that doubles
keep sub-nanosecond precision (the accumulated rounding of a burst stays far below the
half-interval slack that decides the edge, up to ``tiers.MAX_RATE``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from redis.exceptions import ConnectionError, NoScriptError, TimeoutError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import ApiUsage

WINDOW_SECONDS = 60
USAGE_BUFFER = "b2b:usage:buffer"  # usage.BUFFER (usage.py imports this module)
#: Calls answered 403 (outside the plan) or 429 (over a limit) did not count against the quota.
UNCOUNTED_STATUSES = (403, 429)

ADMIT = """
if #ARGV > 6 then redis.call('RPUSH', KEYS[4], unpack(ARGV, 7)) end
local expected = ARGV[1]
if expected ~= '' then
  local version = redis.call('GET', KEYS[1]) or '0'
  if version ~= expected then return {'stale', version} end
end
local quota = tonumber(ARGV[3])
local used = 0
if quota >= 0 then
  local raw = redis.call('GET', KEYS[3])
  if not raw then return {'seed'} end
  used = tonumber(raw)
end
local clock = redis.call('TIME')
local now = (tonumber(clock[1]) - 1767225600) * 1000000 + tonumber(clock[2])
local limit = tonumber(ARGV[2])
local window = tonumber(ARGV[5]) * 1000000
local interval = window / limit
local slack = interval / 2
local tat = tonumber(redis.call('GET', KEYS[2]) or '0')
if tat < now then tat = now end
local status = 'ok'
local granted = 0
if ARGV[4] == '1' then
  if quota >= 0 and used >= quota then
    status = 'quota'
  elseif tat + interval - now > window + slack then
    status = 'rate'
  else
    granted = 1
    local extra = tonumber(ARGV[6])
    if extra > 0 then
      local fit = math.floor((window + slack - (tat - now)) / interval)
      if quota >= 0 and quota - used < fit then fit = quota - used end
      granted = 1 + math.max(0, math.min(extra, math.floor((fit - 1) / 4)))
    end
    tat = tat + granted * interval
    redis.call('SET', KEYS[2], string.format('%.17g', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
    if quota >= 0 then used = redis.call('INCRBY', KEYS[3], granted) end
  end
end
local remaining = math.floor((window + slack - (tat - now)) / interval)
if remaining < 0 then remaining = 0 end
local retry = 0
if remaining == 0 then retry = math.ceil((tat + interval - window - slack - now) / 1000000) end
if retry < 1 and status == 'rate' then retry = 1 end
return {status, remaining, math.ceil((tat - now) / 1000000), retry, used, granted}
"""
#: Leased calls not used, given back to the month they were counted in (never below zero, and
#: never creating a counter Redis lost: ``seed_quota`` rebuilds that one from ``api_usage``).
REFUND = """
local used = tonumber(redis.call('GET', KEYS[1]) or '-1')
if used < 0 then return 0 end
local back = math.min(used, tonumber(ARGV[1]))
if back > 0 then redis.call('DECRBY', KEYS[1], back) end
return back
"""


@dataclass(frozen=True)
class Verdict:
    """The limiter's answer. ``status``: ok | rate | quota | stale | seed."""

    status: str
    limit: int = 0
    remaining: int = 0
    reset_seconds: int = 0
    retry_after: int = 0
    quota: int | None = None
    quota_used: int = 0
    quota_reset_seconds: int = 0
    version: str | None = None
    granted: int = 0  # calls admitted by this answer: 1 + the lease's extras (0 when refused)

    @property
    def quota_remaining(self) -> int | None:
        return None if self.quota is None else max(0, self.quota - self.quota_used)


def month_key(now: datetime) -> str:
    return now.strftime("%Y%m")


def month_start(now: datetime) -> datetime:
    return now.astimezone(timezone.utc).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month_start(now: datetime) -> datetime:
    start = month_start(now)
    return start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)


def version_key(client_id: int) -> str:
    return f"b2b:ver:{client_id}"


def rate_key(client_id: int) -> str:
    return f"b2b:rl:{client_id}"


def quota_key(client_id: int, now: datetime) -> str:
    return f"b2b:quota:{client_id}:{month_key(now)}"


class _Month:
    """The current UTC month's counter suffix and end, recomputed only when a month ends."""

    def __init__(self):
        self.suffix, self.ends = "", 0.0

    def at(self, now: float) -> tuple[str, float]:
        if now >= self.ends:
            moment = datetime.fromtimestamp(now, timezone.utc)
            self.suffix, self.ends = month_key(moment), next_month_start(moment).timestamp()
        return self.suffix, self.ends


class Limiter:
    """The admit script, one round trip per request.

    It is sent on a pooled connection directly (``EVALSHA``, loaded again if Redis forgot it):
    redis-py's generic command path (retry wrapper, option handling) costs a third of the
    call's CPU time, and a failed call here is not retried anyway (the request gets a 503).
    """

    def __init__(self, redis):
        self.redis = redis
        self.script = redis.register_script(ADMIT)
        self._month = _Month()

    def admit(self, client_id: int, version: str | None, rate_limit_per_min: int, monthly_quota: int | None,
              consume: bool = True, usage_entries: list[bytes] = (), extra: int = 0) -> Verdict:
        """One call (plus up to ``extra`` leased ones, see the module's docstring)."""
        now = time.time()
        suffix, month_ends = self._month.at(now)
        answer = self._call(
            version_key(client_id), rate_key(client_id), f"b2b:quota:{client_id}:{suffix}", USAGE_BUFFER,
            "" if version is None else version, rate_limit_per_min, -1 if monthly_quota is None else monthly_quota,
            1 if consume else 0, WINDOW_SECONDS, extra, *usage_entries)
        return self._verdict(answer, rate_limit_per_min, monthly_quota, math.ceil(month_ends - now))

    def month_counter(self, client_id: int) -> str:
        """The key of the client's counter for this month (as ``admit`` counts in it)."""
        return f"b2b:quota:{client_id}:{self._month.at(time.time())[0]}"

    def refund(self, counter: str, calls: int) -> int:
        """Give ``calls`` leased and unused back to a month's counter; how many were."""
        return int(self.redis.eval(REFUND, 1, counter, calls)) if calls > 0 else 0

    def limit_key(self, key: str, per_minute: int) -> Verdict:
        """The same GCRA on any key, without version or quota (failed authentications per IP)."""
        now = time.time()
        answer = self._call("", key, "", USAGE_BUFFER, "", per_minute, -1, 1, WINDOW_SECONDS, 0)
        return self._verdict(answer, per_minute, None, math.ceil(self._month.at(now)[1] - now))

    def _call(self, *keys_then_args):
        pool = self.redis.connection_pool
        connection = pool.get_connection()
        try:
            for attempt in (1, 2):
                connection.send_command("EVALSHA", self.script.sha, 4, *keys_then_args)
                try:
                    return connection.read_response()
                except NoScriptError:  # Redis restarted or flushed its scripts
                    if attempt == 2:
                        raise
                    connection.send_command("SCRIPT", "LOAD", ADMIT)
                    connection.read_response()
        except (ConnectionError, TimeoutError):
            connection.disconnect()
            raise
        finally:
            pool.release(connection)

    @staticmethod
    def _verdict(answer, limit: int, quota: int | None, quota_reset: int) -> Verdict:
        status = answer[0].decode() if isinstance(answer[0], bytes) else answer[0]
        if status == "stale":
            return Verdict("stale", version=answer[1].decode() if isinstance(answer[1], bytes) else str(answer[1]))
        if status == "seed":
            return Verdict("seed")
        remaining, reset, retry, used, granted = answer[1:6]
        if status == "quota":
            retry = quota_reset
        return Verdict(status, limit, remaining, reset, retry, quota, used, quota_reset, granted=granted)


def seed_quota(redis, session: Session, client_id: int, now: datetime | None = None) -> int:
    """Start the month's counter from ``api_usage`` (calls that counted), unless it exists."""
    now = now or datetime.now(timezone.utc)
    used = session.scalar(select(func.count()).select_from(ApiUsage).where(
        ApiUsage.client_id == client_id, ApiUsage.called_at >= month_start(now),
        ApiUsage.called_at < next_month_start(now), ApiUsage.status_code.not_in(UNCOUNTED_STATUSES))) or 0
    ttl = math.ceil((next_month_start(now) - now).total_seconds()) + 35 * 86400  # readable next month
    redis.set(quota_key(client_id, now), used, nx=True, ex=ttl)
    return int(redis.get(quota_key(client_id, now)) or used)


def quota_used(redis, client_id: int, now: datetime | None = None) -> int | None:
    """This month's counted calls, as the limiter sees them (None before the first call)."""
    value = redis.get(quota_key(client_id, now or datetime.now(timezone.utc)))
    return None if value is None else int(value)


def changes_channel(redis) -> str:
    """Where ``invalidate`` announces a change (per Redis database: deployments sharing a server
    do not hear each other)."""
    return f"b2b:changed:{redis.connection_pool.connection_kwargs.get('db', 0)}"


def invalidate(redis, client_id: int) -> None:
    """Tell every web process that the client changed (call after the commit): the version the
    limiter script compares, and a message to the processes' listeners (``access.Changes``),
    which drop the client's leased calls before their next request."""
    pipe = redis.pipeline(transaction=True)
    pipe.incr(version_key(client_id))
    pipe.publish(changes_channel(redis), str(client_id))
    pipe.execute()


def current_version(redis, client_id: int) -> str:
    value = redis.get(version_key(client_id))
    return value.decode() if value is not None else "0"
