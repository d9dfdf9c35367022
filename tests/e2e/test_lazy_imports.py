"""A configuration loads only the libraries it uses: redis-py for a Redis-backed rateLimit,
aiohttp for HTTP health checks (or the API), prometheus_client for metrics. A TCP-only
instance that never needs them stays about 16 MiB smaller."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

OPTIONAL = ("aiohttp", "redis", "prometheus_client")

# Runs a real instance in a process of its own (sys.modules must start clean), relays one
# connection through it to an echo backend, then reports which optional libraries it loaded.
SCRIPT = textwrap.dedent("""
    import asyncio, json, socket, sys
    from switchyard.config.loader import load_static
    from switchyard.server import Switchyard

    async def echo(reader, writer):
        writer.write(await reader.read(100))
        await writer.drain()
        writer.close()

    async def main(static_file, dynamic_file, template):
        backend = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = backend.sockets[0].getsockname()[1]
        with open(template) as source, open(dynamic_file, "w") as target:
            target.write(source.read().replace("BACKEND_PORT", str(port)))
        static, _ = load_static(static_file)
        app = Switchyard(static)
        serving = asyncio.create_task(app.serve())
        loop = asyncio.get_running_loop()
        for _ in range(100):
            await asyncio.sleep(0.05)
            entry = app.entrypoints["tcp"]
            if entry.port and entry.table.plain.routes:
                break
        def exchange():
            with socket.create_connection(("127.0.0.1", entry.port), timeout=5) as conn:
                conn.sendall(b"ping")
                try:
                    return conn.recv(100)
                except ConnectionResetError:
                    return b"reset"
        answer = await loop.run_in_executor(None, exchange)
        print(json.dumps({"answer": answer.decode(),
                          "loaded": [m for m in OPTIONAL if m in sys.modules]}), flush=True)
        serving.cancel()

    asyncio.run(main(*sys.argv[1:4]))
""").replace("OPTIONAL", repr(OPTIONAL), 1)

TCP_ONLY = """
tcp:
  routers:
    all:
      entryPoints: [tcp]
      rule: "HostSNI(`*`)"
      middlewares: [local, few, slow]
      service: echo
  middlewares:
    local: {ipAllowList: {sourceRange: ["127.0.0.1/32"]}}
    few: {inFlightConn: {amount: 10}}
    slow: {rateLimit: {average: 100, burst: 100}}
  services:
    echo:
      loadBalancer:
        servers: [{address: "127.0.0.1:BACKEND_PORT"}]
        healthCheck: {interval: 10s}
"""


def run(tmp_path: Path, dynamic: str, extra_static: str = "") -> dict[str, object]:
    template = tmp_path / "dynamic.template"
    template.write_text(dynamic)
    static = tmp_path / "static.yml"
    static.write_text(textwrap.dedent(f"""
        entryPoints:
          tcp: {{address: "127.0.0.1:0"}}
        providers:
          file: {{filename: "{tmp_path / 'dynamic.yml'}"}}
        log: {{level: ERROR}}
    """) + extra_static)
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(static), str(tmp_path / "dynamic.yml"),
                           str(template)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_tcp_only_instance_loads_none_of_the_optional_libraries(tmp_path: Path) -> None:
    result = run(tmp_path, TCP_ONLY)
    assert result == {"answer": "ping", "loaded": []}


SHARED_LIMIT = TCP_ONLY.replace("{rateLimit: {average: 100, burst: 100}}",
                                # Nothing listens on port 1: the limit fails closed.
                                '{rateLimit: {average: 100, redis: {endpoints: ["127.0.0.1:1"]}}}')


def test_a_redis_backed_limit_loads_redis_py_when_it_asks(tmp_path: Path) -> None:
    result = run(tmp_path, SHARED_LIMIT)
    # Refused, since no Redis answers: a reset when the close finds "ping" unread, else a FIN.
    assert result["answer"] in ("reset", "")
    assert result["loaded"] == ["redis"]


@pytest.mark.parametrize(("addition", "static", "expected"), [
    ("""
http:
  routers:
    web: {entryPoints: [tcp], rule: "Host(`a`)", service: web}
  services:
    web:
      loadBalancer:
        servers: [{url: "http://127.0.0.1:BACKEND_PORT"}]
        healthCheck: {path: /, interval: 10s}
""", "", ["aiohttp"]),
    # Metrics are served by the internal entry point's web server, which is aiohttp's.
    ("", "metrics: {prometheus: {}}\n", ["aiohttp", "prometheus_client"]),
])
def test_what_a_configuration_uses_is_loaded(tmp_path: Path, addition: str, static: str,
                                             expected: list[str]) -> None:
    result = run(tmp_path, TCP_ONLY + addition, static)
    assert result["answer"] == "ping"
    assert result["loaded"] == expected
