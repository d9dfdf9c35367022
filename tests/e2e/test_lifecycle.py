"""Graceful shutdown and hot reload, as a user sees them from outside the process."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from pathlib import Path

from tests.e2e.test_cli_run import start
from tests.harness import Backends, connect, greeting_name, read_until_closed

STATIC = """
entryPoints:
  plain:
    address: "127.0.0.1:0"
    transport:
      lifeCycle:
        graceTimeOut: {grace}
providers:
  providersThrottleDuration: 50ms
  file:
    filename: "{dynamic}"
log:
  level: INFO
accessLog:
  filePath: "{access}"
  format: json
"""

DYNAMIC = """
tcp:
  routers:
    all:
      rule: "HostSNI(`*`)"
      service: app
  services:
    app:
      loadBalancer:
        servers: [{{address: "127.0.0.1:{port}"}}]
"""


def write_config(tmp_path: Path, port: int, grace: str = "5s") -> Path:
    dynamic = tmp_path / "dynamic.yml"
    dynamic.write_text(DYNAMIC.format(port=port))
    static = tmp_path / "traefik.yml"
    static.write_text(STATIC.format(grace=grace, dynamic=dynamic, access=tmp_path / "access.log"))
    return static


def test_transfer_in_flight_survives_sigterm_and_new_connections_are_refused(
        backends: Backends, tmp_path: Path) -> None:
    static = write_config(tmp_path, backends.whoami("app", banner=False))
    proc, ports, _ = start(static)
    port = ports["plain"]
    conn = connect(port)
    conn.sendall(b"before")
    assert conn.recv(6) == b"before"
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    try:
        connect(port).close()
        refused = False
    except ConnectionRefusedError:
        refused = True
    assert refused, "a new connection was accepted after SIGTERM"
    for _ in range(5):  # the live stream keeps flowing during the grace period
        conn.sendall(b"during")
        assert conn.recv(6) == b"during"
        time.sleep(0.1)
    assert proc.poll() is None
    conn.close()
    assert proc.wait(10) == 0


def test_connections_left_after_the_grace_period_are_closed(backends: Backends,
                                                            tmp_path: Path) -> None:
    static = write_config(tmp_path, backends.whoami("app", banner=False), grace="500ms")
    proc, ports, _ = start(static)
    conn = connect(ports["plain"])
    conn.sendall(b"x")
    assert conn.recv(1) == b"x"
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert read_until_closed(conn) == b""
    assert proc.wait(10) == 0
    assert 0.4 < time.monotonic() - started < 5
    entries = [json.loads(line) for line in (tmp_path / "access.log").read_text().splitlines()]
    assert entries[-1]["reason"] == "shutdown"
    assert entries[-1]["router"] == "all@file"


def test_reload_keeps_a_live_stream_and_the_last_good_config(
        backends: Backends, tmp_path: Path) -> None:
    first, second = backends.whoami("first"), backends.whoami("second")
    static = write_config(tmp_path, first)
    dynamic = tmp_path / "dynamic.yml"
    proc, ports, lines = start(static)
    port = ports["plain"]
    assert proc.stderr is not None
    log_lines: list[str] = []
    threading.Thread(target=lambda: log_lines.extend(proc.stderr), daemon=True).start()  # type: ignore[arg-type]
    try:
        live = connect(port)
        assert greeting_name(live) == "first"
        total = 0

        def exchange() -> None:
            nonlocal total
            live.sendall(b"k" * 1000)
            got = 0
            while got < 1000:
                got += len(live.recv(1000 - got))
            total += got

        def routed_to() -> str:
            with connect(port) as conn:
                return greeting_name(conn)

        def wait_for(name: str) -> None:
            deadline = time.monotonic() + 10
            while routed_to() != name:
                assert time.monotonic() < deadline, f"never routed to {name}"
                exchange()
                time.sleep(0.05)

        dynamic.write_text(DYNAMIC.format(port=second))  # 1: switch backends
        wait_for("second")
        dynamic.write_text("tcp: [this is: not valid")  # 2: broken file
        deadline = time.monotonic() + 10
        while not any("last good one keeps serving" in line for line in log_lines):
            assert time.monotonic() < deadline, "the broken file was not reported"
            exchange()
            time.sleep(0.05)
        assert routed_to() == "second"
        dynamic.write_text(DYNAMIC.format(port=first))  # 3: back to the first
        wait_for("first")
        exchange()
        live.close()
        assert total >= 3000
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    assert any("configuration applied" in line and "changed: app@file" in line
               for line in log_lines + lines)


def test_client_address_is_logged_per_connection(backends: Backends, tmp_path: Path) -> None:
    static = write_config(tmp_path, backends.whoami("app"))
    proc, ports, _ = start(static)
    with socket.create_connection(("127.0.0.1", ports["plain"])) as conn:
        client = conn.getsockname()
        assert greeting_name(conn) == "app"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    entry = json.loads((tmp_path / "access.log").read_text().splitlines()[-1])
    assert entry["client"] == f"{client[0]}:{client[1]}"
    assert entry["service"] == "app@file"
    assert entry["reason"] == "normal"
    assert entry["bytes_out"] > 0


def test_request_accept_grace_keeps_accepting_for_a_while_after_sigterm(
        backends: Backends, tmp_path: Path) -> None:
    static = write_config(tmp_path, backends.whoami("app"))
    text = static.read_text().replace(
        "graceTimeOut: 5s", "graceTimeOut: 5s\n        requestAcceptGraceTimeout: 1s")
    static.write_text(text)
    proc, ports, _ = start(static)
    port = ports["plain"]
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    with connect(port) as conn:  # still inside the accept grace: served normally
        assert greeting_name(conn) == "app"
    deadline = time.monotonic() + 5
    while True:
        try:
            connect(port).close()
        except ConnectionRefusedError:
            break
        assert time.monotonic() < deadline, "still accepting long after the accept grace"
        time.sleep(0.1)
    assert proc.wait(10) == 0
