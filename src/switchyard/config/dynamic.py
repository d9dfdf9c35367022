"""Typed models of Traefik's dynamic configuration: the `tcp:` and `tls:` sections."""

from __future__ import annotations

import functools
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, BeforeValidator, ConfigDict, field_validator, model_validator
from pydantic.alias_generators import to_camel

from switchyard.config.durations import Duration

__all__ = [
    "IN_FLIGHT_SCOPES",
    "ON_CHANGE_POLICIES",
    "PROXY_TLVS",
    "Certificate",
    "ClientAuth",
    "Domain",
    "DynamicConfig",
    "EmptyHealthCheck",
    "HealthCheck",
    "IPAllowList",
    "InFlightConn",
    "LoadBalancer",
    "OnChange",
    "PassiveHealthCheck",
    "PeerCertSAN",
    "ProxyProtocol",
    "RateLimit",
    "Redis",
    "RedisTLS",
    "Retry",
    "RouterTLS",
    "Server",
    "ServersTransport",
    "Store",
    "StrList",
    "TCPIPStrategy",
    "TCPMiddleware",
    "TCPRouter",
    "TCPSection",
    "TCPService",
    "TCPSourceCriterion",
    "TLSOptions",
    "TLSSection",
    "TraefikModel",
    "TransportTLS",
    "Weighted",
    "WeightedService",
]

# Traefik's spellings that plain snake_case -> camelCase does not produce. Key matching
# is case-insensitive, so only "global" (a Python keyword) changes what is accepted;
# the rest keep error paths and dumps in the spelling users know.
_IRREGULAR_ALIASES = {
    "root_cas": "rootCAs",
    "peer_cert_uri": "peerCertURI",
    "peer_cert_sans": "peerCertSANs",
    "trusted_ips": "trustedIPs",
    "allow_acme_by_pass": "allowACMEByPass",
    "kubernetes_crd": "kubernetesCRD",
    "kubernetes_ingress_nginx": "kubernetesIngressNGINX",
    "influx_db2": "influxDB2",
    "global_": "global",
}


def _traefik_alias(field_name: str) -> str:
    return _IRREGULAR_ALIASES.get(field_name) or to_camel(field_name)


@dataclass(frozen=True)
class _KeyIndex:
    alias_by_lower: dict[str, str]  # lower-cased field name or alias -> alias
    object_aliases: frozenset[str]  # fields holding a sub-object (model or raw mapping)


