"""The kubernetesIngress provider: ``networking.k8s.io/v1`` Ingresses as Traefik routes them.

Each path of an Ingress rule becomes a router, named ``<namespace>-<ingress>-<host><path>``
through Traefik's Normalize (a hash of the rule is added when two paths give the same name),
and each Service port a service, ``<namespace>-<service>-<port>``. The rule is
``Host("<host>") && <matcher>("<path>")``: ``Exact`` paths use ``Path``, ``Prefix`` paths
``PathPrefix``, and ``ImplementationSpecific`` (or no type) the ``router.pathmatcher``
annotation (``PathPrefix`` when absent). Router and service settings come from
``traefik.ingress.kubernetes.io/router.*`` annotations on the Ingress and
``traefik.ingress.kubernetes.io/service.*`` annotations on the Service; TLS certificates
from the Secrets ``spec.tls`` names.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping
from typing import Any

from pydantic import Field

from switchyard.config.dynamic import DynamicConfig, StrList, TraefikModel
from switchyard.config.http import HTTPRouterTLS, RouterObservability, Sticky
from switchyard.config.loader import ConfigIssue, load_dynamic_from_dict
from switchyard.providers.base import Provider
from switchyard.providers.flatkeys import canonical, decode, label_path, normalize_name
from switchyard.providers.kubeobjects import (
    Cluster,
    Manifest,
    Problem,
    index_manifests,
    label_selector,
    tls_pair,
    validated,
)
from switchyard.providers.kubernetes import ManifestProvider
from switchyard.providers.kubernetes_http import checked_section, http_servers, scheme_for

__all__ = [
    "NAME",
    "KubernetesIngressOptions",
    "KubernetesIngressProvider",
    "config_from_ingresses",
    "kubernetes_ingress_provider",
]

log = logging.getLogger("switchyard.providers.kubernetes")

NAME = "kubernetes"
_NETWORKING = ("networking.k8s.io/v1",)
_OWN_KINDS = {"Ingress": _NETWORKING, "IngressClass": _NETWORKING}
_CONTROLLER = "traefik.io/ingress-controller"
_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
_PREFIX = "traefik.ingress.kubernetes.io/"
_INDEXED = re.compile(r"(.+)\.(\w+)\.(\d+)\.(.+)")
_MIN_INT32 = -(2**31)


class KubernetesIngressOptions(TraefikModel):
    """``providers.kubernetesIngress``: Traefik's options plus ``manifests`` for offline use."""

    manifests: str = ""
    watch: bool = True
    endpoint: str = ""
    token: str = ""
    cert_auth_file_path: str = ""
    namespaces: StrList = Field(default_factory=list)
    label_selector: str = ""
    ingress_class: str = ""
    allow_empty_services: bool = False
    allow_external_name_services: bool = False
    cross_provider_namespaces: StrList | None = None
    disable_ingress_class_lookup: bool = False
    disable_cluster_scope_resources: bool = False
    native_lb_by_default: bool = False
    strict_prefix_matching: bool = False
    throttle_duration: str | int = 0
    # Switchyard writes nothing to the API, so Ingress statuses are not updated.
    ingress_endpoint: dict[str, Any] | None = None
    report_node_internal_ips: bool = Field(default=False, alias="reportNodeInternalIPs")


class _RouterAnnotations(TraefikModel):
    path_matcher: str = "PathPrefix"
    entry_points: StrList = Field(default_factory=list)
    middlewares: StrList = Field(default_factory=list)
    priority: int = 0
    rule_syntax: str = ""
    tls: HTTPRouterTLS | None = None
    observability: RouterObservability | None = None


class _ServiceAnnotations(TraefikModel):
    servers_scheme: str = ""
    servers_transport: str = ""
    pass_host_header: bool = True
    middlewares: StrList = Field(default_factory=list)
    sticky: Sticky | None = None
    native_lb: bool | None = Field(default=None, alias="nativeLB")
    node_port_lb: bool = Field(default=False, alias="nodePortLB")


