"""DNS for identity: ``_atproto.<handle>`` TXT records and the addresses of hostile hosts.

One dnspython resolver, on the configured nameservers (``DNS_NAMESERVERS``, "ip[:port]") or
the system's, with a lifetime per lookup. A name that does not exist, or has no record of
the type, is a definite answer (:class:`Refused` for hosts, no records for TXT); a timeout
or a failing server is :class:`Unreachable`.
"""

from __future__ import annotations

import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

from cannect.config import parse_nameserver

from .errors import Refused, Unreachable

#: TXT records read per name; an _atproto name has one (several distinct DIDs are invalid anyway).
MAX_TXT_RECORDS = 10


class Dns:
    def __init__(self, nameservers: tuple[str, ...] = (), timeout: float = 5.0):
        self._nameservers, self._timeout = nameservers, timeout
        self._resolver: dns.resolver.Resolver | None = None

    @property
    def resolver(self) -> dns.resolver.Resolver:
        if self._resolver is None:
            try:
                resolver = dns.resolver.Resolver(configure=not self._nameservers)
            except dns.resolver.NoResolverConfiguration as exc:
                raise Unreachable("no DNS resolver is configured (set DNS_NAMESERVERS)") from exc
            if self._nameservers:
                resolver.nameservers = [dns.nameserver.Do53Nameserver(*parse_nameserver(s))
                                        for s in self._nameservers]
            resolver.lifetime = resolver.timeout = self._timeout
            self._resolver = resolver
        return self._resolver

    def _query(self, name: str, rdtype) -> list:
        try:
            return list(self.resolver.resolve(name, rdtype, search=False))
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.YXDOMAIN, dns.name.NameTooLong):
            return []
        except dns.exception.DNSException as exc:  # timeout, SERVFAIL from every server, ...
            raise Unreachable(f"DNS {dns.rdatatype.to_text(rdtype)} {name}: {exc}") from exc

    def txt(self, name: str) -> list[str]:
        """The TXT strings of ``name`` (each record's strings joined), [] when there are none."""
        records = []
        for rdata in self._query(name, dns.rdatatype.TXT)[:MAX_TXT_RECORDS]:
            records.append(b"".join(rdata.strings).decode("utf-8", "replace"))
        return records

    def addresses(self, host: str) -> list[str]:
        """Every IPv4 and IPv6 address of ``host``; Refused when it has none."""
        found = [r.address for r in self._query(host, dns.rdatatype.A)]
        found += [r.address for r in self._query(host, dns.rdatatype.AAAA)]
        if not found:
            raise Refused(f"{host} has no address")
        return found
