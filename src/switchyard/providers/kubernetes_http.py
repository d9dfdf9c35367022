"""The HTTP kinds of the kubernetesCRD provider: IngressRoute, Middleware, TraefikService, ServersTransport.

Each object becomes the ``http:`` elements Traefik's kubernetescrd provider makes of it, under
the same names: a route's router and service are ``<namespace>-<name>-<sha256(match)[:10
bytes]>``; a Kubernetes Service port is the service ``<namespace>-<service>-<port>``; a
Middleware, TraefikService or ServersTransport is ``<namespace>-<name>``; all passed through
Traefik's Normalize (anything but letters and digits becomes ``-``). What Traefik reads from
Secrets (certificates, users, CAs, Redis logins) is read from the Secret manifests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field, ValidationError

from switchyard.addresses import host_port
from switchyard.config.dynamic import Domain, StrList, TraefikModel
from switchyard.config.http import (
    HTTPMiddleware,
    HTTPRouter,
    HTTPServersTransport,
    HTTPService,
)
from switchyard.config.loader import ConfigIssue
from switchyard.http.middlewares.htpasswd import sha1_secret
from switchyard.providers.flatkeys import normalize_name
from switchyard.providers.kubeobjects import (
    Cluster,
    Manifest,
    Problem,
    ca_bundle,
    config_map_ca,
    secret_entries,
    serving_endpoints,
    tls_pair,
    validated,
)
from switchyard.tls.options import TLS_VERSIONS

__all__ = [
    "HTTP_KINDS",
    "HTTPObjects",
    "ReferencePolicy",
    "checked_section",
    "http_router_key",
    "http_servers",
    "scheme_for",
]

#: The CRD kinds this module reads.
HTTP_KINDS = ("IngressRoute", "Middleware", "TraefikService", "ServersTransport")
_PROVIDER = "kubernetescrd"
_STRATEGIES = ("wrr", "p2c", "hrw", "leasttime")
_ELEMENT_MODELS: Mapping[str, type[TraefikModel]] = {
    "routers": HTTPRouter, "services": HTTPService, "middlewares": HTTPMiddleware,
    "serversTransports": HTTPServersTransport}


@dataclass(frozen=True)
class ReferencePolicy:
    """The provider options that decide which references and Services are allowed."""

    allow_cross_namespace: bool = False
    allow_external_name_services: bool = False
    allow_empty_services: bool = False
    native_lb_by_default: bool = False
    # None: any namespace may name other providers' elements (name@provider); a list: only
    # those namespaces (Traefik's crossProviderNamespaces).
    cross_provider_namespaces: tuple[str, ...] | None = None

    def cross_provider_allowed(self, namespace: str) -> bool:
        return self.cross_provider_namespaces is None or (
            namespace in self.cross_provider_namespaces)


def http_router_key(namespace: str, name: str, rule: str) -> str:
    """A route's router and service name: ``ns-name-<first 10 bytes of sha256(rule), hex>``."""
    digest = hashlib.sha256(rule.encode()).hexdigest()[:20]
    return normalize_name(f"{namespace}-{name}-{digest}" if namespace else f"{name}-{digest}")


# --- CRD shapes --------------------------------------------------------------------------


class _Ref(TraefikModel):
    name: str
    namespace: str = ""


class _LoadBalancerSpec(TraefikModel):
    """A service reference: a Kubernetes Service port, or a TraefikService (``kind``)."""

    name: str
    kind: str = ""
    namespace: str = ""
    middlewares: list[_Ref] = Field(default_factory=list)
    sticky: dict[str, Any] | None = None
    port: int | str | None = None  # IntOrString: the Service port's number or its name
    scheme: str = ""
    strategy: str = ""
    pass_host_header: bool | None = None
    response_forwarding: dict[str, Any] | None = None
    servers_transport: str = ""
    weight: int | None = None
    native_lb: bool | None = Field(default=None, alias="nativeLB")
    node_port_lb: bool = Field(default=False, alias="nodePortLB")
    health_check: dict[str, Any] | None = None
    passive_health_check: dict[str, Any] | None = None


class _Mirror(_LoadBalancerSpec):
    percent: int = 0


class _Mirroring(_LoadBalancerSpec):
    mirror_body: bool | None = None
    max_body_size: int | None = None
    mirrors: list[_Mirror] = Field(default_factory=list)