class _Backend(TraefikModel):
    name: str
    port: dict[str, Any] = Field(default_factory=dict)

    @property
    def port_text(self) -> str:
        """Traefik's portString: the port's name, else its number."""
        return str(self.port.get("name") or self.port.get("number") or 0)


def config_from_ingresses(manifests: list[Manifest], options: KubernetesIngressOptions
                          ) -> tuple[DynamicConfig, list[ConfigIssue]]:
    """The ``kubernetes`` provider's configuration the Ingresses describe; problems per object."""
    issues: list[ConfigIssue] = []
    selects = label_selector(options.label_selector)
    cluster = index_manifests(
        manifests, _OWN_KINDS, Cluster(), options.namespaces,
        lambda m: m.kind != "Ingress" or selects(m.labels), issues,
        cluster_scoped=("IngressClass",))
    classes = _ingress_classes(cluster, options)
    http: dict[str, dict[str, Any]] = {"routers": {}, "services": {}}
    origins: dict[tuple[str, str], tuple[Manifest, str]] = {}
    certificates: dict[str, dict[str, str]] = {}
    for ingress in cluster.of_kind("Ingress"):
        if not _processed(ingress, classes, options, issues):
            continue
        try:
            _ingress(ingress, cluster, options, http, origins, certificates, issues)
        except Problem as problem:
            issues.append(ConfigIssue(ingress.source, "metadata.annotations",
                                      f"{problem}; the Ingress is left out", "error"))
    raw: dict[str, Any] = {"http": checked_section(http, origins, issues)}
    if certificates:
        raw["tls"] = {"certificates": [certificates[k] for k in sorted(certificates)]}
    config, found = load_dynamic_from_dict(raw, NAME)
    return config, issues + found


def _ingress_classes(cluster: Cluster, options: KubernetesIngressOptions) -> set[str]:
    """The names of Traefik's IngressClasses (controller traefik.io/ingress-controller)."""
    if options.disable_ingress_class_lookup or options.disable_cluster_scope_resources:
        return set()
    names = {m.name for m in cluster.of_kind("IngressClass")
             if (m.body.get("spec") or {}).get("controller") == _CONTROLLER}
    return {options.ingress_class} & names if options.ingress_class else names


def _processed(ingress: Manifest, classes: set[str], options: KubernetesIngressOptions,
               issues: list[ConfigIssue]) -> bool:
    spec = ingress.body.get("spec") or {}
    class_name = spec.get("ingressClassName")
    if class_name is not None:
        if str(class_name) in classes:
            return True
        issues.append(ConfigIssue(
            ingress.source, "spec.ingressClassName", f'Ingress left out: no IngressClass '
            f'"{class_name}" with controller {_CONTROLLER} is known to this provider'
            + (f" (providers.kubernetesIngress.ingressClass is {options.ingress_class!r})"
               if options.ingress_class else "") + "; add the IngressClass manifest", "warning"))
        return False
    annotation = ingress.annotations.get(_CLASS_ANNOTATION, "")
    if options.ingress_class == annotation or (
            not options.ingress_class and annotation == "traefik"):
        return True
    issues.append(ConfigIssue(
        ingress.source, f"metadata.annotations.{_CLASS_ANNOTATION}",
        f'Ingress left out: its class is "{annotation}", this provider reads '
        f'"{options.ingress_class}"' if options.ingress_class else
        f'Ingress left out: its class is "{annotation}", this provider reads Ingresses '
        'without a class or of class "traefik"', "warning"))
    return False


# --- annotations -------------------------------------------------------------------------


