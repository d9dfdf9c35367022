"""The Docker provider: TCP and HTTP routing from container labels, followed through the engine's events."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import aiohttp

from switchyard.addresses import host_port
from switchyard.config.dynamic import (
    DynamicConfig,
    TCPMiddleware,
    TCPRouter,
    TCPSection,
    TCPService,
    TraefikModel,
)
from switchyard.config.dynamic import ServersTransport as TransportConfig
from switchyard.config.loader import ConfigIssue, ConfigLoadError
from switchyard.providers.base import ProviderUpdate, describe_error
from switchyard.providers.constraints import Constraint, compile_constraints
from switchyard.providers.default_rule import DefaultRule, compile_default_rule
from switchyard.providers.flatkeys import ci_get, normalize_name, parse_bool
from switchyard.providers.kv import (
    RemoteProvider,
    Session,
    SourceUnreadable,
    StoreUnavailable,
)
from switchyard.providers.labels import decode_labels, validate_labels

__all__ = [
    "Container",
    "DockerOptions",
    "Engine",
    "EngineSession",
    "compile_constraints",
    "compile_options",
    "config_from_containers",
    "docker_provider",
]

log = logging.getLogger("switchyard.providers.docker")

S = TypeVar("S", bound="EngineSession")

NAME = "docker"
#: Traefik's defaultRule: an HTTP router a container's labels leave without a rule gets it.
DEFAULT_RULE = "Host(`{{ normalize .Name }}`)"
_TIMEOUT = 5.0
_COMPOSE_PROJECT = "com.docker.compose.project"
_COMPOSE_SERVICE = "com.docker.compose.service"


class DockerOptions(TraefikModel):
    """``providers.docker``: the options Switchyard reads, with Traefik's names and defaults."""

    endpoint: str = "unix:///var/run/docker.sock"
    exposed_by_default: bool = True
    constraints: str = ""
    network: str = ""
    watch: bool = True
    default_rule: str = DEFAULT_RULE


@dataclass(frozen=True)
class Container:
    """What the provider needs of one running container (from ``GET /containers/{id}/json``)."""

    id: str
    name: str
    labels: Mapping[str, str]
    networks: Mapping[str, str]  # network name -> the container's IP address on it
    ports: tuple[int, ...]  # exposed ports; the lowest is the default server port
    network_mode: str = ""
    health: str = ""
    service: str = ""  # the default service name when it is not the container's (Swarm)

    @classmethod
    def from_inspect(cls, data: Mapping[str, Any]) -> Container:
        config = data.get("Config") or {}
        settings = data.get("NetworkSettings") or {}
        networks = {
            name: str(network.get("IPAddress") or network.get("GlobalIPv6Address") or "")
            for name, network in (settings.get("Networks") or {}).items()
        }
        ports = sorted({int(key.split("/")[0]) for key in (settings.get("Ports") or {})
                        if key.split("/")[0].isdigit()})
        health = ((data.get("State") or {}).get("Health") or {}).get("Status", "")
        return cls(
            id=str(data.get("Id", "")),
            name=str(data.get("Name", "")).lstrip("/"),
            labels=dict(config.get("Labels") or {}),
            networks=networks,
            ports=tuple(ports),
            network_mode=str((data.get("HostConfig") or {}).get("NetworkMode", "")),
            health=str(health or ""),
        )

    @property
    def service_name(self) -> str:
        """Traefik's default service name: the compose service and project, else the name."""
        name = self.service or self.name
        if _COMPOSE_PROJECT in self.labels and _COMPOSE_SERVICE in self.labels:
            name = f"{self.labels[_COMPOSE_SERVICE]}_{self.labels[_COMPOSE_PROJECT]}"
        return normalize_name(name)


# --- containers -> configuration ---------------------------------------------------------


@dataclass
class _Merged:
    """Elements from several containers, merged the way Traefik's provider.Merge does."""

    routers: dict[str, TCPRouter] = field(default_factory=dict)
    services: dict[str, TCPService] = field(default_factory=dict)
    middlewares: dict[str, TCPMiddleware] = field(default_factory=dict)
    transports: dict[str, TransportConfig] = field(default_factory=dict)
    owners: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    conflicts: set[tuple[str, str]] = field(default_factory=set)


#: Labels naming the network whose address is used, first found wins, per provider.
NETWORK_LABELS = {"docker": ("traefik.docker.network",),
                  # traefik.docker.* is the deprecated spelling Traefik still reads for Swarm.
                  "swarm": ("traefik.swarm.network", "traefik.docker.network")}


