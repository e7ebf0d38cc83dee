"""An SMTP server as a mail provider's relay: aiosmtpd on 127.0.0.1, AUTH LOGIN/PLAIN over a
plain connection (``auth_require_tls=False``; tests only), each accepted message kept as bytes.

The test scripts failures: :meth:`FakeSmtp.refuse_data` answers the next messages with a
temporary error after their content (nothing accepted), :meth:`FakeSmtp.refuse_recipients`
refuses every recipient with 550; :meth:`FakeSmtp.stop` takes the server down (its port then
refuses connections) and :meth:`FakeSmtp.start` brings it back on the same port.
"""

from __future__ import annotations

import logging
import socket
import threading
import warnings
from email import message_from_bytes, policy
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Handler:
    def __init__(self, owner: "FakeSmtp"):
        self.owner = owner

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.owner.refusing_recipients:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.owner.lock:
            if self.owner.data_refusals > 0:
                self.owner.data_refusals -= 1
                self.owner.refused += 1
                return "451 4.3.0 temporarily unavailable, try again later"
            self.owner.received.append((envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content),
                                        session.authenticated))
            return f"250 2.0.0 Ok: queued as fake-{len(self.owner.received)}"


class FakeSmtp:
    """``tls``: None (plain), ``starttls`` (required before AUTH) or ``implicit`` (TLS from the
    first byte), with ``server_context`` holding the certificate (e.g. from trustme)."""

    def __init__(self, username: str = "relay-user", password: str = "relay-pass:/@secret", tls: str | None = None,
                 server_context=None):
        self.username, self.password = username, password
        self.tls, self.server_context = tls, server_context
        self.port = free_port()
        self.received: list[tuple[str, list[str], bytes, bool]] = []
        self.data_refusals = 0
        self.refused = 0
        self.refusing_recipients = False
        self.lock = threading.Lock()
        self._controller: Controller | None = None

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == self.username \
            and auth_data.password.decode() == self.password
        return AuthResult(success=ok)

    def start(self) -> "FakeSmtp":
        warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")
        logging.getLogger("mail.log").setLevel(logging.ERROR)  # the same warning, and a deprecation of aiosmtpd's own
        options = {"starttls": {"tls_context": self.server_context, "require_starttls": True},
                   "implicit": {"ssl_context": self.server_context}}.get(self.tls, {})
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port,
                                      authenticator=self._authenticate, auth_require_tls=self.tls == "starttls",
                                      auth_required=True, **options)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> "FakeSmtp":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def url(self) -> str:
        from urllib.parse import quote

        scheme, options = {"starttls": ("smtp", ""), "implicit": ("smtps", "")}.get(self.tls, ("smtp", "starttls=false&"))
        return (f"{scheme}://{quote(self.username, safe='')}:{quote(self.password, safe='')}@127.0.0.1:{self.port}"
                f"?{options}timeout=5")

    def refuse_data(self, times: int = 1) -> None:
        self.data_refusals = times

    def refuse_recipients(self, on: bool = True) -> None:
        self.refusing_recipients = on

    def messages(self) -> list[EmailMessage]:
        return [message_from_bytes(raw, policy=policy.default) for _, _, raw, _ in self.received]


class HangUpSmtp:
    """A server that takes a whole message and then closes the connection without answering
    (the lost "250" of RFC 1047): whether the message arrived is unknowable to the sender."""

    def __init__(self):
        self.port = free_port()
        self.messages_taken = 0
        self._socket = socket.create_server(("127.0.0.1", self.port))
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> "HangUpSmtp":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._socket.close()
        self._thread.join(5)

    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}?starttls=false&timeout=5"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._socket.accept()
            except OSError:
                return
            with conn, conn.makefile("rb") as lines:
                conn.sendall(b"220 hangup.test ESMTP\r\n")
                for line in lines:
                    verb = line[:4].upper()
                    if verb in (b"EHLO", b"HELO"):
                        conn.sendall(b"250 hangup.test\r\n")
                    elif verb == b"DATA":
                        conn.sendall(b"354 go ahead\r\n")
                        for body_line in lines:
                            if body_line == b".\r\n":
                                break
                        self.messages_taken += 1
                        break  # hang up instead of answering
                    else:
                        conn.sendall(b"250 OK\r\n")
