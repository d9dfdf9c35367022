"""The Kubernetes CRD provider: IngressRoute(TCP) and friends read from manifest files, watched."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from switchyard.addresses import host_port
from switchyard.config.dynamic import Domain, DynamicConfig, ProxyProtocol, StrList, TraefikModel
from switchyard.config.loader import ConfigIssue, load_dynamic_from_dict
from switchyard.providers.base import ProviderUpdate, Publish, WatchLost, load_guarded
from switchyard.providers.flatkeys import normalize_name
from switchyard.providers.kubeobjects import (
    Cluster,
    Manifest,
    Problem,
    config_map_ca,
    index_manifests,
    label_selector,
    manifest_from_object,
    read_manifests,
    secret_value,
    validated,
)
from switchyard.providers.kubernetes_http import HTTP_KINDS, HTTPObjects, ReferencePolicy

__all__ = [
    "KubernetesCRDOptions",
    "KubernetesCRDProvider",
    "Manifest",
    "ManifestProvider",
    "config_from_manifests",
    "make_router_key",
    "manifest_from_object",
    "read_manifests",
]

log = logging.getLogger("switchyard.providers.kubernetes")

NAME = "kubernetescrd"
# traefik.containo.us is the v2 group; Switchyard accepts both (see docs/providers.md).
_TRAEFIK_GROUPS = ("traefik.io/v1alpha1", "traefik.containo.us/v1alpha1")
_TRAEFIK_KINDS = ("IngressRouteTCP", "MiddlewareTCP", "TLSOption", "ServersTransportTCP",
                  *HTTP_KINDS)
_CORE_KINDS = {"Service": ("v1",), "Endpoints": ("v1",), "Secret": ("v1",),
               "ConfigMap": ("v1",),
               "EndpointSlice": ("discovery.k8s.io/v1", "discovery.k8s.io/v1beta1")}
_MANIFEST_EXTENSIONS = (".yml", ".yaml", ".json")
_SERVICE_NAME_LABEL = "kubernetes.io/service-name"
_INGRESS_CLASS_ANNOTATION = "kubernetes.io/ingress.class"


class KubernetesCRDOptions(TraefikModel):
    """``providers.kubernetesCRD``: Traefik's options plus ``manifests`` for offline use."""

    manifests: str = ""
    watch: bool = True
    namespaces: StrList = Field(default_factory=list)
    label_selector: str = ""
    ingress_class: str = ""
    allow_cross_namespace: bool = False
    allow_external_name_services: bool = False
    allow_empty_services: bool = False
    native_lb_by_default: bool = False
    cross_provider_namespaces: StrList | None = None
    endpoint: str = ""
    token: str = ""
    cert_auth_file_path: str = ""


# --- CRD shapes --------------------------------------------------------------------------


class _ObjectRef(TraefikModel):
    name: str
    namespace: str = ""


class _ServiceRef(TraefikModel):
    name: str
    namespace: str = ""
    port: str  # IntOrString: a port number or the Service port's name
    weight: int | None = None
    proxy_protocol: ProxyProtocol | None = None
    servers_transport: str = ""
    termination_delay: int | None = None
    tls: bool = False
    native_lb: bool | None = None
    node_port_lb: bool = False


class _RouteTCP(TraefikModel):
    match: str
    priority: int = 0
    syntax: str = ""
    middlewares: list[_ObjectRef] = Field(default_factory=list)
    services: list[_ServiceRef] = Field(default_factory=list)


class _TLSTCP(TraefikModel):
    secret_name: str = ""
    passthrough: bool = False
    options: _ObjectRef | None = None
    store: _ObjectRef | None = None
    cert_resolver: str = ""
    domains: list[Domain] = Field(default_factory=list)


class _IngressRouteTCPSpec(TraefikModel):
    entry_points: StrList = Field(default_factory=list)
    routes: list[dict[str, Any]] = Field(min_length=1)
    tls: _TLSTCP | None = None
    ingress_class_name: str | None = None


