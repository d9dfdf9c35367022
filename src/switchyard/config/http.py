"""Typed models of Traefik's dynamic ``http:`` section: routers, services, middlewares, transports."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field, ValidationError

from switchyard.config.durations import Duration
from switchyard.config.dynamic import (
    Certificate,
    Domain,
    EmptyHealthCheck,
    PassiveHealthCheck,
    PeerCertSAN,
    StrList,
    TraefikModel,
)

__all__ = [
    "BALANCER_STRATEGIES",
    "HTTP_MIDDLEWARE_TYPES",
    "HTTP_SERVICE_TYPES",
    "Cookie",
    "Failover",
    "FailoverErrors",
    "ForwardingTimeouts",
    "HTTPLoadBalancer",
    "HTTPMiddleware",
    "HTTPRouter",
    "HTTPRouterTLS",
    "HTTPSection",
    "HTTPServer",
    "HTTPServersTransport",
    "HTTPService",
    "HTTPWeighted",
    "HighestRandomWeight",
    "MirrorService",
    "Mirroring",
    "PassiveHealthCheck",
    "ResponseForwarding",
    "RouterObservability",
    "ServerHealthCheck",
    "ServiceRef",
    "Spiffe",
    "Sticky",
]

#: The values of ``loadBalancer.strategy``; others are refused when the service is built.
BALANCER_STRATEGIES = ("wrr", "p2c", "hrw", "leasttime")


# --- http.routers ------------------------------------------------------------------------


class HTTPRouterTLS(TraefikModel):
    """``http.routers.<name>.tls``; its presence alone makes the router an HTTPS router."""

    options: str = ""
    cert_resolver: str = ""
    domains: list[Domain] = Field(default_factory=list)


class RouterObservability(TraefikModel):
    """``http.routers.<name>.observability``; unset switches follow the entry point's."""

    access_logs: bool | None = None
    metrics: bool | None = None
    tracing: bool | None = None
    trace_verbosity: str = "minimal"


class HTTPRouter(TraefikModel):
    """``http.routers.<name>``. A missing rule or service is reported when routers are built.

    ``parentRefs`` (multi-layer routing) is read so it can be reported, not yet routed.
    """

    entry_points: StrList = Field(default_factory=list)
    rule: str = ""
    rule_syntax: str = ""
    priority: int = 0
    middlewares: StrList = Field(default_factory=list)
    service: str = ""
    tls: HTTPRouterTLS | None = None
    observability: RouterObservability | None = None
    parent_refs: StrList = Field(default_factory=list)


# --- http.services -----------------------------------------------------------------------


class HTTPServer(TraefikModel):
    """One backend of a load balancer; an omitted weight counts as 1 when built."""

    url: str = ""
    weight: int | None = None
    preserve_path: bool = False


class Cookie(TraefikModel):
    """``sticky.cookie``; an empty name is derived from the service name when built."""

    name: str = ""
    secure: bool = False
    http_only: bool = False
    same_site: str = ""
    max_age: int = 0
    path: str = "/"
    domain: str = ""


class Sticky(TraefikModel):
    """Session affinity; only the cookie kind exists."""

    cookie: Cookie | None = None


class ServerHealthCheck(TraefikModel):
    """``loadBalancer.healthCheck``: active checks of each server."""

    scheme: str = ""
    mode: str = "http"
    path: str = ""
    method: str = ""
    status: int = 0
    port: int = 0
    interval: Duration = 30.0
    # None: checks of an unhealthy server keep ``interval``.
    unhealthy_interval: Duration | None = None
    timeout: Duration = 5.0
    hostname: str = ""
    follow_redirects: bool = True
    headers: dict[str, str] = Field(default_factory=dict)


class ResponseForwarding(TraefikModel):
    """How response bodies are flushed to the client; negative means after every write."""

    flush_interval: Duration = 0.1


class HTTPLoadBalancer(TraefikModel):
    """``http.services.<name>.loadBalancer``."""

    sticky: Sticky | None = None
    servers: list[HTTPServer] = Field(default_factory=list)
    strategy: str = "wrr"
    health_check: ServerHealthCheck | None = None
    passive_health_check: PassiveHealthCheck | None = None
    pass_host_header: bool = True
    response_forwarding: ResponseForwarding = ResponseForwarding()
    servers_transport: str = ""


class ServiceRef(TraefikModel):
    """A child of a weighted or highest-random-weight service."""

    name: str
    weight: int = 1


