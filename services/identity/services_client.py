"""GETs to the services the operator configured (PLC directory, handle resolver).

Their URLs come from configuration, not from users, so no address guard applies; they are
still outside peers: redirects are not followed, answers are capped in bytes and time, and a
5xx, timeout or connection failure is :class:`Unreachable`.
"""

from __future__ import annotations

import time

import httpx

from .errors import Refused, Unreachable


class ServiceClient:
    def __init__(self, timeout: float):
        self.timeout = timeout
        self.client = httpx.Client(timeout=httpx.Timeout(timeout), follow_redirects=False,
                                   headers={"User-Agent": "cannect-identity/1 (+https://cannect.space)"})

    def get(self, url: str, max_bytes: int, params: dict | None = None) -> tuple[int, bytes]:
        """(status, body) for a 2xx or 4xx answer; Unreachable for anything that says nothing."""
        deadline = time.monotonic() + self.timeout
        try:
            with self.client.stream("GET", url, params=params) as response:
                if response.status_code >= 500 or response.status_code == 429:
                    raise Unreachable(f"{url}: {response.status_code}")
                if response.is_redirect:
                    raise Refused(f"{url} redirects (redirects are not followed)")
                body = bytearray()
                for chunk in response.iter_raw():
                    body += chunk
                    if len(body) > max_bytes:
                        raise Refused(f"{url} answers more than {max_bytes} bytes")
                    if time.monotonic() > deadline:
                        raise Unreachable(f"{url} took longer than {self.timeout}s")
                return response.status_code, bytes(body)
        except httpx.HTTPError as exc:
            raise Unreachable(f"{url}: {exc or type(exc).__name__}") from exc

    def close(self) -> None:
        self.client.close()
