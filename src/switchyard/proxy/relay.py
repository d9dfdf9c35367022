"""The relay: bytes both ways between a client and its backend until both have finished.

It owns everything about the streams once a server is dialled: the bytes
peeked before routing (sent first, so nothing read is lost), backend bytes held
until the client side can take them (a TLS handshake still running), both EOF
flags and the half-close that passes each FIN on, the termination delay after a
half-close, backpressure in both directions, and the move of a busy plaintext
stream to `os.splice`.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable
from typing import Protocol, cast

from switchyard.observability.record import CloseReason, ConnectionRecord, Phase, Side
from switchyard.observability.stats import STATS
from switchyard.proxy.splice import SpliceRelay, detach_socket, splice_available

# Zero-copy relaying of plaintext streams. A relay starts on the event loop's
# transports (cheapest to set up) and moves to os.splice once it has carried
# SWITCHYARD_SPLICE_AFTER bytes in large reads, so bulk streams are zero-copy
# while short or chatty ones pay nothing extra. SWITCHYARD_SPLICE=0 never
# splices (the portable path); =always splices from the first byte.
_SPLICE_MODE = os.environ.get("SWITCHYARD_SPLICE", "1") if splice_available() else "0"
SPLICE_ALWAYS = _SPLICE_MODE == "always"
SPLICE_AFTER = 0 if _SPLICE_MODE == "0" else int(
    os.environ.get("SWITCHYARD_SPLICE_AFTER", str(1 << 20)))
# A read this large means the sender is ahead of us: a bulk stream, not a
# request/response exchange (those never move to splice).
_BULK_READ = 16 * 1024
_DRAIN_POLL = 0.002  # while waiting for user-space buffers to empty before splicing

Closer = Callable[[CloseReason, str, Side], None]


class ClientSide(Protocol):
    """Where backend bytes go: the client's transport, or the TLS layer over it."""

    def write(self, data: bytes) -> None: ...
    def write_eof(self) -> None: ...
    def can_write_eof(self) -> bool: ...
    def is_closing(self) -> bool: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def get_write_buffer_size(self) -> int: ...
    def get_extra_info(self, name: str, default: object = None) -> object: ...


