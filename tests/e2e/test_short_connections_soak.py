"""Thousands of short proxied connections: Switchyard and its whoami backend both survive.

On uvloop 0.23 a protocol that asked a plain transport for ``sslcontext`` and then wrote EOF
in ``eof_received`` corrupted the heap within a few thousand connections proxied by Switchyard
(the whoami process died with "double free or corruption"). Both processes here run on uvloop,
as in production.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.harness import free_port, wait_for_port

pytestmark = pytest.mark.slow

CONNECTIONS = 4 * 1000


def test_short_connections_leave_both_processes_alive(tmp_path: Path) -> None:
    port, backend = free_port(), free_port()
    (tmp_path / "dynamic.yml").write_text(f"""
tcp:
  routers:
    all: {{rule: "HostSNI(`*`)", service: app}}
  services:
    app: {{loadBalancer: {{servers: [{{address: "127.0.0.1:{backend}"}}]}}}}
""")
    (tmp_path / "static.yml").write_text(f"""
entryPoints: {{tcp: {{address: "127.0.0.1:{port}"}}}}
providers: {{file: {{filename: "{tmp_path / 'dynamic.yml'}"}}}}
log: {{level: ERROR}}
""")
    whoami = subprocess.Popen([sys.executable, "-m", "switchyard", "whoami", "--port",
                               str(backend)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    router = subprocess.Popen([sys.executable, "-m", "switchyard", "run", "-c",
                               str(tmp_path / "static.yml")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    failures: list[str] = []
    try:
        wait_for_port(backend)
        wait_for_port(port)

        def client(count: int) -> None:
            for _ in range(count):
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                        greeting = sock.recv(200)
                        if not greeting.startswith(b"Hostname: "):
                            failures.append(repr(greeting))
                            return
                except OSError as exc:
                    failures.append(str(exc))
                    return

        threads = [threading.Thread(target=client, args=(CONNECTIONS // 4,)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        time.sleep(0.3)
        assert whoami.poll() is None, whoami.stderr.read() if whoami.stderr else ""
        assert router.poll() is None, router.stderr.read() if router.stderr else ""
        assert failures == []
    finally:
        for process in (router, whoami):
            process.terminate()
            process.wait(timeout=10)
