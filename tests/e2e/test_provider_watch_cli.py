"""`switchyard run` keeps watching its file after a control character broke it (issue 13)."""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_cli_run import start
from tests.harness import Backends, connect, free_port, greeting_name, wait_for_port

STATIC = """
entryPoints:
  plain: {{address: "127.0.0.1:0"}}
  traefik: {{address: "127.0.0.1:{api}"}}
api: {{insecure: true}}
metrics: {{prometheus: {{}}}}
providers:
  providersThrottleDuration: 20ms
  file: {{filename: "{dynamic}"}}
log: {{level: INFO}}
"""

ROUTES = """
tcp:
  routers:
    all: {{rule: "HostSNI(`*`)", service: app}}
  services:
    app: {{loadBalancer: {{servers: [{{address: "127.0.0.1:{port}"}}]}}}}
"""


def eventually(check: Callable[[], Any], what: str, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_the_command_reports_an_x18_file_keeps_routing_and_applies_the_next_edit(
        backends: Backends, tmp_path: Path) -> None:
    first, second = backends.whoami("first"), backends.whoami("second")
    dynamic, static = tmp_path / "dynamic.yml", tmp_path / "traefik.yml"
    dynamic.write_text(ROUTES.format(port=first))
    api = free_port()
    static.write_text(STATIC.format(api=api, dynamic=dynamic))
    proc, ports, _ = start(static)
    base = f"http://127.0.0.1:{api}"

    def get(path: str) -> str:
        with urllib.request.urlopen(base + path, timeout=5) as response:
            return str(response.read().decode())

    def provider_errors() -> dict[str, str]:
        return dict(json.loads(get("/api/overview"))["switchyard"]["config"]["providerErrors"])

    def failures_metric() -> float:
        return next(sample.value for family in text_string_to_metric_families(get("/metrics"))
                    for sample in family.samples
                    if sample.name == "traefik_config_reloads_failure_total")

    def backend() -> str:
        try:
            with connect(ports["plain"]) as conn:
                return greeting_name(conn)
        except (OSError, AssertionError):
            return ""

    try:
        wait_for_port(api)
        assert backend() == "first"
        assert failures_metric() == 0

        dynamic.write_bytes(b"tcp:\n  routers: {}\n\x18\n")

        eventually(lambda: "file" in provider_errors(), "the error in /api/overview")
        assert str(dynamic) in provider_errors()["file"]
        assert failures_metric() >= 1
        assert backend() == "first"

        dynamic.write_text(ROUTES.format(port=second))
        eventually(lambda: backend() == "second", "the valid edit after the broken one")
        assert provider_errors() == {}
    finally:
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=15)
    assert proc.returncode == 0
    assert "stopped watching" not in rest
    assert 'provider "file": configuration not applied' in rest
