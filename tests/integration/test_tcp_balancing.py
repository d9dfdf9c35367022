"""TCP load balancing on real sockets: weights, leastConn, hrw across reloads, retry, passive health."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from switchyard.server import Switchyard
from tests.harness import (
    Backends,
    LoopThread,
    connect,
    dead_port,
    greeting_name,
    start_router,
    stop_router,
)


def wait(condition: Callable[[], bool], what: str, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def service(addresses: list[str], **options: Any) -> dict[str, Any]:
    return {"loadBalancer": {"servers": [{"address": a} for a in addresses], **options}}


def config(services: dict[str, Any], route: str = "s") -> str:
    return json.dumps({"tcp": {
        "routers": {"r": {"rule": "HostSNI(`*`)", "service": route, "entryPoints": ["ep"]}},
        "services": services}})


def open_count(app: Switchyard) -> int:
    return len(app.entrypoints["ep"].connections)


def spread(loop_thread: LoopThread, backends: Backends, tmp_path: Path, strategy: str) -> Counter[str]:
    """100 connections, every fourth one long: which backends hold the long ones at the end."""
    ports = [backends.whoami(f"b{i}") for i in range(4)]
    app = start_router(loop_thread, tmp_path, config(
        {"s": service([f"127.0.0.1:{p}" for p in ports], strategy=strategy)}))
    port = app.entrypoints["ep"].port
    long: list[tuple[socket.socket, str]] = []
    try:
        for index in range(100):
            sock = connect(port)
            name = greeting_name(sock)
            if index % 4 == 0:
                long.append((sock, name))
            else:
                sock.close()
                wait(lambda: open_count(app) == len(long), "the short connection to end")
        return Counter(name for _, name in long)
    finally:
        for sock, _ in long:
            sock.close()
        stop_router(loop_thread, app)


def test_least_conn_spreads_long_connections_evenly_where_round_robin_piles_them_up(
        loop_thread: LoopThread, backends: Backends, tmp_path: Path) -> None:
    least = spread(loop_thread, backends, tmp_path, "leastConn")
    assert sum(least.values()) == 25 and len(least) == 4
    assert max(least.values()) - min(least.values()) <= 2, least
    (tmp_path / "wrr").mkdir()
    rotated = spread(loop_thread, backends, tmp_path / "wrr", "wrr")
    assert max(rotated.values()) == 25, rotated  # every fourth is always the same server


def test_weights_share_connections_in_proportion(loop_thread: LoopThread, backends: Backends,
                                                 tmp_path: Path) -> None:
    heavy, light = backends.whoami("heavy"), backends.whoami("light")
    dynamic = {"tcp": {
        "routers": {"r": {"rule": "HostSNI(`*`)", "service": "s", "entryPoints": ["ep"]}},
        "services": {"s": {"loadBalancer": {"servers": [
            {"address": f"127.0.0.1:{heavy}", "weight": 3},
            {"address": f"127.0.0.1:{light}"}]}}}}}
    app = start_router(loop_thread, tmp_path, json.dumps(dynamic))
    try:
        got = []
        for _ in range(8):
            with connect(app.entrypoints["ep"].port) as sock:
                got.append(greeting_name(sock))
        assert got == ["heavy"] * 3 + ["light"] + ["heavy"] * 3 + ["light"]
    finally:
        stop_router(loop_thread, app)


def from_client(port: int, client: str) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5,
                                  source_address=(client, 0)) as sock:
        return greeting_name(sock)


def test_hrw_keeps_each_client_across_a_reload_and_moves_only_a_removed_servers_clients(
        loop_thread: LoopThread, backends: Backends, tmp_path: Path) -> None:
    ports = [backends.whoami(f"b{i}") for i in range(4)]
    addresses = [f"127.0.0.1:{p}" for p in ports]
    clients = [f"127.0.{i // 200}.{i % 200 + 2}" for i in range(80)]
    app = start_router(loop_thread, tmp_path, config({"s": service(addresses, strategy="hrw")}),
                       providers={"providersThrottleDuration": "10ms",
                                  "file": {"filename": str(tmp_path / "dynamic.yml")}})
    port = app.entrypoints["ep"].port
    dynamic = tmp_path / "dynamic.yml"
    try:
        first = {ip: from_client(port, ip) for ip in clients}
        assert len(set(first.values())) == 4
        assert {ip: from_client(port, ip) for ip in clients} == first  # sticky without state
        old = app.runtime
        # A reload that changes something else: the service is rebuilt, the hashing is not.
        dynamic.write_text(config({"s": service(addresses, strategy="hrw"),
                                   "other": service(addresses)}))
        wait(lambda: app.runtime is not old, "the reload")
        assert {ip: from_client(port, ip) for ip in clients} == first
        old = app.runtime
        dynamic.write_text(config({"s": service(addresses[:3], strategy="hrw")}))
        wait(lambda: app.runtime is not old, "the reload without b3")
        after = {ip: from_client(port, ip) for ip in clients}
        moved = {ip for ip in clients if after[ip] != first[ip]}
        assert moved == {ip for ip in clients if first[ip] == "b3"}
    finally:
        stop_router(loop_thread, app)


def test_a_refused_dial_is_retried_on_the_next_server(loop_thread: LoopThread,
                                                      backends: Backends, tmp_path: Path) -> None:
    live = f"127.0.0.1:{backends.whoami('live')}"
    dead = f"127.0.0.1:{dead_port()}"
    app = start_router(loop_thread, tmp_path, config({
        "s": service([dead, live], retry={"attempts": 2}),
        "plain": service([dead, live])}))
    port = app.entrypoints["ep"].port
    try:
        for _ in range(4):
            with connect(port) as sock:
                assert greeting_name(sock) == "live"
    finally:
        stop_router(loop_thread, app)
    app = start_router(loop_thread, tmp_path, config({"plain": service([dead, live])}, "plain"))
    try:
        got = []
        for _ in range(4):
            with connect(app.entrypoints["ep"].port) as sock:
                got.append(sock.recv(9))
        assert got.count(b"") == 2  # without retry, every other client is closed
    finally:
        stop_router(loop_thread, app)


def api(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
        body = answer.read().decode()
    return body if path == "/metrics" else json.loads(body)


def test_passive_health_takes_a_failing_server_out_and_shows_it(
        loop_thread: LoopThread, backends: Backends, tmp_path: Path) -> None:
    live = f"127.0.0.1:{backends.whoami('live')}"
    dead = f"127.0.0.1:{dead_port()}"
    app = start_router(
        loop_thread, tmp_path, config({"s": service(
            [dead, live], retry={"attempts": 2},
            passiveHealthCheck={"maxFailedAttempts": 1, "failureWindow": "30s"})}),
        entrypoints={"ep": "127.0.0.1:0", "traefik": "127.0.0.1:0"}, api={"insecure": True},
        metrics={"prometheus": {"entryPoint": "traefik"}})
    port = app.entrypoints["ep"].port
    api_port = app.internal_servers[0].port
    try:
        with connect(port) as sock:
            assert greeting_name(sock) == "live"  # the dead one failed once, then retried
        found = api(api_port, "/api/tcp/services/s@file")
        assert found["serverStatus"] == {dead: "DOWN", live: "UP"}
        assert found["passiveEjections"] == {dead: 1, live: 0}
        metrics = api(api_port, "/metrics")
        assert (f'switchyard_tcp_service_server_passive_ejections_total{{service="s@file",'
                f'url="{dead}"}} 1.0') in metrics
        assert f'traefik_service_server_up{{service="s@file",url="{dead}"}} 0.0' in metrics
        for _ in range(3):  # out for the window: no dial goes to it
            with connect(port) as sock:
                assert greeting_name(sock) == "live"
        assert api(api_port, "/api/tcp/services/s@file")["passiveEjections"][dead] == 1
    finally:
        stop_router(loop_thread, app)


class Resetting(asyncio.Protocol):
    """A backend that accepts, then resets the connection as soon as the client speaks."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def data_received(self, data: bytes) -> None:
        self.transport.close()  # with SO_LINGER 0: an RST


