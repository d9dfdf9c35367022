"""Dialling a backend server with its servers transport: deadline, PROXY header, TLS, STARTTLS."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass

from switchyard.proxy.proxyproto import (
    PP2_TYPE_ALPN,
    PP2_TYPE_AUTHORITY,
    build_v1,
    build_v2,
    ssl_tlv,
    tlv,
)
from switchyard.proxy.smtp import Reply, read_reply
from switchyard.services import Server, ServersTransport
from switchyard.tls.backend import build_backend_context, peer_cert_sans, verify_peer_sans
from switchyard.tls.postgres import SSL_REQUEST, SSL_REQUEST_REPLY


@dataclass(frozen=True, slots=True)
class SMTPReplay:
    """Bring an SMTP backend to where Switchyard's dialogue left the client: greeted, and,
    when the client's TLS passes through (`starttls`), EHLO'd as `helo` and agreed to TLS."""

    helo: str
    starttls: bool


class DialError(Exception):
    """The server could not be reached; the message says why, for the log."""


class BackendRefused(Exception):
    """The server answered, but not as the connection needs (a Postgres `N` to STARTTLS), or
    reset the connection as soon as it had accepted it."""


@dataclass(frozen=True, slots=True)
class TerminatedTLS:
    """What the client's TLS handshake with Switchyard settled, for PROXY v2 TLVs."""

    version: str
    alpn: str | None
    client_cert: bool = False


def needs_handshake(transport: ServersTransport, terminating: bool) -> bool:
    """Whether the PROXY header must wait for the client's handshake (its ALPN and SSL TLVs)."""
    return terminating and any(name in ("alpn", "ssl") for name in transport.proxy_protocol_tlvs)


def proxy_header(transport: ServersTransport, client: tuple[str, int],
                 local: Callable[[], tuple[str, int]], *, sni: str | None = None,
                 tls: TerminatedTLS | None = None) -> bytes:
    """The PROXY header announcing the client to the backend, if the transport wants one.

    `local` is asked only then: looking the address up costs a system call. Version 2 carries
    the TLVs the transport lists that are known: `authority` the client's SNI, `alpn` and
    `ssl` what Switchyard negotiated when it terminated the client's TLS (`tls`); a
    passed-through handshake is not Switchyard's, so they are left out then, as HAProxy does.
    """
    version = transport.proxy_protocol_version
    if not version:
        return b""
    if version == 1:
        return build_v1(client, local())
    tlvs = b""
    for name in transport.proxy_protocol_tlvs:
        if name == "alpn" and tls is not None and tls.alpn:
            tlvs += tlv(PP2_TYPE_ALPN, tls.alpn.encode())
        elif name == "authority" and sni:
            tlvs += tlv(PP2_TYPE_AUTHORITY, sni.encode())
        elif name == "ssl" and tls is not None:
            tlvs += ssl_tlv(tls.version, client_cert=tls.client_cert)
    return build_v2(client, local(), tlvs)


# The message a dial's own deadline cancels its task with, so that the cancellation is told
# apart from one that comes from outside (the client left), which must propagate.
_DIAL_TIMEOUT = "switchyard: dial timeout"


async def dial(server: Server, transport: ServersTransport,
               protocol: Callable[[], asyncio.Protocol], *, header: bytes = b"",
               postgres: bool = False, smtp: SMTPReplay | None = None) -> asyncio.Transport:
    """A connected transport to `server`, within the transport's dial timeout.

    In order, on the wire: the PROXY `header` (always in clear), the Postgres
    SSLRequest when the client's STARTTLS is passed through (`postgres`: the
    backend must answer `S` itself, and that `S` is swallowed, since the client
    already has ours), then TLS to the backend for `tls: true` servers.
    Raises DialError, BackendRefused; cancellation from outside propagates.
    """
    loop = asyncio.get_running_loop()
    # A plain timer that cancels the task, not asyncio.timeout(): the same effect for a
    # fraction of the cost, and it is paid on every dial.
    task = asyncio.current_task()
    assert task is not None
    deadline = (loop.call_later(transport.dial_timeout, task.cancel, _DIAL_TIMEOUT)
                if transport.dial_timeout > 0 else None)
    try:
        if not (header or postgres or smtp or server.tls):
            # The common case: the loop's own connect, no raw socket of ours.
            made, _ = await loop.create_connection(protocol, server.host, server.port)
            return made
        sock = await _connect(loop, server.host, server.port)
        try:
            return await _prepare(loop, sock, server, transport, protocol, header, postgres,
                                  smtp)
        except BaseException:
            sock.close()
            raise
    except asyncio.CancelledError as exc:
        if exc.args != (_DIAL_TIMEOUT,) or task.uncancel():
            raise  # cancelled from outside (too)
        raise DialError(f"timed out after {transport.dial_timeout:g}s") from None
    except (ConnectionResetError, BrokenPipeError) as exc:
        # Connected, then reset by the server before the loop read the connect's result: a
        # connection the backend ended, as the fast engine counts it, not a dial to retry.
        raise BackendRefused(f"backend connection lost: {exc}") from None
    except (OSError, ValueError) as exc:
        raise DialError(str(exc) or type(exc).__name__) from None
    finally:
        if deadline is not None:
            deadline.cancel()


