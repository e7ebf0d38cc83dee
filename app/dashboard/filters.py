"""The filters every page shares, kept in the URL (``?range=7d&region=California&product=edible``)
so a view can be shared. Bad values fall back to the defaults rather than failing the page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import request

from services.classify.schema import ENUMS
from services.intelligence.base import utcnow

RANGES = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30), "90d": timedelta(days=90)}
RANGE_LABELS = {"24h": "Last 24 hours", "7d": "Last 7 days", "30d": "Last 30 days", "90d": "Last 90 days"}
DEFAULT_RANGE = "7d"
PRODUCTS = tuple(p for p in ENUMS["product_category"] if p != "none")
MAX_REGION = 64


@dataclass(frozen=True)
class Filters:
    range: str
    region: str | None
    product: str | None
    until: datetime

    @property
    def since(self) -> datetime:
        return self.until - RANGES[self.range]

    @property
    def trend_window(self) -> str:
        """The trends window nearest the range (trends keep 24 h and 7 d only)."""
        return "24h" if self.range == "24h" else "7d"

    @property
    def period(self) -> str:
        return "hour" if self.range == "24h" else "day"

    def args(self, **changes) -> dict:
        """Query arguments of this view (for links), with ``changes`` applied."""
        values = {"range": self.range, "region": self.region, "product": self.product, **changes}
        return {k: v for k, v in values.items() if v}


def current() -> Filters:
    chosen = request.args.get("range", DEFAULT_RANGE)
    region = (request.args.get("region") or "").strip()[:MAX_REGION]
    product = request.args.get("product") or None
    return Filters(range=chosen if chosen in RANGES else DEFAULT_RANGE,
                   region=region if region and region.isprintable() else None,
                   product=product if product in PRODUCTS else None,
                   # the hour, so that answers cached by range stay reusable within it
                   until=utcnow().replace(minute=0, second=0, microsecond=0) + timedelta(hours=1))
