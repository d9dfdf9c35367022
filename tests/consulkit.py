"""A stand-in Consul agent: the HTTP API calls the Consul providers make, on 127.0.0.1.

No Consul server can be installed on these machines (no Debian or PyPI package carries
one), so the tests run the providers against this: the catalog, health and KV endpoints
answering in the shapes Consul's API documentation gives (field names, X-Consul-Index),
with blocking queries that hold until the index passes the one asked for or ``wait``
ends. Each table (services, checks, kv) keeps the raft index of its last write, as Consul
does, so a KV write does not wake a catalog watch.

The state lives outside the server: ``stop`` and ``start`` again (on the same port) is
Consul going away and coming back with its data. Tests change the state from any thread.
"""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.harness import LoopThread

__all__ = ["ConsulStandIn", "running_consul"]

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def _wait_seconds(text: str) -> float:
    """Consul's ``wait`` (``5s``, ``100ms``; default 5 minutes, at most 10)."""
    found = _DURATION.match(text or "")
    if found is None:
        return 300.0
    return min(float(found[1]) * _UNITS[found[2]], 600.0)


@dataclass
class _Registration:
    node: str
    service: dict[str, Any]
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)


class ConsulStandIn:
    """Consul's catalog, health and KV HTTP API over an in-memory state."""

    def __init__(self, datacenter: str = "dc1", token: str = "",
                 tls: ssl.SSLContext | None = None) -> None:
        self.datacenter = datacenter
        self.token = token
        self.tls = tls
        self.port = 0
        self.requests: list[str] = []
        self.nodes: dict[str, dict[str, Any]] = {}
        self.registrations: dict[tuple[str, str], _Registration] = {}
        self.kv: dict[str, dict[str, Any]] = {}
        self.raft_index = 10
        self.tables = {"services": 10, "checks": 10, "kv": 10}
        self.lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.changed: asyncio.Condition | None = None
        self.runner: web.AppRunner | None = None
        self.open_queries = 0

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.changed = asyncio.Condition()
        app = web.Application()
        app.router.add_get("/v1/catalog/services", self.catalog_services)
        app.router.add_get("/v1/catalog/service/{name}", self.catalog_service)
        app.router.add_get("/v1/health/service/{name}", self.health_service)
        app.router.add_get("/v1/health/state/{state}", self.health_state)
        app.router.add_get("/v1/kv/{key:.*}", self.kv_get)
        app.router.add_put("/v1/kv/{key:.*}", self.kv_put_request)
        app.router.add_delete("/v1/kv/{key:.*}", self.kv_delete_request)
        app.router.add_get("/v1/status/leader", self.leader)
        self.runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port, reuse_address=True,
                           ssl_context=self.tls)
        await site.start()
        self.port = int(self.runner.addresses[0][1])

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    # --- changing the state (from any thread) -------------------------------------------

    def _write(self, *tables: str) -> None:
        """Call with the lock held: one raft write touching ``tables``."""
        self.raft_index += 1
        for table in tables:
            self.tables[table] = self.raft_index
        if self.loop is not None and self.changed is not None:
            asyncio.run_coroutine_threadsafe(self._notify(), self.loop)

    async def _notify(self) -> None:
        assert self.changed is not None
        async with self.changed:
            self.changed.notify_all()

    def register(self, name: str, port: int, *, tags: Iterable[str] = (), node: str = "node-1",
                 node_address: str = "127.0.0.1", address: str = "", service_id: str = "",
                 status: str = "passing") -> str:
        """Register an instance of service ``name`` with one check in ``status``; its ID."""
        service_id = service_id or name
        with self.lock:
            if node not in self.nodes:
                self.nodes[node] = {
                    "ID": str(uuid.uuid5(uuid.NAMESPACE_DNS, node)), "Node": node,
                    "Address": node_address, "Datacenter": self.datacenter,
                    "TaggedAddresses": {"lan": node_address, "wan": node_address},
                    "Meta": {"consul-network-segment": ""},
                    "CreateIndex": self.raft_index + 1, "ModifyIndex": self.raft_index + 1}
            registration = _Registration(node, {
                "ID": service_id, "Service": name, "Tags": list(tags), "Address": address,
                "TaggedAddresses": {}, "Meta": {}, "Port": port,
                "Weights": {"Passing": 1, "Warning": 1}, "EnableTagOverride": False,
                "Proxy": {"Mode": "", "MeshGateway": {}, "Expose": {}}, "Connect": {},
                "PeerName": "", "CreateIndex": self.raft_index + 1,
                "ModifyIndex": self.raft_index + 1})
            registration.checks[f"service:{service_id}"] = self._check(
                node, f"service:{service_id}", f"Service '{name}' check", status,
                registration.service)
            self.registrations[node, service_id] = registration
            self._write("services", "checks")
        return service_id

    def _check(self, node: str, check_id: str, name: str, status: str,
               service: dict[str, Any] | None) -> dict[str, Any]:
        return {"Node": node, "CheckID": check_id, "Name": name, "Status": status,
                "Notes": "", "Output": "", "ServiceID": service["ID"] if service else "",
                "ServiceName": service["Service"] if service else "",
                "ServiceTags": list(service["Tags"]) if service else [], "Type": "ttl",
                "Interval": "", "Timeout": "", "ExposedPort": 0, "Definition": {},
                "CreateIndex": self.raft_index + 1, "ModifyIndex": self.raft_index + 1}

    def set_status(self, service_id: str, status: str, node: str = "node-1") -> None:
        """Every check of one instance now reports ``status`` (passing, warning, critical)."""
        with self.lock:
            for check in self.registrations[node, service_id].checks.values():
                check["Status"] = status
                check["ModifyIndex"] = self.raft_index + 1
            self._write("checks")

    def set_tags(self, service_id: str, tags: Iterable[str], node: str = "node-1") -> None:
        with self.lock:
            service = self.registrations[node, service_id].service
            service["Tags"] = list(tags)
            service["ModifyIndex"] = self.raft_index + 1
            self._write("services")

    def deregister(self, service_id: str, node: str = "node-1") -> None:
        with self.lock:
            del self.registrations[node, service_id]
            self._write("services", "checks")

    def kv_put(self, key: str, value: str | bytes) -> None:
        data = value.encode() if isinstance(value, str) else value
        with self.lock:
            entry = self.kv.get(key)
            index = self.raft_index + 1
            self.kv[key] = {"LockIndex": 0, "Key": key, "Flags": 0,
                            "Value": base64.b64encode(data).decode() if data else None,
                            "CreateIndex": entry["CreateIndex"] if entry else index,
                            "ModifyIndex": index}
            self._write("kv")

    def kv_delete(self, key: str, recurse: bool = False) -> None:
        with self.lock:
            for name in [k for k in self.kv if k == key or (recurse and k.startswith(key))]:
                del self.kv[name]
            self._write("kv")

    # --- answering ----------------------------------------------------------------------

    async def _answer(self, request: web.Request, tables: tuple[str, ...],
                      body: Any) -> web.StreamResponse:
        """Check the token and datacenter, block if asked to, then answer ``body()``."""
        self.requests.append(request.path_qs)
        if self.token and request.headers.get("X-Consul-Token") != self.token:
            return web.Response(status=403, text="ACL not found")
        if request.query.get("dc", self.datacenter) != self.datacenter:
            return web.Response(status=500, text="No path to datacenter")
        wanted = int(request.query.get("index", "0") or 0)
        if wanted > 0 and self.changed is not None:
            deadline = asyncio.get_running_loop().time() + _wait_seconds(
                request.query.get("wait", ""))
            self.open_queries += 1
            try:
                async with self.changed:
                    while max(self.tables[t] for t in tables) <= wanted:
                        left = deadline - asyncio.get_running_loop().time()
                        if left <= 0:
                            break
                        try:
                            await asyncio.wait_for(self.changed.wait(), left)
                        except TimeoutError:
                            break
            finally:
                self.open_queries -= 1
        with self.lock:
            index = max(self.tables[t] for t in tables)
            status, payload = body()
        headers = {"X-Consul-Index": str(index), "X-Consul-Knownleader": "true",
                   "X-Consul-Lastcontact": "0", "X-Consul-Effective-Consistency": "leader"}
        if payload is None:
            return web.Response(status=status, headers=headers)
        return web.json_response(payload, status=status, headers=headers)

    def _instances(self, name: str, tag: str = "") -> list[_Registration]:
        return [r for r in sorted(self.registrations.values(), key=lambda r: (r.node,
                                                                            r.service["ID"]))
                if r.service["Service"] == name and (not tag or tag in r.service["Tags"])]

    async def catalog_services(self, request: web.Request) -> web.StreamResponse:
        def body() -> tuple[int, Any]:
            services: dict[str, set[str]] = {"consul": set()}
            for registration in self.registrations.values():
                services.setdefault(registration.service["Service"], set()).update(
                    registration.service["Tags"])
            return 200, {name: sorted(tags) for name, tags in sorted(services.items())}
        return await self._answer(request, ("services",), body)

    async def catalog_service(self, request: web.Request) -> web.StreamResponse:
        name, tag = request.match_info["name"], request.query.get("tag", "")

        def body() -> tuple[int, Any]:
            entries = []
            for registration in self._instances(name, tag):
                node, service = self.nodes[registration.node], registration.service
                entries.append({
                    "ID": node["ID"], "Node": node["Node"], "Address": node["Address"],
                    "Datacenter": node["Datacenter"], "TaggedAddresses": node["TaggedAddresses"],
                    "NodeMeta": node["Meta"], "ServiceKind": "", "ServiceID": service["ID"],
                    "ServiceName": service["Service"], "ServiceTags": service["Tags"],
                    "ServiceAddress": service["Address"],
                    "ServiceTaggedAddresses": service["TaggedAddresses"],
                    "ServiceWeights": service["Weights"], "ServiceMeta": service["Meta"],
                    "ServicePort": service["Port"],
                    "ServiceEnableTagOverride": service["EnableTagOverride"],
                    "ServiceProxy": service["Proxy"], "ServiceConnect": service["Connect"],
                    "CreateIndex": service["CreateIndex"], "ModifyIndex": service["ModifyIndex"]})
            return 200, entries
        return await self._answer(request, ("services",), body)

    async def health_service(self, request: web.Request) -> web.StreamResponse:
        name, tag = request.match_info["name"], request.query.get("tag", "")
        passing = "passing" in request.query

        def body() -> tuple[int, Any]:
            entries = []
            for registration in self._instances(name, tag):
                checks = [self._serf_health(registration.node),
                          *registration.checks.values()]
                if passing and any(c["Status"] != "passing" for c in checks):
                    continue
                entries.append({"Node": self.nodes[registration.node],
                                "Service": registration.service, "Checks": checks})
            return 200, entries
        return await self._answer(request, ("services", "checks"), body)

    def _serf_health(self, node: str) -> dict[str, Any]:
        """The node's own check, which every Consul node has."""
        check = self._check(node, "serfHealth", "Serf Health Status", "passing", None)
        check.update(Output="Agent alive and reachable", Type="", CreateIndex=10,
                     ModifyIndex=10)
        return check

    async def health_state(self, request: web.Request) -> web.StreamResponse:
        state = request.match_info["state"]

        def body() -> tuple[int, Any]:
            checks = [self._serf_health(node) for node in sorted(self.nodes)]
            for registration in self.registrations.values():
                checks.extend(registration.checks.values())
            return 200, [c for c in checks if state == "any" or c["Status"] == state]
        return await self._answer(request, ("checks",), body)

    async def kv_get(self, request: web.Request) -> web.StreamResponse:
        key = request.match_info["key"]
        recurse = "recurse" in request.query

        def body() -> tuple[int, Any]:
            found = [self.kv[k] for k in sorted(self.kv)
                     if (k.startswith(key) if recurse else k == key)]
            return (200, found) if found else (404, None)
        return await self._answer(request, ("kv",), body)

    async def kv_put_request(self, request: web.Request) -> web.Response:
        self.requests.append(f"PUT {request.path_qs}")
        self.kv_put(request.match_info["key"], await request.read())
        return web.json_response(True)

    async def kv_delete_request(self, request: web.Request) -> web.Response:
        self.requests.append(f"DELETE {request.path_qs}")
        self.kv_delete(request.match_info["key"], "recurse" in request.query)
        return web.json_response(True)

    async def leader(self, request: web.Request) -> web.Response:
        return web.json_response(f"127.0.0.1:{self.port}")


@contextmanager
def running_consul(**options: Any) -> Iterator[tuple[ConsulStandIn, LoopThread]]:
    """A stand-in on its own loop (Consul is another process; Switchyard blocks on it)."""
    loop = LoopThread()
    consul = ConsulStandIn(**options)
    loop.run(consul.start())
    try:
        yield consul, loop
    finally:
        loop.run(consul.stop())
        loop.stop()
