"""Memory per idle connection: N concurrent idle connections through Switchyard and HAProxy.

Opens N client connections (each held open, idle after one exchange) through
each proxy to one backend on 127.0.0.1, then reads the proxy's resident
memory. Run: python bench/idle_connections.py [--count 10000].
"""

from __future__ import annotations

import argparse
import os
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def rss_kib(pid: int) -> int:
    """Resident memory of a process and its children (Switchyard's workers)."""
    total = 0
    children = Path(f"/proc/{pid}/task/{pid}/children")
    for child in children.read_text().split() if children.exists() else []:
        total += rss_kib(int(child))
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return total + int(line.split()[1])
    raise RuntimeError("no VmRSS")


def echo_backend(port_file: Path) -> None:
    """A selector echo server in a child process (each connection answers 'ok\\n' once)."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=4096)
    port_file.write_text(str(listener.getsockname()[1]))
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    while True:
        for key, _ in selector.select():
            if key.fileobj is listener:
                conn, _ = listener.accept()
                conn.setblocking(False)
                selector.register(conn, selectors.EVENT_READ)
            else:
                conn = key.fileobj  # type: ignore[assignment]
                try:
                    data = conn.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    selector.unregister(conn)
                    conn.close()
                else:
                    conn.sendall(data)


def hold(port: int, count: int) -> list[socket.socket]:
    held = []
    for _ in range(count):
        conn = socket.create_connection(("127.0.0.1", port))
        conn.sendall(b"x")
        if conn.recv(1) != b"x":
            raise RuntimeError("no echo")
        held.append(conn)
    return held


def wait_port(port: int) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def measure(name: str, argv: list[str], port: int, count: int) -> tuple[str, int, int, int]:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        time.sleep(0.5)
        base = rss_kib(proc.pid)
        held = hold(port, count)
        time.sleep(1.0)
        loaded = rss_kib(proc.pid)
        for conn in held:
            conn.close()
        return name, base, loaded, count
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10000)
    args = parser.parse_args()
    # The proxy holds two descriptors per connection and this process one.
    # This process holds one descriptor per connection, a proxy process two. Where
    # the hard limit is too low for one proxy process (20,000 here), Switchyard
    # runs with enough --workers and HAProxy is measured at what one process holds.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    per_process = (hard - 200) // 2
    workers = -(-args.count // per_process)
    work = Path(tempfile.mkdtemp(prefix="switchyard-idle-"))
    port_file = work / "backend.port"
    backend = os.fork()
    if backend == 0:
        echo_backend(port_file)
        os._exit(0)
    try:
        while not port_file.exists() or not port_file.read_text():
            time.sleep(0.05)
        backend_port = int(port_file.read_text())
        rows = []
        sy_port = free_port()
        dynamic = work / "dynamic.yml"
        dynamic.write_text(f"""
tcp:
  routers:
    all: {{rule: "HostSNI(`*`)", service: echo}}
  services:
    echo: {{loadBalancer: {{servers: [{{address: "127.0.0.1:{backend_port}"}}]}}}}
""")
        label = "Switchyard" + (f" ({workers} workers)" if workers > 1 else "")
        rows.append(measure(label, [
            sys.executable, "-m", "switchyard", "run", f"--workers={workers}",
            f"--entryPoints.tcp.address=127.0.0.1:{sy_port}",
            f"--providers.file.filename={dynamic}"], sy_port, args.count))
        haproxy = shutil.which("haproxy")
        if haproxy:
            count = min(args.count, per_process - 200)
            hp_port = free_port()
            config = work / "haproxy.cfg"
            config.write_text(f"""global
  maxconn {count + 100}
defaults
  mode tcp
  timeout connect 5s
  timeout client 300s
  timeout server 300s
listen idle
  bind 127.0.0.1:{hp_port}
  server echo 127.0.0.1:{backend_port}
""")
            rows.append(measure(f"HAProxy ({count} connections)",
                                [haproxy, "-db", "-f", str(config)], hp_port, count))
        print(f"| proxy | RSS before (MiB) | RSS with {args.count} idle (MiB) "
              "| per connection (KiB) |")
        print("|---|---|---|---|")
        for name, base, loaded, count in rows:
            print(f"| {name} | {base / 1024:.1f} | {loaded / 1024:.1f} | "
                  f"{(loaded - base) / count:.2f} |")
    finally:
        os.kill(backend, signal.SIGTERM)
        os.waitpid(backend, 0)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
