"""One message over SMTP (``SMTP_URL``), with the moment of no return made visible.

Up to the DATA command nothing can have been delivered: any failure before it (connection
refused, TLS, login, a refused sender or recipients) is a :class:`NotSent` and safe to retry.
``before_data`` is called just before the message itself goes out (the caller records that in
the delivery row). After it, a reply from the server is definite (250: accepted, anything else:
:class:`NotSent`); no reply at all (the connection dropped, a timeout) is :class:`Ambiguous`:
the server may have taken the message (the duplicate-message problem of RFC 1047).

Transactional providers' SMTP relays take the same URL forms: Resend
``smtps://resend:KEY@smtp.resend.com:465``, SendGrid ``smtp://apikey:KEY@smtp.sendgrid.net:587``.
"""

from __future__ import annotations

import smtplib
import ssl
from email import policy
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Callable

import certifi

from cannect.config import SmtpServer


class NotSent(Exception):
    """The server did not take the message (or was not reached): a retry cannot duplicate it."""


class Ambiguous(Exception):
    """The message was being handed over when the connection failed: it may have arrived."""


def _reply(code: int, text: bytes | str) -> str:
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"{code} {' '.join(text.split())}"[:500]


def _quit(smtp: smtplib.SMTP) -> None:
    """Say goodbye; whatever the server answers now changes nothing."""
    try:
        smtp.quit()
    except (OSError, smtplib.SMTPException):
        smtp.close()


def send(server: SmtpServer, message: EmailMessage, sender: str, recipients: list[str],
         before_data: Callable[[], None] = lambda: None, context: ssl.SSLContext | None = None) -> str:
    """Send ``message`` from ``sender`` (its address is the envelope sender) to ``recipients``;
    returns the server's answer to the message ("250 ..."). Recipients the server refuses are
    left out (named in the answer); when it refuses all of them, nothing is sent. TLS checks
    the server's certificate against certifi's CAs (``context`` replaces that, for tests)."""
    context = context or ssl.create_default_context(cafile=certifi.where())
    envelope_from = parseaddr(sender)[1]
    data = message.as_bytes(policy=policy.SMTP)
    try:
        if server.tls == "implicit":
            smtp = smtplib.SMTP_SSL(server.host, server.port, timeout=server.timeout, context=context)
        else:
            smtp = smtplib.SMTP(server.host, server.port, timeout=server.timeout)
    except (OSError, smtplib.SMTPException) as exc:
        raise NotSent(f"cannot reach {server.host}:{server.port}: {exc}") from None
    try:
        try:
            smtp.ehlo()
            if server.tls == "starttls":
                smtp.starttls(context=context)
                smtp.ehlo()
            if server.username is not None:
                smtp.login(server.username, server.password or "")
            code, text = smtp.mail(envelope_from)
            if code != 250:
                raise NotSent(f"sender refused: {_reply(code, text)}")
            refused = {}
            for address in recipients:
                code, text = smtp.rcpt(address)
                if code not in (250, 251):
                    refused[address] = _reply(code, text)
            if len(refused) == len(recipients):
                raise NotSent("every recipient refused: " + "; ".join(f"{a}: {r}" for a, r in refused.items()))
        except smtplib.SMTPResponseException as exc:
            raise NotSent(_reply(exc.smtp_code, exc.smtp_error)) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise NotSent(f"{type(exc).__name__}: {exc}") from None
        before_data()
        try:
            code, text = smtp.data(data)
        except smtplib.SMTPDataError as exc:  # DATA itself refused: the message never went out
            raise NotSent(_reply(exc.smtp_code, exc.smtp_error)) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise Ambiguous(f"connection lost while handing the message over: {type(exc).__name__}: {exc}") from None
        if code != 250:
            raise NotSent(f"message refused: {_reply(code, text)}")
        answer = _reply(code, text)
        if refused:
            answer += " (refused: " + "; ".join(f"{a}: {r}" for a, r in refused.items()) + ")"
        return answer
    finally:
        _quit(smtp)
