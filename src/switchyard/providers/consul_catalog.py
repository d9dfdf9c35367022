"""The Consul Catalog provider: routing from services' tags, to their healthy instances."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from switchyard.addresses import host_port
from switchyard.config.durations import Duration
from switchyard.config.dynamic import DynamicConfig, StrList, TraefikModel
from switchyard.config.http import HTTPSection
from switchyard.config.loader import ConfigIssue, ConfigLoadError
from switchyard.providers.base import ProviderUpdate
from switchyard.providers.clienttls import ClientTLS
from switchyard.providers.constraints import compile_tag_constraints
from switchyard.providers.consulapi import ConsulClient, ConsulEndpoint, ConsulSession
from switchyard.providers.default_rule import DefaultRule, compile_default_rule
from switchyard.providers.flatkeys import canonical, ci_get, normalize_name, parse_bool
from switchyard.providers.kv import RemoteProvider, StoreUnavailable
from switchyard.providers.labels import decode_labels, validate_labels

__all__ = [
    "ConsulCatalogOptions",
    "Instance",
    "aggregated_status",
    "config_from_instances",
    "consul_catalog_providers",
    "instances_from_health",
    "tags_to_labels",
]

NAME = "consulcatalog"
DEFAULT_RULE = "Host(`{{ normalize .Name }}`)"
#: Consul's health statuses, and "any", which strictChecks may also list.
STATUSES = ("passing", "warning", "critical", "maintenance", "any")


class HTTPAuth(TraefikModel):
    """``endpoint.httpAuth``: HTTP basic authentication to the agent."""

    username: str = ""
    password: str = ""


class CatalogEndpoint(TraefikModel):
    """``providers.consulCatalog.endpoint``."""

    address: str = ""
    scheme: str = ""
    datacenter: str = ""
    token: str = ""
    tls: ClientTLS | None = None
    http_auth: HTTPAuth | None = None
    endpoint_wait_time: Duration = 0.0


class ConsulCatalogOptions(TraefikModel):
    """``providers.consulCatalog``, with Traefik's option names and defaults."""

    constraints: str = ""
    endpoint: CatalogEndpoint = CatalogEndpoint()
    prefix: str = "traefik"
    refresh_interval: Duration = 15.0
    require_consistent: bool = False
    stale: bool = False
    cache: bool = False
    exposed_by_default: bool = True
    default_rule: str = DEFAULT_RULE
    connect_aware: bool = False
    connect_by_default: bool = False
    service_name: str = "traefik"
    watch: bool = False
    strict_checks: StrList = Field(default_factory=lambda: ["passing", "warning"])
    namespaces: StrList = Field(default_factory=list)


@dataclass(frozen=True)
class Instance:
    """One registered instance of a service, as the health endpoint describes it."""

    id: str
    node: str
    datacenter: str
    name: str
    namespace: str
    address: str  # the service address, else the node's
    port: str
    status: str  # the aggregated status of its checks
    tags: tuple[str, ...]


# --- options ---------------------------------------------------------------------------


def consul_catalog_providers(options: ConsulCatalogOptions) -> list[RemoteProvider[Any]]:
    """``consulcatalog``, or one ``consulcatalog-<namespace>`` per namespace.

    Raises ConfigLoadError for options it cannot use, naming the option.
    """
    where = "providers.consulCatalog"
    if options.connect_aware:
        raise ConfigLoadError(f"{where}.connectAware is not supported by Switchyard: Consul "
                              "Connect (mutual TLS through the service mesh) is not implemented; "
                              "remove the option and register the services without Connect")
    try:
        keep_tags = compile_tag_constraints(options.constraints)
    except ValueError as error:
        raise ConfigLoadError(f"{where}.constraints: {error}") from None
    try:
        default_rule = compile_default_rule(options.default_rule)
    except ValueError as error:
        raise ConfigLoadError(f"{where}.defaultRule: {error}") from None
    if options.refresh_interval <= 0 and not options.watch:
        raise ConfigLoadError(f"{where}.refreshInterval: must be more than 0, e.g. 15s")
    unknown = [s for s in options.strict_checks if s.lower() not in STATUSES]
    if unknown:
        raise ConfigLoadError(f"{where}.strictChecks: {', '.join(unknown)}: use Consul's "
                              f"statuses {', '.join(STATUSES)}")
    endpoint = options.endpoint
    auth = endpoint.http_auth or HTTPAuth()
    rules = _Rules(options, keep_tags, default_rule)
    providers: list[RemoteProvider[Any]] = []
    for namespace in options.namespaces or [""]:
        consul = ConsulEndpoint.parse(
            endpoint.address, f"{where}.endpoint.address", scheme=endpoint.scheme,
            tls=endpoint.tls, token=endpoint.token, datacenter=endpoint.datacenter,
            namespace=namespace, username=auth.username, password=auth.password,
            wait=endpoint.endpoint_wait_time)
        name = f"{NAME}-{namespace}" if namespace else NAME
        providers.append(_provider(name, consul, rules))
    return providers