# --- objects -> configuration ------------------------------------------------------------


def make_router_key(namespace: str, ingress_name: str, rule: str) -> str:
    """Traefik's name for a route's router and service: ``ns-ingress-<sha256(rule)[:10 bytes]>``."""
    digest = hashlib.sha256(rule.encode()).hexdigest()[:20]
    return _make_id(namespace, f"{ingress_name}-{digest}")


def _make_id(namespace: str, name: str) -> str:
    return f"{namespace}-{name}" if namespace else name


@dataclass
class _Cluster(Cluster):
    """The objects, and the provider options that say how they are read."""

    options: KubernetesCRDOptions = field(default_factory=KubernetesCRDOptions)


def config_from_manifests(
    manifests: list[Manifest], options: KubernetesCRDOptions
) -> tuple[DynamicConfig, list[ConfigIssue]]:
    """The ``kubernetescrd`` configuration the objects describe; problems per object."""
    issues: list[ConfigIssue] = []
    cluster = _index(manifests, options, issues)
    fragments: list[tuple[Manifest, dict[str, Any], str]] = []
    default_options: list[str] = []
    certificates: dict[str, dict[str, str]] = {}
    http = HTTPObjects(cluster, _policy(options), certificates, issues)
    for crd in cluster.objects:
        try:
            if crd.kind in HTTP_KINDS:
                raw_class = (crd.body.get("spec") or {}).get("ingressClassName")
                if crd.kind != "IngressRoute" or _admitted(
                        crd, None if raw_class is None else str(raw_class), options, issues):
                    http.add(crd, crd.kind)
            elif crd.kind == "IngressRouteTCP":
                fragments.extend((crd, raw, "") for raw in _ingress_route_tcp(
                    crd, cluster, certificates, issues))
            elif crd.kind == "MiddlewareTCP":
                key = normalize_name(_make_id(crd.namespace, crd.name))
                fragments.append((crd, {"tcp": {"middlewares": {key: _spec(crd)}}},
                                  f"tcp.middlewares.{key}"))
            elif crd.kind == "TLSOption":
                key = "default" if crd.name == "default" else _make_id(crd.namespace, crd.name)
                if crd.name == "default":
                    default_options.append(crd.namespace)
                fragments.append((crd, {"tls": {"options": {key: _tls_option(crd, cluster)}}},
                                  f"tls.options.{key}"))
            elif crd.kind == "ServersTransportTCP":
                key = normalize_name(_make_id(crd.namespace, crd.name))
                fragments.append((crd, {"tcp": {"serversTransports": {
                    key: _servers_transport(crd, cluster)}}}, f"tcp.serversTransports.{key}"))
        except Problem as problem:
            issues.append(ConfigIssue(crd.source, "spec", str(problem), "error"))
    config = _merge(fragments, issues).model_copy(update={"http": http.section()})
    tls = config.tls
    if len(default_options) > 1:
        # As Traefik: a "default" TLSOption in several namespaces is ambiguous, so none wins.
        issues.append(ConfigIssue(NAME, "tls.options.default", "TLSOption \"default\" is "
                                  f"defined in several namespaces ({', '.join(default_options)});"
                                  " none of them is used", "error"))
        tls = tls.model_copy(update={"options": {
            k: v for k, v in tls.options.items() if k != "default"}})
    if certificates:
        found, more = load_dynamic_from_dict(
            {"tls": {"certificates": [certificates[k] for k in sorted(certificates)]}}, NAME)
        issues.extend(more)
        tls = tls.model_copy(update={"certificates": found.tls.certificates})
    return config.model_copy(update={"tls": tls}), issues