class _Weighted(TraefikModel):
    services: list[_LoadBalancerSpec] = Field(default_factory=list)
    sticky: dict[str, Any] | None = None


class _HighestRandomWeight(TraefikModel):
    services: list[_LoadBalancerSpec] = Field(default_factory=list)


class _FailoverErrors(TraefikModel):
    status: StrList = Field(default_factory=list)
    max_request_body_bytes: int | None = None


class _Failover(TraefikModel):
    service: _LoadBalancerSpec
    fallback: _LoadBalancerSpec
    errors: _FailoverErrors = _FailoverErrors()


class _TraefikServiceSpec(TraefikModel):
    weighted: _Weighted | None = None
    mirroring: _Mirroring | None = None
    highest_random_weight: _HighestRandomWeight | None = None
    failover: _Failover | None = None


class _Route(TraefikModel):
    match: str
    kind: str = ""
    priority: int = 0
    syntax: str = ""
    services: list[_LoadBalancerSpec] = Field(default_factory=list)
    middlewares: list[_Ref] = Field(default_factory=list)
    observability: dict[str, Any] | None = None


class _TLS(TraefikModel):
    secret_name: str = ""
    options: _Ref | None = None
    store: _Ref | None = None
    cert_resolver: str = ""
    domains: list[Domain] = Field(default_factory=list)


class _IngressRouteSpec(TraefikModel):
    ingress_class_name: str | None = None
    entry_points: StrList = Field(default_factory=list)
    routes: list[dict[str, Any]] = Field(min_length=1)
    tls: _TLS | None = None
    parent_refs: list[_Ref] = Field(default_factory=list)


class _ForwardingTimeouts(TraefikModel):
    dial_timeout: int | str | None = None
    response_header_timeout: int | str | None = None
    idle_conn_timeout: int | str | None = None
    read_idle_timeout: int | str | None = None
    ping_timeout: int | str | None = None


class _RootCA(TraefikModel):
    secret: str | None = None
    config_map: str | None = None


class _ServersTransportSpec(TraefikModel):
    server_name: str = ""
    insecure_skip_verify: bool = False
    root_cas: list[_RootCA] = Field(default_factory=list, alias="rootCAs")
    root_cas_secrets: StrList = Field(default_factory=list, alias="rootCAsSecrets")
    certificates_secrets: StrList = Field(default_factory=list)
    cipher_suites: StrList | None = None
    min_version: str = ""
    max_version: str = ""
    max_idle_conns_per_host: int = 0
    forwarding_timeouts: _ForwardingTimeouts | None = None
    disable_http2: bool = Field(default=False, alias="disableHTTP2")
    peer_cert_uri: str = Field(default="", alias="peerCertURI")
    peer_cert_sans: list[Any] = Field(default_factory=list, alias="peerCertSANs")
    spiffe: dict[str, Any] | None = None


# --- Services -> servers -----------------------------------------------------------------


def scheme_for(port: Mapping[str, Any], given: str = "") -> str:
    """The servers' scheme: ``given``, else https for port 443 or a port named https*."""
    if given:
        return given
    if port.get("port") == 443 or str(port.get("name") or "").startswith("https"):
        return "https"
    return "http"


def http_servers(cluster: Cluster, service: Manifest, port: Mapping[str, Any], scheme: str,
                 native_lb: bool) -> list[dict[str, str]]:
    """The server URLs behind a Service port: its externalName, clusterIP or endpoints."""
    spec = service.body.get("spec") or {}
    where = f"{service.namespace}/{service.name}"
    if spec.get("type") == "ExternalName":
        return [{"url": f"{scheme}://{host_port(str(spec.get('externalName', '')), port['port'])}"}]
    if native_lb:
        cluster_ip = str(spec.get("clusterIP") or "")
        if cluster_ip == "None":
            raise Problem(f"getting native Kubernetes Service address: no clusterIP on "
                          f"headless service: {where}")
        if not cluster_ip:
            raise Problem(f"getting native Kubernetes Service address: no clusterIP found for "
                          f"service: {where}")
        return [{"url": f"{scheme}://{host_port(cluster_ip, port['port'])}"}]
    return [{"url": f"{scheme}://{host_port(address, number)}"}
            for address, number in serving_endpoints(cluster, service.namespace, service.name,
                                                     str(port.get("name") or ""))]


