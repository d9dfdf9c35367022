"""`switchyard check` and `switchyard explain` run as a user runs them, on good and broken configs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

STATIC = """
entryPoints:
  web:
    address: ":8443"
  smtp:
    address: ":2525"
providers:
  file:
    filename: "{dynamic}"
"""

GOOD = """
tcp:
  routers:
    db:
      rule: "HostSNI(`db.example.com`)"
      service: db
      entryPoints: [web]
      middlewares: [office]
      tls:
        passthrough: true
    mail:
      rule: "HostSNI(`*`)"
      service: mail
      entryPoints: [smtp]
  middlewares:
    office:
      ipAllowList:
        sourceRange: ["10.0.0.0/8"]
  services:
    db:
      loadBalancer:
        servers:
          - address: "10.9.0.1:5432"
    mail:
      loadBalancer:
        servers:
          - address: "10.9.0.2:25"
"""

BROKEN = """
tcp:
  routers:
    db:
      rule: "HostSNI(`db.example.com`)"
      service: db
      tls:
        passthrough: true
    needs-tls:
      rule: "HostSNI(`a.example.com`)"
      service: db
    typo:
      rule: "HostSNI(`*`)"
      servce: db
  services:
    db:
      loadBalancer:
        servers:
          - address: "10.9.0.1:5432"
"""


def write_config(tmp_path: Path, dynamic: str) -> Path:
    dynamic_file = tmp_path / "dynamic.yml"
    dynamic_file.write_text(dynamic)
    static_file = tmp_path / "traefik.yml"
    static_file.write_text(STATIC.format(dynamic=dynamic_file))
    return static_file


def switchyard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "switchyard", *args], check=False,
                          capture_output=True, text=True, timeout=30)


def line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_check_accepts_a_good_config(tmp_path: Path) -> None:
    result = switchyard("check", "-c", str(write_config(tmp_path, GOOD)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines() == [
        "2 routers, 2 services, 1 middlewares: configuration OK"]
    assert result.stderr == ""


def test_check_points_at_file_line_and_key_path_of_each_problem(tmp_path: Path) -> None:
    static = write_config(tmp_path, BROKEN)
    dynamic = tmp_path / "dynamic.yml"
    result = switchyard("check", "-c", str(static))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    needs_tls = line_of(dynamic, "needs-tls:")
    typo = line_of(dynamic, "typo:")
    assert any(line.startswith(f"{dynamic}:{needs_tls}: error: tcp.routers.needs-tls: ")
               and "no TLS on router" in line for line in lines), lines
    assert any(line.startswith(f"{dynamic}:{typo}: error: tcp.routers.typo: ")
               and "the service is missing" in line for line in lines), lines
    assert any(line.startswith(f'{dynamic}:{line_of(dynamic, "servce:")}: warning: '
                               "tcp.routers.typo.servce: ") for line in lines), lines
    assert lines[-1] == "3 routers, 1 services, 0 middlewares: errors found"
    # Each problem is printed once, on stdout; the builder's own log lines stay quiet.
    assert result.stderr == ""


def test_check_reports_an_unreadable_dynamic_file_with_its_position(tmp_path: Path) -> None:
    result = switchyard("check", "-c", str(write_config(tmp_path, "tcp: [unclosed\n")))
    assert result.returncode == 1
    assert f"{tmp_path / 'dynamic.yml'}:2:1: invalid YAML" in result.stderr


def test_explain_names_the_chosen_router_and_what_each_middleware_decides(
        tmp_path: Path) -> None:
    result = switchyard("explain", "-c", str(write_config(tmp_path, GOOD)),
                        "--entrypoint", "web", "--sni", "db.example.com",
                        "--client-ip", "10.1.2.3")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert 'Connection: TLS, SNI "db.example.com", client 10.1.2.3, on entry point "web"' in out
    assert "db@file" in next(line for line in out.splitlines() if "<- chosen" in line)
    assert "1. office@file (ipAllowList): allows: client IP 10.1.2.3 is in sourceRange" in out
    assert "server 10.9.0.1:5432" in out
    assert out.strip().endswith('Result: routed by "db@file" to service "db@file"')


def test_explain_json_reports_a_refused_client(tmp_path: Path) -> None:
    result = switchyard("explain", "-c", str(write_config(tmp_path, GOOD)),
                        "--entrypoint", "web", "--sni", "db.example.com",
                        "--client-ip", "192.0.2.1", "--json")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["router"] == "db@file"
    assert found["middlewares"][0]["allows"] is False
    assert found["outcome"].startswith('closed by middleware "office@file"')


def test_explain_without_a_matching_router_says_the_connection_is_closed(
        tmp_path: Path) -> None:
    result = switchyard("explain", "-c", str(write_config(tmp_path, BROKEN)),
                        "--entrypoint", "web", "--sni", "other.example.com",
                        "--client-ip", "10.1.2.3")
    assert result.returncode == 0, result.stderr
    assert 'Result: closed: no TLS router on "web" matches this connection' in result.stdout
    assert "needs-tls@file: invalid rule" in result.stdout


def test_explain_rejects_an_unknown_entrypoint_as_a_usage_error(tmp_path: Path) -> None:
    result = switchyard("explain", "-c", str(write_config(tmp_path, GOOD)),
                        "--entrypoint", "nope", "--client-ip", "10.1.2.3")
    assert result.returncode == 2
    assert 'entry point "nope" is not a TCP entry point' in result.stderr
    assert "known: smtp, web" in result.stderr