def _policy(options: KubernetesCRDOptions) -> ReferencePolicy:
    return ReferencePolicy(
        allow_cross_namespace=options.allow_cross_namespace,
        allow_external_name_services=options.allow_external_name_services,
        allow_empty_services=options.allow_empty_services,
        native_lb_by_default=options.native_lb_by_default,
        cross_provider_namespaces=None if options.cross_provider_namespaces is None
        else tuple(options.cross_provider_namespaces))


def _index(manifests: list[Manifest], options: KubernetesCRDOptions,
           issues: list[ConfigIssue]) -> _Cluster:
    selects = label_selector(options.label_selector)
    own = dict.fromkeys(_TRAEFIK_KINDS, _TRAEFIK_GROUPS)
    return index_manifests(manifests, own, _Cluster(options=options), options.namespaces,
                           lambda manifest: selects(manifest.labels), issues)


def _spec(crd: Manifest) -> dict[str, Any]:
    spec = crd.body.get("spec")
    if not isinstance(spec, dict):
        raise Problem("spec is missing or not a mapping")
    return dict(spec)


def _admitted(crd: Manifest, ingress_class: str | None, options: KubernetesCRDOptions,
              issues: list[ConfigIssue]) -> bool:
    """Whether this provider's ingress class takes the object (spec, else the annotation)."""
    where = "spec.ingressClassName"
    if ingress_class is None:
        ingress_class = crd.annotations.get(_INGRESS_CLASS_ANNOTATION, "")
        where = f"metadata.annotations.{_INGRESS_CLASS_ANNOTATION}"
    if options.ingress_class == ingress_class or (
            not options.ingress_class and ingress_class == "traefik"):
        return True
    # Traefik skips it without a word; an object that silently routes nothing is the
    # hardest thing to debug, so say why it is left out.
    wanted = (f'"{options.ingress_class}"' if options.ingress_class
              else 'none or "traefik" (providers.kubernetesCRD.ingressClass is not set)')
    have = f'"{ingress_class}"' if ingress_class else "none"
    fix = (f"set providers.kubernetesCRD.ingressClass: {ingress_class}" if ingress_class
           else f"set spec.ingressClassName: {options.ingress_class}")
    issues.append(ConfigIssue(
        crd.source, where if ingress_class else "spec.ingressClassName",
        f"{crd.kind} left out: its ingress class is {have}, this provider reads "
        f"{wanted}; {fix} to route it", "warning"))
    return False


def _ingress_route_tcp(
    crd: Manifest, cluster: _Cluster, certificates: dict[str, dict[str, str]],
    issues: list[ConfigIssue],
) -> list[dict[str, Any]]:
    spec = validated(_IngressRouteTCPSpec, _spec(crd), crd, "spec", issues)
    if spec is None:
        return []
    if not _admitted(crd, spec.ingress_class_name, cluster.options, issues):
        return []
    tls = spec.tls
    if tls is not None and not tls.passthrough and tls.secret_name:
        try:
            certificates[f"{crd.namespace}/{tls.secret_name}"] = {
                "certFile": secret_value(cluster, crd.namespace, tls.secret_name, "tls.crt"),
                "keyFile": secret_value(cluster, crd.namespace, tls.secret_name, "tls.key")}
        except Problem as problem:
            issues.append(ConfigIssue(crd.source, "spec.tls.secretName", str(problem), "error"))
    fragments = []
    for index, raw_route in enumerate(spec.routes):
        path = f"spec.routes[{index}]"
        route = validated(_RouteTCP, raw_route, crd, path, issues)
        if route is None:
            continue
        if not route.match:
            issues.append(ConfigIssue(crd.source, f"{path}.match", "empty match rule; the route"
                                      " is left out", "error"))
            continue
        try:
            fragments.append(_route(crd, cluster, spec, route, path, issues))
        except Problem as problem:
            issues.append(ConfigIssue(crd.source, path, f"{problem}; the route is left out",
                                      "error"))
    return fragments


