"""Typed models of Traefik's static configuration (`traefik.yml`), TCP-relevant keys typed."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from switchyard.config.durations import Duration
from switchyard.config.dynamic import StrList, TraefikModel

__all__ = [
    "API",
    "INTERNAL_ENTRY_POINT",
    "AccessLog",
    "EntryPoint",
    "EntryPointProxyProtocol",
    "EntryPointTransport",
    "FileProvider",
    "LifeCycle",
    "Log",
    "Metrics",
    "Ping",
    "Providers",
    "RespondingTimeouts",
    "StaticConfig",
    "TCPServersTransport",
    "parse_entry_point_address",
]

#: Traefik's internal entry point (API, dashboard, ping); never a default for routers.
INTERNAL_ENTRY_POINT = "traefik"


def parse_entry_point_address(address: str) -> tuple[str, int, str]:
    """Split an entry point address into (host, port, "tcp" | "udp").

    ``host`` is "" for all interfaces (``:8000``) and has IPv6 brackets removed.
    Port names ("http") are not resolved: Traefik would, but a number is clearer.
    """
    host_port, slash, suffix = address.partition("/")
    protocol = "tcp"
    if slash:
        protocol = suffix.lower()
        if protocol not in ("tcp", "udp"):
            raise ValueError(
                f'entry point address "{address}": unknown protocol "{suffix}" (use /tcp or /udp)'
            )
    if host_port.startswith("["):
        closing = host_port.find("]")
        if closing < 0:
            raise ValueError(f'entry point address "{address}": missing "]" after an IPv6 host')
        host, rest = host_port[1:closing], host_port[closing + 1 :]
        if not rest.startswith(":"):
            raise ValueError(
                f'entry point address "{address}": missing port (write "[{host}]:PORT")'
            )
        port_text = rest[1:]
    else:
        host, colon, port_text = host_port.rpartition(":")
        if not colon:
            raise ValueError(
                f'entry point address "{address}": missing port (write ":PORT" or "HOST:PORT")'
            )
        if ":" in host:
            raise ValueError(
                f'entry point address "{address}": too many colons; put an IPv6 host in'
                ' brackets, e.g. "[::1]:8443"'
            )
    if not port_text:
        raise ValueError(f'entry point address "{address}": missing port after ":"')
    if not (port_text.isascii() and port_text.isdigit()):
        raise ValueError(f'entry point address "{address}": port "{port_text}" is not a number')
    port = int(port_text)
    if port > 65535:
        raise ValueError(f'entry point address "{address}": port {port} is out of range (0-65535)')
    return host, port, protocol


class RespondingTimeouts(TraefikModel):
    """Deadlines on accepted connections; ``readTimeout`` also bounds peeking."""

    read_timeout: Duration = 60.0
    write_timeout: Duration = 0.0
    idle_timeout: Duration = 180.0
    # Switchyard's addition: close relayed TCP connections idle this long (0 = never).
    # Traefik's idleTimeout is HTTP-only, so it cannot be reused without changing meaning.
    tcp_idle_timeout: Duration = 0.0


class LifeCycle(TraefikModel):
    """Graceful shutdown timings."""

    request_accept_grace_timeout: Duration = 0.0
    grace_time_out: Duration = 10.0


class EntryPointTransport(TraefikModel):
    """``entryPoints.<name>.transport``."""

    responding_timeouts: RespondingTimeouts = RespondingTimeouts()
    life_cycle: LifeCycle = LifeCycle()
    keep_alive_max_requests: int = 0
    keep_alive_max_time: Duration = 0.0


class EntryPointProxyProtocol(TraefikModel):
    """Which peers may send an incoming PROXY protocol header."""

    trusted_ips: StrList = Field(default_factory=list)
    insecure: bool = False


class EntryPoint(TraefikModel):
    """``entryPoints.<name>``; HTTP-only options are kept unvalidated."""

    address: str
    as_default: bool = False
    reuse_port: bool = False
    allow_acme_by_pass: bool = False
    transport: EntryPointTransport = EntryPointTransport()
    proxy_protocol: EntryPointProxyProtocol | None = None
    forwarded_headers: dict[str, Any] | None = None
    http: dict[str, Any] | None = None
    http2: dict[str, Any] | None = None
    http3: dict[str, Any] | None = None
    udp: dict[str, Any] | None = None
    observability: dict[str, Any] | None = None

    @field_validator("address")
    @classmethod
    def _address_is_listenable(cls, address: str) -> str:
        parse_entry_point_address(address)
        return address

    @property
    def protocol(self) -> str:
        """The protocol from the address suffix: "tcp" or "udp"."""
        return parse_entry_point_address(self.address)[2]


class FileProvider(TraefikModel):
    """``providers.file``: one file or a directory of dynamic configuration."""

    filename: str = ""
    directory: str = ""
    watch: bool = True
    debug_log_generated_template: bool = False


class Providers(TraefikModel):
    """``providers``; only the file provider is typed so far."""

    providers_throttle_duration: Duration = 2.0
    file: FileProvider | None = None
    docker: dict[str, Any] | None = None
    swarm: dict[str, Any] | None = None
    kubernetes_crd: dict[str, Any] | None = None
    kubernetes_ingress: dict[str, Any] | None = None
    kubernetes_ingress_nginx: dict[str, Any] | None = None
    kubernetes_gateway: dict[str, Any] | None = None
    rest: dict[str, Any] | None = None
    consul_catalog: dict[str, Any] | None = None
    nomad: dict[str, Any] | None = None
    ecs: dict[str, Any] | None = None
    consul: dict[str, Any] | None = None
    etcd: dict[str, Any] | None = None
    zoo_keeper: dict[str, Any] | None = None
    redis: dict[str, Any] | None = None
    http: dict[str, Any] | None = None
    plugin: dict[str, Any] = Field(default_factory=dict)


class Log(TraefikModel):
    """``log``: Traefik's own log."""

    level: str = "ERROR"
    format: str = "common"
    file_path: str = ""
    no_color: bool = False
    max_size: int = 0
    max_age: int = 0
    max_backups: int = 0
    compress: bool = False
    otlp: dict[str, Any] | None = None