@dataclass(frozen=True)
class _Rules:
    """The options, compiled: what both the reads and the configuration building need."""

    options: ConsulCatalogOptions
    keep_tags: Callable[[Sequence[str]], bool]
    default_rule: DefaultRule

    def query(self) -> dict[str, str]:
        """Consistency and caching parameters of the catalog reads."""
        flags = (("stale", self.options.stale), ("consistent", self.options.require_consistent),
                 ("cached", self.options.cache))
        return {name: "" for name, on in flags if on}


def _provider(name: str, endpoint: ConsulEndpoint, rules: _Rules) -> RemoteProvider[Any]:
    watched: list[tuple[str, Mapping[str, str]]] = []
    if rules.options.watch:
        # What Traefik's watches follow: the service list and every check's status.
        watched = [("/catalog/services", {}), ("/health/state/any", {})]

    async def read(client: ConsulClient) -> tuple[Instance, ...]:
        return await _read_instances(client, rules)

    async def open_session() -> ConsulSession[tuple[Instance, ...]]:
        return await ConsulSession.open(endpoint, read, watched, rules.options.refresh_interval)

    def to_update(instances: tuple[Instance, ...]) -> ProviderUpdate:
        config, issues = config_from_instances(instances, rules.options, rules.keep_tags,
                                               rules.default_rule, provider=name)
        return ProviderUpdate(name, config, issues)

    return RemoteProvider(name, f"{name} {endpoint.base_url}", open_session, to_update)


# --- reading the catalog ----------------------------------------------------------------


def tags_to_labels(tags: Sequence[str], prefix: str) -> dict[str, str]:
    """``<prefix>.a.b=value`` tags as ``traefik.a.b`` labels; other tags are not labels."""
    labels: dict[str, str] = {}
    for tag in tags:
        if tag.startswith(prefix):
            key, equals, value = tag.partition("=")
            if equals:
                labels["traefik." + key.removeprefix(prefix + ".")] = value
    return labels


def aggregated_status(checks: Sequence[Mapping[str, Any]]) -> str:
    """Consul's HealthChecks.AggregatedStatus: the worst status, maintenance worst of all.

    An unknown status makes it "" (which only strictChecks "any" lets through).
    """
    seen = set()
    for check in checks:
        check_id = str(check.get("CheckID", ""))
        if check_id == "_node_maintenance" or check_id.startswith("_service_maintenance:"):
            seen.add("maintenance")
            continue
        status = check.get("Status")
        if status not in ("passing", "warning", "critical"):
            return ""
        seen.add(status)
    return next((s for s in ("maintenance", "critical", "warning") if s in seen), "passing")


def instances_from_health(name: str, entries: Any) -> list[Instance]:
    """``GET /v1/health/service/<name>`` (a list of Node, Service, Checks) as instances."""
    if not isinstance(entries, list):
        raise StoreUnavailable(f"GET /v1/health/service/{name}: not a list of entries")
    found = []
    for entry in entries:
        node = entry.get("Node") if isinstance(entry, dict) else None
        service = entry.get("Service") if isinstance(entry, dict) else None
        if not isinstance(node, dict) or not isinstance(service, dict):
            continue
        checks = entry.get("Checks") or []
        found.append(Instance(
            id=str(service.get("ID", "")),
            node=str(node.get("Node", "")),
            datacenter=str(node.get("Datacenter", "")),
            name=name,
            namespace=str(service.get("Namespace") or "default"),
            address=str(service.get("Address") or node.get("Address") or ""),
            port=str(service.get("Port", 0)),
            status=aggregated_status(checks if isinstance(checks, list) else []),
            tags=tuple(str(tag) for tag in service.get("Tags") or []),
        ))
    return found


