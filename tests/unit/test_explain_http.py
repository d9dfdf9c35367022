"""`explain` for requests: the HTTP router the entry router picks, with middlewares and service."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from switchyard.build import build_runtime
from switchyard.cli import main
from switchyard.config.loader import load_dynamic_from_dict, static_from_dict
from switchyard.explain import Explanation, explain, render_text
from switchyard.explain_http import RequestQuestion

STATIC = {"entryPoints": {"web": {"address": ":80"}, "secure": {"address": ":443"}}}

DYNAMIC = """
tcp:
  routers:
    db:
      rule: "HostSNI(`db.test`)"
      service: db
      entryPoints: [secure]
      tls: {passthrough: true}
  services:
    db: {loadBalancer: {servers: [{address: "127.0.0.1:5432"}]}}
http:
  routers:
    docs:
      rule: "Host(`site.test`) && PathPrefix(`/docs`)"
      service: site
      middlewares: [strip]
    site:
      rule: "Host(`site.test`)"
      service: site
    admin:
      rule: "Host(`site.test`) && Header(`X-Admin`, `yes`)"
      priority: 1000
      service: admin
    app:
      rule: "Host(`app.test`)"
      service: site
      entryPoints: [secure]
      tls: {}
    broken:
      rule: "Host(`broken.test`)"
      service: nosuch
  middlewares:
    strip: {addPrefix: {prefix: "/x"}}
  services:
    site: {loadBalancer: {servers: [{url: "http://127.0.0.1:8001"}, {url: "http://127.0.0.1:8002"}]}}
    admin:
      weighted: {services: [{name: site, weight: 3}]}
"""


@pytest.fixture(scope="module")
def setup() -> tuple[Any, Any]:
    static, issues = static_from_dict(STATIC, "test")
    assert not issues
    config, _ = load_dynamic_from_dict(yaml.safe_load(DYNAMIC), "file")
    return static, build_runtime(static, {"file": config})


def _ask(setup: tuple[Any, Any], entrypoint: str = "web", *, tls: bool = False,
         sni: str | None = None, **question: Any) -> Explanation:
    static, runtime = setup
    return explain(runtime, static, entrypoint, "10.0.0.7", tls=tls, sni=sni,
                   request=RequestQuestion(**question))


def test_the_longest_rule_wins_and_the_middlewares_and_servers_are_named(setup: Any) -> None:
    found = _ask(setup, host="site.test", path="/docs/a")
    assert found.action == "http" and found.http is not None
    assert found.http.router == "docs@file"
    assert found.http.middlewares == ["strip@file (addPrefix)"]
    assert found.http.servers == ["http://127.0.0.1:8001", "http://127.0.0.1:8002"]
    chosen = [c.router for c in found.http.candidates if c.chosen]
    matched = [c.router for c in found.http.candidates if c.matched]
    assert chosen == ["docs@file"] and matched == ["docs@file", "site@file"]


def test_a_header_rule_with_a_high_priority_takes_the_request(setup: Any) -> None:
    found = _ask(setup, host="site.test", path="/docs", headers=(("X-Admin", "yes"),))
    assert found.http is not None and found.http.router == "admin@file"
    assert found.http.service_type == "weighted"


def test_no_match_is_a_404_and_a_malformed_escape_a_400(setup: Any) -> None:
    found = _ask(setup, host="other.test")
    assert found.http is not None and (found.http.router, found.http.status) == (None, 404)
    found = _ask(setup, host="site.test", path="/%zz")
    assert found.http is not None and found.http.status == 400


def test_https_requests_use_the_sni_as_host_and_the_https_routers(setup: Any) -> None:
    found = _ask(setup, "secure", tls=True, sni="app.test")
    assert found.http is not None
    assert (found.http.scheme, found.http.host, found.http.router) == ("https", "app.test",
                                                                        "app@file")
    # A TCP router's SNI never reaches HTTP.
    assert _ask(setup, "secure", tls=True, sni="db.test").http is None


def test_disabled_http_routers_are_listed_with_their_error(setup: Any) -> None:
    found = _ask(setup, host="broken.test")
    assert found.http is not None
    assert ("broken@file", ['the service "nosuch@file" does not exist']) in found.http.disabled


def test_the_json_form_round_trips_and_the_text_names_the_router(setup: Any) -> None:
    found = _ask(setup, host="site.test", path="/docs/a")
    assert Explanation.from_json(found.as_json()) == found
    text = render_text(found)
    assert 'HTTP result: served by HTTP router "docs@file" through strip@file (addPrefix)' in text


def test_the_command_line_takes_host_path_method_and_headers(tmp_path: Any) -> None:
    static = tmp_path / "traefik.yml"
    dynamic = tmp_path / "dynamic.yml"
    dynamic.write_text(DYNAMIC)
    static.write_text(yaml.safe_dump({**STATIC, "providers": {"file": {"filename": str(dynamic)}}}))
    result = CliRunner().invoke(main, [
        "explain", "-c", str(static), "--entrypoint", "web", "--client-ip", "10.0.0.7",
        "--no-tls", "--host", "site.test", "--path", "/docs", "--header", "X-Admin: yes"])
    assert result.exit_code == 0, result.output
    assert 'served by HTTP router "admin@file"' in result.output
    bad = CliRunner().invoke(main, [
        "explain", "-c", str(static), "--entrypoint", "web", "--client-ip", "10.0.0.7",
        "--header", "nocolon"])
    assert bad.exit_code == 2 and 'write it as "Name: value"' in bad.output
