"""The identity network in miniature: a PLC directory, a DNS server and handle hosts' HTTPS.

Three real servers on 127.0.0.1, speaking the real protocols, so ``services/identity`` runs
unchanged against them (only its configured endpoints point here):

- :class:`FakePlc`: ``GET /<did>`` answers the DID document set with ``publish`` (404 when
  there is none), or a failure set with ``fail`` (a status, or a stall).
- :class:`FakeDns`: a UDP DNS server (built with dnspython). ``txt`` sets the TXT records of
  a name, ``host`` the addresses of a host name (every name the tests use points at
  127.0.0.1 unless told otherwise); unknown names are NXDOMAIN; ``fail`` makes a name
  SERVFAIL or go unanswered (a timeout).
- :class:`FakeWeb`: an HTTPS server that answers for any host name with a certificate from
  its own CA (``ca_path`` is the bundle to trust): ``route(host, path, status, body,
  headers, chunked)`` sets an answer, e.g. ``/.well-known/atproto-did`` or ``/.well-known/did.json``;
  ``requests`` records ``(host, path)`` of every request it received.

:class:`IdentityWorld` runs all three and knows how to give an account a verified handle
by either method, the way the real network does.
"""

from __future__ import annotations

import socket
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import orjson
import trustme


class _Server:
    """A ThreadingHTTPServer on a free port of 127.0.0.1, run in a daemon thread."""

    def __init__(self, handler, name: str):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.server.owner = self
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name=name, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@dataclass
class Failure:
    status: int = 503
    stall_seconds: float = 0.0
    count: int = 1


class _PlcHandler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        plc: FakePlc = self.server.owner
        did = self.path.lstrip("/")
        plc.requests.append(did)
        failure = plc.take_failure()
        if failure and failure.stall_seconds:
            time.sleep(failure.stall_seconds)
        if failure and failure.status:
            return self._send(failure.status, {"message": "failure"})
        document = plc.documents.get(did)
        if document is None:
            return self._send(404, {"message": f"DID not registered: {did}"})
        self._send(200, document)

    def _send(self, status: int, data) -> None:
        body = data if isinstance(data, bytes) else orjson.dumps(data)
        self.send_response(status)
        self.send_header("Content-Type", "application/did+ld+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class FakePlc(_Server):
    def __init__(self):
        super().__init__(_PlcHandler, "fake-plc")
        self.documents: dict[str, dict | bytes] = {}
        self.failures: list[Failure] = []
        self.requests: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def publish(self, did: str, handle: str | None = None, document: dict | bytes | None = None) -> None:
        """Set the DID document of ``did``: naming ``handle``, or exactly ``document``."""
        self.documents[did] = document if document is not None else did_document(did, handle)

    def fail(self, status: int = 503, stall_seconds: float = 0.0, count: int = 1) -> None:
        self.failures.append(Failure(status, stall_seconds, count))

    def take_failure(self) -> Failure | None:
        if not self.failures:
            return None
        failure = self.failures[0]
        failure.count -= 1
        if failure.count <= 0:
            self.failures.pop(0)
        return failure


def did_document(did: str, handle: str | None, pds: str = "https://pds.example.com") -> dict:
    """A DID document in the shape the PLC directory serves, naming ``pds`` as its PDS."""
    return {
        "@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"],
        "id": did,
        "alsoKnownAs": [f"at://{handle}"] if handle else [],
        "verificationMethod": [{"id": f"{did}#atproto", "type": "Multikey", "controller": did,
                                "publicKeyMultibase": "zQ3shunBKsXixLxKtC5qeSG9E4J5RkGN57im31pcTzbNQnm5w"}],
        "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer",
                     "serviceEndpoint": pds}],
    }