async def _read_instances(client: ConsulClient, rules: _Rules) -> tuple[Instance, ...]:
    services, _ = await client.get("/catalog/services", rules.query())
    if not isinstance(services, dict):
        raise StoreUnavailable("GET /v1/catalog/services: not a map of service names to tags")
    options = rules.options
    health_query = rules.query()
    if not options.exposed_by_default:
        health_query["tag"] = f"{options.prefix}.enable=true"
    instances: list[Instance] = []
    for name in sorted(services):
        tags = [str(tag) for tag in services[name] or []]
        # The catalog's tags are those of all the instances: a service none of whose
        # instances could be kept is not asked about (as Traefik does).
        if _excluded(tags, options, rules.keep_tags) is not None:
            continue
        entries, _ = await client.get(f"/health/service/{name}", health_query)
        instances.extend(instances_from_health(name, entries))
    return tuple(sorted(instances, key=lambda i: (i.name, i.node, i.id)))


# --- instances -> configuration -----------------------------------------------------------


def _settings(labels: Mapping[str, str], options: ConsulCatalogOptions) -> dict[str, bool]:
    """The provider's own labels: traefik.enable, traefik.consulcatalog.connect / canary.

    ValueError for a value that is not a boolean.
    """
    found = {"enable": options.exposed_by_default, "connect": options.connect_by_default,
             "canary": False}
    for key, label in (("enable", "traefik.enable"), ("connect", "traefik.consulcatalog.connect"),
                       ("canary", "traefik.consulcatalog.canary")):
        value = ci_get(labels, label)
        if value is not None:
            parsed = parse_bool(value[1])
            if parsed is None:
                raise ValueError(f"{label}: {value[1]!r} is not a boolean; use true or false")
            found[key] = parsed
    return found


def _excluded(tags: Sequence[str], options: ConsulCatalogOptions,
              keep_tags: Callable[[Sequence[str]], bool]) -> str | None:
    """Why a service (or instance) with these tags is left out, or None to keep it."""
    try:
        settings = _settings(tags_to_labels(tags, options.prefix), options)
    except ValueError as error:
        return str(error)
    if not settings["enable"]:
        return ""
    if settings["connect"] and not options.connect_aware:
        return ""  # a Connect service: Switchyard, like Traefik without connectAware, skips it
    if not keep_tags(tags):
        return ""
    return None


def _kept_status(status: str, options: ConsulCatalogOptions) -> bool:
    allowed = {s.lower() for s in options.strict_checks}
    return "any" in allowed or status.lower() in allowed


def config_from_instances(
    instances: Sequence[Instance], options: ConsulCatalogOptions,
    keep_tags: Callable[[Sequence[str]], bool] | None = None,
    default_rule: DefaultRule | None = None, provider: str = NAME,
) -> tuple[DynamicConfig, list[ConfigIssue]]:
    """The provider's configuration: each kept instance's tags, merged as Traefik merges them.

    Instances of one service that describe the same load balancer share it, each adding its
    server; elements defined differently by two instances are left out with an error.
    """
    keep = keep_tags or compile_tag_constraints(options.constraints)
    rule = default_rule or compile_default_rule(options.default_rule)
    issues: list[ConfigIssue] = []
    merged = _Merged()
    for instance in sorted(instances, key=_element_name):
        source = f'consul catalog service "{instance.name}" instance "{instance.id}"'
        why = _excluded(instance.tags, options, keep)
        if why:
            issues.append(ConfigIssue(source, "", f"left out: {why}", "error"))
        if why is not None or not _kept_status(instance.status, options):
            continue
        raw = _instance_config(instance, options, rule, source, issues)
        if raw is not None:
            merged.add(raw, source)
    issues.extend(merged.drop_conflicts(provider))
    config, found = validate_labels(merged.raw, provider)
    return config, issues + found


