"""An entry point: a listening socket whose connections route with the current table."""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import time
from collections.abc import Sequence

from switchyard.addresses import host_port
from switchyard.ipcheck import IPChecker
from switchyard.observability.accesslog import AccessLog
from switchyard.observability.record import CloseReason, Phase, Side
from switchyard.observability.stats import STATS
from switchyard.proxy import fastpath
from switchyard.proxy.connection import ClientConnection
from switchyard.proxy.decision import ChallengeResponder
from switchyard.proxy.lifecycle import LiveConnection
from switchyard.routing.table import RouteList, RoutingTable

log = logging.getLogger("switchyard.entrypoint")

KEEPALIVE_SECONDS = 180  # Traefik's keep-alive period on accepted sockets


def _listen_backlog() -> int:
    """4096, or the kernel's somaxconn when that is higher (it caps what listen() gets)."""
    try:
        with open("/proc/sys/net/core/somaxconn", encoding="ascii") as limit:
            return max(4096, int(limit.read()))
    except (OSError, ValueError):
        return 4096


LISTEN_BACKLOG = _listen_backlog()


def open_listener(host: str, port: int, *, reuse_port: bool = False,
                  backlog: int = LISTEN_BACKLOG) -> socket.socket:
    """A bound, listening, non-blocking socket.

    An empty host listens on every interface, dual-stack where IPv6 exists, as
    Go does for `:port`; IPv4 clients then appear with their plain IPv4 address.
    """
    if host in ("", "*"):
        family, bind_host = (socket.AF_INET6, "::") if socket.has_ipv6 else (socket.AF_INET, "0.0.0.0")
    else:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, bind_host = infos[0][0], str(infos[0][4][0])
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port and hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if bind_host == "::" else 1)
        # Accepted sockets inherit these on Linux: Traefik's 3-minute keep-alive and no
        # Nagle delay, without four setsockopt calls per connection.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if hasattr(socket, "TCP_KEEPIDLE"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_SECONDS)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_SECONDS)
        sock.bind((bind_host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class IncomingProxyProtocol:
    """Who may announce the client address with a PROXY header (entryPoints.<n>.proxyProtocol)."""

    def __init__(self, trusted_ips: list[str], insecure: bool) -> None:
        if not insecure and not trusted_ips:
            raise ValueError("proxyProtocol: no trusted IPs provided; list trustedIPs or set insecure")
        self.insecure = insecure
        self._checker = IPChecker(trusted_ips) if trusted_ips else None

    def trusts(self, client_ip: str) -> bool:
        return self.insecure or (self._checker is not None and self._checker.contains(client_ip))


class EntryPoint:
    """Accepts connections and hands each one the routing table current at accept time."""

    loop: asyncio.AbstractEventLoop  # set by start, before the first connection

    def __init__(self, name: str, host: str, port: int, *, reuse_port: bool = False,
                 proxy_protocol: IncomingProxyProtocol | None = None) -> None:
        self.name = name
        self.proxy_protocol = proxy_protocol
        self.host = host
        self.port = port
        self.reuse_port = reuse_port
        self.table = RoutingTable(name, RouteList(()), RouteList(()))
        self.connections: set[LiveConnection] = set()
        self.access_log: AccessLog | None = None
        # Answer TLS-ALPN-01 challenges on this entry point.
        self.acme_resolvers: Sequence[ChallengeResponder] = ()
        self.idle_timeout = 0.0
        self._server: asyncio.AbstractServer | fastpath.Listener | None = None
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        return host_port(self.host or "0.0.0.0", self.port)

    # -- what its connections ask of it (ConnectionHost) --------------------------

    def proxy_trust(self, client_ip: str) -> bool | None:
        """None without PROXY protocol, else whether this peer may announce the client."""
        incoming = self.proxy_protocol
        return None if incoming is None else incoming.trusts(client_ip)

    def opened(self, conn: LiveConnection) -> None:
        self.connections.add(conn)
        STATS.accepted(self.name)

    def closed(self, conn: LiveConnection) -> None:
        self.connections.discard(conn)

    async def start(self) -> None:
        sock = open_listener(self.host, self.port, reuse_port=self.reuse_port)
        self.port = sock.getsockname()[1]
        loop = self.loop = asyncio.get_running_loop()
        # partial, not a lambda: one Python call less per accepted connection.
        if fastpath.available():
            self._server = fastpath.serve(sock, functools.partial(fastpath.FastConnection, self))
        else:
            # create_server calls listen() again, with its own default of 100 unless told.
            self._server = await loop.create_server(functools.partial(ClientConnection, self),
                                                    sock=sock, backlog=LISTEN_BACKLOG)
        log.info('entryPoint "%s" listening on %s (%s engine)', self.name, self.address,
                 "fast" if fastpath.available() else "portable")
        if self.idle_timeout > 0:
            self._sweeper = loop.create_task(self._close_idle())

    async def _close_idle(self) -> None:
        """Close relayed connections with no traffic either way for `idle_timeout`.

        One sweep every quarter timeout instead of a timer per connection: a
        timer reset on every read would cost more than the relay itself.
        """
        while True:
            await asyncio.sleep(self.idle_timeout / 4)
            limit = time.monotonic() - self.idle_timeout
            for conn in [c for c in self.connections if c.record.last_activity < limit
                         and c.record.phase is Phase.RELAYING]:
                conn.close(CloseReason.IDLE_TIMEOUT, f"no traffic for {self.idle_timeout:g}s",
                           Side.SWITCHYARD)

    def stop_accepting(self) -> None:
        if self._sweeper is not None and not self.connections:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()
            self._server = None

    def close_all(self) -> None:
        """Force-close every live connection (end of the grace period)."""
        for conn in list(self.connections):
            conn.close(CloseReason.SHUTDOWN, "grace period over", Side.SWITCHYARD)
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
