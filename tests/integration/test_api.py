"""The REST API against Traefik's documented JSON shapes, with real routers and connections."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from switchyard.api.handlers import go_duration, go_json
from switchyard.config.dynamic import HealthCheck, RouterTLS
from switchyard.server import Switchyard
from tests.harness import Backends, LoopThread, connect, greeting_name, start_router, stop_router

DYNAMIC = """
tcp:
  routers:
    sni-a:
      rule: "HostSNI(`a.test`)"
      service: app
      tls: {{passthrough: true}}
    catch-all:
      rule: "HostSNI(`*`)"
      service: app
      middlewares: [local-only, limit]
    broken:
      rule: "HostSNI(`needs.tls.test`)"
      service: app
    orphan:
      rule: "HostSNI(`*`)"
      service: missing
      entryPoints: [ep, nowhere]
    team/db:
      rule: "HostSNI(`db.test`)"
      service: app
      priority: 5
      tls: {{passthrough: true}}
  middlewares:
    local-only:
      ipAllowList:
        sourceRange: ["127.0.0.1/32"]
    limit:
      inFlightConn:
        amount: 10
    unused:
      ipWhiteList:
        sourceRange: ["10.0.0.0/8"]
  services:
    app:
      loadBalancer:
        servers:
          - address: "127.0.0.1:{port}"
    split:
      weighted:
        services:
          - name: app
            weight: 3