def _element_name(instance: Instance) -> str:
    # Traefik sorts the instances' configurations by this name before merging them.
    return normalize_name(f"{instance.node}-{instance.name}-{instance.id}")


def _default_name(instance: Instance, canary: bool) -> str:
    """The default router and service name: the service's, or a hash of the tags (canary)."""
    if not canary:
        return normalize_name(instance.name)
    return normalize_name(f"{instance.name}-{_fnv64(''.join(sorted(instance.tags)).encode())}")


def _fnv64(data: bytes) -> int:
    """Go's hash/fnv New64 (FNV-1, not FNV-1a), as Traefik names canary services."""
    value = 0xCBF29CE484222325
    for byte in data:
        value = (value * 0x100000001B3) % (1 << 64)
        value ^= byte
    return value


def _instance_config(instance: Instance, options: ConsulCatalogOptions, rule: DefaultRule,
                     source: str, issues: list[ConfigIssue]) -> dict[str, Any] | None:
    labels = tags_to_labels(instance.tags, options.prefix)
    raw, found = decode_labels(labels, source)
    issues.extend(found)
    canary = _settings(labels, options)["canary"]
    name = _default_name(instance, canary)
    problems: list[str] = []
    tcp_or_udp = False
    for section in ("tcp", "udp"):
        part = raw.get(section)
        if isinstance(part, dict) and (part.get("routers") or part.get("services")):
            tcp_or_udp = True
            _fill_services(part, name, instance, problems, http=False)
            _link_routers(part, section, source, issues, rule_required=section == "tcp")
    http = raw.get("http")
    http = canonical(http, HTTPSection) if isinstance(http, dict) else {}
    if not (tcp_or_udp and not any(http.get(k) for k in ("routers", "middlewares", "services"))):
        _fill_services(http, name, instance, problems, http=True)
        _default_router(http, name, instance, labels, rule, source, issues)
        _link_routers(http, "http", source, issues, rule_required=True)
        raw["http"] = http
    if problems:
        issues.append(ConfigIssue(source, "", f"left out: {problems[0]}", "error"))
        return None
    return raw


def _fill_services(section: dict[str, Any], name: str, instance: Instance, problems: list[str],
                   *, http: bool) -> None:
    """The instance's address in the first server of each service (one named ``name`` if none)."""
    services = section.get("services")
    if not isinstance(services, dict) or not services:
        services = section["services"] = {name: {"loadBalancer": {}}}
    for service_name, service in services.items():
        found = ci_get(service, "loadBalancer") if isinstance(service, dict) else None
        balancer = found[1] if found is not None else None
        if not isinstance(balancer, dict):
            if found is None and isinstance(service, dict) and not service:
                balancer = service["loadBalancer"] = {}
            else:
                problems.append(f"{service_name}: load-balancer is not defined")
                continue
        servers = balancer.get("servers")
        if not isinstance(servers, list) or not servers or not isinstance(servers[0], dict):
            servers = balancer["servers"] = [{}]
        problem = _fill_server(servers[0], instance, http)
        if problem:
            problems.append(f"{service_name}: {problem}")


def _take(server: dict[str, Any], key: str) -> str:
    found = ci_get(server, key)
    if found is None:
        return ""
    del server[found[0]]
    return str(found[1])


def _fill_server(server: dict[str, Any], instance: Instance, http: bool) -> str:
    if not instance.address:
        return "address is missing"
    if http and ci_get(server, "url") is not None:
        if ci_get(server, "scheme") is not None or ci_get(server, "port") is not None:
            return "defining scheme or port is not allowed when URL is defined"
        return ""
    port = _take(server, "port") or instance.port
    if not port:
        return "port is missing"
    address = host_port(instance.address, port)
    if http:
        server["url"] = f"{_take(server, 'scheme') or 'http'}://{address}"
    else:
        server["address"] = address
    return ""


