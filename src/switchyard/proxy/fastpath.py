"""The fast engine: client and backend sockets on one edge-triggered epoll per event loop.

The portable engine pays, per connection, for what asyncio gives every socket:
a uvloop transport and its handles, a Task and a Future to dial the backend,
`getpeername` and `TCP_NODELAY` asked or set per socket, a `getsockopt` to read
a connect's result, a `shutdown` before each close. (One `getsockname` per
accepted socket stays: Python checks every descriptor it wraps.) Here
the loop keeps the control side (providers, API, ACME, health checks, timers)
and sees this engine as one reader, its epoll descriptor. Each socket is
registered once (`EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET`), listeners accept in
batches, reads and writes pass `MSG_DONTWAIT`, a short read
means the socket is drained, backends are dialled with a non-blocking
`connect_ex` whose error is read only when epoll reports one, and closes wait
until the batch of events is handled, so a descriptor number is never reused
while an event for its old owner is still pending.

`FastTransport` gives a socket the asyncio transport interface, so every stage
(`connection.ClientConnection`, the relay, the TLS layer, the HTTP servers)
runs on it unchanged. `FastConnection` dials plain backends here; TLS
backends, STARTTLS passed through and names to resolve go to the portable
dialer, with the client staying on this engine.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import os
import select
import socket
import weakref
from collections.abc import Callable
from typing import Any

from switchyard.observability.record import CloseReason, Side
from switchyard.proxy.connection import ClientConnection
from switchyard.proxy.decision import Decision
from switchyard.proxy.dial import proxy_header
from switchyard.proxy.lifecycle import ConnectionHost
from switchyard.proxy.relay import BackendProtocol, Relay
from switchyard.services import Server, ServersTransport

log = logging.getLogger("switchyard.proxy")

_IN, _OUT = select.EPOLLIN, select.EPOLLOUT
_RDHUP, _ERR, _HUP = select.EPOLLRDHUP, select.EPOLLERR, select.EPOLLHUP
_MASK = _IN | _OUT | _RDHUP | select.EPOLLET
_READ_EVENTS = _IN | _RDHUP | _ERR | _HUP
_ENDED = _RDHUP | _ERR | _HUP  # after these, read until recv says 0 or fails
_DONTWAIT = socket.MSG_DONTWAIT
_READ_SIZE = 1 << 16
# A socket whose peer sends faster than we read yields after this many reads (1 MiB): the
# others in the batch get their turn, and it goes on at the next loop iteration.
_READS_PER_TURN = 16
_EVENTS_PER_POLL = 512
_ACCEPTS_PER_EVENT = 64
# asyncio's flow-control marks: pause_writing above the high one, resume below the low one.
HIGH_WATER = 64 * 1024
LOW_WATER = 16 * 1024
_AFTER_CONNECT = (errno.ECONNRESET, errno.EPIPE)  # connect errors only a connected socket has
_ACCEPT_BACKOFF = 0.1  # out of descriptors: try again after this long, not in a busy loop

ENGINE = os.environ.get("SWITCHYARD_ENGINE", "fast")
# A plain relay moves from this engine to uvloop's transports once its client has sent this
# many times (0: never). Each read and write here is a few Python calls where uvloop's are C:
# a connection that carries many requests is cheaper there, once the move (two transports
# made, about what a new connection costs the portable engine) has paid for itself.
MOVE_AFTER = int(os.environ.get("SWITCHYARD_MOVE_AFTER", "32"))


def available() -> bool:
    """Whether connections run on this engine here (Linux epoll, not opted out)."""
    return ENGINE != "portable" and hasattr(select, "epoll")


class Engine:
    """One epoll for a loop's fast sockets, read as one of the loop's readers."""

    __slots__ = ("__weakref__", "_after", "_batch", "_closing", "_epoll", "_registered",
                 "loop", "move_after")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        # Only uvloop's transports are C: the standard loop's would cost more per read.
        self.move_after = MOVE_AFTER if type(loop).__module__.startswith("uvloop") else 0
        self._epoll = select.epoll()
        self._registered: dict[int, FastTransport | Listener] = {}
        self._batch = False  # handling a poll's events: closes and callbacks wait
        self._closing: list[socket.socket] = []
        # Calls due once the batch's events are handled (connection_lost, resumed reads).
        self._after: list[tuple[Callable[[Any], None], Any]] = []
        loop.add_reader(self._epoll.fileno(), self._poll)

    def register(self, fd: int, owner: FastTransport | Listener, mask: int = _MASK) -> None:
        self._epoll.register(fd, mask)
        self._registered[fd] = owner

    def modify(self, fd: int, mask: int) -> None:
        self._epoll.modify(fd, mask)

    def forget(self, fd: int, sock: socket.socket, *, unregister: bool,
               lost: Callable[[Exception | None], None] | None = None,
               exc: Exception | None = None) -> None:
        """Stop delivering `fd`'s events; tell `lost` (connection_lost), then close the socket.

        Both wait, as asyncio's do, until after the call that closed the transport; in a
        batch, until its events are handled, so that no descriptor number is reused while
        an event for its old owner is pending. Closing a descriptor removes it from the
        epoll, unless a duplicate of it lives on (the splice relay's): `unregister` says
        one may."""
        self._registered.pop(fd, None)
        if unregister:
            try:
                self._epoll.unregister(fd)
            except OSError:
                pass
        if self._batch:
            if lost is not None:
                self._after.append((lost, exc))
            self._closing.append(sock)
        else:
            self.loop.call_soon(_end, sock, lost, exc)

    def release(self, fd: int) -> None:
        """Stop delivering `fd`'s events and let go of it, open: its socket moves elsewhere."""
        self._registered.pop(fd, None)
        try:
            self._epoll.unregister(fd)
        except OSError:
            pass

    def soon(self, callback: Callable[[Any], None], argument: Any) -> None:
        """`callback(argument)` after the current call: at the end of the batch, or on the
        loop's next turn outside one."""
        if self._batch:
            self._after.append((callback, argument))
        else:
            self.loop.call_soon(callback, argument)

    def _poll(self) -> None:
        try:
            events = self._epoll.poll(0, _EVENTS_PER_POLL)
        except InterruptedError:
            return
        registered = self._registered
        self._batch = True
        try:
            for fd, mask in events:
                owner = registered.get(fd)
                if owner is None:
                    continue  # closed earlier in this batch
                try:
                    owner.events(mask)
                except Exception as exc:  # a stage's bug ends its connection, not the engine
                    log.exception("unexpected error on a connection")
                    owner.fail(exc)
            after = self._after
            while after:
                self._after = []
                for callback, argument in after:
                    try:
                        callback(argument)
                    except Exception:
                        log.exception("unexpected error on a connection")
                after = self._after
        finally:
            self._batch = False
            if self._closing:  # no new list for a batch that closed nothing
                closing, self._closing = self._closing, []
                for sock in closing:
                    sock.close()


def _end(sock: socket.socket, lost: Callable[[Exception | None], None] | None,
         exc: Exception | None) -> None:
    try:
        if lost is not None:
            lost(exc)
    finally:
        sock.close()


_engines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Engine] = (
    weakref.WeakKeyDictionary())


