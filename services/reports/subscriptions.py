"""A client's report settings: the addresses reports go to, and daily, weekly or off."""

from __future__ import annotations

from email.headerregistry import Address

from sqlalchemy.orm import Session

from models import ApiClient
from services.b2b.clients import ClientNotFound

from .delivery import ReportError
from .periods import FREQUENCIES

MAX_RECIPIENTS = 10


def parse_address(value: str) -> str:
    """One plain ASCII address (``name@example.com``), domain lower-cased; ReportError otherwise."""
    value = (value or "").strip()
    if not value or len(value) > 254 or not value.isascii() or any(c in value for c in " <>,;\"\\()[]\r\n\t"):
        raise ReportError(f"not an email address: {value[:80]!r}")
    try:
        address = Address(addr_spec=value)
    except (ValueError, IndexError, TypeError):
        raise ReportError(f"not an email address: {value[:80]!r}") from None
    if not address.username or "." not in address.domain or address.domain.startswith("."):
        raise ReportError(f"not an email address: {value[:80]!r}")
    return f"{address.username}@{address.domain.lower()}"


def set_report(session: Session, client_id: int, emails: list[str] | None = None,
               frequency: str | None = None) -> dict:
    """Change the addresses (``emails``: replaces the list) and/or the frequency (``daily``,
    ``weekly`` or ``off``); what is not given stays. Returns the settings now."""
    client = session.get(ApiClient, client_id, with_for_update=True)
    if client is None:
        raise ClientNotFound(f"no API client {client_id}")
    if emails is not None:
        cleaned = list(dict.fromkeys(parse_address(e) for e in emails))
        if len(cleaned) > MAX_RECIPIENTS:
            raise ReportError(f"at most {MAX_RECIPIENTS} report addresses")
        client.report_emails = cleaned or None
    if frequency is not None:
        if frequency not in (*FREQUENCIES, "off"):
            raise ReportError(f"frequency must be one of {', '.join(FREQUENCIES)} or off")
        client.report_frequency = None if frequency == "off" else frequency
    if client.report_frequency and not client.report_emails:
        raise ReportError("reports need at least one address (--email)")
    session.flush()
    return settings_of(client)


def settings_of(client: ApiClient) -> dict:
    return {"clientId": client.id, "name": client.client_name, "emails": list(client.report_emails or []),
            "frequency": client.report_frequency or "off", "active": client.is_active}
