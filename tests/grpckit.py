"""Backends for HTTP/2 and gRPC tests: a raw HTTP/1.1 answer, an h2 server, a gRPC service.

``raw_backend(response)`` answers every request with the same bytes (a chunked body with
trailers, say) and records what it read. ``h2_backend(handler)`` is an HTTP/2 server on the
``h2`` library (cleartext, or TLS with ALPN ``h2`` when given an SSL context) that hands each
request to ``handler(headers, body) -> (headers, body chunks, trailers)``.
``grpc_server(tls=...)`` runs a real grpcio server with the ``test.Echo`` service defined by
generic handlers (no generated code): ``Unary`` echoes the request bytes back, ``Stream`` sends
the request back N times (N is the first byte), ``Fail`` answers status INVALID_ARGUMENT with
a message and trailing metadata, ``Slow`` sleeps for the number of tenths of a second in the
first byte. Messages are raw bytes (identity serializers).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

__all__ = ["H2Answer", "H2Backend", "RawBackend", "grpc_frame", "grpc_frames", "grpc_server", "h2_backend",
           "h2_request", "raw_backend"]


@dataclass
class RawBackend:
    port: int
    received: list[bytes] = field(default_factory=list)


@contextlib.contextmanager
def raw_backend(response: bytes) -> Iterator[RawBackend]:
    """Answers each request head (and its Content-Length body) with ``response``, keep-alive."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    backend = RawBackend(listener.getsockname()[1])
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while not stop.is_set():
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                body, buffer = _read_body(conn, head, buffer)
                backend.received.append(head + b"\r\n\r\n" + body)
                conn.sendall(response)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield backend
    finally:
        stop.set()
        listener.close()


def _read_body(conn: socket.socket, head: bytes, buffer: bytes) -> tuple[bytes, bytes]:
    """The body after ``head`` (Content-Length or chunked, trailers included) and what follows."""
    fields = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = value.strip()

    def need(count: int) -> None:
        nonlocal buffer
        while len(buffer) < count:
            data = conn.recv(65536)
            if not data:
                raise ConnectionError("closed in the middle of a body")
            buffer += data

    if fields.get(b"transfer-encoding", b"").lower() != b"chunked":
        length = int(fields.get(b"content-length", b"0") or 0)
        need(length)
        return buffer[:length], buffer[length:]
    at = 0
    while True:  # chunks: a size line, the data, CRLF; size 0 ends them, then trailers
        while b"\r\n" not in buffer[at:]:
            need(len(buffer) + 1)
        line_end = buffer.index(b"\r\n", at)
        size = int(buffer[at:line_end].split(b";")[0], 16)
        if size == 0:
            while b"\r\n\r\n" not in buffer[line_end:]:
                need(len(buffer) + 1)
            end = buffer.index(b"\r\n\r\n", line_end) + 4
            return buffer[:end], buffer[end:]
        at = line_end + 2 + size + 2
        need(at)


H2Handler = Callable[[list[tuple[bytes, bytes]], bytes],
                     tuple[list[tuple[bytes, bytes]], list[bytes], list[tuple[bytes, bytes]]]]


@dataclass
class H2Backend:
    port: int
    connections: int = 0  # accepted so far
    protocols: list[str] = field(default_factory=list)  # per connection: "h2" or "http/1.1"


_H1_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nContent-Type: text/plain\r\n\r\nhttp/1.1"


@contextlib.contextmanager
def h2_backend(handler: H2Handler, context: ssl.SSLContext | None = None, *,
               max_streams: int | None = None) -> Iterator[H2Backend]:
    """An HTTP/2 server (prior knowledge, or TLS with ALPN h2) calling ``handler`` per stream;
    ``max_streams`` is its SETTINGS_MAX_CONCURRENT_STREAMS.

    Over TLS, a client that does not choose ``h2`` gets ``http/1.1`` as the body of every
    answer, over HTTP/1.1.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    backend = H2Backend(listener.getsockname()[1])

    def serve_http1(sock: Any) -> None:
        buffer = b""
        while True:
            while b"\r\n\r\n" not in buffer:
                data = sock.recv(65536)
                if not data:
                    return
                buffer += data
            _, _, buffer = buffer.partition(b"\r\n\r\n")
            sock.sendall(_H1_ANSWER)

    def serve(raw: socket.socket) -> None:
        sock: Any = raw
        try:
            if context is not None:
                sock = context.wrap_socket(raw, server_side=True)
                if sock.selected_alpn_protocol() != "h2":
                    backend.protocols.append("http/1.1")
                    serve_http1(sock)
                    return
            backend.protocols.append("h2")
            conn = h2.connection.H2Connection(h2.config.H2Configuration(
                client_side=False, header_encoding=None))
            if max_streams is not None:
                conn.local_settings = h2.settings.Settings(client=False, initial_values={
                    h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: max_streams})
            conn.initiate_connection()
            sock.sendall(conn.data_to_send())
            heads: dict[int, list[tuple[bytes, bytes]]] = {}
            bodies: dict[int, bytes] = {}
            outgoing: dict[int, tuple[bytearray, list[tuple[bytes, bytes]]]] = {}
            while True:
                data = sock.recv(65536)
                if not data:
                    return
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        heads[event.stream_id] = list(event.headers)
                        bodies[event.stream_id] = b""
                    elif isinstance(event, h2.events.DataReceived):
                        bodies[event.stream_id] += event.data
                        conn.acknowledge_received_data(event.flow_controlled_length,
                                                       event.stream_id)
                    elif isinstance(event, h2.events.StreamReset):
                        outgoing.pop(event.stream_id, None)
                    elif isinstance(event, h2.events.StreamEnded):
                        stream = event.stream_id
                        fields, chunks, trailers = handler(heads.pop(stream),
                                                           bodies.pop(stream))
                        try:
                            conn.send_headers(stream, fields,
                                              end_stream=not chunks and not trailers)
                        except h2.exceptions.StreamClosedError:
                            continue  # the client gave up meanwhile
                        if chunks or trailers:
                            outgoing[stream] = (bytearray(b"".join(chunks)), trailers)
                _send_pending(conn, outgoing)
                sock.sendall(conn.data_to_send())
        except (OSError, ssl.SSLError, h2.exceptions.ProtocolError):
            return
        finally:
            sock.close()

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            backend.connections += 1
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield backend
    finally:
        listener.close()


def _send_pending(conn: h2.connection.H2Connection,
                  outgoing: dict[int, tuple[bytearray, list[tuple[bytes, bytes]]]]) -> None:
    """Send what each stream still has as far as the client's windows allow."""
    for stream, (data, trailers) in list(outgoing.items()):
        try:
            while data:
                window = min(conn.local_flow_control_window(stream),
                             conn.max_outbound_frame_size)
                if window <= 0:
                    break
                piece = bytes(data[:window])
                del data[:window]
                conn.send_data(stream, piece, end_stream=not data and not trailers)
            if not data:
                if trailers:
                    conn.send_headers(stream, trailers, end_stream=True)
                del outgoing[stream]
        except h2.exceptions.StreamClosedError:
            del outgoing[stream]


