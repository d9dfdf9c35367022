"""The relay and the TLS layer, driven without sockets."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import pytest
import trustme

from switchyard.observability.record import CloseReason, ConnectionRecord, Side
from switchyard.proxy.relay import Relay
from switchyard.proxy.tlslayer import TLSLayer


class FakeTransport:
    """Records writes, FINs, closes and whether reading is paused."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.eof_written = False
        self.closed = False
        self.paused = False
        self.events: list[str] = []

    def write(self, data: bytes) -> None:
        self.written += data
        self.events.append(f"data:{data!r}")

    def write_eof(self) -> None:
        self.eof_written = True
        self.events.append("eof")

    def can_write_eof(self) -> bool:
        return True

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default


class Harness:
    def __init__(self, delay: float = 0.05) -> None:
        self.record = ConnectionRecord("ep")
        self.client, self.backend = FakeTransport(), FakeTransport()
        self.closes: list[tuple[CloseReason, str, Side]] = []
        self.relay = Relay(self.record, self.client, self.close,
                           loop=asyncio.get_running_loop(), termination_delay=delay,
                           plaintext=False)
        self.relay.attach(self.backend)  # type: ignore[arg-type]

    def close(self, reason: CloseReason, detail: str, by: Side) -> None:
        self.closes.append((reason, detail, by))
        self.record.finish(reason, detail, by)


def run(test: Any) -> None:
    asyncio.run(test())


def test_peeked_bytes_reach_the_backend_before_anything_else() -> None:
    async def scenario() -> None:
        h = Harness()
        h.client.paused = True
        h.relay.start(b"hello", client_ready=True)
        h.relay.from_client(b" world")
        assert bytes(h.backend.written) == b"hello world"
        assert h.record.bytes_in == 11 and not h.client.paused
    run(scenario)


def test_backend_bytes_wait_for_the_client_side_then_come_before_its_fin() -> None:
    async def scenario() -> None:
        h = Harness()
        h.relay.start(b"", client_ready=False)  # a TLS handshake is still running
        h.relay.from_backend(b"220 banner\r\n")
        h.relay.backend_eof()
        assert h.client.written == b"" and h.backend.paused and not h.client.eof_written
        h.relay.client_ready()
        assert h.client.events == ["data:b'220 banner\\r\\n'", "eof"]
        assert h.record.bytes_out == 12
    run(scenario)


def test_both_fins_end_normally_and_the_first_one_names_who_closed() -> None:
    async def scenario() -> None:
        h = Harness()
        h.relay.start(b"", client_ready=True)
        h.relay.client_eof()
        assert h.backend.eof_written
        h.relay.backend_eof()
        assert h.client.eof_written
        [(reason, _, _)] = h.closes
        assert reason is CloseReason.NORMAL and h.record.closed_by is Side.CLIENT
    run(scenario)


def test_after_a_half_close_the_other_side_has_the_termination_delay() -> None:
    async def scenario() -> None:
        h = Harness(delay=0.02)
        h.relay.start(b"", client_ready=True)
        h.relay.backend_eof()
        await asyncio.sleep(0.1)
        [(reason, detail, by)] = h.closes
        assert reason is CloseReason.TERMINATION_DELAY and by is Side.SWITCHYARD
        assert "0.02s" in detail
    run(scenario)


def test_a_client_fin_before_the_relay_starts_is_passed_on_when_it_does() -> None:
    async def scenario() -> None:
        h = Harness()
        h.relay.client_eof()
        assert not h.backend.eof_written
        h.relay.start(b"QUIT\r\n", client_ready=True)
        assert h.backend.events == ["data:b'QUIT\\r\\n'", "eof"]
    run(scenario)


def test_backpressure_pauses_the_other_side() -> None:
    async def scenario() -> None:
        h = Harness()
        h.relay.start(b"", client_ready=True)
        h.relay.client_full()
        assert h.backend.paused
        h.relay.client_drained()
        assert not h.backend.paused
        h.relay.backend_full()
        assert h.client.paused
        h.relay.backend_drained()
        assert not h.client.paused
    run(scenario)


def test_a_backend_reset_before_the_relay_starts_closes_it_at_start() -> None:
    async def scenario() -> None:
        h = Harness()
        h.relay.backend_lost(ConnectionResetError("reset"))
        h.relay.start(b"x", client_ready=True)
        [(reason, _, by)] = h.closes
        assert reason is CloseReason.BACKEND_CLOSED and by is Side.BACKEND
        assert h.record.closed_by is Side.BACKEND
    run(scenario)


# -- the TLS layer: two MemoryBIO peers -----------------------------------------------------


