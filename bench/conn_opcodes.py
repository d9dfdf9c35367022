"""Python work per new plain TCP connection, counted in bytecodes: a figure load does not blur.

Runs ``switchyard run`` (one ``HostSNI(`*`)`` router behind an ``ipAllowList``, the bench's
ordinary plain route) with every bytecode it executes counted per function (``sys.settrace``
with opcode events), relays ``--connections`` connections from a Python client to a small
HTTP backend, and subtracts a run with one connection, so start-up and the provider's first
load drop out. The counts are the same from run to run, so a change of a few per cent shows;
opcodes are not time (a C call costs more than a LOAD_FAST), but the new-connection rows of
bench/compare.py follow them. ``--baseline DIR`` counts another source tree (its ``src/``) the
same way, e.g. ``git worktree add /tmp/base 5dcde86`` (the single class before the stages).
``--tls`` counts TLS passthrough instead: a ``HostSNI(`localhost`)`` passthrough router in
front of the same backend speaking TLS, the client doing a full handshake per connection.

    python bench/conn_opcodes.py                     # opcodes per connection, top functions
    python bench/conn_opcodes.py --baseline /tmp/base --top 30
    python bench/conn_opcodes.py --tls --baseline /tmp/base
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# The instance counts in a process of its own (its argv: output file, static config).
TRACED = """
import collections, json, sys
counts = collections.Counter()
def tracer(frame, event, arg):
    frame.f_trace_opcodes = True
    if event == "opcode":
        code = frame.f_code
        counts[code.co_filename.rsplit("/", 1)[-1] + ":" + code.co_qualname] += 1
    return tracer
out, static = sys.argv[1], sys.argv[2]
sys.argv = ["switchyard", "run", "-c", static]
from switchyard.cli import main
sys.settrace(tracer)
try:
    main()
except SystemExit:
    pass
finally:
    sys.settrace(None)
    with open(out, "w") as handle:
        json.dump(counts, handle)
"""

BACKEND = """
import asyncio, sys
class Answer(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
    def data_received(self, data):
        if b"\\r\\n\\r\\n" in data:
            self.transport.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: 100\\r\\n"
                                 b"Connection: close\\r\\n\\r\\n" + b"x" * 100)
            self.transport.close()
async def main():
    tls = None
    if len(sys.argv) > 2:  # a certificate and key: answer over TLS
        import ssl
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(sys.argv[1], sys.argv[2])
    server = await asyncio.get_running_loop().create_server(Answer, "127.0.0.1", 0, ssl=tls)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


PASSTHROUGH = """\
tcp:
  routers:
    passthrough:
      entryPoints: [web]
      rule: "HostSNI(`localhost`)"
      service: backend
      tls:
        passthrough: true
  services:
    backend:
      loadBalancer:
        servers: [{{address: "127.0.0.1:{port}"}}]
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _connect(port: int, count: int, tls: ssl.SSLContext | None = None) -> None:
    for _ in range(count):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            conn = raw if tls is None else tls.wrap_socket(raw, server_hostname="localhost")
            conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := conn.recv(65536):
                answer += chunk
            if not answer.endswith(b"x" * 100):
                raise RuntimeError(f"unexpected answer through the router: {answer[:80]!r}")


def count(src: Path, backend_port: int, connections: int, root: Path,
          tls: ssl.SSLContext | None = None) -> dict[str, int]:
    """Opcodes by function for ``connections`` connections through Switchyard from ``src``
    (``tls``: the client's context, for TLS passed through to the backend)."""
    port = _free_port()
    (root / "dynamic.yml").write_text(PASSTHROUGH.format(port=backend_port) if tls else f"""\
tcp:
  routers:
    plain:
      entryPoints: [web]
      rule: "HostSNI(`*`)"
      middlewares: [loopback-only]
      service: backend
  middlewares:
    loopback-only:
      ipAllowList:
        sourceRange: ["127.0.0.1/32"]
  services:
    backend:
      loadBalancer:
        servers: [{{address: "127.0.0.1:{backend_port}"}}]
""")
    (root / "static.yml").write_text(f"""\
entryPoints:
  web:
    address: "127.0.0.1:{port}"
providers:
  file:
    filename: "{root / 'dynamic.yml'}"
log:
  level: ERROR
""")
    out = root / "counts.json"
    env = {**os.environ, "PYTHONPATH": str(src)}
    proc = subprocess.Popen([sys.executable, "-c", TRACED, str(out), str(root / "static.yml")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:  # the router, not only the port: a first exchange must come through
            try:
                _connect(port, 1, tls)
                break
            except (OSError, RuntimeError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"switchyard from {src} does not route") from None
                time.sleep(0.2)
        _connect(port, connections, tls)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    result: dict[str, int] = json.loads(out.read_text())
    return result


def per_connection(src: Path, backend_port: int, connections: int,
                   tls: ssl.SSLContext | None = None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as one, tempfile.TemporaryDirectory() as many:
        base = count(src, backend_port, 0, Path(one), tls)
        loaded = count(src, backend_port, connections, Path(many), tls)
    return {name: (loaded.get(name, 0) - base.get(name, 0)) / connections
            for name in set(base) | set(loaded)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--baseline", type=Path, help="another source tree to count as well")
    parser.add_argument("--top", type=int, default=20, help="functions to list (0: none)")
    parser.add_argument("--tls", action="store_true",
                        help="TLS passthrough (HostSNI(`localhost`)) to a TLS backend instead")
    args = parser.parse_args()
    certs = tempfile.TemporaryDirectory()
    tls, extra = None, []
    if args.tls:
        sys.path.insert(0, str(REPO / "bench"))
        from http_cpu import _certificate

        cert, key = _certificate(Path(certs.name))
        extra = [str(cert), str(key)]
        tls = ssl.create_default_context(cafile=str(cert))
    backend = subprocess.Popen([sys.executable, "-c", BACKEND, *extra], stdout=subprocess.PIPE,
                               text=True)
    try:
        assert backend.stdout is not None
        backend_port = int(backend.stdout.readline())
        trees = {"this tree": REPO / "src"}
        if args.baseline:
            trees["baseline"] = args.baseline.resolve() / "src"
        totals = {}
        for name, src in trees.items():
            counts = per_connection(src, backend_port, args.connections, tls)
            totals[name] = sum(value for value in counts.values() if value > 0)
            print(f"{name}: {totals[name]:.0f} opcodes per connection")
            for function, value in sorted(counts.items(), key=lambda kv: -kv[1])[:args.top]:
                if value >= 1:
                    print(f"  {value:7.1f}  {function}")
        if "baseline" in totals:
            print(f"this tree / baseline: {totals['this tree'] / totals['baseline']:.3f}")
    finally:
        backend.terminate()
        backend.wait(10)
        certs.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
