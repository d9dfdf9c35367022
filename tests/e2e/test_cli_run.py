"""The `switchyard` command as a user runs it: a subprocess with YAML and TOML configs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Backends, connect, greeting_name, read_until_closed

LISTENING = re.compile(r'entryPoint "(\w+)" listening on .*:(\d+)')

STATIC_YAML = """
entryPoints:
  plain:
    address: "127.0.0.1:0"
providers:
  file:
    filename: "{dynamic}"
log:
  level: INFO
"""

DYNAMIC_YAML = """
tcp:
  routers:
    local:
      rule: "ClientIP(`127.0.0.0/8`)"
      service: app
      middlewares: [loopback]
    broken:
      rule: "HostSNI(`needs.tls.example`)"
      service: app
  middlewares:
    loopback:
      ipAllowList:
        sourceRange: ["127.0.0.1"]
  services:
    app:
      loadBalancer:
        servers:
          - address: "127.0.0.1:{port}"
"""

STATIC_TOML = """
[entryPoints.plain]
  address = "127.0.0.1:0"
[providers.file]
  filename = "{dynamic}"
[log]
  level = "INFO"
"""

DYNAMIC_TOML = """
[tcp.routers.local]
  rule = "ClientIP(`127.0.0.0/8`)"
  service = "app"
  middlewares = ["loopback"]
[tcp.routers.broken]
  rule = "HostSNI(`needs.tls.example`)"
  service = "app"
[tcp.middlewares.loopback.ipAllowList]
  sourceRange = ["127.0.0.1"]
[[tcp.services.app.loadBalancer.servers]]
  address = "127.0.0.1:{port}"
"""


def start(static: Path) -> tuple[subprocess.Popen[str], dict[str, int], list[str]]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "switchyard", "run", "-c", str(static)],
                            stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    ports: dict[str, int] = {}
    lines: list[str] = []
    deadline = time.monotonic() + 20
    while not ports and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        found = LISTENING.search(line)
        if found:
            ports[found.group(1)] = int(found.group(2))
    if not ports:
        proc.kill()
        pytest.fail("switchyard did not start:\n" + "".join(lines))
    return proc, ports, lines


@pytest.fixture(params=["yaml", "toml"])
def running(request: pytest.FixtureRequest, backends: Backends,
            tmp_path: Path) -> Iterator[tuple[int, list[str]]]:
    port = backends.whoami("app")
    if request.param == "yaml":
        dynamic, static = tmp_path / "dynamic.yml", tmp_path / "traefik.yml"
        dynamic.write_text(DYNAMIC_YAML.format(port=port))
        static.write_text(STATIC_YAML.format(dynamic=dynamic))
    else:
        dynamic, static = tmp_path / "dynamic.toml", tmp_path / "traefik.toml"
        dynamic.write_text(DYNAMIC_TOML.format(port=port))
        static.write_text(STATIC_TOML.format(dynamic=dynamic))
    proc, ports, lines = start(static)
    try:
        yield ports["plain"], lines
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


def test_routes_through_the_command_and_disables_only_the_bad_router(
        running: tuple[int, list[str]]) -> None:
    port, lines = running
    with connect(port) as conn:
        assert greeting_name(conn) == "app"
        conn.sendall(b"e2e")
        assert conn.recv(3) == b"e2e"
    log = "".join(lines)
    assert 'router "broken@file"' in log
    assert "no TLS on router" in log


def test_sigterm_stops_accepting_and_exits_cleanly(backends: Backends, tmp_path: Path) -> None:
    port = backends.whoami("app")
    dynamic, static = tmp_path / "dynamic.yml", tmp_path / "traefik.yml"
    dynamic.write_text(DYNAMIC_YAML.format(port=port))
    static.write_text(STATIC_YAML.format(dynamic=dynamic))
    proc, ports, _ = start(static)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    with pytest.raises(OSError):
        read_until_closed(connect(ports["plain"]))


def test_json_logs_go_to_log_file_path(backends: Backends, tmp_path: Path) -> None:
    import json

    from tests.harness import free_port, wait_for_port

    dynamic = tmp_path / "dynamic.yml"
    dynamic.write_text(DYNAMIC_YAML.format(port=backends.whoami("app")))
    port, log_file = free_port(), tmp_path / "switchyard.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "switchyard", "run", f"--entryPoints.plain.address=127.0.0.1:{port}",
         f"--providers.file.filename={dynamic}", "--log.level=INFO", "--log.format=json",
         f"--log.filePath={log_file}"], stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(port)
        with connect(port) as conn:
            assert greeting_name(conn) == "app"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=15)
    entries = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert any("listening on" in e["message"] for e in entries)
    assert any(e["level"] == "warning" and "broken@file" in e["message"] for e in entries)
    assert stderr == ""
