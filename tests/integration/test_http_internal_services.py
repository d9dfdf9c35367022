"""Routers that name Switchyard's own services: api@internal, dashboard, ping, prometheus, noop."""

from __future__ import annotations

import http.client
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import LoopThread
from tests.mwkit import serve

DYNAMIC = """
http:
  routers:
    api: {rule: "PathPrefix(`/api`) || PathPrefix(`/dashboard`)", service: api@internal}
    ping: {rule: "PathPrefix(`/health`)", service: ping@internal}
    prom: {rule: "PathPrefix(`/scrape`)", service: prometheus@internal}
    noop: {rule: "Path(`/noop`)", service: noop@internal}
    unknown: {rule: "Path(`/unknown`)", service: nosuch@internal}
"""


def _get(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


@pytest.fixture
def ports(loop_thread: LoopThread, tmp_path: Path) -> Iterator[dict[str, int]]:
    with serve(loop_thread, tmp_path, DYNAMIC, api={"insecure": True}, ping={"manualRouting": True},
               metrics={"prometheus": {"manualRouting": True}}) as found:
        yield found


def test_the_api_and_the_dashboard_through_an_ordinary_router(ports: dict[str, int]) -> None:
    status, _, body = _get(ports["web"], "/api/http/routers")
    assert status == 200
    names = {router["name"] for router in json.loads(body)}
    assert {"api@file", "ping@file", "noop@file"} <= names
    status, headers, body = _get(ports["web"], "/dashboard/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")


def test_ping_answers_ok_for_any_path_and_method_as_traefik(ports: dict[str, int]) -> None:
    assert _get(ports["web"], "/health")[::2] == (200, b"OK")
    assert _get(ports["web"], "/health/deep", "POST")[::2] == (200, b"OK")


def test_prometheus_behind_a_router(ports: dict[str, int]) -> None:
    status, headers, body = _get(ports["web"], "/scrape")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    assert b"# TYPE" in body


def test_noop_is_a_teapot(ports: dict[str, int]) -> None:
    status, headers, body = _get(ports["web"], "/noop")
    assert (status, body, headers.get("Content-Length")) == (418, b"", "0")


def test_an_unknown_internal_service_disables_only_its_router(ports: dict[str, int]) -> None:
    assert _get(ports["web"], "/unknown")[0] == 404
    routers = {r["name"]: r for r in json.loads(_get(ports["api"], "/api/http/routers")[2])}
    assert routers["unknown@file"]["error"] == ["unknown internal service nosuch@internal"]
    assert routers["unknown@file"]["status"] == "disabled"


def test_services_that_are_not_enabled_are_named_as_traefik_does(
        loop_thread: LoopThread, tmp_path: Path) -> None:
    with serve(loop_thread, tmp_path, DYNAMIC) as found:
        assert _get(found["web"], "/health")[0] == 404
        assert _get(found["web"], "/noop")[0] == 418
    # The same file with only the API on, read through the API it publishes.
    with serve(loop_thread, tmp_path, DYNAMIC, api={"insecure": True}) as found:
        routers = {r["name"]: r for r in json.loads(_get(found["api"], "/api/http/routers")[2])}
        assert routers["ping@file"]["error"] == ["ping is not enabled"]
        assert routers["prom@file"]["error"] == ["prometheus is not enabled"]


def test_the_sockets_are_private_and_removed_on_stop(loop_thread: LoopThread,
                                                     tmp_path: Path) -> None:
    from tests.harness import start_router, stop_router
    app = start_router(loop_thread, tmp_path, DYNAMIC, entrypoints={"web": "127.0.0.1:0"},
                       ping={"manualRouting": True})
    directory = app._internal_dir
    assert directory is not None and os.stat(directory).st_mode & 0o777 == 0o700
    stop_router(loop_thread, app)
    assert not os.path.exists(directory)