def test_backend_resets_count_as_passive_failures(loop_thread: LoopThread, backends: Backends,
                                                  tmp_path: Path) -> None:
    async def start() -> asyncio.Server:
        return await asyncio.get_running_loop().create_server(Resetting, "127.0.0.1", 0)

    server = loop_thread.run(start())
    resetting = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    app = start_router(loop_thread, tmp_path, config({"s": service(
        [resetting], passiveHealthCheck={"maxFailedAttempts": 2, "failureWindow": "30s"})}))
    balancer = app.runtime.service_objects["s@file"]
    try:
        for _ in range(2):
            with connect(app.entrypoints["ep"].port) as sock:
                sock.sendall(b"hello")
                assert sock.recv(10) == b""
            wait(lambda: not app.entrypoints["ep"].connections, "the connection to end")
        assert balancer.server_status() == {resetting: "DOWN"}  # type: ignore[union-attr]
    finally:
        stop_router(loop_thread, app)

        async def stop() -> None:
            server.close()

        loop_thread.run(stop())


def test_a_retry_in_a_weighted_service_moves_on_to_the_next_child(
        loop_thread: LoopThread, backends: Backends, tmp_path: Path) -> None:
    live, dead = f"127.0.0.1:{backends.whoami('live')}", f"127.0.0.1:{dead_port()}"
    app = start_router(loop_thread, tmp_path, config({
        "split": {"weighted": {"services": [{"name": "first"}, {"name": "second"}]}},
        "first": service([dead], retry={"attempts": 2}),
        "second": service([live])}, "split"))
    try:
        for _ in range(4):
            with connect(app.entrypoints["ep"].port) as sock:
                assert greeting_name(sock) == "live"
    finally:
        stop_router(loop_thread, app)
