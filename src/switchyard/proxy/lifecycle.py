"""What every client connection goes through, whichever engine moves its bytes.

A connection reads its preamble (PROXY header, SSLRequest, ClientHello) within
the entry point's deadlines, is routed by the one routing decision, passes its
middlewares, is opened on a server, and ends in one place, `close`, which
counts it and writes its access log line. `Lifecycle` holds that part; an
engine subclasses it and supplies the I/O: the portable one
(`connection.ClientConnection`, asyncio transports, every protocol) and the
fast one (`fastpath.FastConnection`, the same stages on sockets of one
edge-triggered epoll; it dials plain backends itself and leaves the other
dials to the portable code).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from switchyard.observability.record import CloseReason, ConnectionRecord, Phase, Side
from switchyard.observability.stats import STATS
from switchyard.proxy import preamble as pre
from switchyard.proxy.decision import (
    Action,
    ChallengeResponder,
    Decision,
    decide,
    decide_at_accept,
    decide_silent,
)
from switchyard.proxy.smtp import ClientDialogue
from switchyard.services import Server, ServersTransport

if TYPE_CHECKING:
    import socket

    from switchyard.observability.accesslog import AccessLog
    from switchyard.routing.table import Route, RoutingTable

log = logging.getLogger("switchyard.proxy")


class LiveConnection(Protocol):
    """A connection as its entry point, the API and reloads see it."""

    record: ConnectionRecord

    def close(self, reason: CloseReason, detail: str = "", by: Side = Side.SWITCHYARD) -> None: ...
    def drain(self, timeout: float, detail: str) -> None: ...
    def socket(self) -> socket.socket | None: ...


class ConnectionHost(Protocol):
    """What a connection needs from its entry point."""

    @property
    def name(self) -> str: ...
    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop it accepts on: asked once per timer, where asyncio.get_running_loop()
        would cost a getpid system call on Python 3.11."""
    @property
    def table(self) -> RoutingTable: ...
    @property
    def access_log(self) -> AccessLog | None: ...
    @property
    def acme_resolvers(self) -> Sequence[ChallengeResponder]: ...

    def proxy_trust(self, client_ip: str) -> bool | None: ...
    def opened(self, conn: LiveConnection) -> None: ...
    def closed(self, conn: LiveConnection) -> None: ...