def _annotations(manifest: Manifest, section: str, model: type[TraefikModel],
                 issues: list[ConfigIssue]) -> Any:
    """The ``traefik.ingress.kubernetes.io/<section>.*`` annotations as ``model``, or None."""
    pairs: dict[str, str] = {}
    for key, value in manifest.annotations.items():
        if not key.startswith(_PREFIX):
            continue
        rest = _INDEXED.sub(r"\1.\2[\3].\4", key[len(_PREFIX):])
        if rest.lower().startswith(section + "."):
            pairs[rest] = value
    if not pairs:
        return None
    raw, found = decode(pairs, label_path, manifest.source, shown=lambda k: _PREFIX + k)
    issues.extend(found)
    body: Any = next((v for k, v in raw.items() if k.lower() == section), {})
    shaped = canonical(body, model)
    value = validated(model, shaped if isinstance(shaped, dict) else {}, manifest,
                      f"metadata.annotations.{_PREFIX}{section}", issues)
    if value is None:
        raise Problem(f"the {_PREFIX}{section}.* annotations cannot be read")
    return value


# --- Ingress -> routers and services -----------------------------------------------------


def _ingress(ingress: Manifest, cluster: Cluster, options: KubernetesIngressOptions,
             http: dict[str, dict[str, Any]], origins: dict[tuple[str, str], tuple[Manifest, str]],
             certificates: dict[str, dict[str, str]], issues: list[ConfigIssue]) -> None:
    router_config = _annotations(ingress, "router", _RouterAnnotations, issues)
    allowed = options.cross_provider_namespaces
    if router_config is not None and allowed is not None and ingress.namespace not in allowed:
        # Middlewares and TLS options named by annotations always belong to other providers.
        if router_config.middlewares:
            raise Problem(f"cross-provider middleware reference is not allowed from namespace "
                          f'"{ingress.namespace}"')
        if router_config.tls is not None and router_config.tls.options:
            raise Problem(f"cross-provider TLS option reference is not allowed from namespace "
                          f'"{ingress.namespace}"')
    spec = ingress.body.get("spec") or {}
    for index, entry in enumerate(spec.get("tls") or []):
        secret = str((entry or {}).get("secretName") or "")
        key = f"{ingress.namespace}-{secret}"
        if not secret or key in certificates:
            continue
        try:
            cert, private = tls_pair(cluster, ingress.namespace, secret)
        except Problem as problem:
            issues.append(ConfigIssue(ingress.source, f"spec.tls[{index}].secretName",
                                      str(problem), "error"))
            continue
        certificates[key] = {"certFile": cert, "keyFile": private}

    def put(kind: str, name: str, raw: dict[str, Any], path: str) -> None:
        http[kind][name] = raw
        origins[kind, name] = (ingress, path)

    rules = spec.get("rules") or []
    default = spec.get("defaultBackend")
    if not rules and isinstance(default, dict):
        _default_backend(ingress, cluster, options, default, router_config, http, put, issues)
    routers: dict[str, list[tuple[dict[str, Any], str]]] = {}
    for r, rule in enumerate(rules):
        for p, path in enumerate(((rule or {}).get("http") or {}).get("paths") or []):
            where = f"spec.rules[{r}].http.paths[{p}]"
            backend = (path or {}).get("backend") or {}
            try:
                if backend.get("resource") is not None:
                    raise Problem("resource backends are not supported")
                if not isinstance(backend.get("service"), dict):
                    raise Problem("missing service definition")
                ref = validated(_Backend, backend["service"], ingress, f"{where}.backend.service",
                                issues)
                if ref is None:
                    continue
                service = normalize_name(f"{ingress.namespace}-{ref.name}-{ref.port_text}")
                if service not in http["services"]:
                    put("services", service, _service(cluster, options, ingress.namespace, ref, issues),
                        f"{where}.backend")
                router = _router(rule, path, router_config, service, options)
            except Problem as problem:
                issues.append(ConfigIssue(ingress.source, where, f"{problem}; the path is left "
                                          "out", "error"))
                continue
            key = normalize_name(f"{ingress.namespace}-{ingress.name}-"
                                 f"{(rule or {}).get('host') or ''}{path.get('path') or ''}")
            routers.setdefault(key, []).append((router, where))
    for key, same in routers.items():
        for router, where in same:
            if len(same) > 1:
                # Two paths with one name: each gets the first 10 bytes of its rule's sha256.
                key_of = f"{key}-{hashlib.sha256(router['rule'].encode()).hexdigest()[:20]}"
            else:
                key_of = key
            put("routers", key_of, router, where)


