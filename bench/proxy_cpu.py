"""Switchyard's CPU cost per proxied request: fixed keep-alive requests, process CPU time.

Runs a tiny backend and a client in processes of their own and Switchyard as ``switchyard run``,
sends ``--requests`` keep-alive requests over ``--connections`` connections through one HTTP
router, and reads Switchyard's user+system CPU time from /proc before and after. CPU time per
request does not depend on how busy the machine is, so before/after comparisons of a change
hold on a loaded machine where request rates do not. ``--scheme h2c`` puts the backend behind
an ``h2c://`` server URL (HTTP/2 cleartext to the backend, HTTP/1.1 from the client).

    python bench/proxy_cpu.py --requests 20000 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _h1_backend(port: int) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buffer = b""
        while True:
            data = await reader.read(65536)
            if not data:
                break
            buffer += data
            while b"\r\n\r\n" in buffer:
                _, _, buffer = buffer.partition(b"\r\n\r\n")
                writer.write(_RESPONSE)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", port)
    await server.serve_forever()


async def _h2_backend(port: int) -> None:
    import h2.config
    import h2.connection
    import h2.events

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        while True:
            data = await reader.read(65536)
            if not data:
                break
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    conn.send_headers(event.stream_id, [(":status", "200"),
                                                        ("content-type", "text/plain"),
                                                        ("content-length", "2")])
                    conn.send_data(event.stream_id, b"ok", end_stream=True)
            writer.write(conn.data_to_send())
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", port)
    await server.serve_forever()


async def _client(port: int, requests: int, connections: int) -> None:
    request = b"GET /bench HTTP/1.1\r\nHost: bench.test\r\n\r\n"

    async def one(count: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(count):
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
        writer.close()

    await asyncio.gather(*(one(requests // connections) for _ in range(connections)))


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_port(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scheme", choices=("http", "h2c"), default="http")
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "backend":
        asyncio.run(_h2_backend(args.port) if args.scheme == "h2c" else _h1_backend(args.port))
        return
    if args.role == "client":
        asyncio.run(_client(args.port, args.requests, args.connections))
        return

    backend_port, web_port = _free_port(), _free_port()
    with tempfile.TemporaryDirectory() as directory:
        dynamic = Path(directory, "dynamic.yaml")
        dynamic.write_text(
            "http:\n  routers:\n    bench: {rule: \"PathPrefix(`/`)\", service: bench}\n"
            f"  services:\n    bench: {{loadBalancer: {{servers: [{{url: "
            f"\"{args.scheme}://127.0.0.1:{backend_port}\"}}]}}}}\n")
        static = Path(directory, "static.yaml")
        static.write_text(f"entryPoints:\n  web: {{address: \"127.0.0.1:{web_port}\"}}\n"
                          f"providers:\n  file: {{filename: \"{dynamic}\"}}\n"
                          "log: {level: ERROR}\n")
        me = [sys.executable, __file__, "--scheme", args.scheme]
        backend = subprocess.Popen([*me, "--role", "backend", "--port", str(backend_port)])
        router = subprocess.Popen([sys.executable, "-m", "switchyard", "run", "-c",
                                   str(static)])
        try:
            _wait_port(backend_port)
            _wait_port(web_port)
            client = [*me, "--role", "client", "--port", str(web_port), "--connections",
                      str(args.connections)]
            subprocess.run([*client, "--requests", "400"], check=True)  # warm up
            costs = []
            for _ in range(args.rounds):
                before = _cpu_seconds(router.pid)
                subprocess.run([*client, "--requests", str(args.requests)], check=True)
                costs.append((_cpu_seconds(router.pid) - before) / args.requests * 1e6)
            print(f"{args.scheme}: CPU per request {statistics.median(costs):.1f} us "
                  f"(rounds: {', '.join(f'{cost:.1f}' for cost in costs)})")
        finally:
            for process in (router, backend):
                process.terminate()
                process.wait(timeout=10)


if __name__ == "__main__":
    main()