def engine_for(loop: asyncio.AbstractEventLoop) -> Engine:
    engine = _engines.get(loop)
    if engine is None:
        engine = _engines[loop] = Engine(loop)
    return engine


class FastTransport:
    """A connected (or connecting) socket on the engine, with asyncio's transport interface.

    The socket stays blocking for everything but this transport's reads and writes,
    which pass MSG_DONTWAIT: no fcntl per accepted socket.
    """

    __slots__ = ("_closing", "_connecting", "_eof_sent", "_exposed", "_fd", "_lost",
                 "_missed", "_out", "_peer", "_reading", "_sock", "_sockname", "_want_eof",
                 "_writing_paused", "engine", "protocol")

    def __init__(self, engine: Engine, sock: socket.socket, protocol: Any,
                 peer: Any = None,
                 connecting: Callable[[FastTransport, OSError | None], None] | None = None,
                 ) -> None:
        self.engine = engine
        self._sock = sock
        self._fd = sock.fileno()
        self.protocol = protocol
        self._peer = peer
        self._sockname: Any = None
        self._connecting = connecting  # told the connect's outcome, then None
        self._reading = True
        self._missed = 0  # read events that came while reading was paused
        self._out = bytearray()  # what the kernel has not taken yet
        self._writing_paused = False
        self._want_eof = False
        self._eof_sent = False
        self._closing = False
        self._lost = False
        self._exposed = False  # its socket was handed out: a duplicate may exist
        engine.register(self._fd, self)

    # -- the engine's events ------------------------------------------------------------

    def events(self, mask: int) -> None:
        if self._connecting is not None:
            self._connect_result(mask)
            if self._lost or self._connecting is not None:
                return
        if mask & _OUT and self._out:
            self._flush()
        if mask & _READ_EVENTS:
            if self._reading:
                self._read(mask)
            elif not self._lost:
                self._missed |= mask & _READ_EVENTS

    def _connect_result(self, mask: int) -> None:
        told = self._connecting
        assert told is not None
        if mask & (_ERR | _HUP):
            code = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) or errno.ECONNREFUSED
            self._connecting = None
            if code in _AFTER_CONNECT:
                # The server accepted, then reset it before this event was handled: a
                # dialled connection that the backend ended, not a failed dial to retry.
                told(self, None)
                self._fatal(OSError(code, os.strerror(code)))
                return
            told(self, OSError(code, os.strerror(code)))
        elif mask & _OUT:
            self._connecting = None
            told(self, None)

    def _read(self, mask: int) -> None:
        # recv, not recv_into a shared buffer: a protocol needs its bytes object anyway, and
        # recv makes it in one call where recv_into needs a slice and a copy (0.3-0.5 µs).
        recv = self._sock.recv
        reads = _READS_PER_TURN
        while True:
            try:
                data = recv(_READ_SIZE, _DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._fatal(exc)
                return
            if not data:
                self._eof()
                return
            self.protocol.data_received(data)
            drained = len(data) < _READ_SIZE and not mask & _ENDED
            if not self._reading:
                if not drained:
                    self._missed |= mask | _IN  # more may be waiting for resume_reading
                return
            if drained:
                return  # a short read drained the socket: the next bytes bring a new edge
            reads -= 1
            if not reads:
                break
        self.engine.loop.call_soon(self._resume, mask | _IN)

    def _resume(self, mask: int) -> None:
        if self._reading and not self._lost:
            self._read(mask)

    def _eof(self) -> None:
        self._reading = False
        if not self.protocol.eof_received():
            self.close()

    # -- asyncio.Transport -------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or self._want_eof or not data:
            return
        out = self._out
        if not out:
            try:
                sent = self._sock.send(data, _DONTWAIT)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self._fatal(exc)
                return
            if sent == len(data):
                return
            out += memoryview(data)[sent:]
        else:
            out += data
        if len(out) > HIGH_WATER and not self._writing_paused:
            self._writing_paused = True
            self.protocol.pause_writing()

    def _flush(self) -> None:
        out = self._out
        try:
            sent = self._sock.send(out, _DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fatal(exc)
            return
        del out[:sent]
        if self._writing_paused and len(out) <= LOW_WATER:
            self._writing_paused = False
            self.protocol.resume_writing()
        if not out:
            if self._want_eof:
                self._shutdown()
            if self._closing:
                self._finalize(None)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if self._want_eof or self._closing:
            return
        self._want_eof = True
        if not self._out:
            # At the end of the batch: when the other side has finished too, the relay
            # closes both in the same batch, and a close sends this FIN by itself.
            self.engine.soon(FastTransport._shutdown, self)

    def _shutdown(self) -> None:
        if not self._eof_sent and not self._closing:
            self._eof_sent = True
            try:
                self._sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the peer is gone: its reset shows on the next read

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Stop reading; close once what is buffered has gone out."""
        if self._closing:
            return
        self._closing = True
        self._reading = False
        if not self._out or self._lost:
            self._finalize(None)

    def abort(self) -> None:
        self._closing = True
        self._reading = False
        self._out.clear()
        self._finalize(None)

    def fail(self, exc: Exception) -> None:
        self._fatal(exc)

    def _fatal(self, exc: Exception) -> None:
        self._closing = True
        self._reading = False
        self._out.clear()
        self._finalize(exc)

    def movable(self) -> bool:
        """Connected, reading, nothing queued, no FIN asked for: `hand_over` loses nothing."""
        return (self._reading and not self._out and not self._closing and not self._lost
                and not self._want_eof and self._connecting is None and not self._missed)

    def hand_over(self) -> socket.socket:
        """Let go of the socket, open, for another transport; this one ends silently (no
        connection_lost). Only when `movable`."""
        self._closing = self._lost = True
        self._reading = False
        self.protocol = None
        self.engine.release(self._fd)
        return self._sock

    def discard(self) -> None:
        """Close a socket whose connect never completed: no protocol to tell."""
        self._connecting = None
        self._closing = self._lost = True
        self.protocol = None
        self.engine.forget(self._fd, self._sock, unregister=False)

    def _finalize(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        self.engine.forget(self._fd, self._sock, unregister=self._exposed,
                           lost=self._tell_lost, exc=exc)

    def _tell_lost(self, exc: Exception | None) -> None:
        # The protocol holds this transport: letting go of it breaks the cycle, so that
        # reference counting frees both now rather than the garbage collector later.
        protocol, self.protocol = self.protocol, None
        protocol.connection_lost(exc)

    def pause_reading(self) -> None:
        self._reading = False

    def resume_reading(self) -> None:
        if self._reading or self._closing or self._lost:
            return
        self._reading = True
        if self._missed:
            missed, self._missed = self._missed, 0
            self.engine.soon(self._resume, missed)

    def is_reading(self) -> bool:
        return self._reading

    def get_write_buffer_size(self) -> int:
        return len(self._out)

    def get_extra_info(self, name: str, default: object = None) -> object:
        if name == "peername":
            if self._peer is None:
                self._peer = self._ask(self._sock.getpeername)
            return self._peer
        if name == "sockname":
            if self._sockname is None:
                self._sockname = self._ask(self._sock.getsockname)
            return self._sockname
        if name == "socket":
            self._exposed = True
            return self._sock
        return default

    @staticmethod
    def _ask(question: Callable[[], Any]) -> Any:
        try:
            return question()
        except OSError:
            return None


class Listener:
    """A listening socket on the engine: accepts in batches, each client on a FastTransport."""

    __slots__ = ("_engine", "_factory", "_fd", "_paused", "_sock", "closed")

    def __init__(self, engine: Engine, sock: socket.socket,
                 factory: Callable[[], asyncio.Protocol]) -> None:
        self._engine = engine
        self._sock = sock
        self._fd = sock.fileno()
        self._factory = factory
        self._paused = False
        self.closed = False
        engine.register(self._fd, self, _IN)  # level-triggered: a full batch leaves it ready

    def events(self, mask: int) -> None:
        accept, engine, factory = self._sock.accept, self._engine, self._factory
        for _ in range(_ACCEPTS_PER_EVENT):
            try:
                sock, peer = accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue  # that client gave up while queued
                self._back_off(exc)
                return
            protocol = factory()
            protocol.connection_made(FastTransport(engine, sock, protocol, peer))  # type: ignore[arg-type]

    def _back_off(self, exc: OSError) -> None:
        """Out of descriptors or memory: stop accepting for a moment instead of spinning."""
        log.warning("cannot accept connections: %s; retrying in %gs", exc, _ACCEPT_BACKOFF)
        self._paused = True
        self._engine.modify(self._fd, 0)
        self._engine.loop.call_later(_ACCEPT_BACKOFF, self._resume)

    def _resume(self) -> None:
        if not self.closed and self._paused:
            self._paused = False
            self._engine.modify(self._fd, _IN)

    def fail(self, exc: Exception) -> None:
        self._back_off(OSError(str(exc)))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._engine.forget(self._fd, self._sock, unregister=True)


def serve(sock: socket.socket, factory: Callable[[], asyncio.Protocol]) -> Listener:
    """Accept `sock`'s connections on the running loop's engine."""
    return Listener(engine_for(asyncio.get_running_loop()), sock, factory)


# -- dialling plain backends -------------------------------------------------------------

_families: dict[str, int | None] = {}  # host -> address family, None: a name to resolve


def _family(host: str) -> int | None:
    family = _families.get(host, -1)
    if family == -1:
        try:
            family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
        except ValueError:
            family = None
        if len(_families) < 4096:
            _families[host] = family
    return family


class FastConnection(ClientConnection):
    """A client connection whose plain backends are dialled on the engine.

    A plain relay that stays busy moves to the loop's transports (`MOVE_AFTER`): both
    sockets leave the engine open, the backend's transport is made first, and backend
    bytes that come before the client's is made are held by the relay.
    """

    __slots__ = ("_attempt", "_dial_timer", "_dialling", "_move_task", "_moving_backend",
                 "_moving_client")

    def __init__(self, host: ConnectionHost) -> None:
        ClientConnection.__init__(self, host)
        self._dialling: FastTransport | None = None
        self._dial_timer: asyncio.TimerHandle | None = None
        self._attempt: tuple[Decision, Server, ServersTransport, list[Server], bytes] | None = None
        # Sockets between the engine and the loop's transports, until one of those owns them.
        self._moving_client: socket.socket | None = None
        self._moving_backend: socket.socket | None = None
        self._move_task: asyncio.Task[None] | None = None  # held: the loop keeps weak ones

    def _start_dial(self, decision: Decision, server: Server, transport: ServersTransport,
                    tried: list[Server]) -> None:
        family = None if server.tls or self.record.postgres or self.record.smtp else (
            _family(server.host))
        route = decision.route
        assert route is not None
        if family is None or route.tls_context is not None or not isinstance(
                self.transport, FastTransport):
            ClientConnection._start_dial(self, decision, server, transport, tried)
            return
        header = b""
        if transport.proxy_protocol_version:
            header = proxy_header(transport, (self.record.client_ip, self.record.client_port),
                                  self._local, sni=self.record.sni)
        engine = self.transport.engine
        sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            code = sock.connect_ex((server.host, server.port))
        except OSError as exc:
            sock.close()
            self._dial_failed(decision, server, transport, tried, str(exc))
            return
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            self._dial_failed(decision, server, transport, tried,
                              str(OSError(code, os.strerror(code))))
            return
        self._attempt = (decision, server, transport, tried, header)
        self._dialling = FastTransport(engine, sock, None, (server.host, server.port),
                                       connecting=self._dialled)
        if transport.dial_timeout > 0:
            self._dial_timer = engine.loop.call_later(transport.dial_timeout, self._dial_expired)

    def _dialled(self, backend: FastTransport, error: OSError | None) -> None:
        attempt = self._attempt
        assert attempt is not None
        decision, server, transport, tried, header = attempt
        self._attempt = self._dialling = None
        if self._dial_timer is not None:
            self._dial_timer.cancel()
            self._dial_timer = None
        if error is not None:
            backend.discard()
            self._dial_failed(decision, server, transport, tried, str(error))
            return
        relay = self._relay
        assert relay is not None
        backend.protocol = protocol = BackendProtocol(relay)
        protocol.connection_made(backend)  # type: ignore[arg-type]
        if header:
            backend.write(header)
        self._relayed_on(server)
        self._dialled_transport = transport
        self._relaying(decision)

    # -- moving a busy relay to the loop's transports ---------------------------------------

    def _relaying(self, decision: Decision) -> None:
        ClientConnection._relaying(self, decision)
        client, relay = self.transport, self._relay
        if (isinstance(client, FastTransport) and client.engine.move_after > 0
                and relay is not None and self.record.reason is None):
            relay.when_busy(client.engine.move_after, self._busy)

    def _busy(self) -> None:
        # Told from inside a read: the move waits until the engine's batch is handled.
        assert isinstance(self.transport, FastTransport)
        self.transport.engine.soon(FastConnection._move, self)

    def _move(self) -> None:
        relay, client = self._relay, self.transport
        if relay is None or self.record.reason is not None or not isinstance(
                client, FastTransport):
            return
        # A backend dialled by the portable dialler (TLS termination) has its transport.
        backend, tls = relay.backend, self._tls
        fast_backend = backend if isinstance(backend, FastTransport) else None
        if not (relay.settled and client.movable() and (tls is None or tls.settled)
                and (fast_backend is None or fast_backend.movable())):
            relay.when_busy(client.engine.move_after, self._busy)  # flow control: later
            return
        relay.moving()
        self._moving_client = client.hand_over()
        self._moving_backend = fast_backend.hand_over() if fast_backend is not None else None
        # What the client's reads go to: the relay, or the TLS layer that decrypts for it.
        self._move_task = self._host.loop.create_task(self._adopt(relay, self._on_data))

    async def _adopt(self, relay: Relay, on_data: Callable[[bytes], None]) -> None:
        """Give the backend's socket a transport, then the client's; stop if closed meanwhile.

        A socket is the transport's from the call that makes it, even if that call fails:
        `_release` closes only what no transport owns yet."""
        try:
            await self._adopt_both(relay, on_data)
        except asyncio.CancelledError:  # the loop is shutting down: the transport half-made
            self.close(CloseReason.SHUTDOWN, "", Side.SWITCHYARD)  # by uvloop is closed by it
            self._finish()
            raise
        finally:
            self._move_task = None

    async def _adopt_both(self, relay: Relay, on_data: Callable[[bytes], None]) -> None:
        loop = self._host.loop
        backend_sock, client_sock = self._moving_backend, self._moving_client
        if client_sock is None:
            return  # closed before this task began: `_release` closed the sockets
        if backend_sock is not None:
            self._moving_backend = None
            try:
                backend, _ = await loop.connect_accepted_socket(
                    lambda: BackendProtocol(relay), backend_sock)
            except OSError as exc:
                self.close(CloseReason.BACKEND_CLOSED, f"backend connection lost: {exc}",
                           Side.BACKEND)
                return
            if self.record.reason is not None:  # closed meanwhile: `_release` closed the
                backend.close()  # client's socket
                return
        self._moving_client = None
        try:
            client, _ = await loop.connect_accepted_socket(
                lambda: _MovedClient(self, on_data), client_sock)
        except OSError as exc:
            self.close(CloseReason.CLIENT_CLOSED, f"client connection lost: {exc}", Side.CLIENT)
            self._finish()  # no transport of its own will say connection_lost
            return
        if self.record.reason is not None:
            client.close()  # closed meanwhile: its connection_lost finishes the connection

    def client_moved(self, client: asyncio.Transport) -> None:
        """The client's new transport is made: it is the connection's, and the relay's."""
        self.transport = client
        if self._relay is not None and self.record.reason is None:
            if self._tls is not None:
                self._tls.moved(client)
                self._relay.moved(self._tls)
            else:
                self._relay.moved(client)

    def _dial_expired(self) -> None:
        self._dial_timer = None
        attempt, backend = self._attempt, self._dialling
        if attempt is None or backend is None:
            return
        self._attempt = self._dialling = None
        backend.discard()
        decision, server, transport, tried, _ = attempt
        self._dial_failed(decision, server, transport, tried,
                          f"timed out after {transport.dial_timeout:g}s")

    def _dial_failed(self, decision: Decision, server: Server, transport: ServersTransport,
                     tried: list[Server], error: str) -> None:
        assert decision.route is not None
        retry = self._retry_or_fail(decision.route, server, error, tried)
        if retry is not None:
            self._start_dial(decision, retry[0], retry[1], tried)

    def _release(self) -> None:
        if self._dial_timer is not None:
            self._dial_timer.cancel()
            self._dial_timer = None
        if self._dialling is not None:
            self._dialling.discard()
            self._dialling = self._attempt = None
        ClientConnection._release(self)
        for sock in (self._moving_backend, self._moving_client):
            if sock is not None:
                sock.close()
        self._moving_backend = None
        if self._moving_client is not None:
            # No transport owns the client's socket: none will say connection_lost.
            self._moving_client = None
            self._finish()


class _MovedClient(asyncio.Protocol):
    """The client side of a relay moved to the loop's transports.

    Its events go straight to the connection and the relay (bound per connection, as
    `BackendProtocol` does): no hop per read."""

    __slots__ = ("_connection", "connection_lost", "data_received", "eof_received",
                 "pause_writing", "resume_writing")
    data_received: Callable[[bytes], None]  # type: ignore[assignment]
    eof_received: Callable[[], bool | None]
    connection_lost: Callable[[Exception | None], None]  # type: ignore[assignment]
    pause_writing: Callable[[], None]
    resume_writing: Callable[[], None]

    def __init__(self, connection: FastConnection, on_data: Callable[[bytes], None]) -> None:
        self._connection = connection
        self.data_received = on_data
        self.eof_received = connection.eof_received
        self.connection_lost = connection.connection_lost
        self.pause_writing = connection.pause_writing
        self.resume_writing = connection.resume_writing

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._connection.client_moved(transport)  # type: ignore[arg-type]
