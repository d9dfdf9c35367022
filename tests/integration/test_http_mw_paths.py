"""Path and redirect middlewares over real sockets: what curl and http.client see, and the errors
the API shows for a bad configuration."""

from __future__ import annotations

import http.client
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from switchyard.build import build_runtime
from switchyard.config.loader import static_from_dict
from tests.harness import LoopThread, ensure_command
from tests.mwkit import echo_backend, echoed, serve


@pytest.fixture
def echo() -> Iterator[int]:
    with echo_backend() as port:
        yield port


DYNAMIC = r"""
http:
  routers:
    strip: {{rule: "PathPrefix(`/api`)", service: echo, middlewares: [strip]}}
    strip-regex: {{rule: "PathPrefix(`/v`)", service: echo, middlewares: [versions]}}
    add: {{rule: "PathPrefix(`/add`)", service: echo, middlewares: [add]}}
    replace: {{rule: "PathPrefix(`/old`)", service: echo, middlewares: [replace]}}
    replace-regex: {{rule: "PathPrefix(`/user`)", service: echo, middlewares: [users]}}
    secure: {{rule: "PathPrefix(`/secure`)", service: echo, middlewares: [https]}}
    moved: {{rule: "PathPrefix(`/moved`)", service: echo, middlewares: [moved]}}
    bad-regex: {{rule: "PathPrefix(`/badre`)", service: echo, middlewares: [bad-regex]}}
    bad-strip: {{rule: "PathPrefix(`/badstrip`)", service: echo, middlewares: [bad-strip]}}
    no-scheme: {{rule: "PathPrefix(`/noscheme`)", service: echo, middlewares: [no-scheme]}}
    no-prefix: {{rule: "PathPrefix(`/noprefix`)", service: echo, middlewares: [no-prefix]}}
  middlewares:
    strip: {{stripPrefix: {{prefixes: ["/api"]}}}}
    versions: {{stripPrefixRegex: {{regex: ["/v[0-9]+"]}}}}
    add: {{addPrefix: {{prefix: "/base"}}}}
    replace: {{replacePath: {{path: "/new"}}}}
    users: {{replacePathRegex: {{regex: "^/user/(?P<id>[0-9]+)$", replacement: "/users?id=${{id}}"}}}}
    https: {{redirectScheme: {{scheme: https, port: "8443"}}}}
    moved: {{redirectRegex: {{regex: "^https?://([^/:]+)[^/]*/moved/(.*)",
                              replacement: "https://$1.example/$2", permanent: true}}}}
    bad-regex: {{replacePathRegex: {{regex: "(unclosed", replacement: "/x"}}}}
    bad-strip: {{stripPrefixRegex: {{regex: ["/ok", "[z-a]"]}}}}
    no-scheme: {{redirectScheme: {{port: "443"}}}}
    no-prefix: {{addPrefix: {{}}}}
  services:
    echo: {{loadBalancer: {{servers: [{{url: "http://127.0.0.1:{echo}"}}]}}}}
"""


@pytest.fixture
def ports(loop_thread: LoopThread, tmp_path: Path, echo: int) -> Iterator[dict[str, int]]:
    with serve(loop_thread, tmp_path, DYNAMIC.format(echo=echo),
               api={"insecure": True}) as found:
        yield found