def _route(crd: Manifest, cluster: _Cluster, spec: _IngressRouteTCPSpec, route: _RouteTCP,
           path: str, issues: list[ConfigIssue]) -> dict[str, Any]:
    options = cluster.options
    middlewares = [_reference(crd.namespace, m.namespace, m.name, options, "middleware")
                   for m in route.middlewares]
    key = make_router_key(crd.namespace, crd.name, route.match)
    services: dict[str, Any] = {}
    weighted: list[dict[str, Any]] = []
    for index, service in enumerate(route.services):
        try:
            balancer = _load_balancer(crd, cluster, service)
        except Problem as problem:
            issues.append(ConfigIssue(crd.source, f"{path}.services[{index}]", str(problem),
                                      "error"))
            continue
        if len(route.services) == 1:
            services[key] = {"loadBalancer": balancer}
            break
        child = f"{key}-{service.name}-{service.port}"
        services[child] = {"loadBalancer": balancer}
        weighted.append({"name": child, "weight": 1 if service.weight is None else service.weight})
    if weighted:
        services[key] = {"weighted": {"services": weighted}}
    router: dict[str, Any] = {"entryPoints": spec.entry_points, "rule": route.match,
                              "priority": route.priority, "ruleSyntax": route.syntax,
                              "middlewares": middlewares, "service": key}
    if spec.tls is not None:
        tls = spec.tls
        router["tls"] = {"passthrough": tls.passthrough, "certResolver": tls.cert_resolver,
                         "domains": [d.model_dump(by_alias=True) for d in tls.domains]}
        if tls.options is not None and tls.options.name:
            router["tls"]["options"] = _reference(crd.namespace, tls.options.namespace,
                                                  tls.options.name, options, "TLSOption")
    return {"tcp": {"routers": {key: router}, "services": services}}


def _reference(parent: str, namespace: str, name: str, options: KubernetesCRDOptions,
               kind: str) -> str:
    """Traefik's resolveReference: ``ns-name`` (normalized), or ``name@provider`` verbatim."""
    if "@" in name:
        if not options.allow_cross_namespace and name.endswith(f"@{NAME}"):
            raise Problem(f'{kind} "{name}": @{NAME} references are not allowed while '
                           "allowCrossNamespace is false")
        return name
    namespace = namespace or parent
    if not options.allow_cross_namespace and namespace != parent:
        raise Problem(f'{kind} "{namespace}/{name}": cross-namespace references are not '
                       "allowed while allowCrossNamespace is false")
    return normalize_name(f"{namespace}-{name}")


def _load_balancer(crd: Manifest, cluster: _Cluster, ref: _ServiceRef) -> dict[str, Any]:
    options = cluster.options
    namespace = ref.namespace or crd.namespace
    if not options.allow_cross_namespace and namespace != crd.namespace:
        raise Problem(f"tcp service {namespace}/{ref.name} is not in the parent resource "
                       f"namespace {crd.namespace}")
    balancer: dict[str, Any] = {"servers": _servers(cluster, namespace, ref)}
    if ref.proxy_protocol is not None:
        balancer["proxyProtocol"] = ref.proxy_protocol.model_dump(by_alias=True)
    if ref.servers_transport:
        balancer["serversTransport"] = _transport_reference(crd.namespace, ref.servers_transport,
                                                            options)
    elif ref.termination_delay is not None:
        balancer["terminationDelay"] = ref.termination_delay
    return balancer


def _transport_reference(parent: str, name: str, options: KubernetesCRDOptions) -> str:
    if "@" in name:
        if not options.allow_cross_namespace and name.endswith(f"@{NAME}"):
            raise Problem(f'serversTransport "{name}": namespace-name@{NAME} is not allowed '
                           "while allowCrossNamespace is false")
        return name
    return normalize_name(_make_id(parent, name))