def _default_router(http: dict[str, Any], name: str, instance: Instance,
                    labels: Mapping[str, str], rule: DefaultRule, source: str,
                    issues: list[ConfigIssue]) -> None:
    routers = http.get("routers")
    if not isinstance(routers, dict) or not routers:
        if len(http["services"]) > 1:
            return  # Traefik: too many services to give the instance a router by default
        routers = http["routers"] = {name: {}}
    for router_name, router in list(routers.items()):
        if not isinstance(router, dict):
            continue
        given = ci_get(router, "rule")
        if given is not None and given[1]:
            continue
        if given is not None:
            del router[given[0]]
        try:
            router["rule"] = rule({"Name": instance.name, "Labels": dict(labels)})
        except ValueError as error:
            router["rule"] = ""
            issues.append(ConfigIssue(source, f"traefik.http.routers.{router_name}.rule",
                                      f"defaultRule: {error}", "error"))


def _link_routers(section: dict[str, Any], kind: str, source: str, issues: list[ConfigIssue],
                  *, rule_required: bool) -> None:
    """Routers without a rule are left out; one without a service gets the only service."""
    routers = section.get("routers")
    if not isinstance(routers, dict):
        return
    services = section.get("services") or {}
    for name, router in list(routers.items()):
        if not isinstance(router, dict):
            continue
        where = f"traefik.{kind}.routers.{name}"
        rule = ci_get(router, "rule")
        if rule_required and (rule is None or not rule[1]):
            issues.append(ConfigIssue(source, f"{where}.rule", "the router has no rule and is "
                                      "left out", "error"))
            del routers[name]
            continue
        service = ci_get(router, "service")
        if service is None or not service[1]:
            if len(services) != 1:
                issues.append(ConfigIssue(source, f"{where}.service", "the instance defines "
                                          "several services: say which one this router uses",
                                          "error"))
                del routers[name]
            else:
                router["service"] = next(iter(services))


@dataclass
class _Merged:
    """Elements from several instances merged as Traefik's provider.Merge does."""

    raw: dict[str, Any] = field(default_factory=dict)
    owners: dict[tuple[str, ...], list[str]] = field(default_factory=dict)
    conflicts: set[tuple[str, ...]] = field(default_factory=set)

    def add(self, config: Mapping[str, Any], owner: str) -> None:
        for section, kinds in config.items():
            if not isinstance(kinds, dict):
                continue
            if section == "tls":
                kinds = {"stores": kinds.get("stores") or {}}
            for kind, elements in kinds.items():
                if not isinstance(elements, dict):
                    continue
                into = self.raw.setdefault(section, {}).setdefault(kind, {})
                for name, element in elements.items():
                    key = (section, kind, name)
                    self.owners.setdefault(key, []).append(owner)
                    if name not in into:
                        into[name] = copy.deepcopy(element)
                    elif kind == "services" and _same_balancer(into[name], element):
                        into[name] = _with_servers_of(into[name], element)
                    elif into[name] != element:
                        self.conflicts.add(key)

    def drop_conflicts(self, provider: str) -> list[ConfigIssue]:
        issues = []
        for section, kind, name in sorted(self.conflicts):
            owners = ", ".join(self.owners[section, kind, name])
            issues.append(ConfigIssue(provider, f"{section}.{kind}.{name}", "defined with "
                                      f"different configurations by {owners}; none of them is "
                                      "used", "error"))
            del self.raw[section][kind][name]
        return issues


def _balancer(service: Any) -> tuple[str, dict[str, Any]] | None:
    found = ci_get(service, "loadBalancer") if isinstance(service, dict) else None
    if found is None or not isinstance(found[1], dict):
        return None
    return found[0], found[1]


def _same_balancer(first: Any, second: Any) -> bool:
    one, other = _balancer(first), _balancer(second)
    if one is None or other is None or len(first) != 1 or len(second) != 1:
        return False
    return ({k: v for k, v in one[1].items() if k != "servers"}
            == {k: v for k, v in other[1].items() if k != "servers"})


def _with_servers_of(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """Instances of one service: the servers of both, each once."""
    one, other = _balancer(first), _balancer(second)
    assert one is not None and other is not None
    servers = list(one[1].get("servers") or [])
    servers += [s for s in other[1].get("servers") or [] if s not in servers]
    return {one[0]: {**one[1], "servers": servers}}