class HTTPWeighted(TraefikModel):
    """``http.services.<name>.weighted``: weighted round robin over services."""

    services: list[ServiceRef] = Field(default_factory=list)
    sticky: Sticky | None = None
    health_check: EmptyHealthCheck | None = None


class HighestRandomWeight(TraefikModel):
    """``http.services.<name>.highestRandomWeight``: a service per client IP, by hashing."""

    services: list[ServiceRef] = Field(default_factory=list)
    health_check: EmptyHealthCheck | None = None


class MirrorService(TraefikModel):
    """A mirror and the share of requests it receives."""

    name: str
    percent: int = 0


class Mirroring(TraefikModel):
    """``http.services.<name>.mirroring``; a negative maxBodySize means no limit."""

    service: str = ""
    mirror_body: bool = True
    max_body_size: int = -1
    mirrors: list[MirrorService] = Field(default_factory=list)
    health_check: EmptyHealthCheck | None = None


class FailoverErrors(TraefikModel):
    """``failover.errors``: response statuses that send the request to the fallback."""

    max_request_body_bytes: int = -1
    status: StrList = Field(default_factory=list)


class Failover(TraefikModel):
    """``http.services.<name>.failover``."""

    service: str = ""
    fallback: str = ""
    health_check: EmptyHealthCheck | None = None
    errors: FailoverErrors | None = None


#: The service kinds, by key; a service sets exactly one (checked when built).
HTTP_SERVICE_TYPES = ("loadBalancer", "weighted", "mirroring", "failover", "highestRandomWeight")


class HTTPService(TraefikModel):
    """``http.services.<name>``: one of the kinds in HTTP_SERVICE_TYPES, plus middlewares."""

    middlewares: StrList = Field(default_factory=list)
    load_balancer: HTTPLoadBalancer | None = None
    weighted: HTTPWeighted | None = None
    mirroring: Mirroring | None = None
    failover: Failover | None = None
    highest_random_weight: HighestRandomWeight | None = None

    @property
    def kinds(self) -> list[str]:
        """The kinds this service sets, by key, in HTTP_SERVICE_TYPES order."""
        return _set_keys(self, HTTP_SERVICE_TYPES)


# --- http.middlewares --------------------------------------------------------------------

#: Traefik's HTTP middleware types that a configuration file can declare.
HTTP_MIDDLEWARE_TYPES = (
    "addPrefix",
    "basicAuth",
    "buffering",
    "chain",
    "circuitBreaker",
    "compress",
    "contentType",
    "digestAuth",
    "encodedCharacters",
    "errors",
    "forwardAuth",
    "grpcWeb",
    "headers",
    "inFlightReq",
    "ipAllowList",
    "ipWhiteList",
    "passTLSClientCert",
    "plugin",
    "rateLimit",
    "redirectRegex",
    "redirectScheme",
    "replacePath",
    "replacePathRegex",
    "retry",
    "stripPrefix",
    "stripPrefixRegex",
)


class HTTPMiddleware(TraefikModel):
    """``http.middlewares.<name>``: each known type's options, kept as given for now.

    An empty mapping (``compress: {}``) is a type set with its defaults. ``plugin`` maps
    plugin names to their options. Several types at once is reported when built.
    """

    add_prefix: dict[str, Any] | None = None
    basic_auth: dict[str, Any] | None = None
    buffering: dict[str, Any] | None = None
    chain: dict[str, Any] | None = None
    circuit_breaker: dict[str, Any] | None = None
    compress: dict[str, Any] | None = None
    content_type: dict[str, Any] | None = None
    digest_auth: dict[str, Any] | None = None
    encoded_characters: dict[str, Any] | None = None
    errors: dict[str, Any] | None = None
    forward_auth: dict[str, Any] | None = None
    grpc_web: dict[str, Any] | None = None
    headers: dict[str, Any] | None = None
    in_flight_req: dict[str, Any] | None = None
    ip_allow_list: dict[str, Any] | None = None
    ip_white_list: dict[str, Any] | None = None
    pass_tls_client_cert: dict[str, Any] | None = Field(default=None, alias="passTLSClientCert")
    plugin: dict[str, Any] | None = None
    rate_limit: dict[str, Any] | None = None
    redirect_regex: dict[str, Any] | None = None
    redirect_scheme: dict[str, Any] | None = None
    replace_path: dict[str, Any] | None = None
    replace_path_regex: dict[str, Any] | None = None
    retry: dict[str, Any] | None = None
    strip_prefix: dict[str, Any] | None = None
    strip_prefix_regex: dict[str, Any] | None = None

    @property
    def kinds(self) -> list[str]:
        """The middleware types this element sets, by key, in HTTP_MIDDLEWARE_TYPES order."""
        return _set_keys(self, HTTP_MIDDLEWARE_TYPES)


