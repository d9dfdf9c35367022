"""Zero-copy relay for plaintext streams: os.splice through a pipe, both directions."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import sys
import time
from collections.abc import Callable

# The kernel's default pipe (64 KiB). Bigger pipes cut wake-ups on bulk streams
# but cost two fcntl calls per connection and pinned memory per idle one.
PIPE_SIZE = 1 << 16
_POOL_LIMIT = 256
_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)


_pipes: list[tuple[int, int]] = []


def splice_available() -> bool:
    """True where the kernel splice path can be used (Linux with os.splice)."""
    return sys.platform.startswith("linux") and hasattr(os, "splice")


class _Direction:
    """One way of the relay: src socket -> pipe -> dst socket."""

    __slots__ = (
        "count",
        "done",
        "dst",
        "eof",
        "on_eof",
        "pending",
        "read_fd",
        "reading",
        "relay",
        "src",
        "write_fd",
        "writing",
    )

    def __init__(self, relay: SpliceRelay, src: socket.socket, dst: socket.socket,
                 count: Callable[[int], None], on_eof: Callable[[], None]) -> None:
        self.relay = relay
        self.src, self.dst = src, dst
        self.read_fd, self.write_fd = _pipes.pop() if _pipes else os.pipe2(
            os.O_NONBLOCK | os.O_CLOEXEC)
        self.pending = 0  # bytes sitting in the pipe
        self.eof = False  # src finished
        self.done = False  # EOF passed on to dst
        self.reading = False
        self.writing = False
        self.count = count
        self.on_eof = on_eof

    def start(self) -> None:
        self._watch_read(True)

    def _watch_read(self, on: bool) -> None:
        loop = self.relay.loop
        if on and not self.reading:
            # A stale registration must go before a new one (uvloop drops
            # watches silently after errors otherwise).
            loop.remove_reader(self.src.fileno())
            loop.add_reader(self.src.fileno(), self.readable)
        elif not on and self.reading:
            loop.remove_reader(self.src.fileno())
        self.reading = on

    def _watch_write(self, on: bool) -> None:
        loop = self.relay.loop
        if on and not self.writing:
            loop.remove_writer(self.dst.fileno())
            loop.add_writer(self.dst.fileno(), self.writable)
        elif not on and self.writing:
            loop.remove_writer(self.dst.fileno())
        self.writing = on

    def readable(self) -> None:
        # Drain until the socket says "no more" or the pipe is full, so an error
        # or EOF is always seen now rather than on a callback that may not come.
        src = self.src.fileno()
        while not self.eof and self.pending < PIPE_SIZE:
            try:
                moved = os.splice(src, self.write_fd, PIPE_SIZE - self.pending, flags=_FLAGS)
            except BlockingIOError:
                break
            except OSError as exc:
                self.relay.failed(self, exc)
                return
            if moved == 0:
                # splice says 0 for a reset as for a FIN; the reset's error is still there.
                code = self.src.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    self.relay.failed(self, OSError(code, os.strerror(code)))
                    return
                self.eof = True
                self._watch_read(False)
                break
            self.pending += moved
            if not self.flush():
                return
        if self.eof:
            self.flush()

    def flush(self) -> bool:
        """Move the pipe into dst; False when dst is full (then wait for writable)."""
        dst = self.dst.fileno()
        while self.pending:
            try:
                moved = os.splice(self.read_fd, dst, self.pending, flags=_FLAGS)
            except BlockingIOError:
                # Backpressure: stop reading until the slow side takes more.
                self._watch_read(False)
                self._watch_write(True)
                return False
            except OSError as exc:
                self.relay.failed(self, exc)
                return False
            self.pending -= moved
            self.count(moved)
        if self.eof and not self.done:
            self.done = True
            try:
                self.dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            self.on_eof()
        return True

    def writable(self) -> None:
        if self.flush():
            self._watch_write(False)
            if not self.eof and not self.relay.closed:
                self._watch_read(True)

    def stop(self) -> None:
        self._watch_read(False)
        self._watch_write(False)
        # Nothing calls back any more: let go of the owner's callbacks, so that reference
        # counting frees the relay and its owner without the cyclic collector.
        self.count, self.on_eof = _ignore_count, _nothing

    def close_pipe(self) -> None:
        # An empty pipe is as good as new: keep a few to save two syscalls per
        # connection on busy entry points.
        if self.pending == 0 and len(_pipes) < _POOL_LIMIT:
            _pipes.append((self.read_fd, self.write_fd))
        else:
            os.close(self.read_fd)
            os.close(self.write_fd)


def _ignore_count(count: int) -> None:
    pass


def _nothing() -> None:
    pass


def _ignore_error(side: str, exc: OSError) -> None:
    pass


class SpliceRelay:
    """Relays two connected sockets until both directions end, counting bytes.

    The owner passes callbacks: `on_bytes(to_backend, n)`, `on_eof(side)`
    with side "client" or "backend", and `on_error(side, exc)`.
    """

    def __init__(self, client: socket.socket, backend: socket.socket,
                 on_bytes: Callable[[bool, int], None],
                 on_eof: Callable[[str], None],
                 on_error: Callable[[str, OSError], None]) -> None:
        self.loop = asyncio.get_running_loop()
        self.client, self.backend = client, backend
        self.closed = False
        self.last_activity = time.monotonic()
        self._on_error = on_error
        self.upstream = _Direction(self, client, backend, lambda n: on_bytes(True, n),
                                   lambda: on_eof("client"))
        self.downstream = _Direction(self, backend, client, lambda n: on_bytes(False, n),
                                     lambda: on_eof("backend"))

    def start(self) -> None:
        self.upstream.start()
        self.downstream.start()

    def failed(self, direction: _Direction, exc: OSError) -> None:
        if self.closed:
            return
        side = "client" if direction.src is self.client else "backend"
        if direction is self.upstream and exc.errno == errno.EPIPE:
            side = "backend"  # writing to the backend failed
        elif direction is self.downstream and exc.errno == errno.EPIPE:
            side = "client"
        self._on_error(side, exc)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for direction in (self.upstream, self.downstream):
            direction.stop()
            direction.close_pipe()
        for sock in (self.client, self.backend):
            sock.close()
        self._on_error = _ignore_error
        # The directions point back here; without them nothing here points back at them.
        del self.upstream, self.downstream


def detach_socket(transport: asyncio.BaseTransport) -> socket.socket | None:
    """A socket of our own for a transport's connection, or None if it cannot be had.

    The descriptor is duplicated, so aborting the transport afterwards closes
    only its copy: the connection stays open, and no FIN is sent.
    """
    raw = transport.get_extra_info("socket")
    if raw is None:
        return None
    try:
        fd = os.dup(raw.fileno())
    except OSError:
        return None
    sock = socket.socket(fileno=fd)
    sock.setblocking(False)
    return sock
