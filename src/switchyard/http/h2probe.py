"""One-shot HTTP/2 requests for health checks: ``h2c://`` servers, and gRPC's health protocol.

Health checks run off the data plane, once per interval, so this is a plain coroutine over an
asyncio stream rather than a pooled connection: connect (prior knowledge, or TLS with ALPN
``h2``), send one request, read its answer to the end, close.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events

__all__ = ["GRPC_HEALTH_STATES", "H2Reply", "grpc_health", "h2_request"]

#: grpc.health.v1.HealthCheckResponse.ServingStatus, as Go prints the enum.
GRPC_HEALTH_STATES = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}
# gRPC status codes by number, as grpc-go's codes.Code prints them.
_GRPC_CODES = ("OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
               "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
               "Aborted", "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss",
               "Unauthenticated")


@dataclass
class H2Reply:
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)

    def field(self, name: bytes) -> bytes | None:
        """A trailer field, or the header field of that name (a trailers-only answer)."""
        for fields in (self.trailers, self.headers):
            for key, value in fields:
                if key == name:
                    return value
        return None


async def h2_request(host: str, port: int, fields: list[tuple[bytes, bytes]], body: bytes = b"",
                     *, context: ssl.SSLContext | None = None,
                     server_hostname: str | None = None) -> H2Reply:
    """Send one request (``fields`` with the pseudo-fields first) and read the whole answer.

    Raises OSError (and ssl.SSLError) for a connection that fails, ConnectionError when the
    server resets the stream or closes before the answer ends."""
    reader, writer = await asyncio.open_connection(
        host, port, ssl=context, server_hostname=server_hostname if context else None)
    try:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding=None))
        conn.initiate_connection()
        stream = conn.get_next_available_stream_id()
        conn.send_headers(stream, fields, end_stream=not body)
        if body:
            conn.send_data(stream, body, end_stream=True)
        writer.write(conn.data_to_send())
        reply = H2Reply()
        while True:
            data = await reader.read(65536)
            if not data:
                raise ConnectionError("the server closed the connection before answering")
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    reply.headers = list(event.headers)
                    reply.status = int(dict(reply.headers).get(b":status", b"0"))
                elif isinstance(event, h2.events.DataReceived):
                    reply.body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, stream)
                elif isinstance(event, h2.events.TrailersReceived):
                    reply.trailers = list(event.headers)
                elif isinstance(event, h2.events.StreamReset):
                    raise ConnectionError(f"the server reset the stream ({event.error_code!s})")
                elif isinstance(event, h2.events.StreamEnded):
                    return reply
            writer.write(conn.data_to_send())
    finally:
        writer.close()


async def grpc_health(host: str, port: int) -> str | None:
    """gRPC's Health/Check for the whole server (no service name), over h2c as Traefik dials
    it; None when it answers SERVING, else what failed in Traefik's words."""
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    fields = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", address.encode()),
              (b":path", b"/grpc.health.v1.Health/Check"), (b"content-type", b"application/grpc"),
              (b"te", b"trailers")]
    try:
        reply = await h2_request(host, port, fields, b"\x00\x00\x00\x00\x00")
    except (OSError, ConnectionError) as exc:
        return ("gRPC health check failed: rpc error: code = Unavailable desc = connection "
                f"error: {exc or type(exc).__name__}")
    code = int(reply.field(b"grpc-status") or b"2")
    if code:
        name = _GRPC_CODES[code] if code < len(_GRPC_CODES) else f"Code({code})"
        detail = (reply.field(b"grpc-message") or b"").decode("latin-1")
        error = f"rpc error: code = {name} desc = {detail}"
        if code == 12:
            return f"gRPC server does not implement the health protocol: {error}"
        if code == 4:
            return f"gRPC health check timeout: {error}"
        return f"gRPC health check failed: {error}"
    state = _serving_status(reply.body)
    if state != 1:
        return f"received gRPC status code: {GRPC_HEALTH_STATES.get(state, str(state))}"
    return None


def _serving_status(body: bytes) -> int:
    """The ``status`` (field 1, a varint) of the HealthCheckResponse in a gRPC body; 0 when
    absent (proto3's default, UNKNOWN)."""
    message = body[5:5 + int.from_bytes(body[1:5], "big")] if len(body) >= 5 else b""
    at = 0
    while at < len(message):
        key = message[at]
        at += 1
        value = shift = 0
        while at < len(message):
            byte = message[at]
            at += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if key == 0x08:  # field 1, varint
            return value
        if key & 7 != 0:
            return 0  # not a shape HealthCheckResponse has
    return 0
