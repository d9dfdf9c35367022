"""The fast engine's transport and listener against real sockets on 127.0.0.1: what a protocol
sees of bytes, EOF, backpressure, closing and errors must be what asyncio's transports give it,
since every stage runs on either."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import uvloop

from switchyard.proxy import fastpath
from switchyard.proxy.fastpath import FastTransport, engine_for


class Recorder(asyncio.Protocol):
    """Everything a transport tells its protocol, in order."""

    def __init__(self, keep_open: bool = True) -> None:
        self.keep_open = keep_open
        self.transport: Any = None
        self.data = bytearray()
        self.eof = False
        self.lost: list[Exception | None] = []
        self.flow: list[str] = []
        self.changed = asyncio.Event()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert isinstance(data, bytes)
        self.data += data
        self.changed.set()

    def eof_received(self) -> bool:
        self.eof = True
        self.changed.set()
        return self.keep_open

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)
        self.changed.set()

    def pause_writing(self) -> None:
        self.flow.append("pause")

    def resume_writing(self) -> None:
        self.flow.append("resume")

    async def until(self, condition: Callable[[], bool], timeout: float = 5) -> None:
        async with asyncio.timeout(timeout):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


def run(test: Callable[[], Awaitable[None]]) -> None:
    uvloop.run(test())


async def pair(keep_open: bool = True) -> tuple[FastTransport, Recorder, socket.socket]:
    """A FastTransport on the accepted side of a loopback connection, and its peer socket."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    peer = socket.create_connection(listener.getsockname())
    accepted, address = listener.accept()
    listener.close()
    peer.setblocking(False)
    recorder = Recorder(keep_open)
    transport = FastTransport(engine_for(asyncio.get_running_loop()), accepted, recorder, address)
    recorder.connection_made(transport)
    return transport, recorder, peer


async def receive_all(peer: socket.socket, limit: int = 1 << 26) -> bytes:
    loop, received = asyncio.get_running_loop(), bytearray()
    while len(received) < limit:
        chunk = await loop.sock_recv(peer, 1 << 16)
        if not chunk:
            break
        received += chunk
    return bytes(received)


def test_bytes_then_eof_reach_the_protocol_and_a_false_eof_received_closes() -> None:
    async def scenario() -> None:
        _transport, recorder, peer = await pair(keep_open=False)
        peer.sendall(b"hello ")
        peer.sendall(b"world")
        peer.shutdown(socket.SHUT_WR)
        await recorder.until(lambda: bool(recorder.lost))
        assert bytes(recorder.data) == b"hello world"
        assert recorder.eof and recorder.lost == [None]
        assert await receive_all(peer) == b""  # closed: the peer sees our FIN
        peer.close()
    run(scenario)


def test_a_half_open_transport_still_writes_after_the_peers_eof() -> None:
    async def scenario() -> None:
        transport, recorder, peer = await pair(keep_open=True)
        peer.shutdown(socket.SHUT_WR)
        await recorder.until(lambda: recorder.eof)
        transport.write(b"still here")
        transport.close()
        assert await receive_all(peer) == b"still here"
        await recorder.until(lambda: bool(recorder.lost))
        peer.close()
    run(scenario)


def test_writes_past_the_kernel_buffer_queue_in_order_with_pause_and_resume_writing() -> None:
    async def scenario() -> None:
        transport, recorder, peer = await pair()
        payload = os.urandom(8 << 20)
        for start in range(0, len(payload), 1 << 20):
            transport.write(payload[start:start + (1 << 20)])
        assert transport.get_write_buffer_size() > fastpath.HIGH_WATER
        assert recorder.flow == ["pause"]
        transport.write_eof()  # goes out after the queued bytes
        assert await receive_all(peer) == payload
        await asyncio.sleep(0.05)
        assert recorder.flow == ["pause", "resume"]
        assert transport.get_write_buffer_size() == 0
        transport.close()
        await recorder.until(lambda: bool(recorder.lost))
        peer.close()
    run(scenario)


def test_close_flushes_what_is_queued_first_and_abort_drops_it() -> None:
    async def scenario() -> None:
        transport, recorder, peer = await pair()
        payload = os.urandom(4 << 20)
        transport.write(payload)
        transport.close()
        assert transport.is_closing() and recorder.lost == []
        transport.write(b"after close")  # ignored, as asyncio ignores it
        assert await receive_all(peer) == payload
        await recorder.until(lambda: bool(recorder.lost))
        assert recorder.lost == [None]
        peer.close()

        transport, recorder, peer = await pair()
        transport.write(payload)
        transport.abort()
        await recorder.until(lambda: bool(recorder.lost))
        assert len(await receive_all(peer)) < len(payload)
        peer.close()
    run(scenario)