def _servers(cluster: _Cluster, namespace: str, ref: _ServiceRef) -> list[dict[str, Any]]:
    """The addresses behind a Kubernetes Service port, as Traefik's loadTCPServers finds them."""
    options = cluster.options
    service = cluster.services.get((namespace, ref.name))
    if service is None:
        raise Problem(f"service {namespace}/{ref.name} not found: add its Service manifest")
    spec = service.body.get("spec") or {}
    kind = spec.get("type", "ClusterIP")
    if kind == "ExternalName" and not options.allow_external_name_services:
        raise Problem(f"externalName services not allowed: {namespace}/{ref.name} (set "
                       "allowExternalNameServices)")
    port = next((p for p in spec.get("ports") or []
                 if str(p.get("name", "")) == ref.port or str(p.get("port")) == ref.port), None)
    if port is None:
        raise Problem(f"service {namespace}/{ref.name} has no port {ref.port}")
    if kind == "NodePort" and ref.node_port_lb:
        raise Problem("nodePortLB needs the cluster's Node objects, which manifests do not "
                       "provide")
    if kind == "ExternalName":
        return [_server(str(spec.get("externalName", "")), port.get("port"), ref.tls)]
    native = options.native_lb_by_default if ref.native_lb is None else ref.native_lb
    if native:
        cluster_ip = str(spec.get("clusterIP") or "")
        if not cluster_ip or cluster_ip == "None":
            raise Problem(f"service {namespace}/{ref.name}: nativeLB needs a clusterIP")
        return [_server(cluster_ip, port.get("port"), ref.tls)]
    found = _endpoint_addresses(cluster, namespace, ref.name, str(port.get("name", "")))
    servers = [_server(address, number, ref.tls) for address, number in found]
    if not servers and not options.allow_empty_services:
        raise Problem(f"no servers found for {namespace}/{ref.name}: add an EndpointSlice "
                       "or Endpoints manifest with ready addresses")
    return servers


def _endpoint_addresses(cluster: _Cluster, namespace: str, service: str,
                        port_name: str) -> list[tuple[str, Any]]:
    """Ready addresses with the port named like the Service's, each address once."""
    found: dict[str, Any] = {}
    for slice_ in cluster.slices.get((namespace, service), []):
        number = next((p.get("port") for p in slice_.body.get("ports") or []
                       if str(p.get("name") or "") == port_name), None)
        if not number:
            continue
        for endpoint in slice_.body.get("endpoints") or []:
            # Kubernetes reads an absent "ready" as ready; manifests written by hand omit it.
            if (endpoint.get("conditions") or {}).get("ready", True) is False:
                continue
            for address in endpoint.get("addresses") or []:
                found.setdefault(str(address), number)
    legacy = cluster.endpoints.get((namespace, service))
    for subset in (legacy.body.get("subsets") or []) if legacy is not None else []:
        number = next((p.get("port") for p in subset.get("ports") or []
                       if str(p.get("name") or "") == port_name), None)
        if not number:
            continue
        for address in subset.get("addresses") or []:
            found.setdefault(str(address.get("ip", "")), number)
    return [(address, number) for address, number in found.items() if address]


def _server(host: str, port: Any, tls: bool) -> dict[str, Any]:
    return {"address": host_port(host, port), "tls": tls}


def _tls_option(crd: Manifest, cluster: _Cluster) -> dict[str, Any]:
    spec = _spec(crd)
    auth = spec.pop("clientAuth", None)
    if isinstance(auth, dict):
        cas = [secret_value(cluster, crd.namespace, str(name), "tls.ca", "ca.crt")
               for name in auth.get("secretNames") or []]
        spec["clientAuth"] = {"caFiles": cas,
                              "clientAuthType": auth.get("clientAuthType", "NoClientCert")}
    return spec


