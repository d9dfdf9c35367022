"""Postgres STARTTLS through Switchyard with a real PostgreSQL server and psql."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import LoopThread, ensure_command, free_port, start_router, wait_for_port


def _postgres_bin() -> Path:
    ensure_command("psql", "postgresql-client")
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not found:
        ensure_command("pg_ctlcluster", "postgresql")
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not found:
        pytest.skip("the postgresql package provides no server binary here")
    return Path(found[-1]).parent


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory, ca: Any) -> Iterator[int]:
    """A PostgreSQL server on 127.0.0.1 with SSL on (for passthrough) and trust auth."""
    bindir = _postgres_bin()
    # Not under pytest's 0700 temp root: the postgres user must reach it.
    root = Path(tempfile.mkdtemp(prefix="switchyard-pg-"))
    data, sockets = root / "data", root / "sock"
    data.mkdir()
    sockets.mkdir()
    cert = ca.issue_cert("db.test")
    cert.cert_chain_pems[0].write_to_path(str(root / "server.crt"))
    cert.private_key_pem.write_to_path(str(root / "server.key"))
    os.chmod(root / "server.key", 0o600)
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        shutil.chown(root, "postgres")
        for path in (data, sockets, root / "server.crt", root / "server.key"):
            shutil.chown(path, "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_postgres, str(bindir / "initdb"), "-D", str(data), "--auth=trust",
                    "-U", "postgres"], check=True, capture_output=True)
    port = free_port()
    proc = subprocess.Popen(
        [*as_postgres, str(bindir / "postgres"), "-D", str(data), "-c", f"port={port}",
         "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={sockets}",
         "-c", "ssl=on", "-c", f"ssl_cert_file={root / 'server.crt'}",
         "-c", f"ssl_key_file={root / 'server.key'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, timeout=30)
        yield port
    finally:
        proc.terminate()
        proc.wait(15)
        shutil.rmtree(root, ignore_errors=True)


def psql(port: int, query: str) -> subprocess.CompletedProcess[str]:
    # host= is the name libpq sends as SNI; hostaddr= is where it connects.
    dsn = (f"host=db.test hostaddr=127.0.0.1 port={port} dbname=postgres user=postgres "
           "sslmode=require connect_timeout=10")
    return subprocess.run(["psql", dsn, "-tAc", query], capture_output=True, text=True,
                          timeout=30, check=False)


def test_psql_through_a_terminating_router(loop_thread: LoopThread, postgres: int,
                                           tmp_path: Path, ca: Any) -> None:
    cert = ca.issue_cert("db.test")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "db.crt"))
    cert.private_key_pem.write_to_path(str(tmp_path / "db.key"))
    app = start_router(loop_thread, tmp_path, f"""
tcp:
  routers:
    db:
      rule: "HostSNI(`db.test`)"
      service: pg
      tls: {{}}
  services:
    pg: {{loadBalancer: {{servers: [{{address: "127.0.0.1:{postgres}"}}]}}}}
tls:
  certificates:
    - {{certFile: "{tmp_path / 'db.crt'}", keyFile: "{tmp_path / 'db.key'}"}}
""")
    # The backend sees a plaintext startup: ssl_is_used() is false on its side.
    result = psql(app.entrypoints["ep"].port,
                  "select 'routed', ssl from pg_stat_ssl where pid = pg_backend_pid()")
    assert result.stdout.strip() == "routed|f", result.stderr


def passthrough_router(host: str, postgres: int) -> str:
    """A TLS passthrough router for `host` to the PostgreSQL server."""
    return f"""
tcp:
  routers:
    db: {{rule: "HostSNI(`{host}`)", service: pg, tls: {{passthrough: true}}}}
  services:
    pg: {{loadBalancer: {{servers: [{{address: "127.0.0.1:{postgres}"}}]}}}}
"""


def test_psql_through_a_passthrough_router(loop_thread: LoopThread, postgres: int,
                                           tmp_path: Path) -> None:
    app = start_router(loop_thread, tmp_path, passthrough_router("db.test", postgres))
    # Passthrough: PostgreSQL itself terminates TLS.
    result = psql(app.entrypoints["ep"].port,
                  "select 'routed', ssl from pg_stat_ssl where pid = pg_backend_pid()")
    assert result.stdout.strip() == "routed|t", result.stderr


def test_unknown_sni_after_starttls_is_closed(loop_thread: LoopThread, postgres: int,
                                              tmp_path: Path) -> None:
    app = start_router(loop_thread, tmp_path, passthrough_router("other.test", postgres))
    result = psql(app.entrypoints["ep"].port, "select 1")
    assert result.returncode != 0
    assert result.stdout == ""