class Lifecycle:
    """The stages of one connection up to the dial, and its end; the I/O is the subclass's.

    A subclass calls `_begin` once the client's address is in the record, feeds
    what it reads to `_read_preamble`, and provides `_reply` (bytes to the
    client during the preamble), `_take` (carry out a decision that is not a
    refusal), `_connect` (dial the picked server), `_local` (the address the
    client reached), `_release` (let go of sockets and stages when closing) and
    `_dropped` (forget its stages once finished).
    """

    __slots__ = ("_deadline", "_drain", "_finished", "_host", "_idle", "_life", "_on_close",
                 "_peek_timer", "_pending", "_preamble", "_server", "_table", "record")

    def __init__(self, host: ConnectionHost, record: ConnectionRecord | None = None) -> None:
        self._host = host
        self._table = host.table  # the table current at accept time serves the whole connection
        self.record = record if record is not None else ConnectionRecord(host.name)
        self._preamble: pre.Preamble | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._peek_timer: asyncio.TimerHandle | None = None  # the entry point's peekTimeout
        self._pending = b""  # read before routing; whoever takes the connection gets it first
        self._on_close: list[Callable[[], None]] = []
        self._finished = False
        self._server: Server | None = None  # the server it is open on, once picked
        self._idle: asyncio.TimerHandle | None = None  # the router's idleTimeout check
        self._life: asyncio.TimerHandle | None = None  # the router's maxDuration
        self._drain: asyncio.TimerHandle | None = None  # onChange: drain

    # -- the engine's part ---------------------------------------------------------

    def _reply(self, data: bytes) -> None:
        raise NotImplementedError

    def _take(self, decision: Decision) -> None:
        raise NotImplementedError

    def _connect(self, decision: Decision) -> None:
        raise NotImplementedError

    def _local(self) -> tuple[str, int]:
        raise NotImplementedError

    def _release(self) -> None:
        raise NotImplementedError

    def _dropped(self) -> None:
        raise NotImplementedError

    def socket(self) -> socket.socket | None:
        """The client's socket, wherever it is now."""
        raise NotImplementedError

    # -- what middlewares see (Admissible) -----------------------------------------

    @property
    def client_ip(self) -> str:
        return self.record.client_ip

    def on_close(self, callback: Callable[[], None]) -> None:
        self._on_close.append(callback)

    # -- stage 1: the preamble -----------------------------------------------------

    def _begin(self) -> None:
        """The client is known by its address: route at once, or start reading the preamble."""
        record = self.record
        trusted = self._host.proxy_trust(record.client_ip)
        if trusted is None and self._route_at_accept():
            return  # routed before reading: no preamble to read
        hostname = self._table.smtp_hostname
        self._preamble = pre.Preamble((record.client_ip, record.client_port), trusted,
                                      None if hostname is None else ClientDialogue(hostname))
        if trusted is not None:
            record.phase = Phase.PROXY_HEADER
        self._arm_deadline()
        if trusted is None:
            self._arm_peek_timeout()
            if hostname is not None:
                self._handle(self._preamble.feed(b""))  # the SMTP greeting

    def _arm_deadline(self) -> None:
        timeout = self._table.read_timeout
        if timeout > 0:
            self._deadline = self._host.loop.call_later(timeout, self._expired)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self._peek_timer is not None:
            self._peek_timer.cancel()
            self._peek_timer = None

    def _arm_peek_timeout(self) -> None:
        timeout = self._table.peek_timeout
        if timeout > 0 and self._table.plain:
            self._peek_timer = self._host.loop.call_later(timeout, self._peek_expired)

    def _peek_expired(self) -> None:
        """Silent so far: a server-first protocol (MySQL, SMTP) waits for the backend to speak."""
        self._peek_timer = None
        preamble = self._preamble
        if preamble is None or not preamble.silent or self.record.reason is not None:
            return
        decision = decide_silent(self._table, self.record.client_ip)
        if decision is None:
            return  # no non-TLS router takes it: readTimeout still applies
        self._cancel_deadline()
        self._dispatch(decision)

    def _expired(self) -> None:
        self._deadline = None
        assert self._preamble is not None
        self._handle(self._preamble.expire(), after_deadline=True)

    def _read_preamble(self, data: bytes) -> None:
        if self._preamble is None:
            return  # refused at accept: the connection is closing
        self._handle(self._preamble.feed(data))

    def _handle(self, event: pre.Event, after_deadline: bool = False) -> None:
        preamble = self._preamble
        assert preamble is not None
        while True:
            if event is pre.NEED_MORE:
                return
            if isinstance(event, pre.Reply):
                self._reply(event.data)
            elif isinstance(event, pre.Addressed):
                self.record.client_ip, self.record.client_port = preamble.client
                self.record.phase = Phase.PEEKING
                if self._route_at_accept():
                    return
                if not after_deadline:
                    self._arm_peek_timeout()
                if after_deadline:
                    # No header in time counts as no header, but no second deadline.
                    event = pre.Refused(CloseReason.PEEK_TIMEOUT,
                                        "timed out waiting for the client's first bytes")
                    continue
            elif isinstance(event, pre.Refused):
                self.close(event.reason, event.detail, Side.SWITCHYARD)
                return
            else:
                assert isinstance(event, pre.Peeked)
                self._peeked(event)
                return
            if self.record.reason is not None:
                return  # a reply could not be written
            event = preamble.feed(b"")

    def _route_at_accept(self) -> bool:
        """Server-first protocols (SMTP, MySQL, SSH banners) need the backend before any byte."""
        decision = decide_at_accept(self._table, self.record.client_ip)
        if decision is None:
            return False
        self._cancel_deadline()
        if self._preamble is not None:
            self._pending = self._preamble.buffered  # what followed a PROXY header, if anything
        self._dispatch(decision)
        return True

    def _peeked(self, peeked: pre.Peeked) -> None:
        self._cancel_deadline()
        record = self.record
        record.postgres, record.smtp = peeked.postgres, peeked.smtp
        if peeked.hello is not None:
            record.is_tls = True
            record.sni, record.alpn = peeked.hello.sni, peeked.hello.alpn
            record.tls_versions = peeked.hello.versions
        self._pending = peeked.data
        # After a STARTTLS (Postgres or SMTP) only TCP TLS routers may take the hello.
        self._dispatch(decide(self._table, peeked.meta, postgres=peeked.postgres or peeked.smtp,
                              challenges=self._host.acme_resolvers))

    # -- stage 2: the decision, carried out -----------------------------------------

    def _dispatch(self, decision: Decision) -> None:
        record = self.record
        route = decision.route
        if route is not None:
            record.router, record.service = route.name, route.service_name
        if decision.action is Action.REFUSE:
            assert decision.reason is not None
            if decision.reason is CloseReason.REJECTED and route is not None:
                STATS.rejected(record.entrypoint, route.name, decision.verdicts[-1][0].name)
            self.close(decision.reason, decision.detail, Side.SWITCHYARD)
            return
        self._take(decision)

    def _forward(self, decision: Decision) -> None:
        """Let the middlewares count it, open it on its server, dial."""
        route, record = decision.route, self.record
        assert route is not None and decision.server is not None
        if route.max_duration > 0:
            self._life = self._host.loop.call_later(
                route.max_duration, self.close, CloseReason.MAX_DURATION,
                f'open longer than router "{route.name}" allows ({route.max_duration:g}s)',
                Side.SWITCHYARD)
        for middleware, _ in decision.verdicts:
            middleware.enter(self)
        record.phase = Phase.DIALING
        self._assign(decision.server)
        STATS.routed(route.name, route.service_name, record.server)
        self._connect(decision)

    def _assign(self, server: Server) -> None:
        """The connection counts as open on `server` until it ends (p2c, leastConn read it)."""
        self.record.server = server.address
        server.open += 1
        self._server = server

    def _moved(self, service: str, old: Server, new: Server) -> None:
        """A retry: the connection now belongs to `new` in the counters and the record."""
        STATS.moved(service, old.address, new.address)
        old.open -= 1
        self._assign(new)

    def _next_server(self, route: Route, server: Server, error: str,
                     tried: list[Server]) -> tuple[Server, ServersTransport] | None:
        """`server` could not be reached: log and count it, then the server to try next, if
        the retry budget allows (nothing was sent to it: another server may take the
        connection), already holding the connection in the counters; None: give up."""
        server.outcome(failed=True)
        log.warning('router "%s": cannot reach server %s: %s', route.name, server.address, error)
        tried.append(server)
        retry = (route.service.pick(self.record.client_ip, tried)
                 if len(tried) < server.attempts else None)
        if retry is not None:
            self._moved(route.service_name, server, retry[0])
        return retry

    def _relayed_on(self, server: Server) -> None:
        """Dialled: passive health counts how the relayed connection ends."""
        if server.failures is not None:
            self.on_close(lambda: server.outcome(failed=backend_failed(self.record)))

    # -- timers over the relay ---------------------------------------------------------

    def _watch_idle(self, timeout: float) -> None:
        """One timer per quiet stretch, not per read: it looks at the last traffic when due."""
        wait = self.record.last_activity + timeout - time.monotonic()  # the record's clock
        if wait <= 0 and self.record.phase is Phase.RELAYING:
            self._idle = None
            self.close(CloseReason.IDLE_TIMEOUT, f"no traffic either way for {timeout:g}s",
                       Side.SWITCHYARD)
            return
        self._idle = self._host.loop.call_later(max(wait, 0.001), self._watch_idle,
                                                           timeout)

    def drain(self, timeout: float, detail: str) -> None:
        """A reload changed its route (onChange): close within `timeout` (0: now)."""
        if timeout <= 0:
            self.close(CloseReason.CONFIG_CHANGED, detail, Side.SWITCHYARD)
        elif self._drain is None and self.record.reason is None:
            self._drain = self._host.loop.call_later(
                timeout, self.close, CloseReason.CONFIG_CHANGED,
                f"{detail}; not finished within drainTimeout {timeout:g}s", Side.SWITCHYARD)

    # -- the end ---------------------------------------------------------------------

    def close(self, reason: CloseReason, detail: str = "", by: Side = Side.SWITCHYARD) -> None:
        """End the connection on both sides; pending writes are flushed first."""
        record = self.record
        if record.reason is not None:
            return
        record.finish(reason, detail, by)
        if detail and reason not in (CloseReason.NORMAL, CloseReason.CLIENT_CLOSED):
            log.debug("%s:%d %s: %s", record.client_ip, record.client_port, reason.value, detail)
        if self._deadline is not None or self._peek_timer is not None:
            self._cancel_deadline()
        for timer in (self._idle, self._life, self._drain):
            if timer is not None:
                timer.cancel()
        self._idle = self._life = self._drain = None
        self._release()

    def _finish(self) -> None:
        """The client socket is gone: release middleware slots, count, log."""
        if self._finished:
            return
        self._finished = True
        host = self._host
        host.closed(self)
        if self._server is not None:
            self._server.open -= 1
            self._server = None
        callbacks, self._on_close = self._on_close, []
        for callback in callbacks:
            callback()
        self._dropped()
        STATS.finished(self.record)
        if host.access_log is not None and not self.record.http:  # requests log themselves
            host.access_log.record(self.record)


def backend_failed(record: ConnectionRecord) -> bool:
    """A relayed connection counts against its server when the backend reset or cut it."""
    return record.reason is CloseReason.BACKEND_CLOSED and bool(record.detail)