class TraefikModel(BaseModel):
    """Base of every configuration model: Traefik's key spelling rules, frozen.

    Keys are matched case-insensitively against the camelCase alias (and the
    snake_case field name), as Traefik's file decoder does. Unknown keys are
    kept in ``model_extra`` so loaders can report them; they have no effect.
    An object-valued key given as null (YAML ``tls:`` with nothing after it)
    counts as present with defaults, because presence alone switches features
    on (a TLS router, health checks); a null scalar or list means "default".
    Dump with ``exclude_none=True`` to keep absent objects absent on a round trip.
    """

    model_config = ConfigDict(
        frozen=True,
        populate_by_name=True,
        alias_generator=_traefik_alias,
        extra="allow",
        # Traefik's decoder reads every scalar as text, so `options: 1` is the string "1".
        coerce_numbers_to_str=True,
    )

    @model_validator(mode="before")
    @classmethod
    def _canonical_keys(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        index = key_index(cls)
        canonical: dict[str, Any] = {}
        for key, value in data.items():
            name = str(key)
            alias = index.alias_by_lower.get(name.lower())
            if alias is None:
                canonical[name] = value
                continue
            if value is None:
                # Traefik's decoder skips null values (paerser decodeRaw), so
                # `tls:` with nothing after it leaves the router without TLS.
                continue
            canonical[alias] = value
        return canonical

    @classmethod
    def alias_for(cls, key: str) -> str | None:
        """The canonical (camelCase) key for ``key`` in any case, or None if unknown."""
        return key_index(cls).alias_by_lower.get(key.lower())

    @classmethod
    def known_keys(cls) -> list[str]:
        """Every canonical key of this model, in declaration order."""
        return [field.alias or name for name, field in cls.model_fields.items()]


@functools.cache
def key_index(model: type[TraefikModel]) -> _KeyIndex:
    """Lower-cased key lookup for ``model``, built once per class."""
    alias_by_lower: dict[str, str] = {}
    object_aliases: set[str] = set()
    for name, field in model.model_fields.items():
        alias = field.alias or name
        alias_by_lower[name.lower()] = alias
        alias_by_lower[alias.lower()] = alias
        if _holds_object(field.annotation):
            object_aliases.add(alias)
    return _KeyIndex(alias_by_lower, frozenset(object_aliases))


def _holds_object(annotation: Any) -> bool:
    if get_origin(annotation) in (Union, types.UnionType):
        return any(_holds_object(arg) for arg in get_args(annotation))
    if annotation is dict or get_origin(annotation) is dict:
        return True
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _comma_list(value: Any) -> Any:
    # Traefik's decoder splits a scalar given for a list on commas: `entryPoints: web,ssh`.
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


#: A list of strings that also accepts Traefik's comma-separated scalar form.
StrList = Annotated[list[str], BeforeValidator(_comma_list)]


# --- tcp.routers -------------------------------------------------------------------------


class Domain(TraefikModel):
    """An ACME domain request: ``main`` plus subject alternative names."""

    main: str = ""
    sans: StrList = []


class RouterTLS(TraefikModel):
    """``tcp.routers.<name>.tls``; its presence alone makes the router a TLS router."""

    passthrough: bool = False
    options: str = ""
    cert_resolver: str = ""
    domains: list[Domain] = []


#: ``onChange.policy`` values (an addition): what a configuration change does to live connections.
ON_CHANGE_POLICIES = ("keep", "drain", "close")


class OnChange(TraefikModel):
    """``tcp.routers.<name>.onChange``: live connections when their router, service or server
    is removed or changed. ``keep`` is Traefik's behaviour; ``drain`` closes them after
    ``drainTimeout`` unless they end first; ``close`` closes them at once."""

    policy: str = "keep"
    drain_timeout: Duration = 10.0

    @field_validator("policy")
    @classmethod
    def _known_policy(cls, value: str) -> str:
        for name in ON_CHANGE_POLICIES:
            if value.lower() == name:
                return name
        raise ValueError(f'unknown policy "{value}": use one of {", ".join(ON_CHANGE_POLICIES)}')


class TCPRouter(TraefikModel):
    """``tcp.routers.<name>``. A missing rule or service is reported when routers are built."""

    entry_points: StrList = []
    rule: str = ""
    rule_syntax: str = ""
    priority: int = 0
    middlewares: StrList = []
    service: str = ""
    tls: RouterTLS | None = None
    # Additions: close a relayed connection quiet both ways this long, or open this long
    # (None or 0: never).
    idle_timeout: Duration | None = None
    max_duration: Duration | None = None
    on_change: OnChange | None = None


# --- tcp.services ------------------------------------------------------------------------


class Server(TraefikModel):
    """One backend of a load balancer; ``weight`` (an addition) is 1 when omitted."""

    address: str = ""
    tls: bool = False
    weight: int | None = None


class HealthCheck(TraefikModel):
    """``loadBalancer.healthCheck``; presence (even empty) enables checks."""

    port: int = 0
    send: str = ""
    expect: str = ""
    interval: Duration = 30.0
    unhealthy_interval: Duration | None = None
    timeout: Duration = 5.0


#: ``proxyProtocol.tlvs`` values (an addition, version 2 only), as HAProxy's send-proxy-v2-ssl.
PROXY_TLVS = ("alpn", "authority", "ssl")


class ProxyProtocol(TraefikModel):
    """Outgoing PROXY protocol header; an empty block means version 2."""

    version: int = 2
    tlvs: StrList = []

    @field_validator("tlvs")
    @classmethod
    def _known_tlvs(cls, value: list[str]) -> list[str]:
        for name in value:
            if name.lower() not in PROXY_TLVS:
                raise ValueError(f'unknown TLV "{name}": use {", ".join(PROXY_TLVS)}')
        return [name.lower() for name in value]

    @model_validator(mode="after")
    def _tlvs_need_version_2(self) -> ProxyProtocol:
        if self.tlvs and self.version != 2:
            raise ValueError("tlvs exist in PROXY protocol version 2 only: set version: 2")
        return self


class PassiveHealthCheck(TraefikModel):
    """``loadBalancer.passiveHealthCheck``: failures of live traffic take a server out."""

    failure_window: Duration = 10.0
    max_failed_attempts: int = 1


class Retry(TraefikModel):
    """``loadBalancer.retry`` (TCP, an addition): dials in all, one per server, when refused."""

    attempts: int = 0


#: ``tcp.services.<name>.loadBalancer.strategy`` values (an addition), matched in any case.
TCP_STRATEGIES = ("wrr", "p2c", "hrw", "leastConn")


class LoadBalancer(TraefikModel):
    """``tcp.services.<name>.loadBalancer``; strategy, passiveHealthCheck, retry are additions."""

    servers: list[Server] = []
    servers_transport: str = ""
    health_check: HealthCheck | None = None
    proxy_protocol: ProxyProtocol | None = None
    # Deprecated; Traefik documents milliseconds but applies nanoseconds.
    termination_delay: int | None = None
    strategy: str = ""  # "" is wrr, and keeps the API's view of Traefik configs as Traefik's
    passive_health_check: PassiveHealthCheck | None = None
    retry: Retry | None = None

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, value: str) -> str:
        if value and value.lower() not in {name.lower() for name in TCP_STRATEGIES}:
            raise ValueError(f'unknown strategy "{value}": use one of {", ".join(TCP_STRATEGIES)}')
        return value