async def _prepare(loop: asyncio.AbstractEventLoop, sock: socket.socket, server: Server,
                   transport: ServersTransport, protocol: Callable[[], asyncio.Protocol],
                   header: bytes, postgres: bool, smtp: SMTPReplay | None) -> asyncio.Transport:
    if header:
        await loop.sock_sendall(sock, header)
    if smtp is not None:
        await _smtp_replay(loop, sock, smtp)
    if postgres:
        await loop.sock_sendall(sock, SSL_REQUEST)
        answer = await loop.sock_recv(sock, 1)
        if answer != SSL_REQUEST_REPLY:
            raise BackendRefused("Postgres backend refused the SSLRequest"
                                 + (f" (answered {answer!r})" if answer else " (closed)"))
    if not server.tls:
        made, _ = await loop.create_connection(protocol, sock=sock)
        return made
    context, server_name = build_backend_context(transport.tls, server.host)
    made, _ = await loop.create_connection(protocol, sock=sock, ssl=context,
                                           server_hostname=server_name)
    sans = peer_cert_sans(transport.tls)
    if sans:
        tls_object = made.get_extra_info("ssl_object")
        der = tls_object.getpeercert(True) if tls_object is not None else None
        problem = verify_peer_sans(der or b"", sans)
        if problem:
            made.abort()
            raise ValueError(f"backend certificate refused: {problem}")
    return made


async def _smtp_replay(loop: asyncio.AbstractEventLoop, sock: socket.socket,
                       smtp: SMTPReplay) -> None:
    """Greeting, then EHLO and STARTTLS when passing TLS through; BackendRefused if it balks."""
    buffer = bytearray()

    async def reply() -> Reply:
        while True:
            try:
                found = read_reply(bytes(buffer))
            except ValueError as exc:
                raise BackendRefused(f"SMTP backend: {exc}") from None
            if found is not None:
                del buffer[:found[1]]
                return found[0]
            chunk = await loop.sock_recv(sock, 4096)
            if not chunk:
                raise BackendRefused("SMTP backend closed during the STARTTLS replay")
            buffer.extend(chunk)

    greeting = await reply()
    if greeting.code != 220:
        raise BackendRefused(f"SMTP backend greeted with {greeting.code} instead of 220")
    if not smtp.starttls:
        return
    await loop.sock_sendall(sock, f"EHLO {smtp.helo or 'switchyard'}\r\n".encode())
    hello = await reply()
    if hello.code != 250 or not any(line.upper().startswith("STARTTLS") for line in hello.lines):
        raise BackendRefused("SMTP backend does not offer STARTTLS")
    await loop.sock_sendall(sock, b"STARTTLS\r\n")
    ready = await reply()
    if ready.code != 220:
        raise BackendRefused(f"SMTP backend refused STARTTLS ({ready.code})")
    if buffer:
        raise BackendRefused("SMTP backend sent bytes after agreeing to STARTTLS")


async def _connect(loop: asyncio.AbstractEventLoop, host: str, port: int) -> socket.socket:
    """A connected non-blocking socket to host:port (IP literals skip the resolver)."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
        address: tuple[str, int] = (host, port)
    except ValueError:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        if not infos:
            raise OSError(f"cannot resolve {host}") from None
        family, address = infos[0][0], infos[0][4][:2]  # type: ignore[assignment]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await loop.sock_connect(sock, address)
    except BaseException:
        sock.close()
        raise
    return sock
