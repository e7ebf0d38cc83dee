"""The periods reports cover: UTC days, and ISO weeks from Monday 00:00 UTC.

A daily report of day D is due at D+1 ``REPORTS_HOUR_UTC``:00; a weekly report of the week
starting Monday M at M+7 (the next Monday) at that hour. The scheduler asks for the latest
period due (:func:`latest_due`): one period per frequency, the same on every run until the
next one falls due, which is what makes its job idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

FREQUENCIES = ("daily", "weekly")
#: CLI names of the periods.
PERIOD_NAMES = {"day": "daily", "week": "weekly"}


@dataclass(frozen=True)
class Period:
    frequency: str
    start: datetime
    end: datetime

    @property
    def label(self) -> str:
        first, last = self.start.date(), (self.end - timedelta(days=1)).date()
        if first == last:
            return first.strftime("%a %d %b %Y")
        return f"{first:%d %b} - {last:%d %b %Y}"

    @property
    def days(self) -> int:
        return (self.end - self.start).days


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), timezone.utc)


def containing(frequency: str, day: date) -> Period:
    """The day itself, or the Monday-to-Sunday week that contains it."""
    if frequency == "daily":
        return Period("daily", _midnight(day), _midnight(day + timedelta(days=1)))
    if frequency == "weekly":
        monday = day - timedelta(days=day.weekday())
        return Period("weekly", _midnight(monday), _midnight(monday + timedelta(days=7)))
    raise ValueError(f"frequency must be one of {FREQUENCIES}")


def last_complete(frequency: str, now: datetime) -> Period:
    """The latest period that has ended: yesterday, or last week."""
    today = now.astimezone(timezone.utc).date()
    return containing(frequency, today - timedelta(days=1 if frequency == "daily" else 7))


def latest_due(frequency: str, now: datetime, hour: int) -> Period:
    """The latest period whose report is due at ``now`` (due at ``hour`` UTC after it ended)."""
    shifted = now.astimezone(timezone.utc) - timedelta(hours=hour)
    return last_complete(frequency, shifted)