def _servers_transport(crd: Manifest, cluster: _Cluster) -> dict[str, Any]:
    spec = _spec(crd)
    tls = spec.get("tls")
    if isinstance(tls, dict):
        tls = dict(tls)
        roots = [secret_value(cluster, crd.namespace, str(s), "tls.ca", "ca.crt")
                 for s in tls.pop("rootCAsSecrets", None) or []]
        for root in tls.pop("rootCAs", None) or []:
            if root.get("secret") and root.get("configMap"):
                raise Problem("both Secret and ConfigMap are defined for a RootCA")
            if root.get("secret"):
                roots.append(secret_value(cluster, crd.namespace, str(root["secret"]), "tls.ca",
                                          "ca.crt"))
            elif root.get("configMap"):
                roots.append(config_map_ca(cluster, crd.namespace, str(root["configMap"])))
        certificates = [{"certFile": secret_value(cluster, crd.namespace, str(s), "tls.crt"),
                         "keyFile": secret_value(cluster, crd.namespace, str(s), "tls.key")}
                        for s in tls.pop("certificatesSecrets", None) or []]
        tls.update({"rootCAs": roots, "certificates": certificates})
        spec["tls"] = tls
    return spec


def _merge(fragments: list[tuple[Manifest, dict[str, Any], str]],
           issues: list[ConfigIssue]) -> DynamicConfig:
    """Validate each object's part with the loader, with paths inside the object, then join."""
    routers: dict[str, Any] = {}
    services: dict[str, Any] = {}
    middlewares: dict[str, Any] = {}
    transports: dict[str, Any] = {}
    tls_options: dict[str, Any] = {}
    for crd, raw, element in fragments:
        config, found = load_dynamic_from_dict(raw, crd.source)
        for issue in found:
            # "tcp.middlewares.default-foo.ipAllowList" is "spec.ipAllowList" to its author.
            if element and issue.path.startswith(element):
                issue = dataclasses.replace(issue, path="spec" + issue.path[len(element):])
            issues.append(issue)
        routers.update(config.tcp.routers)
        services.update(config.tcp.services)
        middlewares.update(config.tcp.middlewares)
        transports.update(config.tcp.servers_transports)
        tls_options.update(config.tls.options)
    return DynamicConfig.model_validate({
        "tcp": {"routers": routers, "services": services, "middlewares": middlewares,
                "serversTransports": transports},
        "tls": {"options": tls_options}})


# --- the provider ------------------------------------------------------------------------


#: Turns the objects read into a provider's configuration and its issues.
Convert = Callable[[list[Manifest]], tuple[DynamicConfig, list[ConfigIssue]]]


@dataclass
class ManifestProvider:
    """A Kubernetes provider reading manifest files: a file or directory, watched."""

    name: str
    manifests: str
    watching: bool
    convert: Convert

    def load(self) -> ProviderUpdate:
        return load_guarded(self.name, self.manifests, self._load)

    def _load(self) -> ProviderUpdate:
        manifests, issues = read_manifests(self.manifests)
        config, found = self.convert(manifests)
        return ProviderUpdate(self.name, config, issues + found)

    async def watch(self, publish: Publish) -> None:
        if not self.watching:
            return
        from watchfiles import awatch

        path = os.path.abspath(self.manifests)
        # A file is watched through its directory: tools replace files by rename.
        target = path if os.path.isdir(path) else os.path.dirname(path)
        async for changes in awatch(target, debounce=50, step=20, recursive=True):
            if any(os.path.abspath(p) == target for _, p in changes) and not os.path.isdir(target):
                # inotify drops a removed directory's watch; the server starts a new one.
                raise WatchLost(f"{target} was removed; watching resumes once it exists again")
            if target != path and not any(os.path.abspath(p) == path for _, p in changes):
                continue
            log.info("change detected in %s", self.manifests)
            publish(self.load())


class KubernetesCRDProvider(ManifestProvider):
    """``providers.kubernetesCRD`` with ``manifests``."""

    def __init__(self, options: KubernetesCRDOptions) -> None:
        super().__init__(NAME, options.manifests, options.watch,
                         lambda manifests: config_from_manifests(manifests, options))
        self.options = options
