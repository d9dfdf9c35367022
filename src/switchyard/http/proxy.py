"""The reverse proxy handler: forwards a request to one server and streams the answer back."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from switchyard.http.origin import OriginCapture
from switchyard.http.responder import status_text_error
from switchyard.http.rewrite import backend_request_fields, backend_request_head, outgoing_target
from switchyard.http.upstream import Failure, UpstreamConnection, UpstreamPool, UpstreamSettings
from switchyard.http.upstream_h2 import H2Pool, H2UpstreamConnection

if TYPE_CHECKING:
    from switchyard.http.exchange import Exchange

__all__ = ["ReverseProxy", "ServerURL", "parse_server_url"]


class ServerURL:
    """A ``servers[].url`` taken apart: scheme, host, port, ``Host`` value and path."""

    __slots__ = ("authority", "host", "path", "port", "scheme", "url")

    def __init__(self, url: str, scheme: str, host: str, port: int, authority: str,
                 path: str) -> None:
        self.url = url
        self.scheme = scheme
        self.host = host
        self.port = port
        self.authority = authority  # what Go sends as Host with passHostHeader false
        self.path = path

    def __repr__(self) -> str:
        return f"ServerURL({self.url!r})"


def parse_server_url(url: str) -> ServerURL:
    """Split a server URL; raises ValueError with a message that names the URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https", "h2c"):
        raise ValueError(f'server URL "{url}": scheme must be http, https or h2c')
    try:
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise ValueError(f'server URL "{url}": {exc}') from None
    if not host:
        raise ValueError(f'server URL "{url}": missing host')
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    return ServerURL(url, parts.scheme, host, port, parts.netloc.rpartition("@")[2], parts.path)


class ReverseProxy:
    """Handler: sends each request to one server over pooled keep-alive connections.

    ``pass_host_header`` false sends the server URL's host as Host; ``preserve_path`` puts the
    server URL's path in front of the request path (otherwise Traefik ignores it). Response
    bodies are written to the client as each piece arrives from the server (Traefik's
    ``flushInterval: -1``; its 100 ms default only batches flushes, which our writes do anyway).
    ``open_requests`` counts requests in flight, for balancing strategies.

    ``h2c://`` servers, and ``https://`` ones unless the transport disables HTTP/2, are spoken
    to in HTTP/2 (``h2``, see switchyard.http.upstream_h2); a request that asks for a protocol
    upgrade (WebSocket) goes over HTTP/1.1 to the same server, as Traefik does.
    """

    __slots__ = ("_authority", "_path", "_preserve", "_scheme", "h2", "open_requests",
                 "pass_host_header", "pool", "url")

    def __init__(self, url: ServerURL, pool: UpstreamPool | None = None, *,
                 settings: UpstreamSettings | None = None, pass_host_header: bool = True,
                 preserve_path: bool = False) -> None:
        self.url = url
        settings = settings or UpstreamSettings()
        tls = url.scheme == "https"
        self.pool = pool or UpstreamPool(url.host, url.port, settings, tls=tls)
        self.h2: H2Pool | None = None
        if pool is None and (url.scheme == "h2c" or tls and not settings.disable_http2):
            self.h2 = H2Pool(url.host, url.port, settings, tls=tls, fallback=self.pool)
        self._scheme = b"https" if tls else b"http"
        self.pass_host_header = pass_host_header
        self._preserve = preserve_path
        self._authority = url.authority.encode("latin-1")
        self._path = url.path.encode("latin-1")
        self.open_requests = 0

    def handle(self, exchange: Exchange) -> None:
        exchange.server = self.url.url
        if exchange.observed:  # the access log's Origin* fields: what this server answered
            exchange.writer = exchange.origin = OriginCapture(exchange.writer)
        self.open_requests += 1
        if self.h2 is not None and self._over_h2(exchange):
            return
        conn = self.pool.acquire()
        if conn is not None:
            self._send(conn, exchange)
        else:
            self._dial(exchange)

    def close(self) -> None:
        """Close the idle connections and keep no more (the service went away on a reload)."""
        self.pool.close()
        if self.h2 is not None:
            self.h2.close()

    def _over_h2(self, exchange: Exchange) -> bool:
        """Send ``exchange`` over HTTP/2 when the server speaks it; False: use HTTP/1.1."""
        h2 = self.h2
        assert h2 is not None
        if h2.speaks_h2 is False or exchange.request.headers.has_token(b"connection", b"upgrade"):
            return False
        conn = h2.acquire()
        if conn is not None:
            self._send_h2(conn, exchange)
        else:
            h2.dial(lambda conn, failure: self._dialed(exchange, conn, failure))
        return True

    def _dial(self, exchange: Exchange) -> None:
        self.pool.dial(lambda conn, failure: self._dialed(exchange, conn, failure))

    def _dialed(self, exchange: Exchange, conn: UpstreamConnection | H2UpstreamConnection | None,
                failure: Failure | None) -> None:
        if exchange.finished:  # the client went away meanwhile
            self.open_requests -= 1
            if isinstance(conn, UpstreamConnection):
                self.pool.release(conn)
            return
        if conn is None:
            assert failure is not None
            exchange.request_unsent = True  # the retry middleware may send it again
            self.upstream_failed(exchange, failure, retry=False)
        elif isinstance(conn, UpstreamConnection):
            self._send(conn, exchange)
        elif conn.capacity > 0:
            self._send_h2(conn, exchange)
        elif not conn.usable:  # gone already: dialing again could go on for ever
            exchange.request_unsent = True
            self.upstream_failed(exchange, Failure(502, "backend closed the connection"),
                                 retry=False)
        elif not self._over_h2(exchange):  # it filled up with the others waiting for it
            self._dial(exchange)

    def _send_h2(self, conn: H2UpstreamConnection, exchange: Exchange) -> None:
        request = exchange.request
        fields = backend_request_fields(
            request.method, outgoing_target(request.target, self._path, self._preserve),
            request.headers, scheme=self._scheme,
            client_ip=exchange.info.client_ip if exchange.forward_client else None,
            host=self._authority, replace_host=not self.pass_host_header)
        conn.send(exchange, self, fields)

    def _send(self, conn: UpstreamConnection, exchange: Exchange) -> None:
        request = exchange.request
        chunked = exchange.has_body and exchange.body_chunked
        head = backend_request_head(
            request.method, outgoing_target(request.target, self._path, self._preserve),
            request.headers,
            client_ip=exchange.info.client_ip if exchange.forward_client else None,
            host=self._authority,
            replace_host=not self.pass_host_header, chunked=chunked)
        conn.send(exchange, self, head, chunked_body=chunked)

    # -- RequestOwner -----------------------------------------------------------------------------

    def upstream_done(self) -> None:
        self.open_requests -= 1

    def upstream_failed(self, exchange: Exchange, failure: Failure, retry: bool = True) -> None:
        if exchange.finished:
            self.open_requests -= 1
            return
        if retry and failure.retriable and not exchange.has_body:
            # A kept-alive connection the server had just closed, or streams an HTTP/2 server
            # refused or did not take before going away: Go's transport retries too.
            if self.h2 is None or not self._over_h2(exchange):
                self._dial(exchange)
            return
        self.open_requests -= 1
        status_text_error(exchange, failure.status)
