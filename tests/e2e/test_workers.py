"""`switchyard run --workers N`: processes share the port and all serve it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.harness import Backends, connect, free_port, greeting_name, wait_for_port


def test_workers_share_one_port_and_stop_together(backends: Backends, tmp_path: Path) -> None:
    port = free_port()
    dynamic = tmp_path / "dynamic.yml"
    dynamic.write_text(f"""
tcp:
  routers:
    all: {{rule: "HostSNI(`*`)", service: app}}
  services:
    app: {{loadBalancer: {{servers: [{{address: "127.0.0.1:{backends.whoami('app')}"}}]}}}}
""")
    proc = subprocess.Popen(
        [sys.executable, "-m", "switchyard", "run", "--workers", "2",
         f"--entryPoints.tcp.address=127.0.0.1:{port}",
         f"--providers.file.filename={dynamic}", "--log.level=INFO"],
        stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        wait_for_port(port)
        deadline = time.monotonic() + 10
        listening: list[str] = []
        assert proc.stderr is not None
        while len(listening) < 2 and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if "listening on" in line:
                listening.append(line)
        assert len(listening) == 2, "both workers should bind the shared port"
        # Every log line says which worker wrote it.
        assert sorted(line.split()[2] for line in listening) == ["worker=0", "worker=1"]
        for _ in range(20):
            with connect(port) as conn:
                assert greeting_name(conn) == "app"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(15)
    assert code == 0