def _service_port(service: Manifest, port: int | str | None) -> dict[str, Any]:
    """Traefik's getServicePort: by number or name; an ExternalName Service takes any number."""
    if port in (None, 0, ""):
        raise Problem("ingressRoute service port not defined")
    spec = service.body.get("spec") or {}
    for candidate in spec.get("ports") or []:
        if (isinstance(port, int) and candidate.get("port") == port) or (
                isinstance(port, str) and str(candidate.get("name") or "") == port):
            return dict(candidate)
    if spec.get("type") != "ExternalName" or isinstance(port, str):
        raise Problem(f"service port not found: {port}")
    return {"port": port}


def _full_name(namespace: str, name: str, port: int | str | None) -> str:
    """Traefik's fullServiceName: ``ns-name-port``, ``ns-name``, or ``name@provider``."""
    if port not in (None, 0, ""):
        return normalize_name(f"{namespace}-{name}-{port}")
    if "@" not in name:
        return normalize_name(f"{namespace}-{name}")
    base, provider = name.rsplit("@", 1)
    if provider == _PROVIDER:
        return normalize_name(f"{namespace}-{base}")
    return f"{normalize_name(base)}@{provider}"


def checked_section(http: Mapping[str, Mapping[str, Any]],
                    origins: Mapping[tuple[str, str], tuple[Manifest, str]],
                    issues: list[ConfigIssue]) -> dict[str, Any]:
    """The elements of an ``http`` section that validate; each other one is an issue at
    the object it came from (``origins``: (kind, name) -> (object, path)), and left out,
    so one broken object does not take the provider's whole section down."""
    valid: dict[str, Any] = {}
    for kind, elements in http.items():
        model = _ELEMENT_MODELS[kind]
        kept = {}
        for name, raw in elements.items():
            try:
                model.model_validate(raw)
            except ValidationError as error:
                crd, path = origins[kind, name]
                for detail in error.errors(include_url=False):
                    where = ".".join(str(p) for p in detail["loc"])
                    issues.append(ConfigIssue(
                        crd.source, f"{path}.{where}" if where else path,
                        f"{detail['msg']}; http.{kind}.{name} is left out", "error"))
                continue
            kept[name] = raw
        if kept:
            valid[kind] = kept
    return valid


# --- the builder -------------------------------------------------------------------------