# --- http.serversTransports --------------------------------------------------------------


class ForwardingTimeouts(TraefikModel):
    """Timeouts of requests forwarded to servers; 0 means none."""

    dial_timeout: Duration = 30.0
    response_header_timeout: Duration = 0.0
    idle_conn_timeout: Duration = 90.0
    read_idle_timeout: Duration = 0.0
    ping_timeout: Duration = 15.0


class Spiffe(TraefikModel):
    """SPIFFE verification of servers; an empty block accepts any SPIFFE ID."""

    ids: StrList = Field(default_factory=list)
    trust_domain: str = ""


class HTTPServersTransport(TraefikModel):
    """``http.serversTransports.<name>``: TLS, pooling and timeouts towards servers.

    ``maxIdleConnsPerHost`` 0 means Go's default of 2 idle connections per host (the
    ``default@internal`` transport takes the static ``serversTransport`` value, 200); a
    negative value disables reuse.
    """

    server_name: str = ""
    insecure_skip_verify: bool = False
    root_cas: StrList = Field(default_factory=list)
    certificates: list[Certificate] = Field(default_factory=list)
    cipher_suites: StrList = Field(default_factory=list)
    min_version: str = ""
    max_version: str = ""
    max_idle_conns_per_host: int = 0
    forwarding_timeouts: ForwardingTimeouts | None = None
    disable_http2: bool = Field(default=False, alias="disableHTTP2")
    peer_cert_uri: str = ""
    peer_cert_sans: list[PeerCertSAN] = Field(default_factory=list)
    spiffe: Spiffe | None = None


def _set_keys(model: TraefikModel, keys: tuple[str, ...]) -> list[str]:
    present = {
        info.alias or name
        for name, info in type(model).model_fields.items()
        if getattr(model, name) is not None
    }
    return [key for key in keys if key in present]


# --- whole section -------------------------------------------------------------------------


class HTTPSection(TraefikModel):
    """The dynamic ``http:`` section."""

    routers: dict[str, HTTPRouter] = Field(default_factory=dict)
    services: dict[str, HTTPService] = Field(default_factory=dict)
    middlewares: dict[str, HTTPMiddleware] = Field(default_factory=dict)
    servers_transports: dict[str, HTTPServersTransport] = Field(default_factory=dict)


_ELEMENT_MODELS: dict[str, tuple[str, type[TraefikModel]]] = {
    "routers": ("routers", HTTPRouter),
    "services": ("services", HTTPService),
    "middlewares": ("middlewares", HTTPMiddleware),
    "serverstransports": ("serversTransports", HTTPServersTransport),
}


def validate_http_section(raw: Mapping[str, Any]) -> tuple[HTTPSection, list[tuple[str, str]]]:
    """The ``http:`` section with every element that validates; the others as (path, message).

    A bad router, service, middleware or transport is left out with its error; the rest of the
    section still runs (one typo must not switch off every HTTP router of a provider).
    """
    try:
        return HTTPSection.model_validate(raw), []
    except ValidationError:
        pass
    kept: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    for key, value in raw.items():
        found = _ELEMENT_MODELS.get(str(key).lower())
        if found is None:
            kept[key] = value  # unknown keys are reported by the loader
            continue
        alias, model = found
        if value is None:
            continue
        if not isinstance(value, Mapping):
            problems.append((f"http.{alias}", "must be a mapping of names to definitions"))
            continue
        good = {}
        for name, element in value.items():
            try:
                model.model_validate(element if element is not None else {})
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(part) for part in first["loc"])
                path = f"http.{alias}.{name}" + (f".{where}" if where else "")
                problems.append((path, (f"{first['msg']}; this element is left out until it is "
                                       "fixed")))
                continue
            good[name] = element
        kept[alias] = good
    try:
        return HTTPSection.model_validate(kept), problems
    except ValidationError as exc:  # the section itself, not one element, is unreadable
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return HTTPSection(), [*problems, (f"http.{where}", (f"{first['msg']}; the http "
                                           "section of this provider is ignored until it is "
                                           "fixed"))]
