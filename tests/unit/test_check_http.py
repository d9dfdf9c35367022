"""`check` reads the `http:` section: broken HTTP routers, services and middlewares fail it."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from switchyard.cli import main

BROKEN = """
http:
  routers:
    lost:
      rule: "Host(`lost.test`)"
      service: nosuch
    guarded:
      rule: "Host(`guarded.test`)"
      service: site
      middlewares: [missing]
  services:
    site:
      loadBalancer:
        servers: [{url: "ftp://127.0.0.1:21"}]
"""

GOOD = """
http:
  routers:
    site:
      rule: "Host(`site.test`)"
      service: site
  services:
    site:
      loadBalancer:
        servers: [{url: "http://127.0.0.1:8080"}]
"""


def _check(tmp_path: Path, dynamic: str) -> tuple[int, str]:
    (tmp_path / "dynamic.yml").write_text(dynamic)
    (tmp_path / "traefik.yml").write_text(yaml.safe_dump({
        "entryPoints": {"web": {"address": ":80"}},
        "providers": {"file": {"filename": str(tmp_path / "dynamic.yml")}}}))
    result = CliRunner().invoke(main, ["check", "-c", str(tmp_path / "traefik.yml")])
    return result.exit_code, result.output


def test_a_broken_http_section_is_reported_line_by_line_and_fails(tmp_path: Path) -> None:
    code, output = _check(tmp_path, BROKEN)
    assert code == 1, output
    assert 'dynamic.yml:4: error: http.routers.lost: router "lost@file": the service ' \
           '"nosuch@file" does not exist' in output
    assert 'http.routers.guarded: router "guarded@file": middleware "missing@file" does not ' \
           'exist' in output
    # Only the disabled routers use it, so it is not built: a warning for when one is fixed.
    assert 'dynamic.yml:12: warning: http.services.site: service "site@file" is not built ' \
           "because the routers that use it are disabled; once a router uses it: servers[0]: " \
           'server URL "ftp://127.0.0.1:21": scheme must be' in output
    assert output.rstrip().endswith("HTTP: 2 routers, 1 services, 0 middlewares: errors found")


def test_a_working_http_section_is_ok_without_warnings(tmp_path: Path) -> None:
    code, output = _check(tmp_path, GOOD)
    assert (code, output.strip().splitlines()[-1]) == (
        0, ("TCP: 0 routers, 0 services, 0 middlewares; HTTP: 1 routers, 1 services, "
           "0 middlewares: configuration OK")), output