@pytest.fixture(scope="module")
def contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("tls.example.com").configure_cert(server)
    server.set_alpn_protocols(["http/1.1"])
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(client)
    client.set_alpn_protocols(["http/1.1"])
    return server, client


def pump(client: ssl.SSLObject, to_client: ssl.MemoryBIO, from_client: ssl.MemoryBIO,
         layer: TLSLayer, wire: FakeTransport) -> None:
    """Move bytes both ways until neither side has anything more to say."""
    for _ in range(10):
        out = from_client.read()
        if out:
            layer.receive(out)
        if wire.written:
            to_client.write(bytes(wire.written))
            wire.written.clear()
        try:
            client.do_handshake()
        except ssl.SSLWantReadError:
            pass


def test_tls_layer_terminates_and_carries_plaintext_both_ways(
        contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    async def scenario() -> None:
        server_context, client_context = contexts
        wire = FakeTransport()
        seen: list[bytes] = []
        events: list[str] = []
        layer = TLSLayer(wire, server_context,  # type: ignore[arg-type]
                         loop=asyncio.get_running_loop(), on_plaintext=seen.append,
                         on_ready=lambda: events.append("ready"),
                         on_peer_closed=lambda: events.append("peer closed"),
                         on_error=lambda detail: events.append(detail))
        to_client, from_client = ssl.MemoryBIO(), ssl.MemoryBIO()
        client = client_context.wrap_bio(to_client, from_client,
                                         server_hostname="tls.example.com")
        with pytest.raises(ssl.SSLWantReadError):
            client.do_handshake()
        layer.start(from_client.read(), 5.0, "too slow")  # the peeked hello goes in first
        pump(client, to_client, from_client, layer, wire)
        assert events == ["ready"] and layer.handshake_done
        assert layer.alpn == "http/1.1" and layer.version.startswith("TLSv1.")
        client.write(b"ping")
        layer.receive(from_client.read())
        assert seen == [b"ping"]
        layer.write(b"pong")
        to_client.write(bytes(wire.written))
        wire.written.clear()
        assert client.read(4) == b"pong"
        layer.write_eof()  # our close_notify
        to_client.write(bytes(wire.written))
        try:
            tail = client.read(1)
        except ssl.SSLZeroReturnError:
            tail = b""
        assert tail == b""  # the client sees the end of the stream
        try:
            client.unwrap()  # and answers with its own close_notify
        except ssl.SSLWantReadError:
            pass
        layer.receive(from_client.read())
        assert events == ["ready", "peer closed"]
    run(scenario)


def test_tls_layer_reports_a_failed_handshake(
        contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    async def scenario() -> None:
        server_context, _ = contexts
        wire = FakeTransport()
        errors: list[str] = []
        layer = TLSLayer(wire, server_context,  # type: ignore[arg-type]
                         loop=asyncio.get_running_loop(), on_plaintext=lambda d: None,
                         on_ready=lambda: None, on_peer_closed=lambda: None,
                         on_error=errors.append)
        layer.start(b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00", 5.0, "too slow")
        assert errors and errors[0].startswith("TLS handshake failed")
    run(scenario)


def test_tls_layer_handshake_deadline(contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    async def scenario() -> None:
        wire = FakeTransport()
        errors: list[str] = []
        layer = TLSLayer(wire, contexts[0],  # type: ignore[arg-type]
                         loop=asyncio.get_running_loop(), on_plaintext=lambda d: None,
                         on_ready=lambda: None, on_peer_closed=lambda: None,
                         on_error=errors.append)
        layer.start(b"", 0.02, "timed out waiting for the client's TLS handshake")
        await asyncio.sleep(0.1)
        assert errors == ["timed out waiting for the client's TLS handshake"]
    run(scenario)


@pytest.mark.parametrize(("reason", "by", "first_fin", "closed_by"), [
    (CloseReason.CLIENT_CLOSED, Side.BACKEND, Side.BACKEND, Side.CLIENT),
    (CloseReason.BACKEND_CLOSED, Side.CLIENT, None, Side.BACKEND),
    (CloseReason.NORMAL, Side.SWITCHYARD, Side.BACKEND, Side.BACKEND),
    (CloseReason.TERMINATION_DELAY, Side.SWITCHYARD, Side.CLIENT, Side.SWITCHYARD),
])
def test_the_record_never_says_one_side_closed_for_the_others_reason(
        reason: CloseReason, by: Side, first_fin: Side | None, closed_by: Side) -> None:
    record = ConnectionRecord("ep")
    record.first_fin = first_fin
    record.finish(reason, "", by)
    record.finish(CloseReason.SHUTDOWN, "later", Side.SWITCHYARD)  # the first end counts
    assert (record.reason, record.closed_by) == (reason, closed_by)
