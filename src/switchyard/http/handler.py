"""The Handler interface: how routers, middlewares and services take part in serving a request.

A handler is called once per request, inside the event loop's callback, and must not block::

    class Handler(Protocol):
        def handle(self, exchange: Exchange) -> None: ...

It answers now or later (after a backend replied) through ``exchange.writer``, a ResponseWriter::

    writer.start(head: ResponseHead) -> None   # status + header fields, once
    writer.write(chunk: bytes) -> None         # body bytes, any number of times
    writer.end() -> None                       # the body is complete (keep-alive may go on)
    writer.abort() -> None                     # the body cannot complete: close, never fake an end

``exchange.respond(status, headers, body)`` does all three for a short answer. Trailer fields
(gRPC's ``grpc-status``) are set as ``exchange.response_trailers`` (Headers) before ``end()``;
the connection's own writer sends them after the body: after the last chunk on HTTP/1.1 (none
when the body is not chunked), as a trailing HEADERS frame on HTTP/2. A writer that turns the
body into another form may take them first and clear the field (grpcWeb puts them in the body). What else the
Exchange offers a handler (see switchyard.http.exchange):

* ``exchange.request``: the RequestHead (method, target, version, headers), changeable in place;
  ``exchange.info``: the ConnectionInfo (entry point, client, TLS); ``exchange.router``,
  ``exchange.service``, ``exchange.server``: names for the observation record.
* the request body, pulled by whoever forwards it: ``exchange.has_body``,
  ``exchange.read_body(consumer)`` with a BodyConsumer (``body_data(chunk)``, ``body_end()``,
  ``body_aborted()``), and ``pause_body()`` / ``resume_body()`` for backpressure. Bytes that
  arrive before anyone reads are held (bounded: the client is paused above a high-water mark).
  ``exchange.unread_body(chunks)`` puts read chunks back, so that a retry can send them again.
* ``exchange.request_unsent``: set by the reverse proxy when the error it answers means no
  server got the request (the dial failed), so the request may be tried again.
* response backpressure: ``exchange.set_producer(producer)`` with a Producer
  (``pause_producing()``, ``resume_producing()``, ``stop_producing()``): the client connection
  tells the producer when its transport is full and when the client has gone.
* ``exchange.on_finish(callback)``: called once when the exchange is over (response ended or
  aborted, client gone, connection upgraded), e.g. to release an in-flight slot.
* ``exchange.send_continue()`` (an interim ``100 Continue``), ``exchange.cork()/uncork()`` (batch
  writes into one send) and ``exchange.upgrade(...)`` (hand both sockets to a byte relay after a
  ``101``).

Middlewares wrap a handler. They may:

* inspect or change ``exchange.request`` and then call ``self.next.handle(exchange)``;
* answer early without calling next (``exchange.respond(302, ...)``, 401, 403, 429);
* change the response head or transform its body by replacing the writer before calling next::

      exchange.writer = Compressing(exchange.writer)   # its start() edits the head and
      self.next.handle(exchange)                       # drops Content-Length, write()
                                                       # compresses, end() flushes

Writers form a chain from the outermost middleware's down to the connection's own writer; every
call goes down it synchronously, so backpressure still reaches the producer. After ``end()`` or
``abort()`` a handler must not touch the exchange again; the connection then records the request
(a RequestRecord handed to the entry point's observer) and goes on with the next one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from switchyard.http.exchange import Exchange
    from switchyard.http.message import ResponseHead

__all__ = [
    "Attempt",
    "BodyConsumer",
    "ConnectionInfo",
    "Handler",
    "Observer",
    "Producer",
    "RequestRecord",
    "ResponseWriter",
]


class Handler(Protocol):
    """Serves one request: answers through ``exchange.writer`` now or later, never blocks."""

    def handle(self, exchange: Exchange) -> None: ...


class ResponseWriter(Protocol):
    """Where a response goes: the client connection, or a middleware wrapping it."""

    def start(self, head: ResponseHead) -> None: ...
    def write(self, chunk: bytes) -> None: ...
    def end(self) -> None: ...
    def abort(self) -> None: ...


class BodyConsumer(Protocol):
    """Takes a request body as it arrives (the reverse proxy's upstream connection)."""

    def body_data(self, chunk: bytes) -> None: ...
    def body_end(self) -> None: ...
    def body_aborted(self) -> None: ...


class Producer(Protocol):
    """Produces a response body and can be paused (a backend connection); stop: client gone."""

    def pause_producing(self) -> None: ...
    def resume_producing(self) -> None: ...
    def stop_producing(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """What the entry point knows about a client connection when it hands it to HTTP.

    ``client_ip``/``client_port`` are after PROXY protocol; ``scheme`` is ``https`` when
    Switchyard terminated TLS, with the negotiated details beside it;
    ``tls_peer_certificates`` is the client's certificate chain (DER, its own first) when it
    sent one (only the client's own certificate before Python 3.13). ``tls_cipher`` is the
    negotiated suite as OpenSSL names it (``ssl``'s ``cipher()[0]``).
    """

    entry_point: str
    client_ip: str
    client_port: int
    local_ip: str = ""
    local_port: int = 0
    scheme: str = "http"
    tls_server_name: str | None = None
    tls_version: str | None = None
    tls_alpn: str | None = None
    tls_peer_certificates: tuple[bytes, ...] = ()
    tls_cipher: str | None = None

    @property
    def tls(self) -> bool:
        return self.scheme == "https"


@dataclass(frozen=True, slots=True)
class Attempt:
    """A response of a service's server that the client did not get as the request's own:
    one the retry middleware dropped to try again, or the page the errors middleware fetched.
    Traefik's service metrics count each of those requests at its service."""

    service: str
    status: int
    request_bytes: int
    response_bytes: int
    duration: float


class RequestRecord:
    """One served request, for metrics and the access log (made only when an observer is set).

    ``closed_by`` is ``""`` for a complete exchange, else ``"client"`` or ``"backend"`` (who went
    away first); ``status`` is 0 when no response was started. ``attempts`` are the earlier
    other responses of a service's servers the metrics count (see Attempt), oldest first.

    What Traefik's access log and metrics read beyond the basics:

    * ``path`` and ``query``: the request-target as the entry point normalized it, before
      middlewares rewrote it (``query`` None without a ``?``); ``host``: Go's ``req.Host`` (the
      Host field, or ``:authority``).
    * ``request_headers``: the request's fields as the router and its middlewares left them
      (Traefik logs the same shared header map); ``response_headers``: the response head the
      client was sent; ``origin_headers`` / ``origin_status`` / ``origin_bytes`` /
      ``origin_duration``: what the reverse proxy wrote (``origin_status`` 0 and
      ``origin_duration`` None when no server was tried); ``response_trailers``: trailer fields
      sent after the body (gRPC's ``grpc-status``). Header lists are the engine's own, read
      only when a field is logged.
    * ``router_service``: the service the router names (``service`` is the load balancer that
      picked a server, empty when a middleware answered).
    * ``client_username``: set by basicAuth, digestAuth and forwardAuth's ``headerField``;
      None when none of them named a user (Traefik logs ``-``).
    * ``tls_version`` / ``tls_cipher`` as ``ssl`` spells them, ``tls_peer_certificates`` (DER).
    * ``started_at``: when the request head was read, wall-clock time (0.0: not known).
    * ``access_logs`` / ``metrics``: the router's (or for a request no router took, the entry
      point's) ``observability`` switches; off, the observer leaves the request out.
    """

    __slots__ = ("access_logs", "attempts", "client_ip", "client_port", "client_username",
                 "closed_by", "duration", "entry_point", "host", "method", "metrics",
                 "origin_bytes", "origin_duration", "origin_headers", "origin_status", "path",
                 "protocol", "query", "request_bytes", "request_headers", "response_bytes",
                 "response_headers", "response_trailers", "router", "router_service", "server",
                 "service", "started_at", "status", "tls", "tls_cipher", "tls_peer_certificates",
                 "tls_version")

    def __init__(self, *, entry_point: str, router: str, service: str, server: str, method: str,
                 path: str, protocol: str, status: int, request_bytes: int, response_bytes: int,
                 duration: float, client_ip: str, client_port: int, tls: bool,
                 closed_by: str, attempts: tuple[Attempt, ...] = (), query: str | None = None,
                 host: str = "", router_service: str = "",
                 client_username: str | None = None,
                 request_headers: Sequence[tuple[bytes, bytes]] = (),
                 response_headers: Sequence[tuple[bytes, bytes]] = (),
                 response_trailers: Sequence[tuple[bytes, bytes]] = (),
                 origin_headers: Sequence[tuple[bytes, bytes]] = (), origin_status: int = 0,
                 origin_bytes: int = 0, origin_duration: float | None = None,
                 tls_version: str = "", tls_cipher: str = "",
                 tls_peer_certificates: tuple[bytes, ...] = (), started_at: float = 0.0,
                 access_logs: bool = True, metrics: bool = True) -> None:
        self.entry_point = entry_point
        self.router = router
        self.service = service
        self.server = server
        self.method = method
        self.path = path
        self.protocol = protocol
        self.status = status
        self.request_bytes = request_bytes
        self.response_bytes = response_bytes
        self.duration = duration
        self.client_ip = client_ip
        self.client_port = client_port
        self.tls = tls
        self.closed_by = closed_by
        self.attempts = attempts
        self.query = query
        self.host = host
        self.router_service = router_service
        self.client_username = client_username
        self.request_headers = request_headers
        self.response_headers = response_headers
        self.response_trailers = response_trailers
        self.origin_headers = origin_headers
        self.origin_status = origin_status
        self.origin_bytes = origin_bytes
        self.origin_duration = origin_duration
        self.tls_version = tls_version
        self.tls_cipher = tls_cipher
        self.tls_peer_certificates = tls_peer_certificates
        self.started_at = started_at
        self.access_logs = access_logs
        self.metrics = metrics

    def __repr__(self) -> str:
        return (f"RequestRecord({self.method} {self.path} -> {self.status}, "
                f"router={self.router!r}, service={self.service!r}, closed_by={self.closed_by!r})")


Observer = Callable[[RequestRecord], None]