def config_from_containers(
    containers: list[Container], options: DockerOptions, constraint: Constraint | None = None,
    provider: str = NAME, default_rule: DefaultRule | None = None,
) -> tuple[DynamicConfig, list[ConfigIssue]]:
    """The ``docker`` (or ``swarm``) provider's configuration from the containers' labels.

    For Swarm, each running task of a service is a container named ``<service>.<slot>``
    with the service's labels.
    """
    keep = constraint or compile_constraints(options.constraints)
    rule = default_rule or compile_default_rule(options.default_rule)
    by_ref = {c.id: c for c in containers} | {c.name: c for c in containers}
    issues: list[ConfigIssue] = []
    merged = _Merged()
    http = _MergedHTTP()
    # Traefik merges containers in the order of "<service name>-<id>".
    for container in sorted(containers, key=lambda c: f"{c.service_name}-{c.id}"):
        if not _wanted(container, options, keep):
            continue
        config = _container_config(container, options, by_ref, issues, provider, rule)
        if config is not None:
            _merge(merged, config.tcp, f'container "{container.name}"')
            http.add(config.http, f'container "{container.name}"')
    for kind, name in sorted(merged.conflicts):
        issues.append(ConfigIssue(provider, f"tcp.{kind}.{name}", "defined with different "
                                  f"configurations by {', '.join(merged.owners[kind, name])};"
                                  " none of them is used", "error"))
        getattr(merged, "transports" if kind == "serversTransports" else kind).pop(name, None)
    issues.extend(http.drop_conflicts(provider))
    tcp = TCPSection(routers=merged.routers, services=merged.services,
                     middlewares=merged.middlewares, servers_transports=merged.transports)
    return DynamicConfig(tcp=tcp, http=http.sections), issues


def _wanted(container: Container, options: DockerOptions, keep: Constraint) -> bool:
    enable = ci_get(container.labels, "traefik.enable")
    enabled = parse_bool(enable[1]) if enable is not None else None
    if not (options.exposed_by_default if enabled is None else enabled):
        return False
    if not keep(container.labels):
        return False
    # Traefik leaves out containers that are starting or unhealthy until they are healthy.
    return container.health in ("", "healthy")


def _container_config(
    container: Container, options: DockerOptions, by_ref: Mapping[str, Container],
    issues: list[ConfigIssue], provider: str, rule: DefaultRule,
) -> DynamicConfig | None:
    kind = "swarm task" if provider == "swarm" else "docker container"
    source = f'{kind} "{container.name}"'
    raw, found = decode_labels(container.labels, source)
    issues.extend(found)
    tcp, udp, http = (raw.get(key) for key in ("tcp", "udp", "http"))
    has_tcp = isinstance(tcp, dict) and bool(tcp)
    if isinstance(tcp, dict) and (tcp.get("routers") or tcp.get("services")) and \
            not _routers_and_services(container, options, by_ref, tcp, source, issues,
                                      NETWORK_LABELS[provider]):
        return None
    # As Traefik: HTTP routing unless the labels are TCP or UDP only; so a container with no
    # label at all gets an HTTP router with the defaultRule.
    if not (has_tcp or udp) or (isinstance(http, dict) and http):
        http = raw["http"] = http if isinstance(http, dict) else {}
        if not _http_defaults(container, options, by_ref, http, source, issues,
                              NETWORK_LABELS[provider], rule):
            raw.pop("http")
            if not has_tcp:
                return None
    config, found = validate_labels(raw, source)
    issues.extend(found)
    return config


def _routers_and_services(
    container: Container, options: DockerOptions, by_ref: Mapping[str, Container],
    tcp: dict[str, Any], source: str, issues: list[ConfigIssue], network_labels: tuple[str, ...],
) -> bool:
    """Traefik's TCP service and router defaults for one container; False drops the container."""
    services = tcp.get("services")
    if not isinstance(services, dict) or not services:
        services = tcp["services"] = {container.service_name: {"loadBalancer": {}}}
    for name, service in services.items():
        problem = _fill_server(container, options, by_ref, service, network_labels)
        if problem:
            # As Traefik does, a container whose server cannot be placed contributes nothing.
            issues.append(ConfigIssue(source, f"traefik.tcp.services.{name}", problem, "error"))
            return False
    routers = tcp.get("routers")
    routers = routers if isinstance(routers, dict) else {}
    for name, router in list(routers.items()):
        if not isinstance(router, dict):
            continue
        if not router.get("rule"):
            issues.append(ConfigIssue(source, f"traefik.tcp.routers.{name}.rule",
                                      "the router has no rule and is left out", "error"))
            del routers[name]
        elif not router.get("service"):
            if len(services) != 1:
                issues.append(ConfigIssue(source, f"traefik.tcp.routers.{name}.service",
                                          "the container defines several services: say which "
                                          "one this router uses", "error"))
                del routers[name]
            else:
                router["service"] = next(iter(services))
    return True


