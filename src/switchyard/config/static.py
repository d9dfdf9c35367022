"""Typed models of Traefik's static configuration (`traefik.yml`), TCP-relevant keys typed."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import Field, field_validator

from switchyard.config.durations import Duration
from switchyard.config.dynamic import StrList, TraefikModel, TransportTLS

__all__ = [
    "API",
    "INTERNAL_ENTRY_POINT",
    "UNIMPLEMENTED_PROVIDERS",
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
    "unimplemented_keys",
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
    # Switchyard's addition: a client silent this long is routed by the non-TLS routers, so
    # server-first protocols share a port with TLS routers (0 = wait for readTimeout).
    peek_timeout: Duration = 0.0


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


class StartTLS(TraefikModel):
    """``entryPoints.<name>.starttls`` (an addition): Switchyard speaks the protocol's
    greeting and STARTTLS exchange itself, then routes the ClientHello by SNI."""

    protocol: str = "smtp"
    hostname: str = ""  # named in the greeting; "" is this machine's name

    @field_validator("protocol")
    @classmethod
    def _known_protocol(cls, value: str) -> str:
        if value.lower() != "smtp":
            raise ValueError(f'starttls protocol "{value}" is not supported: use smtp')
        return "smtp"


class EntryPoint(TraefikModel):
    """``entryPoints.<name>``; HTTP-only options are kept unvalidated."""

    address: str
    as_default: bool = False
    reuse_port: bool = False
    allow_acme_by_pass: bool = False
    transport: EntryPointTransport = EntryPointTransport()
    proxy_protocol: EntryPointProxyProtocol | None = None
    starttls: StartTLS | None = None
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
    # Traefik drops this when building default@internal; kept to mirror the schema.
    termination_delay: Duration = 0.1
    tls: TransportTLS | None = None


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
        """Entry points of routers that name none (asDefault ones, else all but traefik), sorted.

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


def _present(value: object) -> bool:
    return value is not None


def _not_empty(value: object) -> bool:
    return bool(value)


#: Providers Traefik has and Switchyard does not read (``providers.<key>``, lower-cased).
UNIMPLEMENTED_PROVIDERS = (
    "kubernetesingressnginx", "kubernetesgateway", "rest",
    "nomad", "ecs", "http", "plugin",
)

@dataclass(frozen=True)
class _Unimplemented:
    """A static key Switchyard accepts because Traefik has it, but does not act on."""

    path: tuple[str, ...]  # lower-cased; "*" for any name
    message: str
    matters: Callable[[object], bool] = _present


_UNIMPLEMENTED = (
    _Unimplemented(("tracing",), "tracing is not implemented by Switchyard: no spans are "
                   "sent; remove the section (the access log and metrics describe every "
                   "connection)"),
    _Unimplemented(("experimental",), "experimental features (plugins, ...) are not "
                   "implemented by Switchyard; remove the section", _not_empty),
    _Unimplemented(("hostresolver",), "hostResolver is not implemented by Switchyard: "
                   "backend names are resolved by the system resolver; remove the section",
                   _not_empty),
    _Unimplemented(("core", "defaultrulesyntax"), "core.defaultRuleSyntax is not implemented "
                   "by Switchyard: routers without ruleSyntax use v3; set ruleSyntax: v2 on "
                   "each router that needs the v2 syntax", lambda value: value == "v2"),
    _Unimplemented(("spiffe",), "SPIFFE is not implemented by Switchyard; remove the section "
                   "and verify backends with serversTransports tls.rootCAs and peerCertSANs"),
    _Unimplemented(("ocsp",), "OCSP stapling is not implemented by Switchyard; remove the "
                   "section"),
    _Unimplemented(("entrypoints", "*", "http2"), "HTTP/2 settings are not implemented by "
                   "Switchyard (it relays TCP); remove them"),
    _Unimplemented(("entrypoints", "*", "http3"), "HTTP/3 is not implemented by Switchyard "
                   "(it runs over UDP); remove it"),
    _Unimplemented(("log", "otlp"), "log export over OTLP is not implemented by Switchyard; "
                   "remove it (log.filePath and log.format: json work)"),
    *(_Unimplemented(("log", name.lower()), f"log.{name} is not implemented by Switchyard: "
                     "it does not rotate its log; remove it and rotate log.filePath with "
                     "logrotate (copytruncate)", _not_empty)
      for name in ("maxSize", "maxAge", "maxBackups", "compress")),
    *(_Unimplemented(("accesslog", name.lower()), f"accessLog.{name} is not implemented by "
                     "Switchyard: every connection is logged with every field; remove it")
      for name in ("filters", "fields", "otlp")),
    *(_Unimplemented(("metrics", name.lower()), f"metrics.{name} is not implemented by "
                     "Switchyard; remove it (metrics.prometheus works)")
      for name in ("datadog", "statsD", "influxDB2", "otlp")),
    *(_Unimplemented(("providers", name), "this provider is not implemented by Switchyard "
                     "and reads nothing; remove it (file, docker, swarm, kubernetesCRD, "
                     "kubernetesIngress, redis, "
                     "etcd, consul, consulCatalog and zooKeeper are implemented)",
                     _not_empty if name == "plugin" else _present)
      for name in UNIMPLEMENTED_PROVIDERS),
)


def unimplemented_keys(raw: Mapping[str, Any]) -> Iterator[tuple[tuple[str, ...], str]]:
    """Every key of a raw static configuration that Switchyard accepts but ignores.

    Yields the key path as written and why it has no effect, e.g.
    ``(("tracing",), "tracing is not implemented ...")``. Matching is case-insensitive.
    """
    for key in _UNIMPLEMENTED:
        for path, value in _walk(raw, key.path, ()):
            if key.matters(value):
                yield path, key.message


def _walk(node: object, pattern: tuple[str, ...],
          path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], object]]:
    if not pattern:
        yield path, node
        return
    if not isinstance(node, Mapping):
        return
    head, rest = pattern[0], pattern[1:]
    for key, value in node.items():
        if head in ("*", str(key).lower()):
            yield from _walk(value, rest, (*path, str(key)))
