"""peekTimeout: a silent client on a port shared with TLS routers goes to the non-TLS routers."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import (
    Backends,
    LoopThread,
    connect,
    ensure_command,
    free_port,
    greeting_name,
    start_router,
    stop_router,
)
from tests.integration.test_proxy_flow import tls_backend_context, tls_client


def shared_port(tls_backend: int, plain_backend: int) -> str:
    return json.dumps({"tcp": {
        "routers": {"tls": {"rule": "HostSNI(`a.test`)", "service": "tls", "tls": {"passthrough": True}},
                    "plain": {"rule": "HostSNI(`*`)", "service": "plain"}},
        "services": {"tls": {"loadBalancer": {"servers": [{"address": f"127.0.0.1:{tls_backend}"}]}},
                     "plain": {"loadBalancer": {"servers": [
                         {"address": f"127.0.0.1:{plain_backend}"}]}}}}})


def timeouts(peek: str, read: str = "2s") -> dict[str, Any]:
    return {"entrypoint_options": {"ep": {"transport": {"respondingTimeouts": {
        "readTimeout": read, **({"peekTimeout": peek} if peek else {})}}}}}


def test_a_silent_client_is_routed_plain_after_the_peek_timeout_tls_still_by_sni(
        loop_thread: LoopThread, backends: Backends, tmp_path: Path, ca: Any) -> None:
    tls = backends.whoami("tls", tls=tls_backend_context(ca, "a.test"))
    banner = backends.whoami("banner")  # speaks first, as SMTP and MySQL servers do
    app = start_router(loop_thread, tmp_path, shared_port(tls, banner), **timeouts("200ms"))
    port = app.entrypoints["ep"].port
    try:
        started = time.monotonic()
        with connect(port) as sock:
            assert greeting_name(sock) == "banner"
        assert 0.15 < time.monotonic() - started < 1.0
        with tls_client(ca, port, "a.test") as sock:
            assert greeting_name(sock) == "tls"
        with connect(port) as sock:  # bytes that start a TLS record: no fallback
            sock.sendall(b"\x16\x03")
            sock.settimeout(5)
            started = time.monotonic()
            assert sock.recv(100) == b""  # closed at readTimeout, never handed to plain
            assert time.monotonic() - started > 1.5
    finally:
        stop_router(loop_thread, app)


def test_without_a_peek_timeout_a_silent_client_waits_for_read_timeout_and_is_closed(
        loop_thread: LoopThread, backends: Backends, tmp_path: Path, ca: Any) -> None:
    tls = backends.whoami("tls", tls=tls_backend_context(ca, "a.test"))
    app = start_router(loop_thread, tmp_path, shared_port(tls, backends.whoami("banner")),
                       **timeouts("", read="500ms"))
    try:
        with connect(app.entrypoints["ep"].port) as sock:
            assert sock.recv(100) == b""
    finally:
        stop_router(loop_thread, app)


class MariaDB:
    """A throwaway mariadbd on 127.0.0.1 with its own data directory, no grant tables."""

    def __init__(self, data: Path) -> None:
        ensure_command("mariadbd", "mariadb-server")
        ensure_command("mariadb", "mariadb-client")
        self.port = free_port()
        subprocess.run(["mariadb-install-db", f"--datadir={data}", "--user=root",
                        "--auth-root-authentication-method=normal", "--skip-test-db"],
                       check=True, capture_output=True, timeout=120)
        self.process = subprocess.Popen(
            [shutil.which("mariadbd") or "mariadbd", f"--datadir={data}", "--user=root",
             f"--port={self.port}", "--bind-address=127.0.0.1", f"--socket={data}/sock",
             f"--pid-file={data}/pid", "--skip-grant-tables", "--skip-name-resolve",
             "--log-error=" + str(data / "error.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert self.process.poll() is None, (data / "error.log").read_text()[-2000:]
                assert time.monotonic() < deadline, "mariadbd did not start"
                time.sleep(0.1)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


@pytest.fixture
def mariadb(tmp_path: Path) -> Iterator[MariaDB]:
    try:
        server = MariaDB(tmp_path / "mariadb")
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        pytest.skip(f"MariaDB unavailable: {exc}")
    yield server
    server.stop()


def query(port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mariadb", "-h", "127.0.0.1", "-P", str(port), "-u", "root",
                           "--skip-ssl", "-N", "-e", "SELECT 40 + 2"],
                          capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.slow
def test_a_real_mariadb_client_shares_a_port_with_tls_routers(
        loop_thread: LoopThread, backends: Backends, tmp_path: Path, ca: Any,
        mariadb: MariaDB) -> None:
    tls = backends.whoami("tls", tls=tls_backend_context(ca, "a.test"))
    (tmp_path / "with").mkdir()
    app = start_router(loop_thread, tmp_path / "with", shared_port(tls, mariadb.port),
                       **timeouts("100ms"))
    try:
        done = query(app.entrypoints["ep"].port)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "42"
    finally:
        stop_router(loop_thread, app)
    (tmp_path / "without").mkdir()
    app = start_router(loop_thread, tmp_path / "without", shared_port(tls, mariadb.port),
                       **timeouts("", read="1s"))
    try:
        done = query(app.entrypoints["ep"].port)
        assert done.returncode != 0
        assert "Lost connection" in done.stderr and "initial communication packet" in done.stderr
    finally:
        stop_router(loop_thread, app)