def _default_backend(ingress: Manifest, cluster: Cluster, options: KubernetesIngressOptions,
                     default: Mapping[str, Any], router_config: _RouterAnnotations | None,
                     http: dict[str, dict[str, Any]], put: Any, issues: list[ConfigIssue]) -> None:
    where = "spec.defaultBackend"
    try:
        if "default-backend" in http["services"]:
            raise Problem("the default backend already exists (another Ingress defines one)")
        if default.get("resource") is not None:
            raise Problem("resource is not supported for default backend")
        if not isinstance(default.get("service"), dict):
            raise Problem("default backend is missing service definition")
        ref = validated(_Backend, default["service"], ingress, f"{where}.service", issues)
        if ref is None:
            return
        service = _service(cluster, options, ingress.namespace, ref, issues)
    except Problem as problem:
        issues.append(ConfigIssue(ingress.source, where, f"{problem}; left out", "error"))
        return
    router: dict[str, Any] = {"rule": 'PathPrefix("/")', "ruleSyntax": "default",
                              "priority": _MIN_INT32, "service": "default-backend"}
    if router_config is not None:
        router.update(_router_settings(router_config, with_rule_settings=False))
    put("routers", "default-router", router, where)
    put("services", "default-backend", service, where)


def _router_settings(config: _RouterAnnotations, with_rule_settings: bool) -> dict[str, Any]:
    settings: dict[str, Any] = {"entryPoints": list(config.entry_points),
                                "middlewares": list(config.middlewares)}
    if with_rule_settings:
        settings["priority"] = config.priority
        if config.rule_syntax:
            settings["ruleSyntax"] = config.rule_syntax
    if config.tls is not None:
        settings["tls"] = config.tls.model_dump(by_alias=True, exclude_unset=True)
    if config.observability is not None:
        settings["observability"] = config.observability.model_dump(by_alias=True,
                                                                    exclude_none=True)
    return settings


def _router(rule: Mapping[str, Any], path: Mapping[str, Any],
            config: _RouterAnnotations | None, service: str,
            options: KubernetesIngressOptions) -> dict[str, Any]:
    router: dict[str, Any] = {"service": service}
    if config is not None:
        router.update(_router_settings(config, with_rule_settings=True))
    parts = []
    host = str(rule.get("host") or "")
    if host:
        if router.get("ruleSyntax") == "v2" and host.startswith("*."):
            parts.append(f"HostRegexp({_go_quote(host.replace('*.', '{subdomain:[a-zA-Z0-9-]+}.', 1))})")
        else:
            parts.append(f"Host({_go_quote(host)})")
    value = str(path.get("path") or "")
    if value:
        matcher = "PathPrefix"
        kind = path.get("pathType") or ""
        if kind in ("", "ImplementationSpecific"):
            if config is not None and config.path_matcher:
                if config.path_matcher not in ("Path", "PathPrefix", "PathRegexp"):
                    raise Problem(f'invalid router path matcher "{config.path_matcher}": must '
                                  "be one of Path, PathPrefix, PathRegexp")
                matcher = config.path_matcher
        elif kind == "Exact":
            matcher = "Path"
        parts.append(_path_rule(matcher, value, options.strict_prefix_matching))
    router["rule"] = " && ".join(parts)
    return router


def _path_rule(matcher: str, path: str, strict: bool) -> str:
    """``matcher("path")``; strict prefixes match whole path elements (/v1 not /v12)."""
    if not (strict and matcher == "PathPrefix"):
        return f"{matcher}({_go_quote(path)})"
    if path == "/":
        return 'PathPrefix("/")'
    path = path.removesuffix("/")
    return f"(Path({_go_quote(path)}) || PathPrefix({_go_quote(path + '/')}))"