"""

TRAFFIC_KEYS = {"openConnections", "totalConnections", "bytesIn", "bytesOut"}


@dataclass
class Api:
    app: Switchyard
    port: int

    def get(self, path: str) -> tuple[int, dict[str, str], Any]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, dict(response.headers), json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), json.loads(error.read())

    def json(self, path: str) -> Any:
        status, _, body = self.get(path)
        assert status == 200, (path, status, body)
        return body


def internal_port(app: Switchyard) -> int:
    # The object start_internal returned; Switchyard keeps it to close it on shutdown.
    return int(app.internal_servers[0].port)


@pytest.fixture
def api(loop_thread: LoopThread, backends: Backends, tmp_path: Path) -> Iterator[Api]:
    port = backends.whoami("app")
    app = start_router(loop_thread, tmp_path, DYNAMIC.format(port=port),
                       entrypoints={"ep": "127.0.0.1:0", "traefik": "127.0.0.1:0"},
                       api={"insecure": True})
    try:
        yield Api(app, internal_port(app))
    finally:
        stop_router(loop_thread, app)


def without_traffic(item: dict[str, Any]) -> dict[str, Any]:
    assert set(item.pop("traffic")) == TRAFFIC_KEYS
    item.pop("serverTraffic", None)
    return item


def test_tls_router_has_traefiks_router_fields_with_computed_priority(api: Api) -> None:
    router = without_traffic(api.json("/api/tcp/routers/sni-a@file"))
    assert router == {
        "entryPoints": ["ep"],
        "rule": "HostSNI(`a.test`)",
        "service": "app",
        "priority": len("HostSNI(`a.test`)"),
        "priorityStr": str(len("HostSNI(`a.test`)")),
        "tls": {"passthrough": True},
        "status": "enabled",
        "using": ["ep"],
        "name": "sni-a@file",
        "provider": "file",
    }


def test_router_lists_qualified_middlewares_and_catch_all_priority(api: Api) -> None:
    router = api.json("/api/tcp/routers/catch-all@file")
    assert router["middlewares"] == ["local-only@file", "limit@file"]
    assert router["priority"] == -1 and router["priorityStr"] == "-1"
    assert "tls" not in router and "error" not in router


def test_broken_routers_are_disabled_or_warned_with_their_errors(api: Api) -> None:
    broken = api.json("/api/tcp/routers/broken@file")
    assert broken["status"] == "disabled"
    assert any("has HostSNI matcher, but no TLS on router" in e for e in broken["error"])
    orphan = api.json("/api/tcp/routers/orphan@file")
    assert orphan["status"] == "disabled"
    assert 'entryPoint "nowhere" doesn\'t exist' in orphan["error"]
    assert any('the service "missing@file" does not exist' in e for e in orphan["error"])
    assert orphan["using"] == ["ep"]


def test_router_name_with_a_slash_is_found_path_escaped(api: Api) -> None:
    router = api.json("/api/tcp/routers/team%2Fdb@file")
    assert router["name"] == "team/db@file"
    assert router["priority"] == 5


def test_go_json_writes_zero_passthrough_and_durations_as_go_text() -> None:
    # Traefik's RouterTLS.Passthrough has no omitempty; durations marshal as Go text.
    assert go_json(RouterTLS()) == {"passthrough": False}
    assert go_json(HealthCheck(interval=90, timeout=0.25)) == {"interval": "1m30s",
                                                               "timeout": "250ms"}
    assert [go_duration(s) for s in (0, 1.5, 3600, 0.000002)] == ["0s", "1.5s", "1h0m0s", "2µs"]


def test_unknown_elements_answer_404_with_traefiks_message(api: Api) -> None:
    for kind in ("routers", "services", "middlewares"):
        status, _, body = api.get(f"/api/tcp/{kind}/nope@file")
        assert status == 404
        assert body == {"message": f"{kind[:-1]} not found: nope@file"}


def test_load_balancer_service_shows_server_status_used_by_and_type(api: Api) -> None:
    service = without_traffic(api.json("/api/tcp/services/app@file"))
    assert service == {
        "loadBalancer": {"servers": [{"address": service["loadBalancer"]["servers"][0]["address"]}]},
        "status": "enabled",
        "usedBy": ["broken@file", "catch-all@file", "sni-a@file", "team/db@file"],
        "serverStatus": {service["loadBalancer"]["servers"][0]["address"]: "UP"},
        "name": "app@file",
        "provider": "file",
        "type": "loadbalancer",
    }


def test_unreferenced_service_stays_enabled_without_server_status(api: Api) -> None:
    split = without_traffic(api.json("/api/tcp/services/split@file"))
    assert split == {"weighted": {"services": [{"name": "app", "weight": 3}]},
                     "status": "enabled", "name": "split@file", "provider": "file",
                     "type": "weighted"}


def test_middlewares_have_type_used_by_and_their_settings(api: Api) -> None:
    items = {m["name"]: m for m in api.json("/api/tcp/middlewares")}
    assert items["local-only@file"] == {
        "ipAllowList": {"sourceRange": ["127.0.0.1/32"]}, "status": "enabled",
        "usedBy": ["catch-all@file"], "name": "local-only@file", "provider": "file",
        "type": "ipallowlist"}
    assert items["limit@file"]["inFlightConn"] == {"amount": 10}
    assert items["limit@file"]["type"] == "inflightconn"
    assert items["unused@file"]["type"] == "ipwhitelist" and "usedBy" not in items["unused@file"]


def test_search_and_status_filter_routers(api: Api) -> None:
    names = [r["name"] for r in api.json("/api/tcp/routers?search=A.TEST")]
    assert names == ["sni-a@file"]
    disabled = [r["name"] for r in api.json("/api/tcp/routers?status=DISABLED")]
    assert disabled == ["broken@file", "orphan@file"]
    assert [s["name"] for s in api.json("/api/tcp/services?search=spl")] == ["split@file"]


def test_service_and_middleware_name_filters_follow_traefik(api: Api) -> None:
    by_service = [r["name"] for r in api.json("/api/tcp/routers?serviceName=missing@file")]
    assert by_service == ["orphan@file"]
    by_middleware = [r["name"] for r in api.json("/api/tcp/routers?middlewareName=limit@file")]
    assert by_middleware == ["catch-all@file"]


def test_pagination_sets_next_page_and_rejects_bad_pages(api: Api) -> None:
    status, headers, first = api.get("/api/tcp/routers?per_page=2")
    assert status == 200 and len(first) == 2 and headers["X-Next-Page"] == "2"
    status, headers, last = api.get("/api/tcp/routers?per_page=2&page=3")
    assert [r["name"] for r in last] == ["team/db@file"] and headers["X-Next-Page"] == "1"
    assert api.get("/api/tcp/routers?page=4&per_page=2")[2]["message"].startswith(
        "invalid request: page: 4, per_page: 2;")  # Traefik's words, then what to write
    assert api.get("/api/tcp/routers?per_page=abc")[:1] == (400,)
    assert api.get("/api/tcp/routers?page=0")[2]["message"].startswith("invalid request: page: 0;")


def test_sort_by_priority_descending_breaks_ties_by_name(api: Api) -> None:
    routers = api.json("/api/tcp/routers?sortBy=priority&direction=desc")
    priorities = [r.get("priority", 0) for r in routers]
    assert priorities == sorted(priorities, reverse=True)
    assert routers[0]["name"] == "sni-a@file"


def test_overview_counts_totals_warnings_and_errors(api: Api) -> None:
    overview = api.json("/api/overview")
    assert overview["tcp"] == {
        "routers": {"total": 5, "warnings": 0, "errors": 2},
        "services": {"total": 2, "warnings": 0, "errors": 0},
        "middlewares": {"total": 3, "warnings": 0, "errors": 0},
    }
    # No HTTP router of the file's, but Traefik's own: api@internal and dashboard@internal.
    assert overview["http"]["routers"] == {"total": 2, "warnings": 0, "errors": 0}
    assert overview["features"] == {"tracing": "", "metrics": "", "accessLog": False,
                                    "hub": False}
    assert overview["providers"] == ["File"]
    assert overview["switchyard"]["config"]["reloads"] == 1


def test_rawdata_keys_runtime_infos_by_name_with_server_status(api: Api) -> None:
    raw = api.json("/api/rawdata")
    assert set(raw) == {"tcpRouters", "tcpMiddlewares", "tcpServices", "routers", "services",
                        "middlewares"}
    # The HTTP sections hold only what Traefik's internal provider publishes (api.insecure).
    assert set(raw["routers"]) == {"api@internal", "dashboard@internal"}
    assert set(raw["services"]) == {"api@internal", "dashboard@internal", "noop@internal"}
    assert set(raw["middlewares"]) == {"dashboard_redirect@internal",
                                       "dashboard_stripprefix@internal"}
    assert "name" not in raw["tcpRouters"]["sni-a@file"]
    assert raw["tcpRouters"]["sni-a@file"]["status"] == "enabled"
    assert list(raw["tcpServices"]["app@file"]["serverStatus"].values()) == ["UP"]


def test_entrypoints_version_and_entrypoint_404(api: Api) -> None:
    entrypoints = api.json("/api/entrypoints")
    assert [e["name"] for e in entrypoints] == ["ep", "traefik"]
    assert entrypoints[0]["transport"]["respondingTimeouts"]["readTimeout"] == "1m0s"
    assert set(entrypoints[0]["traffic"]) == TRAFFIC_KEYS and "traffic" not in entrypoints[1]
    assert api.json("/api/entrypoints/ep")["address"] == "127.0.0.1:0"
    status, _, body = api.get("/api/entrypoints/nope")
    assert (status, body) == (404, {"message": "entry point not found: nope"})
    version = api.json("/api/version")
    assert set(version) == {"Version", "Codename", "startDate"}


def test_live_connection_shows_in_connections_and_traffic(api: Api) -> None:
    ep_port = api.app.entrypoints["ep"].port
    with connect(ep_port) as conn:
        # TLS routers share the entry point, so the client must speak first.
        conn.sendall(b"hello")
        assert greeting_name(conn) == "app"
        assert conn.recv(5) == b"hello"
        [live] = [c for c in api.json("/api/tcp/connections")
                  if c["client"] == f"127.0.0.1:{conn.getsockname()[1]}"]
        assert live["router"] == "catch-all@file" and live["service"] == "app@file"
        assert live["state"] == "relaying" and live["entryPoint"] == "ep"
        assert live["bytesIn"] == 5 and live["bytesOut"] >= 5 and live["age"] >= 0
        router = api.json("/api/tcp/routers/catch-all@file")
        assert router["traffic"]["openConnections"] == 1
        assert router["traffic"]["bytesIn"] >= 5
    deadline = time.monotonic() + 5
    while api.json("/api/tcp/connections") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert api.json("/api/tcp/connections") == []


def test_ping_answers_ok(loop_thread: LoopThread, backends: Backends, tmp_path: Path) -> None:
    app = start_router(loop_thread, tmp_path, DYNAMIC.format(port=backends.whoami("app")),
                       entrypoints={"ep": "127.0.0.1:0", "traefik": "127.0.0.1:0"},
                       ping={})
    try:
        url = f"http://127.0.0.1:{internal_port(app)}"
        with urllib.request.urlopen(f"{url}/ping", timeout=5) as response:
            assert (response.status, response.read()) == (200, b"OK")
        # Only ping was asked for: the API is not served.
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(f"{url}/api/version", timeout=5)
        assert error.value.code == 404
    finally:
        stop_router(loop_thread, app)


def test_base_path_prefixes_api_and_dashboard(loop_thread: LoopThread, backends: Backends,
                                              tmp_path: Path) -> None:
    app = start_router(loop_thread, tmp_path, DYNAMIC.format(port=backends.whoami("app")),
                       entrypoints={"ep": "127.0.0.1:0", "traefik": "127.0.0.1:0"},
                       api={"insecure": True, "basePath": "/edge/"})
    try:
        api = Api(app, internal_port(app))
        assert api.json("/edge/api/version")["Version"]
        with urllib.request.urlopen(f"http://127.0.0.1:{api.port}/edge/", timeout=5) as page:
            assert page.url.endswith("/edge/dashboard/")
            assert b"<title>Switchyard dashboard</title>" in page.read()
    finally:
        stop_router(loop_thread, app)


def test_ping_answers_the_terminating_status_while_shutting_down(
        loop_thread: LoopThread, backends: Backends, tmp_path: Path) -> None:
    app = start_router(loop_thread, tmp_path, DYNAMIC.format(port=backends.whoami("app")),
                       entrypoints={"ep": "127.0.0.1:0", "traefik": "127.0.0.1:0"},
                       ping={"terminatingStatusCode": 204})
    url = f"http://127.0.0.1:{internal_port(app)}/ping"
    with connect(app.entrypoints["ep"].port) as live:  # keeps the drain going
        live.sendall(b"x")
        live.recv(1)
        stopping = asyncio.run_coroutine_threadsafe(app.shutdown(), loop_thread.loop)
        deadline = time.monotonic() + 5
        while True:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 204:
                    break
            assert time.monotonic() < deadline, "ping never reported the shutdown"
            time.sleep(0.05)
    stopping.result(15)