@dataclass
class H2Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    trailers: list[tuple[bytes, bytes]] | None
    reset: int | None = None  # the RST_STREAM error code, when the stream was reset


def h2_request(port: int, fields: list[tuple[bytes, bytes]], body: bytes = b"", *,
               trailers: list[tuple[bytes, bytes]] | None = None,
               context: ssl.SSLContext | None = None, timeout: float = 5) -> H2Answer:
    """One request over a new HTTP/2 connection (prior knowledge, or TLS with ``context``),
    its body followed by ``trailers`` when given."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock: Any = raw if context is None else context.wrap_socket(raw, server_hostname="localhost")
    with sock:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding=None))
        conn.initiate_connection()
        stream = conn.get_next_available_stream_id()
        conn.send_headers(stream, fields, end_stream=not body and not trailers)
        if body:
            conn.send_data(stream, body, end_stream=not trailers)
        if trailers:
            conn.send_headers(stream, trailers, end_stream=True)
        sock.sendall(conn.data_to_send())
        answer = H2Answer(0, [], b"", None)
        while True:
            data = sock.recv(65536)
            if not data:
                return answer
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    answer.headers = list(event.headers)
                    answer.status = int(dict(answer.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    answer.body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, stream)
                elif isinstance(event, h2.events.TrailersReceived):
                    answer.trailers = list(event.headers)
                elif isinstance(event, h2.events.StreamReset):
                    answer.reset = event.error_code
                    return answer
                elif isinstance(event, h2.events.StreamEnded):
                    return answer
            sock.sendall(conn.data_to_send())


def grpc_frame(message: bytes, flags: int = 0) -> bytes:
    """One length-prefixed message as gRPC (and gRPC-Web) frame it."""
    return struct.pack(">BI", flags, len(message)) + message


def grpc_frames(body: bytes) -> list[tuple[int, bytes]]:
    """The (flags, message) frames of a gRPC or gRPC-Web body."""
    frames = []
    while body:
        flags, size = struct.unpack(">BI", body[:5])
        frames.append((flags, body[5:5 + size]))
        body = body[5 + size:]
    return frames


def _echo_service() -> Any:
    import grpc

    def unary(request: bytes, context: Any) -> bytes:
        context.send_initial_metadata((("x-initial", "yes"),))
        return request

    def stream(request: bytes, context: Any) -> Iterator[bytes]:
        for index in range(request[0] if request else 0):
            yield request + bytes([index])

    def fail(request: bytes, context: Any) -> bytes:
        context.set_trailing_metadata((("x-reason", "bad-input"),))
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no such thing: " + request.decode())

    def slow(request: bytes, context: Any) -> bytes:
        time.sleep((request[0] if request else 0) / 10)
        return request

    same: dict[str, Any] = {"request_deserializer": None, "response_serializer": None}
    return grpc.method_handlers_generic_handler("test.Echo", {
        "Unary": grpc.unary_unary_rpc_method_handler(unary, **same),
        "Stream": grpc.unary_stream_rpc_method_handler(stream, **same),
        "Fail": grpc.unary_unary_rpc_method_handler(fail, **same),
        "Slow": grpc.unary_unary_rpc_method_handler(slow, **same),
    })


def _health_service(state: list[int]) -> Any:
    """grpc.health.v1.Health/Check answering ``state[0]`` (1 SERVING, 2 NOT_SERVING)."""
    import grpc

    def check(request: bytes, context: Any) -> bytes:
        return b"\x08" + bytes([state[0]])

    return grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
        "Check": grpc.unary_unary_rpc_method_handler(check, request_deserializer=None,
                                                     response_serializer=None)})


@contextlib.contextmanager
def grpc_server(*, tls: tuple[bytes, bytes] | None = None,
                health: list[int] | None = None) -> Iterator[int]:
    """A grpcio server with the test.Echo service; ``tls`` is (key PEM, certificate chain PEM);
    with ``health`` (a one-item list the test may change) also gRPC's health service."""
    import grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((_echo_service(),))
    if health is not None:
        server.add_generic_rpc_handlers((_health_service(health),))
    if tls is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([tls]))
    server.start()
    try:
        yield port
    finally:
        server.stop(grace=None)