class WeightedService(TraefikModel):
    """A child of a weighted service; an omitted weight counts as 1 when built."""

    name: str
    weight: int | None = None


class EmptyHealthCheck(TraefikModel):
    """``weighted.healthCheck``: no fields, its presence turns on status propagation."""


class Weighted(TraefikModel):
    """``tcp.services.<name>.weighted``."""

    services: list[WeightedService] = []
    health_check: EmptyHealthCheck | None = None


class TCPService(TraefikModel):
    """``tcp.services.<name>``; exactly one of the two kinds is checked when built."""

    load_balancer: LoadBalancer | None = None
    weighted: Weighted | None = None


# --- tcp.middlewares ---------------------------------------------------------------------


#: ``inFlightConn.scope`` values (an addition): what one count covers.
IN_FLIGHT_SCOPES = ("clientIP", "router", "global")


class InFlightConn(TraefikModel):
    """Limit on simultaneous connections: per client IP (Traefik's), router or overall."""

    amount: int = 0
    scope: str = ""  # "" is clientIP; the API shows Traefik's configs as Traefik does

    @field_validator("scope")
    @classmethod
    def _known_scope(cls, value: str) -> str:
        for name in IN_FLIGHT_SCOPES:
            if value.lower() == name.lower():
                return name
        if value:
            raise ValueError(f'unknown scope "{value}": use one of {", ".join(IN_FLIGHT_SCOPES)}')
        return value


class TCPIPStrategy(TraefikModel):
    """``sourceCriterion.ipStrategy`` for TCP: the client address (PROXY-announced when the
    entry point trusts the peer), IPv6 ones folded onto their ``ipv6Subnet``."""

    ipv6_subnet: int | None = None
    depth: int = 0
    excluded_ips: StrList = []

    @model_validator(mode="after")
    def _no_forwarded_headers(self) -> TCPIPStrategy:
        if self.depth or self.excluded_ips:
            raise ValueError("depth and excludedIPs read X-Forwarded-For, which a TCP "
                             "connection has not: remove them (the PROXY protocol address "
                             "is already the client's when the entry point trusts its peer)")
        if self.ipv6_subnet is not None and not 0 < self.ipv6_subnet <= 128:
            raise ValueError(f"ipv6Subnet {self.ipv6_subnet}: use a prefix length from 1 to 128")
        return self


class TCPSourceCriterion(TraefikModel):
    """``rateLimit.sourceCriterion`` for TCP: only ``ipStrategy`` (there are no headers)."""

    ip_strategy: TCPIPStrategy | None = None
    request_header_name: str = ""
    request_host: bool = False

    @model_validator(mode="after")
    def _no_request_fields(self) -> TCPSourceCriterion:
        if self.request_header_name or self.request_host:
            raise ValueError("requestHeaderName and requestHost need an HTTP request: a TCP "
                             "rateLimit groups connections by ipStrategy only")
        return self


class RedisTLS(TraefikModel):
    """TLS towards Redis."""

    ca: str = ""
    cert: str = ""
    key: str = ""
    insecure_skip_verify: bool = False


class Redis(TraefikModel):
    """``rateLimit.redis``: a Redis server holding the buckets, so instances share a limit."""

    endpoints: StrList = ["localhost:6379"]
    tls: RedisTLS | None = None
    username: str = ""
    password: str = ""
    db: int = 0
    pool_size: int = 0
    min_idle_conns: int = 0
    max_active_conns: int = 0
    read_timeout: Duration = 3.0
    write_timeout: Duration = 3.0
    dial_timeout: Duration = 5.0