class AccessLog(TraefikModel):
    """``accessLog``: one line per connection/request."""

    file_path: str = ""
    format: str = "common"
    buffering_size: int = 0
    add_internals: bool = False
    filters: dict[str, Any] | None = None
    fields: dict[str, Any] | None = None
    otlp: dict[str, Any] | None = None


class API(TraefikModel):
    """``api``: the REST API and dashboard."""

    insecure: bool = False
    dashboard: bool = True
    debug: bool = False
    base_path: str = "/"
    disable_dashboard_ad: bool = False


class Ping(TraefikModel):
    """``ping``: the health endpoint."""

    entry_point: str = INTERNAL_ENTRY_POINT
    manual_routing: bool = False
    terminating_status_code: int = 503


class Metrics(TraefikModel):
    """``metrics``; exporters kept unvalidated for now."""

    add_internals: bool = False
    prometheus: dict[str, Any] | None = None
    datadog: dict[str, Any] | None = None
    stats_d: dict[str, Any] | None = None
    influx_db2: dict[str, Any] | None = None
    otlp: dict[str, Any] | None = None


class TCPServersTransport(TraefikModel):
    """``tcpServersTransport``: becomes the ``default@internal`` servers transport."""

    dial_timeout: Duration = 30.0
    dial_keep_alive: Duration = 15.0
    # Traefik drops this when building default@internal (spec 1.4); kept to mirror the schema.
    termination_delay: Duration = 0.1
    tls: dict[str, Any] | None = None


class StaticConfig(TraefikModel):
    """The whole static configuration."""

    global_: dict[str, Any] | None = None
    servers_transport: dict[str, Any] | None = None
    # Traefik always has one (with these defaults), so there is no "absent" state here.
    tcp_servers_transport: TCPServersTransport = TCPServersTransport()
    entry_points: dict[str, EntryPoint] = Field(default_factory=dict)
    providers: Providers = Providers()
    api: API | None = None
    metrics: Metrics | None = None
    ping: Ping | None = None
    log: Log = Log()
    access_log: AccessLog | None = None
    tracing: dict[str, Any] | None = None
    host_resolver: dict[str, Any] | None = None
    certificates_resolvers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    experimental: dict[str, Any] | None = None
    core: dict[str, Any] | None = None
    spiffe: dict[str, Any] | None = None
    ocsp: dict[str, Any] | None = None

    def default_entry_points(self) -> list[str]:
        """Entry points of routers that name none (spec 9.5), sorted by name.

        The ``asDefault`` ones if any entry point has the flag, otherwise every TCP
        entry point; never UDP ones nor the internal ``traefik`` entry point.
        """
        flagged = any(entry_point.as_default for entry_point in self.entry_points.values())
        return sorted(
            name
            for name, entry_point in self.entry_points.items()
            if (entry_point.as_default or not flagged)
            and entry_point.protocol != "udp"
            and name != INTERNAL_ENTRY_POINT
        )
