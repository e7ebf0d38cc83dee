"""Webhook delivery figures for the admin farm page: how many deliveries of the last hours
arrived, are still retrying or were given up, per hour, and the share delivered.

Read from ``webhook_deliveries`` (the delivery log, kept ``WEBHOOK_LOG_RETENTION_DAYS``),
grouped by the hour the delivery was created: a delivery retried into a later hour still
counts where its event happened.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.webhooks import DELIVERY_STATUSES, WebhookDelivery


def summary(session: Session, hours: int = 24, now: datetime | None = None) -> dict:
    """``{"hours": [{"hour", <status>: n, ...}], "totals": {<status>: n}, "delivered_ratio"}``."""
    now = now or datetime.now(timezone.utc)
    start = (now - timedelta(hours=hours - 1)).replace(minute=0, second=0, microsecond=0)
    hour = func.date_trunc("hour", func.timezone("UTC", WebhookDelivery.created_at)).label("hour")
    rows = session.execute(
        select(hour, WebhookDelivery.status, func.count())
        .where(WebhookDelivery.created_at >= start)
        .group_by(hour, WebhookDelivery.status)).all()
    per_hour = {(start + timedelta(hours=i)).strftime("%Y-%m-%d %H:00"): dict.fromkeys(DELIVERY_STATUSES, 0)
                for i in range(hours)}
    totals = dict.fromkeys(DELIVERY_STATUSES, 0)
    for when, status, count in rows:
        label = when.strftime("%Y-%m-%d %H:00")
        if label in per_hour and status in totals:
            per_hour[label][status] += count
            totals[status] += count
    settled = totals["delivered"] + totals["given_up"]
    return {"hours": [{"hour": label, **counts} for label, counts in per_hour.items()], "totals": totals,
            "delivered_ratio": round(totals["delivered"] / settled, 4) if settled else None}
