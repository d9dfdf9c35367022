"""The kubernetesCRD provider watching an API server: list, watch, 410 Gone, token, CA.

No API server runs on these machines. The stand-in below answers HTTPS on loopback the way
kube-apiserver does for the calls the provider makes: collection lists carrying
``metadata.resourceVersion``, watch streams of one JSON event a line, and the in-stream
``ERROR`` event with a ``410 Expired`` Status an expired resource version gets. The shapes
follow the Kubernetes API reference; they were not captured from a live server.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web

from switchyard.config.loader import static_from_dict
from switchyard.providers.kubeapi import RESOURCES
from switchyard.server import Switchyard
from tests.harness import Backends, LoopThread, connect, greeting_name, stop_router

TOKEN = "recorded-token"
PATHS = {(f"/apis/{group}/{version}" if group else f"/api/{version}") + f"/{plural}": kind
         for group, version, kind, plural in RESOURCES}


def ingress_route() -> dict[str, Any]:
    return {"apiVersion": "traefik.io/v1alpha1", "kind": "IngressRouteTCP",
            "metadata": {"name": "db", "namespace": "apps", "resourceVersion": "1001",
                         "labels": {"team": "data"}},
            "spec": {"entryPoints": ["ep"],
                     "routes": [{"match": "HostSNI(`*`)",
                                 "services": [{"name": "db", "port": "pg"}]}]}}


def service() -> dict[str, Any]:
    return {"metadata": {"name": "db", "namespace": "apps", "resourceVersion": "1002"},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10",
                     "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]}}


def endpoint_slice(port: int, version: str) -> dict[str, Any]:
    return {"metadata": {"name": "db-x7k2p", "namespace": "apps", "resourceVersion": version,
                         "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
            "ports": [{"name": "pg", "port": port, "protocol": "TCP"}]}


class RecordedAPI:
    """Lists and watch streams per resource path; the test pushes watch events."""

    def __init__(self) -> None:
        self.items: dict[str, list[dict[str, Any]]] = {kind: [] for kind in PATHS.values()}
        self.version = 1000
        self.streams: dict[str, asyncio.Queue[dict[str, Any] | None]] = {}
        self.requests: list[tuple[str, str, str]] = []  # (kind, "list" | "watch", version)
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"kind": "Status", "apiVersion": "v1", "metadata": {},
                                      "status": "Failure", "message": "Unauthorized",
                                      "reason": "Unauthorized", "code": 401}, status=401)
        kind = PATHS.get(request.path)
        if kind is None:
            return web.json_response({"kind": "Status", "code": 404}, status=404)
        if request.query.get("watch") != "true":
            self.requests.append((kind, "list", ""))
            return web.json_response({"kind": f"{kind}List", "apiVersion": "v1",
                                      "metadata": {"resourceVersion": str(self.version)},
                                      "items": self.items[kind]})
        self.requests.append((kind, "watch", request.query.get("resourceVersion", "")))
        queue = self.streams[kind] = asyncio.Queue()
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        while (event := await queue.get()) is not None:
            await response.write(json.dumps(event).encode() + b"\n")
        return response

    async def start(self, ca: trustme.CA) -> None:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self.runner.setup()
        server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(server_context)
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=server_context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def push(self, kind: str, event: dict[str, Any] | None) -> None:
        await self.streams[kind].put(event)

    async def stop(self) -> None:
        for queue in self.streams.values():
            await queue.put(None)
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[RecordedAPI, LoopThread, str]]:
    loop = LoopThread()
    recorded = RecordedAPI()
    ca = trustme.CA()
    ca_file = tmp_path / "ca.crt"
    ca.cert_pem.write_to_path(str(ca_file))
    loop.run(recorded.start(ca))
    yield recorded, loop, str(ca_file)
    loop.run(recorded.stop())
    loop.stop()


def eventually(check: Callable[[], bool], within: float) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"not true within {within} s"
        time.sleep(0.02)


def test_objects_are_listed_then_watched_and_a_410_lists_again(
        api: tuple[RecordedAPI, LoopThread, str], backends: Backends) -> None:
    recorded, api_loop, ca_file = api
    first, second = backends.whoami("first"), backends.whoami("second")
    recorded.items.update({"IngressRouteTCP": [ingress_route()], "Service": [service()],
                           "EndpointSlice": [endpoint_slice(first, "1003")]})
    loop = LoopThread()
    static, _ = static_from_dict({
        "entryPoints": {"ep": {"address": "127.0.0.1:0"}},
        "providers": {"providersThrottleDuration": "20ms", "kubernetesCRD": {
            "endpoint": f"https://127.0.0.1:{recorded.port}", "token": TOKEN,
            "certAuthFilePath": ca_file, "labelSelector": "team=data"}},
    }, "test")
    app = Switchyard(static)
    loop.run(app.start())
    try:
        def backend() -> str:
            try:
                with connect(app.entrypoints["ep"].port, timeout=0.5) as conn:
                    return greeting_name(conn)
            except (OSError, AssertionError):
                return ""

        assert backend() == "first"
        eventually(lambda: len(recorded.streams) == len(PATHS), 5)
        # Every watch starts from the version of its list.
        assert {(k, v) for k, kind, v in recorded.requests if kind == "watch"} == {
            (kind, "1000") for kind in PATHS.values()}

        # An event on the watch: the slice now points to the second backend.
        api_loop.run(recorded.push("EndpointSlice", {
            "type": "MODIFIED", "object": endpoint_slice(second, "1004")}))
        eventually(lambda: backend() == "second", 2)

        # The version expired: the stream says 410 Gone, the slices are listed again.
        recorded.items["EndpointSlice"] = [endpoint_slice(first, "2000")]
        recorded.version = 2000
        api_loop.run(recorded.push("EndpointSlice", {"type": "ERROR", "object": {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "too old resource version: 1004 (1999)", "reason": "Expired",
            "code": 410}}))
        eventually(lambda: backend() == "first", 2)
        lists = [v for k, kind, v in recorded.requests if k == "EndpointSlice" and kind == "list"]
        assert len(lists) >= 2  # at start, and after the 410
        eventually(lambda: ("EndpointSlice", "watch", "2000") in recorded.requests, 2)

        # A deleted IngressRouteTCP takes its router away.
        api_loop.run(recorded.push("IngressRouteTCP", {"type": "DELETED",
                                                       "object": ingress_route()}))
        eventually(lambda: not app.runtime.routers, 2)
    finally:
        stop_router(loop, app)
        loop.run(app.shutdown())
        loop.stop()


def test_a_wrong_token_is_the_providers_error_and_names_what_to_check(
        api: tuple[RecordedAPI, LoopThread, str]) -> None:
    recorded, _, ca_file = api
    static, _ = static_from_dict({
        "entryPoints": {"ep": {"address": "127.0.0.1:0"}},
        "providers": {"kubernetesCRD": {"endpoint": f"https://127.0.0.1:{recorded.port}",
                                        "token": "wrong", "certAuthFilePath": ca_file}},
    }, "test")
    loop = LoopThread()
    app = Switchyard(static)
    loop.run(app.start())
    try:
        assert "HTTP 401" in app.provider_errors["kubernetescrd"]
        assert "token" in app.provider_errors["kubernetescrd"]
    finally:
        stop_router(loop, app)
        loop.run(app.shutdown())
        loop.stop()