def _request(port: int, method: str, target: str,
             headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request(method, target, headers=headers or {})
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def _echo(port: int, target: str) -> dict[str, object]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", target)
        response = conn.getresponse()
        assert response.status == 200
        return echoed(response.read())
    finally:
        conn.close()


def test_strip_prefix_forwards_the_rest_and_names_the_prefix(ports: dict[str, int]) -> None:
    seen = _echo(ports["web"], "/api/users/7?full=1")
    assert seen["target"] == "/users/7?full=1"
    assert seen["fields"]["x-forwarded-prefix"] == ["/api"]  # type: ignore[index]


def test_strip_prefix_of_the_whole_path_forwards_the_root(ports: dict[str, int]) -> None:
    assert _echo(ports["web"], "/api")["target"] == "/"


def test_strip_prefix_keeps_an_encoded_slash_encoded(ports: dict[str, int]) -> None:
    assert _echo(ports["web"], "/api/a%2Fb%20c")["target"] == "/a%2Fb%20c"


def test_a_strip_that_leaves_a_double_slash_is_refused(ports: dict[str, int]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", ports["web"], timeout=5)
    conn.request("GET", "/api%2F%2Fetc")
    response = conn.getresponse()
    assert (response.status, response.read()) == (400, b"Bad Request\n")
    conn.close()


def test_strip_prefix_regex_strips_what_the_regex_matched(ports: dict[str, int]) -> None:
    seen = _echo(ports["web"], "/v12/items")
    assert seen["target"] == "/items"
    assert seen["fields"]["x-forwarded-prefix"] == ["/v12"]  # type: ignore[index]


def test_add_prefix_goes_in_front(ports: dict[str, int]) -> None:
    assert _echo(ports["web"], "/add/x?q")["target"] == "/base/add/x?q"


def test_replace_path_records_the_old_path(ports: dict[str, int]) -> None:
    seen = _echo(ports["web"], "/old/a%25b?keep=1")
    assert seen["target"] == "/new?keep=1"
    assert seen["fields"]["x-replaced-path"] == ["/old/a%25b"]  # type: ignore[index]


def test_replace_path_regex_expands_named_groups(ports: dict[str, int]) -> None:
    seen = _echo(ports["web"], "/user/42")
    # The replacement's '?' is part of the path: Go escapes it when it writes the target.
    assert seen["target"] == "/users%3Fid=42"
    assert seen["fields"]["x-replaced-path"] == ["/user/42"]  # type: ignore[index]


def test_redirect_scheme_with_curl(ports: dict[str, int]) -> None:
    curl = ensure_command("curl", "curl")
    out = subprocess.run([curl, "-s", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                          "-H", "Host: example.com:8000", f"http://127.0.0.1:{ports['web']}/secure/x?y=1"],
                         capture_output=True, text=True, timeout=10, check=True).stdout
    assert out == "302 https://example.com:8443/secure/x?y=1"


@pytest.mark.parametrize(("method", "status"), [("GET", 302), ("HEAD", 307), ("POST", 307)])
def test_redirect_scheme_keeps_the_method_for_anything_but_get(ports: dict[str, int], method: str,
                                                              status: int) -> None:
    response = _request(ports["web"], method, "/secure", {"Host": "h"})
    assert response.status == status
    assert response.getheader("Location") == "https://h:8443/secure"


def test_redirect_regex_permanent(ports: dict[str, int]) -> None:
    response = _request(ports["web"], "GET", "/moved/a/b", {"Host": "shop:8000"})
    assert response.status == 301
    assert response.getheader("Location") == "https://shop.example/a/b"
    assert _request(ports["web"], "PUT", "/moved/a", {"Host": "shop"}).status == 308


def _router_errors(port: int) -> dict[str, list[str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/api/http/routers")
    listed = json.loads(conn.getresponse().read())
    conn.close()
    return {router["name"]: router.get("error", []) for router in listed}


def test_bad_configurations_name_the_middleware_and_the_key(ports: dict[str, int]) -> None:
    errors = _router_errors(ports["api"])
    assert errors["bad-regex@file"] == [
        ('regex: invalid regular expression `(unclosed`: '
        "missing ): (unclosed")]
    assert errors["bad-strip@file"][0].startswith(
        'regex[1]: invalid regular expression `[z-a]`')
    assert errors["no-scheme@file"] == [
        ('you must provide a target scheme: set '
        'redirectScheme.scheme, e.g. "https"')]
    assert errors["no-prefix@file"] == [
        'prefix cannot be empty: set addPrefix.prefix, e.g. "/api"']
    for path in ("/badre", "/badstrip", "/noscheme", "/noprefix"):
        assert _request(ports["web"], "GET", path).status == 404
    assert errors["strip@file"] == []


def test_an_entry_point_redirection_to_a_missing_entry_point_is_reported() -> None:
    static, issues = static_from_dict({"entryPoints": {
        "web": {"address": ":80",
                "http": {"redirections": {"entryPoint": {"to": "nowhere"}}}}}}, "test")
    assert not issues
    runtime = build_runtime(static, {})
    found = [(issue.path, issue.message) for issue in runtime.issues]
    assert ("entryPoints.web.http.redirections.entryPoint.to",
            "'to' entry point field references a non-existing entry point: nowhere") in found
    assert not runtime.http.routers


def test_an_entry_point_redirection_to_a_port_keeps_the_host(loop_thread: LoopThread,
                                                              tmp_path: Path, echo: int) -> None:
    dynamic = DYNAMIC.format(echo=echo)
    with serve(loop_thread, tmp_path, dynamic, entrypoint_options={"web": {"http": {
            "redirections": {"entryPoint": {"to": ":8443", "priority": 5}}}}}) as found:
        # The generated router's priority (5) is below the file routers': /api still strips.
        assert _echo(found["web"], "/api/x")["target"] == "/x"
        response = _request(found["web"], "GET", "/elsewhere?q", {"Host": "h:1234"})
        assert (response.status, response.getheader("Location")) == (301, "https://h:8443/elsewhere?q")
        assert _request(found["web"], "POST", "/elsewhere", {"Host": "h"}).status == 308