def test_connection_lost_comes_after_the_call_that_closed_with_the_socket_still_open() -> None:
    async def scenario() -> None:
        transport, recorder, peer = await pair()
        sock = transport.get_extra_info("socket")
        assert isinstance(sock, socket.socket)
        still_open: list[bool] = []
        recorder.connection_lost = lambda exc: still_open.append(sock.fileno() >= 0)  # type: ignore[method-assign]
        transport.close()
        assert still_open == []
        await asyncio.sleep(0.01)
        assert still_open == [True]  # as uvloop: the descriptor closes after the callback
        assert sock.fileno() == -1
        peer.close()
    run(scenario)


def test_bytes_and_eof_that_arrive_while_paused_come_once_reading_resumes() -> None:
    async def scenario() -> None:
        transport, recorder, peer = await pair()
        transport.pause_reading()
        assert not transport.is_reading()
        peer.sendall(b"x" * 200_000)  # more than one read's worth: the edge is long gone
        peer.shutdown(socket.SHUT_WR)
        await asyncio.sleep(0.1)
        assert recorder.data == b"" and not recorder.eof
        transport.resume_reading()
        await recorder.until(lambda: recorder.eof)
        assert bytes(recorder.data) == b"x" * 200_000
        transport.close()
        peer.close()
    run(scenario)


def test_a_reset_from_the_peer_is_the_error_connection_lost_gets() -> None:
    async def scenario() -> None:
        transport, recorder, peer = await pair()
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()  # RST
        await recorder.until(lambda: bool(recorder.lost))
        assert isinstance(recorder.lost[0], ConnectionResetError)
        assert transport.is_closing()
    run(scenario)


def test_a_listener_accepts_a_burst_larger_than_one_batch_with_each_peer_address() -> None:
    async def scenario() -> None:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1024)
        listener.setblocking(False)
        accepted: list[Recorder] = []

        def factory() -> asyncio.Protocol:
            accepted.append(Recorder())
            return accepted[-1]

        server = fastpath.serve(listener, factory)
        count = fastpath._ACCEPTS_PER_EVENT * 3 + 7
        clients = [socket.create_connection(listener.getsockname()) for _ in range(count)]
        async with asyncio.timeout(5):
            while len(accepted) < count:
                await asyncio.sleep(0.01)
        assert sorted(r.transport.get_extra_info("peername") for r in accepted) == sorted(
            c.getsockname() for c in clients)
        server.close()
        for recorder in accepted:
            recorder.transport.close()
        for client in clients:
            client.close()
        await asyncio.sleep(0.01)  # closed after the call, as the transports' sockets are
        with pytest.raises(OSError):
            socket.create_connection(listener.getsockname(), timeout=1)
    run(scenario)


class Counting(FastTransport):
    __slots__ = ("calls",)

    def __init__(self, *args: Any) -> None:
        self.calls = 0
        super().__init__(*args)

    def events(self, mask: int) -> None:
        self.calls += 1
        super().events(mask)


def test_a_socket_handed_out_leaves_the_epoll_so_a_reused_descriptor_gets_only_its_own_events(
        ) -> None:
    """A duplicate (the splice relay's) keeps the socket's file alive after the transport lets
    go: were it still registered, its events would come under a number a new socket reuses."""
    async def scenario() -> None:
        old, old_recorder, old_peer = await pair()
        sock = old.get_extra_info("socket")
        assert isinstance(sock, socket.socket)
        number, kept = sock.fileno(), os.dup(sock.fileno())
        old.abort()
        await old_recorder.until(lambda: bool(old_recorder.lost))
        reused, new_peer = socket.socketpair()  # the lowest free number: the old one
        assert reused.fileno() == number
        new_recorder = Recorder()
        new = Counting(engine_for(asyncio.get_running_loop()), reused, new_recorder)
        await asyncio.sleep(0.05)
        own = new.calls  # its own first event: writable
        old_peer.sendall(b"for the old one")
        old_peer.shutdown(socket.SHUT_WR)
        await asyncio.sleep(0.1)
        assert new.calls == own and new_recorder.data == b"" and not new_recorder.eof
        assert os.read(kept, 100) == b"for the old one"
        new_peer.sendall(b"for the new one")
        await new_recorder.until(lambda: bool(new_recorder.data))
        assert bytes(new_recorder.data) == b"for the new one"
        os.close(kept)
        new.close()
        for peer in (old_peer, new_peer):
            peer.close()
    run(scenario)


def test_peer_and_local_addresses_are_answered_and_the_peer_one_without_asking_the_kernel(
        ) -> None:
    async def scenario() -> None:
        transport, _recorder, peer = await pair()
        assert transport.get_extra_info("peername") == peer.getsockname()
        assert transport.get_extra_info("sockname") == peer.getpeername()
        assert transport.get_extra_info("nosuch", "default") == "default"
        transport.close()
        peer.close()
    run(scenario)