@dataclass
class HTTPObjects:
    """Builds the ``http`` section from the HTTP CRDs of one cluster.

    ``certificates`` (``namespace/secret`` -> certFile/keyFile) is shared with the TCP
    side, as Traefik shares it, so a Secret two routes name is one certificate.
    """

    cluster: Cluster
    policy: ReferencePolicy
    certificates: dict[str, dict[str, str]]
    issues: list[ConfigIssue]
    http: dict[str, dict[str, Any]] = field(default_factory=lambda: {
        kind: {} for kind in _ELEMENT_MODELS})
    # Which object (and where in it) each element came from, for validation issues.
    origins: dict[tuple[str, str], tuple[Manifest, str]] = field(default_factory=dict)
    # Traefik builds TraefikServices and error-page services without nativeLBByDefault
    # (only an explicit nativeLB applies there); True while one is built.
    native_default_off: bool = False

    def add(self, crd: Manifest, kind: str) -> None:
        """Convert one object; its problems become issues at the object."""
        self.native_default_off = kind in ("TraefikService", "Middleware")
        try:
            if kind == "IngressRoute":
                self._ingress_route(crd)
            elif kind == "Middleware":
                self._middleware(crd)
            elif kind == "TraefikService":
                self._traefik_service(crd)
            elif kind == "ServersTransport":
                self._servers_transport(crd)
        except Problem as problem:
            self.issues.append(ConfigIssue(crd.source, "spec", str(problem), "error"))

    def section(self) -> dict[str, Any]:
        """The valid elements; each invalid one is an issue at its object and left out."""
        return checked_section(self.http, self.origins, self.issues)

    def _put(self, kind: str, name: str, raw: dict[str, Any], crd: Manifest, path: str) -> None:
        self.http[kind][name] = raw
        self.origins[kind, name] = (crd, path)

    # -- IngressRoute -----------------------------------------------------------------------

    def _ingress_route(self, crd: Manifest) -> None:
        spec = validated(_IngressRouteSpec, _spec(crd), crd, "spec", self.issues)
        if spec is None:
            return
        if spec.tls is not None and spec.tls.secret_name:
            key = f"{crd.namespace}/{spec.tls.secret_name}"
            try:
                if key not in self.certificates:
                    cert, private = tls_pair(self.cluster, crd.namespace, spec.tls.secret_name)
                    self.certificates[key] = {"certFile": cert, "keyFile": private}
            except Problem as problem:
                # As Traefik: the routes load all the same, without this certificate.
                self.issues.append(ConfigIssue(crd.source, "spec.tls.secretName", str(problem),
                                               "error"))
        parents = self._parent_routers(crd, spec.parent_refs)
        for index, raw in enumerate(spec.routes):
            path = f"spec.routes[{index}]"
            route = validated(_Route, raw, crd, path, self.issues)
            if route is None:
                continue
            try:
                self._route(crd, spec, route, parents, path)
            except Problem as problem:
                self.issues.append(ConfigIssue(crd.source, path, f"{problem}; the route is "
                                               "left out", "error"))

    def _route(self, crd: Manifest, spec: _IngressRouteSpec, route: _Route,
               parents: list[str], path: str) -> None:
        if route.kind not in ("", "Rule"):
            raise Problem(f'unsupported match kind "{route.kind}": only "Rule" is supported')
        if not route.match:
            raise Problem("empty match rule")
        key = http_router_key(crd.namespace, crd.name, route.match)
        middlewares = [self._reference(crd.namespace, m.namespace, m.name, "middleware")
                       for m in route.middlewares]
        services: dict[str, Any] = {}
        service = ""
        if len(route.services) > 1:
            services[key] = self._weighted(crd.namespace, route.services, None, services)
            service = key
        elif route.services:
            name, balancer = self._name_and_service(crd.namespace, route.services[0])
            if balancer is not None:
                services[key] = balancer
                service = key
            else:
                service = name
        router: dict[str, Any] = {"entryPoints": list(spec.entry_points), "rule": route.match,
                                  "priority": route.priority, "middlewares": middlewares,
                                  "service": service}
        if route.syntax:
            router["ruleSyntax"] = route.syntax
        if parents:
            router["parentRefs"] = parents
        if route.observability is not None:
            router["observability"] = dict(route.observability)
        if spec.tls is not None:
            tls: dict[str, Any] = {"certResolver": spec.tls.cert_resolver,
                                   "domains": [d.model_dump(by_alias=True)
                                               for d in spec.tls.domains]}
            if spec.tls.options is not None and spec.tls.options.name:
                tls["options"] = self._reference(crd.namespace, spec.tls.options.namespace,
                                                 spec.tls.options.name, "TLSOption")
            router["tls"] = tls
        for name, raw in services.items():
            self._put("services", name, raw, crd, f"{path}.services")
        self._put("routers", key, router, crd, path)

    def _parent_routers(self, crd: Manifest, refs: Sequence[_Ref]) -> list[str]:
        """The router names of the parent IngressRoutes' routes (multi-layer routing)."""
        names: list[str] = []
        for ref in refs:
            namespace = ref.namespace or crd.namespace
            if not self.policy.allow_cross_namespace and namespace != crd.namespace:
                raise Problem(f"cross-namespace reference to parent IngressRoute "
                              f"{namespace}/{ref.name} not allowed")
            parent = next((m for m in self.cluster.of_kind("IngressRoute")
                           if (m.namespace, m.name) == (namespace, ref.name)), None)
            if parent is None:
                raise Problem(f"parent IngressRoute {namespace}/{ref.name} does not exist")
            for route in (parent.body.get("spec") or {}).get("routes") or []:
                if isinstance(route, dict):
                    names.append(http_router_key(namespace, parent.name,
                                                 str(route.get("match", ""))))
        return names

    # -- references -------------------------------------------------------------------------

    def _reference(self, parent: str, namespace: str, name: str, kind: str) -> str:
        """Traefik's resolveReference: ``ns-name`` (normalized), or ``name@provider`` as is."""
        if "@" in name:
            if not self.policy.allow_cross_namespace and name.endswith(f"@{_PROVIDER}"):
                raise Problem(f'invalid reference to {kind} "{name}": @{_PROVIDER} references '
                              "are not allowed while allowCrossNamespace is false")
            if not self.policy.cross_provider_allowed(parent):
                raise Problem(f'invalid reference to {kind} "{name}": namespace "{parent}" is '
                              "not in crossProviderNamespaces")
            return name
        namespace = namespace or parent
        if not self.policy.allow_cross_namespace and namespace != parent:
            raise Problem(f'invalid reference to {kind} "{namespace}/{name}": cross-namespace '
                          "references are not allowed while allowCrossNamespace is false")
        return normalize_name(f"{namespace}-{name}")

    def _transport_reference(self, parent: str, name: str) -> str:
        if not name:
            return ""
        if "@" in name:
            if not self.policy.allow_cross_namespace and name.endswith(f"@{_PROVIDER}"):
                raise Problem(f'invalid reference to serversTransport "{name}": '
                              f"namespace-name@{_PROVIDER} is not allowed while "
                              "allowCrossNamespace is false")
            if not self.policy.cross_provider_allowed(parent):
                raise Problem(f'serversTransport "{name}" reference is not allowed: namespace '
                              f'"{parent}" is not in crossProviderNamespaces')
            return name
        return normalize_name(f"{parent}-{name}")

    # -- services ---------------------------------------------------------------------------

    def _name_and_service(self, parent: str, ref: _LoadBalancerSpec
                          ) -> tuple[str, dict[str, Any] | None]:
        """The name a reference resolves to and, for a Kubernetes Service, its balancer."""
        namespace = ref.namespace
        if "@" not in ref.name:
            namespace = ref.namespace or parent
            if not self.policy.allow_cross_namespace and namespace != parent:
                raise Problem(f"service {namespace}/{ref.name} not in the parent resource "
                              f"namespace {parent}")
        elif not self.policy.cross_provider_allowed(parent):
            raise Problem(f'service "{ref.name}" reference is not allowed: namespace '
                          f'"{parent}" is not in crossProviderNamespaces')
        if ref.kind in ("", "Service"):
            balancer = self._servers_balancer(namespace, ref)
            return _full_name(namespace, ref.name, ref.port), balancer
        if ref.kind == "TraefikService":
            return _full_name(namespace, ref.name, None), None
        raise Problem(f"unsupported service kind {ref.kind}")

    def _servers_balancer(self, namespace: str, ref: _LoadBalancerSpec) -> dict[str, Any]:
        balancer: dict[str, Any] = {}
        if ref.strategy and ref.strategy != "RoundRobin":  # RoundRobin: Traefik's old wrr
            if ref.strategy not in _STRATEGIES:
                raise Problem(f"load-balancer strategy {ref.strategy} is not supported")
            balancer["strategy"] = ref.strategy
        balancer["servers"] = self._servers(namespace, ref)
        if ref.health_check is not None:
            balancer["healthCheck"] = dict(ref.health_check)
        if ref.passive_health_check is not None:
            balancer["passiveHealthCheck"] = dict(ref.passive_health_check)
        if ref.pass_host_header is not None:
            balancer["passHostHeader"] = ref.pass_host_header
        flush = (ref.response_forwarding or {}).get("flushInterval")
        if flush not in (None, ""):
            balancer["responseForwarding"] = {"flushInterval": flush}
        if ref.sticky is not None and isinstance(ref.sticky.get("cookie"), dict):
            balancer["sticky"] = {"cookie": dict(ref.sticky["cookie"])}
        transport = self._transport_reference(namespace, ref.servers_transport)
        if transport:
            balancer["serversTransport"] = transport
        service: dict[str, Any] = {"loadBalancer": balancer}
        if ref.middlewares:
            service["middlewares"] = [self._reference(namespace, m.namespace, m.name,
                                                      "middleware") for m in ref.middlewares]
        return service

    def _servers(self, namespace: str, ref: _LoadBalancerSpec) -> list[dict[str, str]]:
        """Traefik's loadServers for one Service port."""
        where = f"{namespace}/{ref.name}"
        service = self.cluster.services.get((namespace, ref.name))
        if service is None:
            raise Problem(f"kubernetes service not found: {where}: add its Service manifest")
        port = _service_port(service, ref.port)
        kind = (service.body.get("spec") or {}).get("type", "ClusterIP")
        if kind != "ExternalName" and ref.health_check is not None:
            raise Problem(f"healthCheck allowed only for ExternalName services: {where}")
        if ref.scheme not in ("", "http", "https", "h2c"):
            raise Problem(f'invalid scheme "{ref.scheme}" specified')
        scheme = scheme_for(port, ref.scheme)
        if kind == "ExternalName":
            if not self.policy.allow_external_name_services:
                raise Problem(f"externalName services not allowed: {where} (set "
                              "allowExternalNameServices)")
            return http_servers(self.cluster, service, port, scheme, False)
        default = self.policy.native_lb_by_default and not self.native_default_off
        native = default if ref.native_lb is None else ref.native_lb
        if not native and kind == "NodePort" and ref.node_port_lb:
            raise Problem("nodePortLB needs the cluster's Node objects, which Switchyard does "
                          "not read")
        servers = http_servers(self.cluster, service, port, scheme, native)
        if not servers and not self.policy.allow_empty_services:
            raise Problem(f"no servers found for {where}: add an EndpointSlice with serving "
                          "endpoints, or set allowEmptyServices")
        return servers

    def _weighted(self, namespace: str, refs: Sequence[_LoadBalancerSpec],
                  sticky: Mapping[str, Any] | None, into: dict[str, Any]) -> dict[str, Any]:
        """A weighted service of ``refs``; their balancers are added to ``into``."""
        children = []
        for ref in refs:
            name, balancer = self._name_and_service(namespace, ref)
            if balancer is not None:
                into[name] = balancer
            children.append({"name": name, "weight": 1 if ref.weight is None else ref.weight})
        weighted: dict[str, Any] = {"services": children}
        if sticky is not None and isinstance(sticky.get("cookie"), dict):
            weighted["sticky"] = {"cookie": dict(sticky["cookie"])}
        return {"weighted": weighted}

    def _child(self, namespace: str, ref: _LoadBalancerSpec, into: dict[str, Any]) -> str:
        name, balancer = self._name_and_service(namespace, ref)
        if balancer is not None:
            into[name] = balancer
        return name

    # -- TraefikService ---------------------------------------------------------------------

    def _traefik_service(self, crd: Manifest) -> None:
        spec = validated(_TraefikServiceSpec, _spec(crd), crd, "spec", self.issues)
        if spec is None:
            return
        key = normalize_name(f"{crd.namespace}-{crd.name}")
        services: dict[str, Any] = {}
        if spec.weighted is not None:
            services[key] = self._weighted(crd.namespace, spec.weighted.services,
                                           spec.weighted.sticky, services)
        elif spec.mirroring is not None:
            mirroring = spec.mirroring
            main = self._child(crd.namespace, mirroring, services)
            mirrors = [{"name": self._child(crd.namespace, mirror, services),
                        "percent": mirror.percent} for mirror in mirroring.mirrors]
            raw: dict[str, Any] = {"service": main, "mirrors": mirrors}
            if mirroring.mirror_body is not None:
                raw["mirrorBody"] = mirroring.mirror_body
            if mirroring.max_body_size is not None:
                raw["maxBodySize"] = mirroring.max_body_size
            services[key] = {"mirroring": raw}
        elif spec.highest_random_weight is not None:
            services[key] = {"highestRandomWeight": {"services": [
                {"name": self._child(crd.namespace, ref, services),
                 "weight": 1 if ref.weight is None else ref.weight}
                for ref in spec.highest_random_weight.services]}}
        elif spec.failover is not None:
            failover = spec.failover
            errors: dict[str, Any] = {"status": list(failover.errors.status)}
            if failover.errors.max_request_body_bytes is not None:
                errors["maxRequestBodyBytes"] = failover.errors.max_request_body_bytes
            try:
                main = self._child(crd.namespace, failover.service, services)
            except Problem as problem:
                raise Problem(f"getting service: {problem}") from None
            try:
                fallback = self._child(crd.namespace, failover.fallback, services)
            except Problem as problem:
                raise Problem(f"getting fallback service: {problem}") from None
            services[key] = {"failover": {"service": main, "fallback": fallback,
                                          "errors": errors}}
        else:
            raise Problem("unspecified service type: set weighted, mirroring, "
                          "highestRandomWeight or failover")
        for name, raw_service in services.items():
            self._put("services", name, raw_service, crd, "spec")

    # -- Middleware -------------------------------------------------------------------------

    def _middleware(self, crd: Manifest) -> None:
        spec = _spec(crd)
        key = normalize_name(f"{crd.namespace}-{crd.name}")
        namespace = crd.namespace
        converted: dict[str, Any] = {}
        for kind, options in spec.items():
            if kind in _CONVERTERS and isinstance(options, dict):
                converted[kind] = _CONVERTERS[kind](self, crd, dict(options))
            else:
                converted[kind] = options
        if isinstance(spec.get("chain"), dict):
            converted["chain"] = {"middlewares": [
                self._reference(namespace, str(ref.get("namespace") or ""),
                                str(ref.get("name") or ""), "middleware")
                for ref in spec["chain"].get("middlewares") or [] if isinstance(ref, dict)]}
        self._put("middlewares", key, converted, crd, "spec")

    def _errors(self, crd: Manifest, options: dict[str, Any]) -> dict[str, Any]:
        ref = validated(_LoadBalancerSpec, options.pop("service", None) or {}, crd,
                        "spec.errors.service", self.issues)
        if ref is None:
            raise Problem("errors: the service reference is not valid")
        services: dict[str, Any] = {}
        name, balancer = self._name_and_service(crd.namespace, ref)
        if balancer is not None:
            name = normalize_name(f"{crd.namespace}-{crd.name}") + "-errorpage-service"
            services[name] = balancer
        for service, raw in services.items():
            self._put("services", service, raw, crd, "spec.errors.service")
        return {**options, "service": name}

    def _basic_auth(self, crd: Manifest, options: dict[str, Any]) -> dict[str, Any]:
        secret = str(options.pop("secret", "") or "")
        if not secret:
            raise Problem("basicAuth: auth secret must be set")
        found = self.cluster.secrets.get((crd.namespace, secret))
        if found is not None and found.body.get("type") == "kubernetes.io/basic-auth":
            entries = secret_entries(self.cluster, crd.namespace, secret)
            if "username" not in entries or "password" not in entries:
                raise Problem(f"basicAuth: secret '{crd.namespace}/{secret}' must contain both "
                              "username and password keys")
            users = [f"{entries['username']}:{sha1_secret(entries['password'].encode())}"]
        else:
            users = self._users(crd, secret, "basicAuth")
        return {**options, "users": users}

    def _digest_auth(self, crd: Manifest, options: dict[str, Any]) -> dict[str, Any]:
        secret = str(options.pop("secret", "") or "")
        if not secret:
            raise Problem("digestAuth: auth secret must be set")
        return {**options, "users": self._users(crd, secret, "digestAuth")}

    def _users(self, crd: Manifest, secret: str, kind: str) -> list[str]:
        """A Secret's single entry, one user a line (Traefik's loadAuthCredentials)."""
        entries = secret_entries(self.cluster, crd.namespace, secret)
        if len(entries) != 1:
            raise Problem(f"{kind}: found {len(entries)} elements for secret "
                          f"'{crd.namespace}/{secret}', must be single element exactly")
        users = [line for line in next(iter(entries.values())).splitlines() if line]
        if not users:
            raise Problem(f"{kind}: secret '{crd.namespace}/{secret}' does not contain any "
                          "credentials")
        return users

    def _forward_auth(self, crd: Manifest, options: dict[str, Any]) -> dict[str, Any]:
        if not options.get("address"):
            raise Problem("forwardAuth: forward authentication requires an address")
        if isinstance(options.get("tls"), dict):
            options["tls"] = self._client_tls(crd, dict(options["tls"]), "forwardAuth.tls")
        return options

    def _rate_limit(self, crd: Manifest, options: dict[str, Any]) -> dict[str, Any]:
        redis = options.get("redis")
        if not isinstance(redis, dict):
            return options
        redis = dict(redis)
        if isinstance(redis.get("tls"), dict):
            redis["tls"] = self._client_tls(crd, dict(redis["tls"]), "rateLimit.redis.tls")
        secret = str(redis.pop("secret", "") or "")
        if secret:
            entries = secret_entries(self.cluster, crd.namespace, secret)
            if "username" not in entries or "password" not in entries:
                raise Problem(f"rateLimit: secret '{crd.namespace}/{secret}' must contain both "
                              "username and password keys")
            redis.update({"username": entries["username"], "password": entries["password"]})
        return {**options, "redis": redis}

    def _client_tls(self, crd: Manifest, tls: dict[str, Any], where: str) -> dict[str, Any]:
        """``caSecret`` / ``certSecret`` read into ``ca`` / ``cert`` + ``key`` (PEM text)."""
        ca_secret = str(tls.pop("caSecret", "") or "")
        cert_secret = str(tls.pop("certSecret", "") or "")
        try:
            if ca_secret:
                tls["ca"] = ca_bundle(self.cluster, crd.namespace, ca_secret)
            if cert_secret:
                tls["cert"], tls["key"] = tls_pair(self.cluster, crd.namespace, cert_secret)
        except Problem as problem:
            raise Problem(f"{where}: {problem}") from None
        return tls

    # -- ServersTransport -------------------------------------------------------------------

    def _servers_transport(self, crd: Manifest) -> None:
        spec = validated(_ServersTransportSpec, _spec(crd), crd, "spec", self.issues)
        if spec is None:
            return
        namespace = crd.namespace

        def lenient(where: str, read: Any, *args: str) -> Any:
            # As Traefik: a CA or certificate that cannot be read is skipped, with an error.
            try:
                return read(self.cluster, namespace, *args)
            except Problem as problem:
                self.issues.append(ConfigIssue(crd.source, where, f"{problem}; left out",
                                               "error"))
                return None

        roots = [lenient(f"spec.rootCAsSecrets[{i}]", ca_bundle, name)
                 for i, name in enumerate(spec.root_cas_secrets)]
        for index, root in enumerate(spec.root_cas):
            where = f"spec.rootCAs[{index}]"
            if root.secret is not None and root.config_map is not None:
                self.issues.append(ConfigIssue(crd.source, where, "both Secret and ConfigMap "
                                               "are defined; left out", "error"))
            elif root.secret is not None:
                roots.append(lenient(where, ca_bundle, root.secret))
            elif root.config_map is not None:
                roots.append(lenient(where, config_map_ca, root.config_map))
        pairs = [lenient(f"spec.certificatesSecrets[{i}]", tls_pair, name)
                 for i, name in enumerate(spec.certificates_secrets)]
        raw: dict[str, Any] = {
            "serverName": spec.server_name, "insecureSkipVerify": spec.insecure_skip_verify,
            "rootCAs": [root for root in roots if root],
            "certificates": [{"certFile": cert, "keyFile": private}
                             for cert, private in (p for p in pairs if p)],
            "maxIdleConnsPerHost": spec.max_idle_conns_per_host,
            "disableHTTP2": spec.disable_http2, "peerCertURI": spec.peer_cert_uri,
            "peerCertSANs": list(spec.peer_cert_sans)}
        if spec.cipher_suites:
            raw["cipherSuites"] = list(spec.cipher_suites)
        raw.update(self._tls_versions(crd, spec))
        if spec.spiffe is not None:
            raw["spiffe"] = dict(spec.spiffe)
        if spec.forwarding_timeouts is not None:
            raw["forwardingTimeouts"] = spec.forwarding_timeouts.model_dump(
                by_alias=True, exclude_none=True)
        self._put("serversTransports", normalize_name(f"{namespace}-{crd.name}"), raw, crd,
                  "spec")

    def _tls_versions(self, crd: Manifest, spec: _ServersTransportSpec) -> dict[str, str]:
        """min/maxVersion as Traefik takes them: unknown ones dropped, min >= max reset."""
        versions: dict[str, str] = {}
        for key, value in (("minVersion", spec.min_version), ("maxVersion", spec.max_version)):
            if not value:
                continue
            if value in TLS_VERSIONS:
                versions[key] = value
            else:
                self.issues.append(ConfigIssue(crd.source, f"spec.{key}", f"invalid TLS "
                                               f"version {value!r}; ignored (one of "
                                               f"{', '.join(TLS_VERSIONS)})", "error"))
        low, high = versions.get("minVersion"), versions.get("maxVersion")
        if low and high and TLS_VERSIONS[low] >= TLS_VERSIONS[high]:
            self.issues.append(ConfigIssue(crd.source, "spec.minVersion", f"{low} is not below"
                                           f" maxVersion {high}; VersionTLS12 and no maximum "
                                           "are used instead", "error"))
            versions = {"minVersion": "VersionTLS12"}
        return versions


def _spec(crd: Manifest) -> dict[str, Any]:
    spec = crd.body.get("spec")
    if not isinstance(spec, dict):
        raise Problem("spec is missing or not a mapping")
    return dict(spec)


_CONVERTERS = {
    "basicAuth": HTTPObjects._basic_auth,
    "digestAuth": HTTPObjects._digest_auth,
    "forwardAuth": HTTPObjects._forward_auth,
    "errors": HTTPObjects._errors,
    "rateLimit": HTTPObjects._rate_limit,
}