class FakeDns:
    """A DNS server over UDP on 127.0.0.1 (a random port): TXT, A and AAAA from tables."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.txt_records: dict[str, list[str]] = {}
        self.addresses: dict[str, list[str]] = {}
        self.failing: dict[str, str] = {}  # name -> "servfail" | "timeout"
        self.queries: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="fake-dns", daemon=True)

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.port}"

    def txt(self, name: str, *records: str) -> None:
        self.txt_records[name.lower().rstrip(".")] = list(records)

    def host(self, name: str, *addresses: str) -> None:
        self.addresses[name.lower().rstrip(".")] = list(addresses)

    def fail(self, name: str, how: str = "servfail") -> None:
        self.failing[name.lower().rstrip(".")] = how

    def start(self) -> "FakeDns":
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.sock.close()

    def __enter__(self) -> "FakeDns":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                wire, peer = self.sock.recvfrom(4096)
            except (socket.timeout, OSError):
                continue
            try:
                query = dns.message.from_wire(wire)
            except Exception:
                continue
            answer = self._answer(query)
            if answer is not None:
                try:
                    self.sock.sendto(answer.to_wire(), peer)
                except OSError:
                    pass

    def _answer(self, query: dns.message.Message) -> dns.message.Message | None:
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        rdtype = question.rdtype
        self.queries.append((name, dns.rdatatype.to_text(rdtype)))
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        how = self.failing.get(name)
        if how == "timeout":
            return None
        if how == "servfail":
            response.set_rcode(dns.rcode.SERVFAIL)
            return response
        known = name in self.txt_records or name in self.addresses
        if not known:
            response.set_rcode(dns.rcode.NXDOMAIN)
            return response
        if rdtype == dns.rdatatype.TXT and name in self.txt_records:
            quoted = ['"' + record.replace("\\", "\\\\").replace('"', '\\"') + '"'
                      for record in self.txt_records[name]]
            response.answer.append(dns.rrset.from_text_list(question.name, 60, dns.rdataclass.IN,
                                                            dns.rdatatype.TXT, quoted))
        elif rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            family = "A" if rdtype == dns.rdatatype.A else "AAAA"
            wanted = [a for a in self.addresses.get(name, []) if (":" in a) == (family == "AAAA")]
            if wanted:
                response.answer.append(dns.rrset.from_text_list(question.name, 60, dns.rdataclass.IN, rdtype, wanted))
        return response


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    headers: dict = field(default_factory=dict)
    stall_seconds: float = 0.0
    chunked: bool = False


class _WebHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        web: FakeWeb = self.server.owner
        host = (self.headers.get("Host") or "").split(":")[0].lower()
        web.requests.append((host, self.path))
        route = web.routes.get((host, self.path))
        if route is None:
            route = Route(404, b"not found")
        if route.stall_seconds:
            time.sleep(route.stall_seconds)
        self.send_response(route.status)
        for name, value in route.headers.items():
            self.send_header(name, value)
        if route.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        elif "Content-Length" not in route.headers:
            self.send_header("Content-Length", str(len(route.body)))
        self.end_headers()
        try:
            if route.chunked:
                for i in range(0, len(route.body), 1024):
                    piece = route.body[i:i + 1024]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.write(b"0\r\n\r\n")
            else:
                self.wfile.write(route.body)
        except OSError:
            pass


class FakeWeb(_Server):
    """HTTPS for any host name, with certificates from its own CA (trust ``ca_path``)."""

    def __init__(self):
        super().__init__(_WebHandler, "fake-web")
        self.ca = trustme.CA()
        self._ca_file = tempfile.NamedTemporaryFile(prefix="fake-ca-", suffix=".pem", delete=False)
        self.ca.cert_pem.write_to_path(self._ca_file.name)
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._lock = threading.Lock()
        default = self._context_for("default.test")
        default.sni_callback = self._sni
        self.server.socket = default.wrap_socket(self.server.socket, server_side=True)
        self.routes: dict[tuple[str, str], Route] = {}
        self.requests: list[tuple[str, str]] = []

    @property
    def ca_path(self) -> str:
        return self._ca_file.name

    def route(self, host: str, path: str, status: int = 200, body: bytes | str = b"",
              headers: dict | None = None, stall_seconds: float = 0.0, chunked: bool = False) -> None:
        """Answer GET https://host/path; ``chunked`` sends the body without a Content-Length."""
        body = body.encode() if isinstance(body, str) else body
        self.routes[(host.lower(), path)] = Route(status, body, headers or {}, stall_seconds, chunked)

    def _context_for(self, hostname: str) -> ssl.SSLContext:
        with self._lock:
            context = self._contexts.get(hostname)
            if context is None:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                self.ca.issue_cert(hostname).configure_cert(context)
                self._contexts[hostname] = context
            return context

    def _sni(self, sock: ssl.SSLObject, hostname: str | None, _context) -> None:
        if hostname:
            context = self._context_for(hostname)
            context.sni_callback = self._sni
            sock.context = context


class IdentityWorld:
    """A PLC directory, DNS and HTTPS for handles: ``settings()`` points the resolver at them."""

    def __init__(self):
        self.plc, self.dns, self.web = FakePlc(), FakeDns(), FakeWeb()

    def __enter__(self) -> "IdentityWorld":
        self.plc.start(), self.dns.start(), self.web.start()
        return self

    def __exit__(self, *exc) -> None:
        self.plc.stop(), self.dns.stop(), self.web.stop()

    def environment(self, allow_private: bool = True) -> dict[str, str]:
        """The environment that makes ``services/identity`` use this world."""
        return {"PLC_DIRECTORY_URL": self.plc.url, "DNS_NAMESERVERS": self.dns.nameserver,
                "IDENTITY_ALLOW_PRIVATE_ADDRESSES": "true" if allow_private else "false",
                "IDENTITY_CA_BUNDLE": self.web.ca_path, "IDENTITY_HTTPS_PORT": str(self.web.port),
                "IDENTITY_TIMEOUT_SECONDS": "2"}

    def account(self, did: str, handle: str, method: str = "dns") -> None:
        """``did`` holds ``handle``: its document names it and the handle names it back."""
        self.plc.publish(did, handle)
        self.point(handle, did, method)

    def point(self, handle: str, did: str, method: str = "dns") -> None:
        """The handle's domain names ``did`` (by DNS TXT or HTTPS well-known)."""
        self.dns.host(handle, "127.0.0.1")
        if method == "dns":
            self.dns.txt(f"_atproto.{handle}", f"did={did}")
        else:
            self.web.route(handle, "/.well-known/atproto-did", body=did + "\n", headers={"Content-Type": "text/plain"})
