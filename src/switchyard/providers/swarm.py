"""The Swarm provider: TCP routing from Swarm services' labels, to their running tasks."""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from switchyard.config.durations import Duration
from switchyard.config.loader import ConfigLoadError
from switchyard.providers.base import ProviderUpdate
from switchyard.providers.docker import (
    Container,
    DockerOptions,
    Engine,
    EngineSession,
    compile_options,
    config_from_containers,
)
from switchyard.providers.flatkeys import ci_get, parse_bool
from switchyard.providers.kv import RemoteProvider, SourceUnreadable, StoreUnavailable

__all__ = ["SwarmOptions", "containers_from_swarm", "swarm_provider"]

NAME = "swarm"


class SwarmOptions(DockerOptions):
    """``providers.swarm``: the Docker options plus Traefik's polling interval."""

    refresh_seconds: Duration = 15.0


def swarm_provider(options: SwarmOptions) -> RemoteProvider[list[Container]]:
    """The provider named ``swarm``; ConfigLoadError for options it cannot use."""
    keep, rule = compile_options(options, NAME)
    if options.refresh_seconds <= 0:
        raise ConfigLoadError("providers.swarm.refreshSeconds: must be more than 0, e.g. 15s")
    engine = Engine.from_endpoint(options.endpoint, NAME)

    def session(http: Any) -> SwarmSession:
        made = SwarmSession(http)
        made.refresh = options.refresh_seconds
        return made

    async def open_session() -> SwarmSession:
        return await engine.connect(session)

    def to_update(containers: list[Container]) -> ProviderUpdate:
        config, issues = config_from_containers(containers, options, keep, provider=NAME,
                                                default_rule=rule)
        return ProviderUpdate(NAME, config, issues)

    return RemoteProvider(NAME, f"swarm {options.endpoint}", open_session, to_update,
                          options.watch)


class SwarmSession(EngineSession):
    """The services, their tasks and the swarm networks, re-read on events and every refresh.

    Traefik polls every ``refreshSeconds``; Switchyard also re-reads when the engine reports a
    service or container event, so a new task or a scale change shows within a moment.
    """

    EVENT_TYPES = ("service", "container")
    #: After an event, how long tasks are re-read without one: a task is reported running
    #: a moment after its container's start event, and that change has no event of its own.
    SETTLE = 3.0
    SETTLE_STEP = 0.25

    _settle_until = 0.0

    async def next_change(self, timeout: float | None) -> bool:
        loop = asyncio.get_running_loop()
        if timeout is None and loop.time() < self._settle_until:
            await super().next_change(self.SETTLE_STEP)
            return True
        changed = await super().next_change(timeout)
        if changed:
            self._settle_until = loop.time() + self.SETTLE
        return changed

    async def read(self) -> list[Container]:
        services = await self.get("/services")
        networks = await self.get("/networks?filters=" + quote(json.dumps({"scope": ["swarm"]})))
        tasks = await self.get("/tasks?filters=" + quote(json.dumps(
            {"desired-state": ["running"]})))
        try:
            return containers_from_swarm(services, networks, tasks)
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            raise SourceUnreadable(f"swarm services and tasks are not in the Docker Engine "
                                   f"API's shape ({type(error).__name__}: {error})") from None


def containers_from_swarm(services: Any, networks: Any, tasks: Any) -> list[Container]:
    """What the label decoder needs, as Traefik builds it: one entry per running task.

    A service labelled ``traefik.swarm.lbswarm=true`` is one entry at its virtual IPs
    instead (Swarm balances over the tasks). Only addresses on swarm-scoped networks count,
    and a task with none is left out.
    """
    if not isinstance(services, list) or not isinstance(networks, list) or \
            not isinstance(tasks, list):
        raise StoreUnavailable("the engine answered a list request with something else")
    names = {str(n["Id"]): str(n["Name"]) for n in networks if isinstance(n, dict)}
    running: dict[str, list[Mapping[str, Any]]] = {}
    for task in tasks:
        if (task.get("Status") or {}).get("State") == "running":
            running.setdefault(str(task.get("ServiceID", "")), []).append(task)
    found: list[Container] = []
    for service in services:
        spec = service.get("Spec") or {}
        name = str(spec.get("Name", ""))
        labels = {str(k): str(v) for k, v in (spec.get("Labels") or {}).items()}
        if _lb_swarm(labels):
            addresses = {names[vip["NetworkID"]]: _ip(vip.get("Addr", ""))
                         for vip in (service.get("Endpoint") or {}).get("VirtualIPs") or []
                         if vip.get("NetworkID") in names and vip.get("Addr")}
            if addresses:
                found.append(Container(str(service.get("ID", "")), name, labels, addresses, (),
                                       service=name))
            continue
        global_mode = "Global" in (spec.get("Mode") or {})
        entries = []
        for task in sorted(running.get(str(service.get("ID", "")), []),
                           key=lambda t: int(t.get("Slot") or 0)):
            addresses = {names[a["Network"]["ID"]]: _ip(a["Addresses"][0])
                         for a in task.get("NetworksAttachments") or []
                         if a.get("Network", {}).get("ID") in names and a.get("Addresses")}
            if not addresses:
                continue
            suffix = task.get("ID") if global_mode else task.get("Slot")
            entries.append(Container(str(task.get("ID", "")), f"{name}.{suffix}", labels,
                                     addresses, (), service=name))
        found.extend(entries)
    return found


def _lb_swarm(labels: Mapping[str, str]) -> bool:
    for key in ("traefik.swarm.lbswarm", "traefik.docker.lbswarm"):
        label = ci_get(labels, key)
        if label is not None:
            return bool(parse_bool(label[1]))
    return False


def _ip(cidr: str) -> str:
    """``10.0.1.5/24`` -> ``10.0.1.5``."""
    return str(ipaddress.ip_interface(cidr).ip)