class Relay:
    """Relays one connection; `close` ends it (the connection owns the client socket)."""

    __slots__ = ("_backend", "_backend_eof", "_backend_lost", "_backend_paused", "_busy",
                 "_busy_in", "_client", "_client_eof", "_close", "_delay", "_delay_timer",
                 "_held", "_loop", "_ready", "_record", "_splice", "_splice_at", "_started",
                 "spliced")

    def __init__(self, record: ConnectionRecord, client: ClientSide, close: Closer, *,
                 loop: asyncio.AbstractEventLoop, termination_delay: float,
                 plaintext: bool) -> None:
        self._record = record
        self._loop = loop
        self._client = client
        self._close = close
        self._delay = termination_delay  # negative: never force-close after a half-close
        self._delay_timer: asyncio.TimerHandle | None = None
        self._backend: asyncio.Transport | None = None
        self._backend_lost: str | None = None  # reset before the relay started
        self._started = False
        self._ready = False  # the client side takes bytes (TLS handshake done)
        self._held = bytearray()  # backend bytes waiting for the client side
        self._backend_paused = False  # by us, while holding: resumed when the client is ready
        self._client_eof = False
        self._backend_eof = False
        self._splice: SpliceRelay | None = None
        # The splice relay owns both sockets; the transports have let go of them. An attribute,
        # not a property: the connection asks on every close.
        self.spliced = False
        # Bytes still to pass in large reads before moving to splice (0: never).
        self._splice_at = SPLICE_AFTER if plaintext and not SPLICE_ALWAYS else 0
        if plaintext and SPLICE_ALWAYS:
            self._splice_at = -1  # splice as soon as the relay starts
        self._busy_in = 0  # reads from the client still to go before `_busy` is told (0: never)
        self._busy: Callable[[], None] | None = None

    @property
    def client_socket(self) -> socket.socket | None:
        return self._splice.client if self._splice is not None else None

    def send_to_backend(self, data: bytes) -> None:
        """Bytes of Switchyard's own, ahead of the client's (a PROXY header sent after the
        client's TLS handshake); not counted as the client's."""
        if self._backend is not None and not self._backend.is_closing():
            self._backend.write(data)

    @property
    def backend(self) -> asyncio.Transport | None:
        return self._backend

    @property
    def settled(self) -> bool:
        """Relaying both ways with nothing pending: no FIN yet, no splice, no held bytes."""
        return (self._started and self._ready and not self._client_eof
                and not self._backend_eof and not self._held and self._splice is None
                and self._record.phase is Phase.RELAYING and self._record.reason is None)

    def when_busy(self, reads: int, told: Callable[[], None]) -> None:
        """Call `told` once the client has sent `reads` more times (the fast engine moves a
        long-lived relay to the loop's own transports then)."""
        self._busy_in, self._busy = reads, told

    def moving(self) -> None:
        """The client's transport is being replaced: hold backend bytes until `moved`."""
        self._ready = False
        self._record.phase = Phase.UPGRADING

    def moved(self, client: ClientSide) -> None:
        """The client side is `client` now: bytes held meanwhile go out, then the rest."""
        self._client = client
        self._record.phase = Phase.RELAYING
        self.client_ready()

    def forbid_splice_unless(self, *, plain: bool) -> None:
        """A retry dials another server: splice only if that one is plaintext too."""
        if not plain:
            self._splice_at = 0

    # -- set-up ----------------------------------------------------------------------

    def attach(self, backend: asyncio.Transport) -> None:
        self._backend = backend

    def start(self, first: bytes, *, client_ready: bool) -> None:
        """The backend is dialled: send what was read before routing, then let bytes flow."""
        assert self._backend is not None
        self._started = True
        self._record.phase = Phase.RELAYING
        self._record.last_activity = time.monotonic()
        if self._backend_lost is not None:
            self._close(CloseReason.BACKEND_CLOSED, self._backend_lost, Side.BACKEND)
            return
        if first:
            self._record.bytes_in += len(first)
            self._backend.write(first)
        if client_ready:
            self.client_ready()
        if self._client_eof:
            self._pass_client_eof()
        else:
            self._client.resume_reading()
        if self._splice_at < 0 and not self._record.reason:
            self._begin_splice()

    def client_ready(self) -> None:
        """The client side can take bytes: held ones first, then a FIN that came meanwhile."""
        self._ready = True
        if self._held:
            held, self._held = bytes(self._held), bytearray()
            self._to_client(held)
        if self._backend_eof:
            self._pass_backend_eof()
        elif self._backend_paused and self._backend is not None and not self._backend.is_closing():
            # Only when held bytes paused it: a needless resume costs a system call.
            self._backend_paused = False
            self._backend.resume_reading()

    # -- bytes -----------------------------------------------------------------------

    def from_client(self, data: bytes) -> None:
        record = self._record
        record.bytes_in += len(data)
        record.last_activity = time.monotonic()
        assert self._backend is not None
        self._backend.write(data)
        if self._splice_at > 0 and len(data) >= _BULK_READ:
            self._count_bulk(len(data))
        if self._busy_in:
            self._busy_in -= 1
            if not self._busy_in and self._busy is not None:
                self._busy()

    def from_backend(self, data: bytes) -> None:
        if not self._ready:
            # Server-first backends may speak before the client side is ready:
            # hold it, and stop reading so a chatty one cannot grow this buffer.
            self._held += data
            assert self._backend is not None
            self._backend.pause_reading()
            self._backend_paused = True
            return
        self._to_client(data)

    def _to_client(self, data: bytes) -> None:
        record = self._record
        record.bytes_out += len(data)
        record.last_activity = time.monotonic()
        self._client.write(data)
        if self._splice_at > 0 and len(data) >= _BULK_READ:
            self._count_bulk(len(data))

    # -- half-close ------------------------------------------------------------------

    def client_eof(self) -> None:
        if self._client_eof:
            return
        self._client_eof = True
        if self._started:
            self._pass_client_eof()

    def backend_eof(self) -> None:
        self._backend_eof = True
        if self._started and self._ready and not self._held:
            self._pass_backend_eof()
        # Otherwise the FIN follows the held bytes, once the client side is ready.

    def _pass_client_eof(self) -> None:
        backend = self._backend
        if backend is not None and not backend.is_closing() and backend.can_write_eof():
            backend.write_eof()
        self._half_closed(Side.CLIENT)

    def _pass_backend_eof(self) -> None:
        client = self._client
        if not client.is_closing() and client.can_write_eof():
            client.write_eof()
        self._half_closed(Side.BACKEND)

    def _half_closed(self, side: Side) -> None:
        """One side finished sending: end when both have, else give the other the delay."""
        if self._record.first_fin is None:
            self._record.first_fin = side
        if self._client_eof and self._backend_eof:
            self._close(CloseReason.NORMAL, "", side)
            return
        if self._delay >= 0 and self._delay_timer is None:
            self._delay_timer = self._loop.call_later(
                self._delay, self._close, CloseReason.TERMINATION_DELAY,
                f"the other side did not finish within {self._delay:g}s of a half-close",
                Side.SWITCHYARD)

    def backend_lost(self, exc: Exception | None) -> None:
        if self._splice is not None or self._record.reason is not None:
            return  # a socket the splice relay now owns, or the end of a connection that ended
        detail = f"backend connection lost: {exc}" if exc else ""
        if not self._started:
            if not self._backend_eof:
                self._backend_lost = detail or "backend closed before the relay started"
            return
        self._close(CloseReason.BACKEND_CLOSED, detail, Side.BACKEND)

    # -- backpressure ----------------------------------------------------------------

    def client_full(self) -> None:
        """The client reads slower than the backend sends: stop reading the backend."""
        if self._backend is not None:
            self._backend.pause_reading()

    def client_drained(self) -> None:
        backend = self._backend
        if backend is not None and self._ready and not backend.is_closing():
            backend.resume_reading()

    def backend_full(self) -> None:
        if not self._client.is_closing():
            self._client.pause_reading()

    def backend_drained(self) -> None:
        if self._started and not self._client.is_closing():
            self._client.resume_reading()

    # -- ending ----------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop relaying: timers off, backend closed (flushed), or both spliced sockets closed."""
        if self._delay_timer is not None:
            self._delay_timer.cancel()
            self._delay_timer = None
        if self._splice is not None:
            self._splice.close()
        elif self._backend is not None:
            self._backend.close()

    # -- splice ----------------------------------------------------------------------

    def _count_bulk(self, size: int) -> None:
        self._splice_at -= size
        if self._splice_at <= 0:
            self._begin_splice()

    def _begin_splice(self) -> None:
        """Move a busy plaintext relay from the transports to os.splice."""
        self._splice_at = 0
        if self._client_eof or self._backend_eof or self._backend is None:
            return  # already winding down: not worth moving
        self._record.phase = Phase.UPGRADING
        self._client.pause_reading()
        self._backend.pause_reading()
        self._finish_splice_upgrade()

    def _finish_splice_upgrade(self) -> None:
        if self._record.phase is not Phase.UPGRADING:
            return  # closed meanwhile
        client, backend = self._client, self._backend
        assert backend is not None
        if client.get_write_buffer_size() or backend.get_write_buffer_size():
            # Bytes still queued in user space must reach the kernel first, or
            # splice would overtake them.
            self._loop.call_later(_DRAIN_POLL, self._finish_splice_upgrade)
            return
        client_transport = cast(asyncio.Transport, client)
        client_sock, backend_sock = detach_socket(client_transport), detach_socket(backend)
        self._record.phase = Phase.RELAYING
        if client_sock is None or backend_sock is None:
            for sock in (client_sock, backend_sock):
                if sock is not None:
                    sock.close()
            client.resume_reading()
            backend.resume_reading()
            return
        self._splice = SpliceRelay(client_sock, backend_sock, self._spliced_bytes,
                                   self._spliced_eof, self._spliced_error)
        self.spliced = True
        client_transport.abort()  # each closes only its own copy of the descriptor
        backend.abort()
        STATS.spliced += 1
        self._splice.start()

    def _spliced_bytes(self, to_backend: bool, count: int) -> None:
        record = self._record
        if to_backend:
            record.bytes_in += count
        else:
            record.bytes_out += count
        record.last_activity = time.monotonic()

    def _spliced_eof(self, side: str) -> None:
        # The splice relay has already passed the FIN on.
        if side == "client":
            self._client_eof = True
            self._half_closed(Side.CLIENT)
        else:
            self._backend_eof = True
            self._half_closed(Side.BACKEND)

    def _spliced_error(self, side: str, exc: OSError) -> None:
        if side == "client":
            self._close(CloseReason.CLIENT_CLOSED, f"client connection lost: {exc}", Side.CLIENT)
        else:
            self._close(CloseReason.BACKEND_CLOSED, f"backend connection lost: {exc}",
                        Side.BACKEND)