class RateLimit(TraefikModel):
    """``tcp.middlewares.<name>.rateLimit`` (an addition): new connections per source, as
    Traefik's HTTP rateLimit counts requests: ``average`` per ``period``, ``burst`` at once."""

    average: int = 0
    period: Duration = 1.0
    burst: int = 1
    source_criterion: TCPSourceCriterion | None = None
    redis: Redis | None = None

    @field_validator("period")
    @classmethod
    def _non_negative_period(cls, value: float) -> float:
        if value < 0:
            raise ValueError(f"negative value not valid for period: {value:g}s")
        return value


class IPAllowList(TraefikModel):
    """Client IP allow list (also the deprecated ``ipWhiteList``)."""

    source_range: StrList = []


class TCPMiddleware(TraefikModel):
    """``tcp.middlewares.<name>``; several kinds set at once is resolved when built."""

    in_flight_conn: InFlightConn | None = None
    ip_allow_list: IPAllowList | None = None
    ip_white_list: IPAllowList | None = None
    rate_limit: RateLimit | None = None

    @property
    def kinds(self) -> list[str]:
        """The types set, in Traefik's field order (rateLimit, an addition, last): the API names
        the first, the last one acts."""
        return [kind for kind, value in (("inFlightConn", self.in_flight_conn),
                                         ("ipWhiteList", self.ip_white_list),
                                         ("ipAllowList", self.ip_allow_list),
                                         ("rateLimit", self.rate_limit))
                if value is not None]


# --- tls ---------------------------------------------------------------------------------


class Certificate(TraefikModel):
    """A certificate and key, each a file path or inline PEM."""

    cert_file: str
    key_file: str
    stores: StrList = []


class ClientAuth(TraefikModel):
    """Client certificate (mTLS) requirements of a TLS option."""

    ca_files: StrList = []
    client_auth_type: str = "NoClientCert"


class TLSOptions(TraefikModel):
    """``tls.options.<name>``."""

    min_version: str = "VersionTLS12"
    max_version: str = ""
    cipher_suites: StrList = []
    curve_preferences: StrList = []
    client_auth: ClientAuth | None = None
    sni_strict: bool = False
    alpn_protocols: StrList = ["h2", "http/1.1", "acme-tls/1"]
    disable_session_tickets: bool = False
    prefer_server_cipher_suites: bool = False


class Store(TraefikModel):
    """``tls.stores.<name>``."""

    default_certificate: Certificate | None = None
    default_generated_cert: dict[str, Any] | None = None


class TLSSection(TraefikModel):
    """The dynamic ``tls:`` section."""

    certificates: list[Certificate] = []
    options: dict[str, TLSOptions] = {}
    stores: dict[str, Store] = {}


# --- tcp.serversTransports ---------------------------------------------------------------


class PeerCertSAN(TraefikModel):
    """A SAN the backend certificate must carry (``DNSName`` or ``URI``)."""

    type: str
    value: str


class TransportTLS(TraefikModel):
    """TLS towards the backends of a servers transport."""

    server_name: str = ""
    insecure_skip_verify: bool = False
    root_cas: StrList = []
    certificates: list[Certificate] = []
    peer_cert_uri: str = ""
    peer_cert_sans: list[PeerCertSAN] = []
    spiffe: dict[str, Any] | None = None


class ServersTransport(TraefikModel):
    """``tcp.serversTransports.<name>``: how backends are dialed."""

    dial_timeout: Duration = 30.0
    dial_keep_alive: Duration = 15.0
    termination_delay: Duration = 0.1
    proxy_protocol: ProxyProtocol | None = None
    tls: TransportTLS | None = None


# --- whole document ----------------------------------------------------------------------


class TCPSection(TraefikModel):
    """The dynamic ``tcp:`` section."""

    routers: dict[str, TCPRouter] = {}
    services: dict[str, TCPService] = {}
    middlewares: dict[str, TCPMiddleware] = {}
    servers_transports: dict[str, ServersTransport] = {}


class DynamicConfig(TraefikModel):
    """One provider's dynamic configuration; ``http`` and ``udp`` are kept unvalidated."""

    tcp: TCPSection = TCPSection()
    tls: TLSSection = TLSSection()
    http: dict[str, Any] = {}
    udp: dict[str, Any] = {}
