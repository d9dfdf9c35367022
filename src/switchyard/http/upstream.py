"""Connections to backend servers: dialing (plain or TLS), keep-alive pools, one request at a time.

An UpstreamConnection sends one request head, streams the request body as the client sends it
(re-chunked when the client sent it chunked) and streams the response into the exchange's
writer; then it goes back to its pool when both sides allow reuse. Backpressure runs both ways:
a full backend socket pauses reading from the client, a full client socket pauses reading from
the backend. It is callback-driven; only dialing a new connection runs as a task.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

import httptools

from switchyard.config.dynamic import TransportTLS
from switchyard.http.deadline import Deadline
from switchyard.http.message import Headers, ResponseHead
from switchyard.http.rewrite import response_headers_for_client
from switchyard.tls.backend import build_backend_context, peer_cert_sans, verify_peer_sans

if TYPE_CHECKING:
    from switchyard.config.http import HTTPServersTransport
    from switchyard.http.exchange import Exchange

__all__ = ["DEFAULT_UPSTREAM_SETTINGS", "Failure", "RequestOwner", "UpstreamConnection",
           "UpstreamPool", "UpstreamSettings", "connect", "dial_within"]


@dataclass(frozen=True, slots=True)
class UpstreamSettings:
    """A servers transport as the HTTP proxy applies it (the effective values).

    ``max_idle_conns_per_host`` is the number kept (0: no reuse); Traefik's config value 0 means
    Go's default 2, negative means none, and ``default@internal`` has 200 (see from_config).
    ``disable_http2``: ``https://`` servers are offered HTTP/1.1 only (``h2c://`` ones are
    HTTP/2 whatever it says, as in Traefik). ``read_idle_timeout``: an HTTP/2 connection that
    received nothing for that long is sent a PING, and closed when no answer comes within
    ``ping_timeout`` (0: no pings, Traefik's default).
    """

    name: str = "default@internal"
    dial_timeout: float = 30.0
    response_header_timeout: float = 0.0
    idle_conn_timeout: float = 90.0
    max_idle_conns_per_host: int = 200
    tls: TransportTLS | None = None
    disable_http2: bool = False
    read_idle_timeout: float = 0.0
    ping_timeout: float = 15.0

    @classmethod
    def from_config(cls, name: str, config: HTTPServersTransport | None) -> UpstreamSettings:
        """From ``http.serversTransports.<name>`` (None: Traefik's default transport)."""
        if config is None:
            return cls(name=name)
        timeouts = config.forwarding_timeouts
        idle = config.max_idle_conns_per_host
        tls = TransportTLS(
            server_name=config.server_name, insecure_skip_verify=config.insecure_skip_verify,
            root_cas=list(config.root_cas), certificates=list(config.certificates),
            peer_cert_uri=config.peer_cert_uri, peer_cert_sans=list(config.peer_cert_sans))
        return cls(
            name=name,
            dial_timeout=timeouts.dial_timeout if timeouts else 30.0,
            response_header_timeout=timeouts.response_header_timeout if timeouts else 0.0,
            idle_conn_timeout=timeouts.idle_conn_timeout if timeouts else 90.0,
            max_idle_conns_per_host=2 if idle == 0 else max(idle, 0),
            tls=tls,
            disable_http2=config.disable_http2,
            read_idle_timeout=timeouts.read_idle_timeout if timeouts else 0.0,
            ping_timeout=timeouts.ping_timeout if timeouts else 15.0,
        )


DEFAULT_UPSTREAM_SETTINGS = UpstreamSettings()


class Failure:
    """Why a request got no response from its backend; ``status`` is what the client gets."""

    __slots__ = ("reason", "retriable", "status")

    def __init__(self, status: int, reason: str, retriable: bool = False) -> None:
        self.status = status  # 502, or 504 for a timeout
        self.reason = reason
        self.retriable = retriable  # a reused connection failed before anything was sent back

    def __repr__(self) -> str:
        return f"Failure({self.status}, {self.reason!r})"


class RequestOwner(Protocol):
    """Who sent a request on an upstream connection (the ReverseProxy), told how it ended."""

    def upstream_failed(self, exchange: Exchange, failure: Failure) -> None: ...
    def upstream_done(self) -> None: ...


class UpstreamPool:
    """Idle keep-alive connections to one server under one servers transport, most recent first."""

    __slots__ = ("_closed", "_context", "_idle", "_loop", "dialed", "host", "port", "settings",
                 "tls", "unix_path")

    def __init__(self, host: str, port: int, settings: UpstreamSettings = DEFAULT_UPSTREAM_SETTINGS,
                 *, tls: bool = False, unix_path: str = "") -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.unix_path = unix_path  # dial this Unix socket instead (Switchyard's own services)
        self.settings = settings
        self._idle: list[UpstreamConnection] = []
        self._closed = False
        self._context: tuple[ssl.SSLContext, str | None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.dialed = 0  # connections opened so far, for tests and stats

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    def acquire(self) -> UpstreamConnection | None:
        idle = self._idle
        while idle:
            conn = idle.pop()
            if conn.usable:
                return conn
        return None

    def release(self, conn: UpstreamConnection) -> None:
        """Keep ``conn`` for reuse, or close it when the pool is full or closed."""
        if self._closed or len(self._idle) >= self.settings.max_idle_conns_per_host:
            conn.close()
            return
        conn.idle(self.settings.idle_conn_timeout)
        self._idle.append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        try:
            self._idle.remove(conn)
        except ValueError:
            pass

    def close(self) -> None:
        """Close idle connections and keep no more (the service went away on a reload)."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def dial(self, done: Callable[[UpstreamConnection | None, Failure | None], None]) -> None:
        """Open a new connection; ``done(conn, None)`` or ``done(None, failure)`` follows."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        self.dialed += 1
        conn = UpstreamConnection(self, loop)
        dial_within(loop, self._connect(conn), self.settings.dial_timeout,
                    lambda failure: done(None, failure) if failure else done(conn, None))

    async def _connect(self, conn: UpstreamConnection) -> None:
        loop = self._loop
        assert loop is not None
        if self.unix_path:
            await loop.create_unix_connection(lambda: conn, self.unix_path)
            return
        if self.tls and self._context is None:
            self._context = build_backend_context(self.settings.tls, self.host)
        await connect(loop, conn, self.host, self.port, self.settings,
                      self._context if self.tls else None)


def dial_within(loop: asyncio.AbstractEventLoop, connecting: Coroutine[Any, Any, None],
                timeout: float, done: Callable[[Failure | None], None]) -> None:
    """Run ``connecting`` as a task cancelled after ``timeout`` seconds (0: none); then call
    ``done(None)``, or ``done(failure)`` with a 504 for the timeout and a 502 for an error."""
    task = loop.create_task(connecting)
    timer = loop.call_later(timeout, task.cancel) if timeout > 0 else None

    def finished(task: asyncio.Task[None]) -> None:
        if timer is not None:
            timer.cancel()
        if task.cancelled():
            done(Failure(504, f"dial timeout after {timeout:g}s"))
            return
        error = task.exception()
        done(Failure(502, str(error) or type(error).__name__) if error is not None else None)

    task.add_done_callback(finished)


async def connect(loop: asyncio.AbstractEventLoop, protocol: asyncio.Protocol, host: str,
                  port: int, settings: UpstreamSettings,
                  context: tuple[ssl.SSLContext, str | None] | None) -> None:
    """Connect ``protocol`` to a server, over TLS with ``context`` (from build_backend_context)
    when given; a certificate the transport's ``peerCertSANs`` refuse fails the dial."""
    if context is None:
        await loop.create_connection(lambda: protocol, host, port)
        return
    ssl_context, server_name = context
    transport, _ = await loop.create_connection(
        lambda: protocol, host, port, ssl=ssl_context, server_hostname=server_name)
    sans = peer_cert_sans(settings.tls)
    if sans:
        tls_object = transport.get_extra_info("ssl_object")
        der = tls_object.getpeercert(True) if tls_object is not None else None
        problem = verify_peer_sans(der or b"", sans)
        if problem:
            transport.abort()
            raise ssl.SSLError(f"backend certificate refused: {problem}")


# What a connection parses with once it is over: no callbacks, so it refers to nobody.
_SPENT_PARSER = httptools.HttpResponseParser(object())


class UpstreamConnection(asyncio.Protocol):
    """One connection to a backend; carries one request and its response at a time."""

    __slots__ = (
        "_chunked_body", "_closed", "_deadline", "_exchange", "_got_bytes", "_head_request",
        "_head_seen", "_headers", "_interim", "_owner", "_parser", "_paused", "_pool",
        "_request_sent", "_reused", "_started", "_switching", "_trailers", "_transport",
        "_until_close",
    )

    def __init__(self, pool: UpstreamPool, loop: asyncio.AbstractEventLoop) -> None:
        self._pool = pool
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._deadline = Deadline(loop, self._expired)
        self._exchange: Exchange | None = None
        self._owner: RequestOwner | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._trailers: Headers | None = None
        self._closed = False
        self._reused = False
        self._paused = False
        self._reset()

    def _reset(self) -> None:
        self._trailers = None
        self._chunked_body = False
        self._request_sent = False
        self._started = False
        self._interim = False
        self._switching = False
        self._head_request = False
        self._head_seen = False
        self._until_close = False
        self._got_bytes = False

    @property
    def usable(self) -> bool:
        transport = self._transport
        return not self._closed and transport is not None and not transport.is_closing()

    # -- requests -------------------------------------------------------------------------------

    def send(self, exchange: Exchange, owner: RequestOwner, head: bytes, *,
             chunked_body: bool) -> None:
        """Write ``head`` (request line and fields) and stream the body behind it."""
        transport = self._transport
        assert transport is not None
        self._deadline.clear()
        self._exchange = exchange
        self._owner = owner
        self._chunked_body = chunked_body
        self._head_request = exchange.request.method == b"HEAD"
        exchange.set_producer(self)
        transport.write(head)
        if exchange.has_body:
            exchange.read_body(self)
        else:
            self._sent()

    def idle(self, timeout: float) -> None:
        self._reused = True
        self._deadline.set(timeout)

    def close(self) -> None:
        self._closed = True
        self._deadline.cancel()
        if self._transport is not None:
            self._transport.close()

    # -- BodyConsumer (the client's request body) -----------------------------------------------

    def body_data(self, chunk: bytes) -> None:
        transport = self._transport
        if transport is None or self._closed:
            return
        if self._chunked_body:
            transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if len(chunk) < 16384
                            else b"%x\r\n" % len(chunk))
            if len(chunk) >= 16384:
                transport.write(chunk)
                transport.write(b"\r\n")
        else:
            transport.write(chunk)

    def body_end(self) -> None:
        if self._chunked_body and self._transport is not None and not self._closed:
            self._transport.write(b"0\r\n\r\n")
        self._sent()

    def body_aborted(self) -> None:
        self._abandon()

    def _sent(self) -> None:
        self._request_sent = True
        timeout = self._pool.settings.response_header_timeout
        if timeout > 0 and not self._started:
            self._deadline.set(timeout)

    # -- Producer (the response body towards the client) ----------------------------------------

    def pause_producing(self) -> None:
        if self._transport is not None and not self._closed:
            self._paused = True
            self._transport.pause_reading()

    def resume_producing(self) -> None:
        if self._transport is not None and not self._closed and self._paused:
            self._paused = False
            self._transport.resume_reading()

    def stop_producing(self) -> None:
        self._abandon()

    # -- asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio.Transport; they offer its methods.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        exchange = self._exchange
        if exchange is None:
            self.close()  # an idle backend has nothing to say; do not reuse it
            return
        self._got_bytes = True
        exchange.cork()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._switch(data[exc.args[0]:])
        except httptools.HttpParserError:
            self._broken(Failure(502, "malformed response from the backend"))
        finally:
            exchange.uncork()
        if self._head_seen:
            self._head_seen = False
            reusable = self._parser.should_keep_alive()
            self._parser = httptools.HttpResponseParser(self)
            self._complete(reusable=reusable)

    def eof_received(self) -> bool:
        return False  # connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._deadline.close()
        self._pool.forget(self)
        try:
            if self._exchange is None:
                return
            if self._started and self._until_close and not self._switching:
                self._complete(reusable=False)  # the end of the connection is the end of the body
                return
            self._broken(Failure(502, "backend closed the connection" if exc is None else str(exc),
                                 retriable=self._reused and not self._got_bytes))
        finally:
            # The parser's callbacks refer back to this connection: without them it is freed
            # by reference counting, not left to the cyclic collector.
            self._parser = _SPENT_PARSER

    def pause_writing(self) -> None:
        if self._exchange is not None:
            self._exchange.pause_body()

    def resume_writing(self) -> None:
        if self._exchange is not None:
            self._exchange.resume_body()

    # -- httptools callbacks --------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._started:
            self._headers.append((name, value))
        elif self._trailers is None:  # after the body of a chunked response: its trailers
            self._trailers = Headers([(name, value)])
        else:
            self._trailers.append((name, value))

    def on_headers_complete(self) -> None:
        exchange = self._exchange
        if exchange is None:
            return
        status = self._parser.get_status_code()
        if status < 200 and status != 101:
            # Interim responses: 100 lets a waiting client send its body; others are dropped.
            self._interim = True
            self._headers = []
            if status == 100:
                exchange.send_continue()
            return
        self._started = True
        self._deadline.clear()
        self._switching = status == 101
        headers, framed = response_headers_for_client(self._headers, switching=self._switching)
        self._headers = []
        if not framed and not self._switching and not self._head_request:
            self._until_close = status not in (204, 304)
        exchange.writer.start(ResponseHead(status, headers))
        if self._head_request:
            # The parser cannot be told a HEAD response has no body: finish after this read.
            self._head_seen = True

    def on_body(self, chunk: bytes) -> None:
        exchange = self._exchange
        if self._head_seen:
            self.close()  # a body after a HEAD response: the framing is lost
        elif exchange is not None:
            exchange.writer.write(chunk)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if self._switching or self._head_seen or self._exchange is None:
            return
        self._complete(reusable=self._parser.should_keep_alive())

    # -- endings ----------------------------------------------------------------------------------

    def _complete(self, *, reusable: bool) -> None:
        exchange, owner, trailers = self._exchange, self._owner, self._trailers
        self._exchange = self._owner = None
        reusable = reusable and self._request_sent and not self._closed and not self._until_close
        self._reset()
        if exchange is None:
            return
        exchange.set_producer(None)
        self.resume_producing()
        # Back to the pool before the client side goes on: its next request may want it.
        if reusable:
            self._pool.release(self)
        else:
            self.close()
        if owner is not None:
            owner.upstream_done()
        # Set for every response, so that a response a middleware dropped leaves none behind.
        exchange.response_trailers = trailers
        exchange.writer.end()

    def _broken(self, failure: Failure) -> None:
        exchange, owner = self._exchange, self._owner
        self._exchange = self._owner = None
        started = self._started
        self._reset()
        self.close()
        if exchange is None or owner is None:
            return
        exchange.set_producer(None)
        if started:
            owner.upstream_done()
            exchange.writer.abort()  # a response cut short must not look complete
        else:
            owner.upstream_failed(exchange, failure)

    def _abandon(self) -> None:
        """The client went away: this connection's state is unknown, so it is not reused."""
        owner = self._owner
        self._exchange = self._owner = None
        self._reset()
        self.close()
        if owner is not None:
            owner.upstream_done()

    def _expired(self) -> None:
        if self._exchange is None:
            self.close()  # idle too long
            return
        timeout = self._pool.settings.response_header_timeout
        self._broken(Failure(504, f"no response header within {timeout:g}s"))

    def _switch(self, rest: bytes) -> None:
        exchange, owner = self._exchange, self._owner
        transport = self._transport
        self._exchange = self._owner = None
        self._closed = True  # belongs to the tunnel now
        self._deadline.cancel()
        if owner is not None:
            owner.upstream_done()
        if exchange is None or transport is None:
            return
        exchange.set_producer(None)
        exchange.upgrade(transport, rest)