def _fill_server(
    container: Container, options: DockerOptions, by_ref: Mapping[str, Container], service: Any,
    network_labels: tuple[str, ...], http: bool = False,
) -> str:
    """Put the container's address into the service's first server; the problem, if any.

    TCP servers get ``address``; HTTP ones ``url`` (``scheme`` label, http by default),
    unless a ``url`` label gave it.
    """
    balancer = service.get("loadBalancer") if isinstance(service, dict) else None
    if not isinstance(balancer, dict):
        return "load-balancer is not defined"
    servers = balancer.get("servers")
    if not isinstance(servers, list) or not servers or not isinstance(servers[0], dict):
        servers = balancer["servers"] = [{}]
    if http and ci_get(servers[0], "url") is not None:
        return ""
    scheme = ci_get(servers[0], "scheme") if http else None
    if scheme is not None:
        del servers[0][scheme[0]]
    port_key = ci_get(servers[0], "port")
    port = str(port_key[1]) if port_key is not None else ""
    if port_key is not None:
        del servers[0][port_key[0]]
    if not port and container.ports:
        port = str(min(container.ports))
    ip = _ip_address(container, options, by_ref, network_labels)
    if not ip:
        return f'unable to find the IP address for the container "{container.name}"'
    if not port:
        return (f"port is missing: set traefik.{'http' if http else 'tcp'}.services.<name>"
                ".loadbalancer.server.port or expose a port")
    if http:
        servers[0]["url"] = f"{scheme[1] if scheme else 'http'}://{host_port(ip, port)}"
    else:
        servers[0]["address"] = host_port(ip, port)
    return ""


def _http_defaults(
    container: Container, options: DockerOptions, by_ref: Mapping[str, Container],
    http: dict[str, Any], source: str, issues: list[ConfigIssue],
    network_labels: tuple[str, ...], rule: DefaultRule,
) -> bool:
    """Traefik's HTTP defaults for one container; False leaves its HTTP part out."""
    services = http.get("services")
    if not isinstance(services, dict) or not services:
        services = http["services"] = {container.service_name: {"loadBalancer": {}}}
    for name, service in services.items():
        problem = _fill_server(container, options, by_ref, service, network_labels, http=True)
        if problem:
            issues.append(ConfigIssue(source, f"traefik.http.services.{name}", problem, "error"))
            return False
    routers = http.get("routers")
    if not isinstance(routers, dict) or not routers:
        if len(services) != 1:
            issues.append(ConfigIssue(source, "traefik.http.routers", "the container defines "
                                      "several services: say which one each router uses",
                                      "error"))
            return False
        routers = http["routers"] = {container.service_name: {}}
    for name, router in list(routers.items()):
        if not isinstance(router, dict):
            continue
        given = ci_get(router, "rule")
        if given is None or not given[1]:
            if given is not None:
                del router[given[0]]
            try:
                router["rule"] = rule({"Name": container.service_name,
                                       "ContainerName": container.name,
                                       "Labels": dict(container.labels)})
            except ValueError as error:
                issues.append(ConfigIssue(source, f"traefik.http.routers.{name}.rule",
                                          f"defaultRule: {error}", "error"))
                del routers[name]
                continue
        if ci_get(router, "service") is None:
            if len(services) != 1:
                issues.append(ConfigIssue(source, f"traefik.http.routers.{name}.service",
                                          "the container defines several services: say which "
                                          "one this router uses", "error"))
                del routers[name]
            else:
                router["service"] = next(iter(services))
    return True


@dataclass
class _MergedHTTP:
    """The HTTP parts of several containers, merged as Traefik merges them: replicas of one
    service share its load balancer, an element two containers define differently is left
    out."""

    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    owners: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    conflicts: set[tuple[str, str]] = field(default_factory=set)

    def add(self, http: Mapping[str, Any], owner: str) -> None:
        for kind, elements in http.items():
            if not isinstance(elements, Mapping):
                continue
            into = self.sections.setdefault(kind, {})
            for name, element in elements.items():
                self.owners.setdefault((kind, name), []).append(owner)
                if name not in into:
                    into[name] = element
                elif kind == "services" and _same_http_balancer(into[name], element):
                    into[name] = _with_http_servers(into[name], element)
                elif into[name] != element:
                    self.conflicts.add((kind, name))

    def drop_conflicts(self, provider: str) -> list[ConfigIssue]:
        issues = []
        for kind, name in sorted(self.conflicts):
            issues.append(ConfigIssue(provider, f"http.{kind}.{name}", "defined with different "
                                      f"configurations by {', '.join(self.owners[kind, name])};"
                                      " none of them is used", "error"))
            self.sections[kind].pop(name, None)
        return issues