def _go_quote(text: str) -> str:
    """Go's %q for the printable text of host names and paths."""
    return json.dumps(text, ensure_ascii=False)


def _service(cluster: Cluster, options: KubernetesIngressOptions, namespace: str,
             ref: _Backend, issues: list[ConfigIssue]) -> dict[str, Any]:
    """Traefik's loadService: the Service port's servers and the service.* annotations."""
    where = f"{namespace}/{ref.name}"
    service = cluster.services.get((namespace, ref.name))
    if service is None:
        raise Problem(f"service {where} not found: add its Service manifest")
    spec = service.body.get("spec") or {}
    if spec.get("type") == "ExternalName" and not options.allow_external_name_services:
        raise Problem(f"externalName services not allowed: {where} (set "
                      "allowExternalNameServices)")
    number, name = ref.port.get("number"), str(ref.port.get("name") or "")
    port = next((dict(p) for p in spec.get("ports") or []
                 if (number is not None and p.get("port") == number)
                 or (name and str(p.get("name") or "") == name)), None)
    if port is None:
        raise Problem(f"service {where} has no port {ref.port_text}")
    config: _ServiceAnnotations | None = _annotations(service, "service", _ServiceAnnotations,
                                                      issues)
    balancer: dict[str, Any] = {}
    result: dict[str, Any] = {"loadBalancer": balancer}
    native = options.native_lb_by_default
    scheme = scheme_for(port)
    if config is not None:
        scheme = scheme_for(port, config.servers_scheme)
        if config.sticky is not None:
            balancer["sticky"] = config.sticky.model_dump(by_alias=True, exclude_unset=True)
        if config.middlewares:
            result["middlewares"] = list(config.middlewares)
        balancer["passHostHeader"] = config.pass_host_header
        if config.servers_transport:
            allowed = options.cross_provider_namespaces
            if allowed is not None and namespace not in allowed:
                raise Problem(f"cross-provider serversTransport reference is not allowed from "
                              f'namespace "{namespace}"')
            balancer["serversTransport"] = config.servers_transport
        if config.native_lb is not None:
            native = config.native_lb
        if config.node_port_lb and spec.get("type") == "NodePort":
            raise Problem("nodePortLB needs the cluster's Node objects, which Switchyard does "
                          "not read")
    servers = http_servers(cluster, service, port, scheme,
                           native and spec.get("type") != "ExternalName")
    if not servers and not options.allow_empty_services:
        raise Problem(f"skipping service {where}: no endpoints found (add an EndpointSlice "
                      "with serving endpoints, or set allowEmptyServices)")
    balancer["servers"] = servers
    return result


class KubernetesIngressProvider(ManifestProvider):
    """``providers.kubernetesIngress`` with ``manifests``."""

    def __init__(self, options: KubernetesIngressOptions) -> None:
        super().__init__(NAME, options.manifests, options.watch,
                         lambda manifests: config_from_ingresses(manifests, options))
        self.options = options


def kubernetes_ingress_provider(options: KubernetesIngressOptions) -> Provider:
    """The provider ``providers.kubernetesIngress`` configures: manifests, or an API server."""
    for option, set_ in (("ingressEndpoint", options.ingress_endpoint is not None),
                         ("reportNodeInternalIPs", options.report_node_internal_ips)):
        if set_:
            log.warning("providers.kubernetesIngress.%s: Switchyard writes nothing to the API, "
                        "so Ingress statuses are not updated; the option has no effect", option)
    if options.manifests:
        return KubernetesIngressProvider(options)
    from switchyard.providers.kubeapi import INGRESS_RESOURCES, KubernetesAPIProvider, kube_config

    return KubernetesAPIProvider(
        options, kube_config(options, key="kubernetesIngress"), name=NAME,
        resources=INGRESS_RESOURCES, key="kubernetesIngress",
        convert=lambda manifests: config_from_ingresses(manifests, options))