class BackendProtocol(asyncio.Protocol):
    """The backend side of a relay: every event goes to the relay."""

    __slots__ = ("_relay", "_tls", "connection_lost", "connection_made", "data_received")
    # The relay's own methods, bound per connection: no forwarding hop per event.
    connection_made: Callable[[asyncio.BaseTransport], None]  # type: ignore[assignment]
    data_received: Callable[[bytes], None]  # type: ignore[assignment]
    connection_lost: Callable[[Exception | None], None]  # type: ignore[assignment]

    def __init__(self, relay: Relay, tls: bool = False) -> None:
        self._relay = relay
        self.connection_made = relay.attach  # type: ignore[assignment]  # uvloop's transport
        self.data_received = relay.from_backend
        self.connection_lost = relay.backend_lost
        # An SSL transport cannot stay half-open: asyncio closes it at EOF anyway. The dialer
        # says whether it is one: asking uvloop 0.23 (get_extra_info("sslcontext")) and then
        # writing EOF has been seen to corrupt its heap (see switchyard.whoami).
        self._tls = tls

    def eof_received(self) -> bool:
        self._relay.backend_eof()
        return not self._tls

    def pause_writing(self) -> None:
        self._relay.backend_full()

    def resume_writing(self) -> None:
        self._relay.backend_drained()
