"""GET and DELETE /api/tcp/connections: live connections filtered, and closed on request."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from switchyard.observability.stats import STATS
from tests.harness import Backends, LoopThread, greeting_name, start_router, stop_router


def call(port: int, method: str, path: str) -> tuple[int, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_connections_are_listed_by_filter_and_closed_by_id_or_filter(
        loop_thread: LoopThread, backends: Backends, tmp_path: Path) -> None:
    a, b = backends.whoami("a"), backends.whoami("b")
    dynamic = {"tcp": {
        "routers": {"ra": {"rule": "HostSNI(`*`)", "service": "a", "entryPoints": ["ea"]},
                    "rb": {"rule": "HostSNI(`*`)", "service": "b", "entryPoints": ["eb"]}},
        "services": {"a": {"loadBalancer": {"servers": [{"address": f"127.0.0.1:{a}"}]}},
                     "b": {"loadBalancer": {"servers": [{"address": f"127.0.0.1:{b}"}]}}}}}
    app = start_router(loop_thread, tmp_path, json.dumps(dynamic),
                       entrypoints={"ea": "127.0.0.1:0", "eb": "127.0.0.1:0",
                                    "traefik": "127.0.0.1:0"}, api={"insecure": True})
    api = app.internal_servers[0].port
    clients: list[socket.socket] = []
    try:
        for ep, source in (("ea", "127.0.0.2"), ("ea", "127.0.0.3"), ("eb", "127.0.0.2")):
            sock = socket.create_connection(("127.0.0.1", app.entrypoints[ep].port), timeout=5,
                                            source_address=(source, 0))
            greeting_name(sock)
            clients.append(sock)
        status, listed = call(api, "GET", "/api/tcp/connections?router=ra@file")
        assert status == 200 and len(listed) == 2
        assert {c["server"] for c in listed} == {f"127.0.0.1:{a}"}
        _, by_client = call(api, "GET", "/api/tcp/connections?client=127.0.0.2")
        assert {c["router"] for c in by_client} == {"ra@file", "rb@file"}
        one = next(c for c in listed if c["clientIP"] == "127.0.0.3")
        _, same = call(api, "GET", f"/api/tcp/connections?client={one['client']}")
        assert [c["id"] for c in same] == [one["id"]]

        before = STATS.closes[("ea", "admin_close")]
        assert call(api, "DELETE", f"/api/tcp/connections/{one['id']}") == (
            200, {"closed": [one["id"]]})
        assert clients[1].recv(100) == b""  # that client is closed
        assert call(api, "DELETE", f"/api/tcp/connections/{one['id']}")[0] == 404
        assert call(api, "DELETE", "/api/tcp/connections")[0] == 400  # no filter: refused
        status, closed = call(api, "DELETE", "/api/tcp/connections?service=a@file")
        assert status == 200 and len(closed["closed"]) == 1
        assert clients[0].recv(100) == b""
        clients[2].sendall(b"still")
        assert clients[2].recv(5) == b"still"  # the other router's connection is untouched
        assert STATS.closes[("ea", "admin_close")] == before + 2
    finally:
        for sock in clients:
            sock.close()
        stop_router(loop_thread, app)
