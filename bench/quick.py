"""A first benchmark: Switchyard against a direct connection on loopback.

Measures bulk throughput (one stream, large writes into a sink) and the rate
of new connections (connect, read a one-line greeting, close). Backends and
load run in separate processes so the router gets a core of its own where it
can. Run: python bench/quick.py [--seconds 5]. The full comparison with
HAProxy and nginx is a separate script.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHUNK = 1 << 20


def sink_server(port_queue: mp.Queue) -> None:  # type: ignore[type-arg]
    """Accepts connections; greets each with one line, then discards what it reads."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=4096)
    port_queue.put(listener.getsockname()[1])
    import selectors

    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    while True:
        for key, _ in selector.select():
            if key.fileobj is listener:
                conn, _ = listener.accept()
                conn.setblocking(False)
                try:
                    conn.send(b"hi\n")
                except OSError:
                    conn.close()
                    continue
                selector.register(conn, selectors.EVENT_READ)
            else:
                conn = key.fileobj  # type: ignore[assignment]
                try:
                    data = conn.recv(CHUNK)
                except OSError:
                    data = b""
                if not data:
                    selector.unregister(conn)
                    conn.close()


def bulk(port: int, seconds: float) -> float:
    """Gbit/s sent through one connection for `seconds`."""
    payload = os.urandom(CHUNK)
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.recv(3)
        sent = 0
        end = time.perf_counter() + seconds
        start = time.perf_counter()
        while time.perf_counter() < end:
            conn.sendall(payload)
            sent += CHUNK
        elapsed = time.perf_counter() - start
    return sent * 8 / elapsed / 1e9


def connection_rate(port: int, seconds: float) -> float:
    """New connections per second, each one reading the greeting before closing."""
    count = 0
    end = time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < end:
        with socket.create_connection(("127.0.0.1", port)) as conn:
            if conn.recv(3) != b"hi\n":
                raise RuntimeError("no greeting: is the route right?")
        count += 1
    return count / (time.perf_counter() - start)


def start_switchyard(backend_port: int, workdir: Path) -> tuple[subprocess.Popen[str], int]:
    dynamic = workdir / "dynamic.yml"
    dynamic.write_text(f"""
tcp:
  routers:
    all:
      rule: "HostSNI(`*`)"
      service: sink
  services:
    sink:
      loadBalancer:
        servers: [{{address: "127.0.0.1:{backend_port}"}}]
""")
    static = workdir / "traefik.yml"
    static.write_text(f"""
entryPoints:
  tcp: {{address: "127.0.0.1:0"}}
providers:
  file: {{filename: "{dynamic}"}}
log: {{level: INFO}}
""")
    proc = subprocess.Popen([sys.executable, "-m", "switchyard", "run", "-c", str(static)],
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        found = re.search(r"listening on .*:(\d+)", line)
        if found:
            return proc, int(found.group(1))
    raise RuntimeError("switchyard did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    ports: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    sink = mp.Process(target=sink_server, args=(ports,), daemon=True)
    sink.start()
    backend_port = ports.get(timeout=10)
    with tempfile.TemporaryDirectory() as tmp:
        proc, proxy_port = start_switchyard(backend_port, Path(tmp))
        try:
            rows = []
            for label, port in (("direct", backend_port), ("switchyard", proxy_port)):
                rows.append((label, bulk(port, args.seconds), connection_rate(port, args.seconds)))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)
            sink.terminate()
    print("| path | bulk, 1 stream (Gbit/s) | new connections (conn/s) |")
    print("|---|---|---|")
    for label, gbits, rate in rows:
        print(f"| {label} | {gbits:.2f} | {rate:,.0f} |")
    direct, proxied = rows
    print(f"\nratio switchyard/direct: bulk {proxied[1] / direct[1]:.2f}, "
          f"connections {proxied[2] / direct[2]:.2f}")


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    main()