def _http_balancer(service: Any) -> tuple[str, dict[str, Any]] | None:
    found = ci_get(service, "loadBalancer") if isinstance(service, Mapping) else None
    return (found[0], found[1]) if found is not None and isinstance(found[1], dict) else None


def _without_servers(balancer: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in balancer.items() if key.lower() != "servers"}


def _servers_of(balancer: Mapping[str, Any]) -> list[Any]:
    found = ci_get(balancer, "servers")
    return list(found[1]) if found is not None and isinstance(found[1], list) else []


def _same_http_balancer(first: Any, second: Any) -> bool:
    one, other = _http_balancer(first), _http_balancer(second)
    if one is None or other is None or len(first) != 1 or len(second) != 1:
        return False
    return _without_servers(one[1]) == _without_servers(other[1])


def _with_http_servers(first: Any, second: Any) -> dict[str, Any]:
    """Replicas of one HTTP service: the servers of both, each once."""
    one, other = _http_balancer(first), _http_balancer(second)
    assert one is not None and other is not None
    servers = _servers_of(one[1])
    servers += [server for server in _servers_of(other[1]) if server not in servers]
    return {one[0]: _without_servers(one[1]) | {"servers": servers}}


def _ip_address(container: Container, options: DockerOptions, by_ref: Mapping[str, Container],
                network_labels: tuple[str, ...], depth: int = 0) -> str:
    labels = (ci_get(container.labels, key) for key in network_labels)
    network = next((label[1] for label in labels if label is not None), options.network)
    if network:
        if network in container.networks:
            return container.networks[network]
        log.warning('container "%s": network "%s" not found, using its first network',
                    container.name, network)
    if container.network_mode == "host":
        return "127.0.0.1"
    if container.network_mode.startswith("container:") and depth < 3:
        other = by_ref.get(container.network_mode.removeprefix("container:"))
        return (_ip_address(other, options, by_ref, network_labels, depth + 1)
                if other is not None else "")
    # Sorted, so that a container on several networks gets the same address every time.
    return next((container.networks[n] for n in sorted(container.networks)
                 if container.networks[n]), "")


def _merge(merged: _Merged, tcp: TCPSection, owner: str) -> None:
    groups: tuple[tuple[str, dict[str, Any], dict[str, Any]], ...] = (
        ("routers", merged.routers, tcp.routers),
        ("services", merged.services, tcp.services),
        ("middlewares", merged.middlewares, tcp.middlewares),
        ("serversTransports", merged.transports, tcp.servers_transports),
    )
    for kind, into, elements in groups:
        for name, element in elements.items():
            merged.owners.setdefault((kind, name), []).append(owner)
            if name not in into:
                into[name] = element
            elif kind == "services" and _same_balancer(into[name], element):
                into[name] = _with_servers_of(into[name], element)
            elif into[name] != element:
                merged.conflicts.add((kind, name))


def _same_balancer(first: TCPService, second: TCPService) -> bool:
    if first.load_balancer is None or second.load_balancer is None:
        return False
    return (first.load_balancer.model_copy(update={"servers": []})
            == second.load_balancer.model_copy(update={"servers": []}))


def _with_servers_of(first: TCPService, second: TCPService) -> TCPService:
    """Replicas of one service: the servers of both, each address once."""
    assert first.load_balancer is not None and second.load_balancer is not None
    servers = list(first.load_balancer.servers)
    known = {server.address for server in servers}
    servers += [s for s in second.load_balancer.servers if s.address not in known]
    balancer = first.load_balancer.model_copy(update={"servers": servers})
    return first.model_copy(update={"load_balancer": balancer})


# --- the Docker Engine API ---------------------------------------------------------------


def compile_options(options: DockerOptions, provider: str) -> tuple[Constraint, DefaultRule]:
    """``constraints`` and ``defaultRule`` compiled; ConfigLoadError naming the bad one."""
    try:
        keep = compile_constraints(options.constraints)
    except ValueError as error:
        raise ConfigLoadError(f"providers.{provider}.constraints: {error}") from None
    try:
        rule = compile_default_rule(options.default_rule)
    except ValueError as error:
        raise ConfigLoadError(f"providers.{provider}.defaultRule: {error}") from None
    return keep, rule


