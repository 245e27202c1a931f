"""The HTTP connections pings and webhooks go out on, kept open from one delivery to the next.

A ping service gets two requests per occurrence; a connection per request would
cost a TCP (and TLS) handshake each, on the instance that runs the jobs. Only the
background sender's thread uses them. A host that the environment sends through a
proxy (``HTTPS_PROXY``, ``NO_PROXY``...) goes through urllib's opener instead.
"""

from __future__ import annotations

import functools
import http.client
import ssl
import urllib.request
from importlib.metadata import version
from urllib.parse import urlsplit


class DeliveryError(Exception):
    """The server answered with a status other than 2xx."""


@functools.cache
def user_agent() -> str:
    return f"django-oncejob/{version('django-oncejob')}"


class Connections:
    """One open connection per scheme, host and port."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._open: dict[tuple[str, str], http.client.HTTPConnection] = {}
        self._proxies = urllib.request.getproxies()
        self._opener: urllib.request.OpenerDirector | None = None

    def request(self, url: str, body: bytes | None, content_type: str) -> None:
        """GET ``url``, or POST ``body`` to it; raise unless it answers 2xx in ``timeout`` s."""
        parts = urlsplit(url)
        method = "GET" if body is None else "POST"
        headers = {"User-Agent": user_agent(), "Content-Type": content_type}
        if self._proxied(parts.scheme, parts.hostname or ""):
            self._request_by_opener(url, method, body, headers)
            return
        target = parts.path or "/"
        if parts.query:
            target += f"?{parts.query}"
        key = (parts.scheme, parts.netloc)
        reused = key in self._open
        try:
            status = self._send(key, method, target, body, headers)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            if not reused:
                raise
            # The server closed the connection while it was idle: one more try on a new one.
            status = self._send(key, method, target, body, headers)
        if not 200 <= status < 300:
            raise DeliveryError(f"HTTP {status}")

    def _send(
        self,
        key: tuple[str, str],
        method: str,
        target: str,
        body: bytes | None,
        headers: dict[str, str],
    ) -> int:
        connection = self._open.pop(key, None) or self._connect(*key)
        try:
            connection.request(method, target, body, headers)
            response = connection.getresponse()
            response.read()
        except BaseException:
            connection.close()
            raise
        if response.will_close:
            connection.close()
        else:
            self._open[key] = connection
        return response.status

    def _connect(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        if scheme == "https":
            return http.client.HTTPSConnection(
                netloc, timeout=self.timeout, context=ssl.create_default_context()
            )
        return http.client.HTTPConnection(netloc, timeout=self.timeout)

    def _proxied(self, scheme: str, host: str) -> bool:
        return scheme in self._proxies and not urllib.request.proxy_bypass(host)

    def _request_by_opener(
        self, url: str, method: str, body: bytes | None, headers: dict[str, str]
    ) -> None:
        if self._opener is None:
            self._opener = urllib.request.build_opener()
        request = urllib.request.Request(url, data=body, headers=headers, method=method)
        with self._opener.open(request, timeout=self.timeout) as response:
            response.read()

    def close(self) -> None:
        for connection in self._open.values():
            connection.close()
        self._open.clear()