def docker_provider(options: DockerOptions) -> RemoteProvider[list[Container]]:
    """The provider named ``docker``; ConfigLoadError for options it cannot use."""
    keep, rule = compile_options(options, NAME)
    engine = Engine.from_endpoint(options.endpoint)

    def to_update(containers: list[Container]) -> ProviderUpdate:
        config, issues = config_from_containers(containers, options, keep, default_rule=rule)
        return ProviderUpdate(NAME, config, issues)

    return RemoteProvider(NAME, f"docker {options.endpoint}", engine.open, to_update,
                          options.watch)


@dataclass(frozen=True)
class Engine:
    """Where the Docker Engine API answers: a unix socket or a TCP address."""

    base_url: str
    socket_path: str
    endpoint: str

    @classmethod
    def from_endpoint(cls, endpoint: str, provider: str = NAME) -> Engine:
        parts = urlsplit(endpoint)
        if parts.scheme == "unix":
            return cls("http://docker", parts.path, endpoint)
        if parts.scheme in ("tcp", "http"):
            return cls(f"http://{parts.netloc}", "", endpoint)
        raise ConfigLoadError(f'providers.{provider}.endpoint "{endpoint}": use unix:///path/to/'
                              "docker.sock or tcp://host:port (TLS to the engine is not "
                              "supported yet)")

    async def open(self) -> Session[list[Container]]:
        return await self.connect(EngineSession)

    async def connect(self, kind: Callable[[aiohttp.ClientSession], S]) -> S:
        """A session of ``kind``, already subscribed to the engine's events."""
        connector = aiohttp.UnixConnector(self.socket_path) if self.socket_path else None
        http = aiohttp.ClientSession(self.base_url, connector=connector,
                                     timeout=aiohttp.ClientTimeout(sock_connect=_TIMEOUT))
        session = kind(http)
        try:
            await session.subscribe()
        except StoreUnavailable:
            await session.close()
            raise
        return session


class EngineSession:
    """One connection to the engine: its event stream, and ``read`` for the containers."""

    #: The event types that mean "read again". Traefik follows container events only, so a
    #: container connected to a network after it started keeps its old address until some
    #: other container event; a network connect or disconnect is followed here too.
    EVENT_TYPES: tuple[str, ...] = ("container", "network")
    #: Read again this often even without an event (seconds; None: only on events).
    refresh: float | None = None

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http
        self.events: aiohttp.ClientResponse | None = None

    async def subscribe(self) -> None:
        filters = quote(json.dumps({"type": list(self.EVENT_TYPES)}))
        try:
            # No read timeout: the event stream stays open, quiet, until something happens.
            self.events = await self.http.get(f"/events?filters={filters}")
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            raise StoreUnavailable(str(error) or type(error).__name__) from error
        if self.events.status != 200:
            raise StoreUnavailable(f"GET /events: HTTP {self.events.status}")

    async def get(self, path: str) -> Any:
        try:
            async with self.http.get(path, timeout=aiohttp.ClientTimeout(total=_TIMEOUT)) as reply:
                if reply.status != 200:
                    raise StoreUnavailable(f"GET {path}: HTTP {reply.status}")
                return await reply.json(content_type=None)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as error:
            raise StoreUnavailable(f"GET {path}: {error or type(error).__name__}") from error

    async def read(self) -> list[Container]:
        listed = await self.get("/containers/json")
        containers = []
        for entry in listed if isinstance(listed, list) else []:
            path = f"/containers/{entry.get('Id') if isinstance(entry, dict) else None}/json"
            try:
                inspected = await self.get(path)
            except StoreUnavailable:
                continue  # gone between the list and the inspect; its "destroy" event follows
            try:
                containers.append(Container.from_inspect(inspected))
            except (AttributeError, KeyError, TypeError, ValueError) as error:
                raise SourceUnreadable(f"GET {path}: not a container as the Docker Engine API "
                                       f"describes it ({describe_error(error)})") from None
        return containers

    async def next_change(self, timeout: float | None) -> bool:
        assert self.events is not None
        polling = timeout is None and self.refresh is not None
        try:
            line = await asyncio.wait_for(self.events.content.readline(),
                                          self.refresh if polling else timeout)
        except TimeoutError:
            return polling  # time for the periodic re-read, or no change within the timeout
        except (aiohttp.ClientError, OSError) as error:
            raise StoreUnavailable(f"event stream: {error or type(error).__name__}") from error
        if not line:
            raise StoreUnavailable("the event stream ended")
        return True

    async def close(self) -> None:
        if self.events is not None:
            self.events.close()
        await self.http.close()
