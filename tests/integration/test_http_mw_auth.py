"""basicAuth, digestAuth and forwardAuth over real sockets, with curl and http.client as clients."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import http.server
import json
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest

from switchyard.http.middlewares.htpasswd import apr1, sha1_secret
from tests.harness import LoopThread, dead_port, ensure_command
from tests.mwkit import echo_backend, echoed, raw_request, serve


@pytest.fixture(scope="module")
def curl() -> str:
    try:
        return ensure_command("curl", "curl")
    except (RuntimeError, subprocess.CalledProcessError, OSError):
        pytest.skip("curl cannot be installed")


@pytest.fixture
def echo() -> Iterator[int]:
    with echo_backend() as port:
        yield port


def _curl(curl: str, url: str, *args: str) -> tuple[int, dict[str, list[str]], bytes]:
    """Status, header fields (lower-case name -> values) and body of the last response."""
    done = subprocess.run([curl, "-s", "-i", "--max-time", "10", *args, url], check=True,
                          capture_output=True, timeout=20)
    raw = done.stdout
    # With --digest curl shows the 401 first; the last head is the answer that counts.
    while True:
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        if status != 401 or not body.startswith(b"HTTP/"):
            break
        raw = body
    fields: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields.setdefault(name.strip().lower(), []).append(value.strip())
    return status, fields, body


def _get(port: int, path: str, headers: dict[str, str] | None = None
         ) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def _htdigest(user: str, realm: str, password: str) -> str:
    return f"{user}:{realm}:{hashlib.md5(f'{user}:{realm}:{password}'.encode()).hexdigest()}"


# -- basicAuth -----------------------------------------------------------------------------------

BASIC = """
http:
  routers:
    r-plain: {{rule: "PathPrefix(`/plain`)", middlewares: [basic], service: echo}}
    r-named: {{rule: "PathPrefix(`/named`)", middlewares: [named], service: echo}}
    r-filed: {{rule: "PathPrefix(`/filed`)", middlewares: [filed], service: echo}}
    r-broken: {{rule: "PathPrefix(`/broken`)", middlewares: [broken], service: echo}}
    r-missing: {{rule: "PathPrefix(`/missing`)", middlewares: [missing], service: echo}}
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
    filed:
      basicAuth:
        usersFile: "{users_file}"
        users: ["{override}"]
    broken:
      basicAuth:
        users: ["{apr1_user}", "no-colon-here"]
    missing:
      basicAuth:
        usersFile: "{nowhere}"
  services:
    echo: {{loadBalancer: {{servers: [{{url: "http://127.0.0.1:{echo}"}}]}}}}
"""


@pytest.fixture
def basic(loop_thread: LoopThread, tmp_path: Path, echo: int) -> Iterator[dict[str, int]]:
    users_file = tmp_path / "users.htpasswd"
    users_file.write_text("# staff\n\n  erin:" + sha1_secret(b"from-file") + "  \r\n"
                          "frank:" + sha1_secret(b"old") + "\n")
    dynamic = BASIC.format(
        bcrypt_user="alice:" + bcrypt.hashpw(b"wonderland", bcrypt.gensalt(4)).decode()
        .replace("$2b$", "$2y$"),
        apr1_user="bob:" + apr1(b"builder", b"saltsalt"),
        sha_user="carol:" + sha1_secret(b"sha-pass"),
        override="frank:" + sha1_secret(b"new"),
        users_file=users_file, nowhere=tmp_path / "absent.htpasswd", echo=echo)
    with serve(loop_thread, tmp_path, dynamic, api={"insecure": True}) as ports:
        yield ports


@pytest.mark.parametrize("user", ["alice:wonderland", "bob:builder", "carol:sha-pass"])
def test_basic_auth_lets_each_hash_scheme_in_with_curl(curl: str, basic: dict[str, int],
                                                       user: str) -> None:
    status, _, body = _curl(curl, f"http://127.0.0.1:{basic['web']}/plain/x", "--user", user)
    assert status == 200
    assert echoed(body)["fields"]["authorization"][0].startswith("Basic ")


@pytest.mark.parametrize("user", ["alice:wrong", "bob:Builder", "nobody:builder", "carol:"])
def test_basic_auth_refuses_wrong_credentials_as_traefik_does(curl: str, basic: dict[str, int],
                                                              user: str) -> None:
    status, fields, body = _curl(curl, f"http://127.0.0.1:{basic['web']}/plain", "--user", user)
    assert status == 401
    assert fields["www-authenticate"] == ['Basic realm="traefik"']
    assert fields["content-type"] == ["text/plain"]
    assert body == b"401 Unauthorized\n"


def test_basic_auth_without_credentials_is_challenged_with_the_realm(basic: dict[str, int]) -> None:
    status, headers, body = _get(basic["web"], "/named")
    assert (status, headers["www-authenticate"], body) == (
        401, 'Basic realm="staff area"', b"401 Unauthorized\n")
    # A scheme other than Basic, or base64 that does not decode, is no credential either.
    assert _get(basic["web"], "/plain", {"Authorization": "Bearer Ym9iOmJ1aWxkZXI="})[0] == 401
    assert _get(basic["web"], "/plain", {"Authorization": "Basic Ym9iOmJ1aWxkZXI"})[0] == 401
    assert _get(basic["web"], "/plain", {"Authorization": "basic Ym9iOmJ1aWxkZXI="})[0] == 200


def test_basic_auth_header_field_names_the_user_and_remove_header_drops_credentials(
        curl: str, basic: dict[str, int]) -> None:
    status, _, body = _curl(curl, f"http://127.0.0.1:{basic['web']}/named", "--user",
                            "bob:builder", "-H", "X-WebAuth-User: spoofed")
    assert status == 200
    fields = echoed(body)["fields"]
    assert fields["x-webauth-user"] == ["bob"]
    assert "authorization" not in fields


def test_basic_auth_users_file_is_read_and_inline_users_override_it(curl: str,
                                                                    basic: dict[str, int]) -> None:
    url = f"http://127.0.0.1:{basic['web']}/filed"
    assert _curl(curl, url, "--user", "erin:from-file")[0] == 200
    assert _curl(curl, url, "--user", "frank:new")[0] == 200
    assert _curl(curl, url, "--user", "frank:old")[0] == 401


def test_keep_alive_requests_with_bcrypt_credentials_all_pass(basic: dict[str, int]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", basic["web"], timeout=10)
    try:
        for _ in range(20):
            conn.request("GET", "/plain", headers={"Authorization": "Basic YWxpY2U6d29uZGVybGFuZA=="})
            response = conn.getresponse()
            response.read()
            assert response.status == 200
    finally:
        conn.close()


def test_bad_users_disable_the_router_and_the_api_says_which_entry(basic: dict[str, int]) -> None:
    assert _get(basic["web"], "/broken")[0] == 404
    assert _get(basic["web"], "/missing")[0] == 404
    body = _get(basic["api"], "/api/http/middlewares")[2]
    errors = {item["name"]: item.get("error", []) for item in json.loads(body)}
    assert errors["broken@file"] == [
        ("users[1]: expected name:hashed-password, found 1 colon-separated field "
         "(user 'no-colon-here')")]
    assert "absent.htpasswd: cannot be read" in errors["missing@file"][0]
    assert errors["basic@file"] == []


# -- digestAuth ----------------------------------------------------------------------------------

DIGEST = """
http:
  routers:
    r-digest: {{rule: "PathPrefix(`/digest`)", middlewares: [digest], service: echo}}
    r-other: {{rule: "PathPrefix(`/other`)", middlewares: [other], service: echo}}
  middlewares:
    digest:
      digestAuth:
        users: ["{dave}", "{elsewhere}"]
        headerField: X-Digest-User
        removeHeader: true
    other:
      digestAuth:
        usersFile: "{users_file}"
        realm: "other realm"
  services:
    echo: {{loadBalancer: {{servers: [{{url: "http://127.0.0.1:{echo}"}}]}}}}
"""


@pytest.fixture
def digest(loop_thread: LoopThread, tmp_path: Path, echo: int) -> Iterator[dict[str, int]]:
    users_file = tmp_path / "users.htdigest"
    users_file.write_text(_htdigest("gina", "other realm", "secret") + "\n")
    dynamic = DIGEST.format(dave=_htdigest("dave", "traefik", "pw"),
                            elsewhere=_htdigest("eve", "elsewhere", "pw"),
                            users_file=users_file, echo=echo)
    with serve(loop_thread, tmp_path, dynamic) as ports:
        yield ports


def test_digest_auth_lets_curl_in_and_names_the_user(curl: str, digest: dict[str, int]) -> None:
    status, _, body = _curl(curl, f"http://127.0.0.1:{digest['web']}/digest/a?b=c", "--digest",
                            "--user", "dave:pw")
    assert status == 200
    data = echoed(body)
    assert data["target"] == "/digest/a?b=c"
    assert data["fields"]["x-digest-user"] == ["dave"]
    assert "authorization" not in data["fields"]


@pytest.mark.parametrize("user", ["dave:wrong", "eve:pw", "nobody:pw"])
def test_digest_auth_refuses_wrong_passwords_and_users_of_another_realm(
        curl: str, digest: dict[str, int], user: str) -> None:
    status, fields, body = _curl(curl, f"http://127.0.0.1:{digest['web']}/digest", "--digest",
                                 "--user", user)
    assert status == 401
    assert body == b"401 Unauthorized\n"
    challenge = fields["www-authenticate"][0]
    assert challenge.startswith('Digest realm="traefik", nonce="')
    assert challenge.endswith('", algorithm="MD5", qop="auth"')


def test_digest_auth_reads_the_users_file_with_its_realm(curl: str, digest: dict[str, int]) -> None:
    url = f"http://127.0.0.1:{digest['web']}/other"
    assert _curl(curl, url, "--digest", "--user", "gina:secret")[0] == 200
    assert _curl(curl, url, "--digest", "--user", "dave:pw")[0] == 401


def _digest_answer(challenge: str, method: str, uri: str, count: str, password: str = "pw",
                   user: str = "dave") -> str:
    params = dict(part.strip().split("=", 1) for part in challenge[len("Digest "):].split(", "))
    realm, nonce, opaque = (params[key].strip('"') for key in ("realm", "nonce", "opaque"))
    ha1 = hashlib.md5(f"{user}:{realm}:{password}".encode()).hexdigest()
    ha2 = hashlib.md5(f"{method}:{uri}".encode()).hexdigest()
    response = hashlib.md5(f"{ha1}:{nonce}:{count}:c0ffee:auth:{ha2}".encode()).hexdigest()
    return (f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
            f'algorithm=MD5, response="{response}", opaque="{opaque}", qop=auth, nc={count}, '
            f'cnonce="c0ffee"')


def test_digest_nonce_counts_replays_fail_and_older_counts_are_stale(
        digest: dict[str, int]) -> None:
    port = digest["web"]
    status, headers, _ = _get(port, "/digest")
    assert status == 401
    challenge = headers["www-authenticate"]
    assert _get(port, "/digest", {"Authorization": _digest_answer(challenge, "GET", "/digest",
                                                                  "00000002")})[0] == 200
    replay = _get(port, "/digest", {"Authorization": _digest_answer(challenge, "GET", "/digest",
                                                                    "00000002")})
    assert replay[0] == 401 and "stale" not in replay[1]["www-authenticate"]
    older = _get(port, "/digest", {"Authorization": _digest_answer(challenge, "GET", "/digest",
                                                                   "00000001")})
    assert older[0] == 401
    assert 'stale="true", algorithm="MD5"' in older[1]["www-authenticate"]
    # The uri may name a prefix of the request path; another method or path fails.
    assert _get(port, "/digest/deeper", {"Authorization": _digest_answer(
        challenge, "GET", "/digest", "00000003")})[0] == 200
    assert _get(port, "/digest", {"Authorization": _digest_answer(
        challenge, "POST", "/digest", "00000004")})[0] == 401


def test_digest_lone_quote_parameter_gets_traefiks_500(digest: dict[str, int]) -> None:
    answer = raw_request(digest["web"], b"GET /digest HTTP/1.1\r\nHost: x\r\n"
                         b'Authorization: Digest username="\r\nConnection: close\r\n\r\n')
    assert answer.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert answer.endswith(b"\r\n\r\nInternal Server Error\n")


# -- forwardAuth ---------------------------------------------------------------------------------


class _AuthHandler(http.server.BaseHTTPRequestHandler):
    """An auth server steered by the client's X-Auth header (copied into the auth request)."""

    protocol_version = "HTTP/1.1"
    seen: list[dict[str, Any]]

    def _answer(self) -> None:
        body = b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while (size := int(self.rfile.readline().strip(), 16)):
                body += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
        elif self.headers.get("Content-Length"):
            body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.seen.append({  # type: ignore[attr-defined]
            "method": self.command, "target": self.path, "body": body,
            "headers": [(name.lower(), value) for name, value in self.headers.items()]})
        verdict = self.headers.get("X-Auth", "allow")
        if verdict == "allow":
            self._send(200, [("X-Auth-User", "alice"), ("X-Auth-Role", "admin"),
                             ("X-Auth-Role", "ops"), ("X-Unlisted", "no"),
                             ("Set-Cookie", "auth=token; Path=/"),
                             ("Set-Cookie", "tracking=1")], b"")
        elif verdict == "deny":
            self._send(401, [("WWW-Authenticate", 'Bearer realm="sso"'),
                             ("Content-Type", "text/plain"), ("X-Reason", "expired")], b"denied")
        elif verdict == "redirect":
            self._send(302, [("Location", "/login?next=%2Fapp")], b"")
        else:
            self._send(int(verdict), [], b"status " + verdict.encode())

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def auth_server(context: ssl.SSLContext | None = None) -> Iterator[tuple[int, list[Any]]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AuthHandler)
    server.daemon_threads = True
    server.seen = []  # type: ignore[attr-defined]
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1], server.seen  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


FORWARD = """
http:
  routers:
    r-fa: {{rule: "PathPrefix(`/fa`)", middlewares: [fa], service: echo}}
    r-legacy: {{rule: "PathPrefix(`/legacy`)", middlewares: [legacy], service: echo}}
    r-body: {{rule: "PathPrefix(`/body`)", middlewares: [body], service: echo}}
    r-down: {{rule: "PathPrefix(`/down`)", middlewares: [down], service: echo}}
    r-tls: {{rule: "PathPrefix(`/tls`)", middlewares: [secure], service: echo}}
    r-bad-tls: {{rule: "PathPrefix(`/bad-tls`)", middlewares: [bad-tls], service: echo}}
  middlewares:
    fa:
      forwardAuth:
        address: "http://127.0.0.1:{auth}/check?from=traefik"
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
    body:
      forwardAuth:
        address: "http://127.0.0.1:{auth}/body"
        forwardBody: true
        maxBodySize: 10
    down:
      forwardAuth:
        address: "http://127.0.0.1:{dead}/nobody"
    secure:
      forwardAuth:
        address: "https://localhost:{tls_auth}/tls"
        tls: {{ca: "{ca_file}"}}
    bad-tls:
      forwardAuth:
        address: "https://localhost:{tls_auth}/tls"
        tls: {{cert: "{ca_file}"}}
  services:
    echo:
      loadBalancer:
        servers: [{{url: "http://127.0.0.1:{echo}"}}]
"""


@pytest.fixture
def forward(loop_thread: LoopThread, tmp_path: Path, ca: Any
            ) -> Iterator[tuple[dict[str, int], list[Any], list[Any]]]:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with (auth_server() as (auth, seen), auth_server(server_context) as (tls_auth, tls_seen),
          echo_backend() as echo):
        dynamic = FORWARD.format(auth=auth, tls_auth=tls_auth, dead=dead_port(), echo=echo,
                                 ca_file=ca_file)
        with serve(loop_thread, tmp_path, dynamic, api={"insecure": True}) as ports:
            yield ports, seen, tls_seen


def _request(port: int, method: str, path: str, headers: dict[str, str] | None = None,
             body: bytes | None = None) -> tuple[int, http.client.HTTPResponse, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response, response.read()
    finally:
        conn.close()


def test_forward_auth_lets_a_request_in_and_copies_the_listed_answer_headers(forward: Any) -> None:
    ports, seen, _ = forward
    status, response, body = _request(ports["web"], "POST", "/fa/app?x=1", {
        "X-Auth-User": "mallory", "X-Auth-Rank": "spoofed", "X-Forwarded-Prefix": "/evil",
        "Cookie": "c=1"}, b"payload")
    assert status == 200
    fields = echoed(body)["fields"]
    assert fields["x-auth-user"] == ["alice"]
    assert fields["x-auth-role"] == ["admin", "ops"]
    assert "x-auth-rank" not in fields  # the regex strips what the auth server did not say
    assert "x-unlisted" not in fields
    assert echoed(body)["body"] == "payload"
    # Only the listed auth cookie joins the response; the other one stays with the auth server.
    assert response.headers.get_all("Set-Cookie") == ["auth=token; Path=/"]
    (auth,) = seen
    assert (auth["method"], auth["target"], auth["body"]) == ("GET", "/check?from=traefik", b"")
    headers = dict(auth["headers"])
    assert headers["x-forwarded-method"] == "POST"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == f"127.0.0.1:{ports['web']}"
    assert headers["x-forwarded-uri"] == "/fa/app?x=1"
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-port"] == str(ports["web"])
    assert headers["host"].startswith("127.0.0.1:")  # the address's, not the client's
    assert "x-forwarded-prefix" not in headers  # trustForwardHeader false drops them all
    assert headers["cookie"] == "c=1"


def test_forward_auth_refusal_reaches_the_client_as_the_auth_server_wrote_it(forward: Any) -> None:
    ports, _, _ = forward
    status, response, body = _request(ports["web"], "GET", "/fa", {"X-Auth": "deny"})
    assert (status, body) == (401, b"denied")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="sso"'
    assert response.headers["X-Reason"] == "expired"
    assert response.headers["Content-Type"] == "text/plain"
    status, _, body = _request(ports["web"], "GET", "/fa", {"X-Auth": "403"})
    assert (status, body) == (403, b"status 403")


def test_forward_auth_redirect_location_is_made_absolute_unless_preserved(forward: Any) -> None:
    ports, seen, _ = forward
    status, response, _ = _request(ports["web"], "GET", "/fa", {"X-Auth": "redirect"})
    auth_port = int(dict(seen[0]["headers"])["host"].rpartition(":")[2])
    assert status == 302
    assert response.headers["Location"] == f"http://127.0.0.1:{auth_port}/login?next=%2Fapp"
    status, response, _ = _request(ports["web"], "GET", "/legacy", {"X-Auth": "redirect"})
    assert (status, response.headers["Location"]) == (302, "/login?next=%2Fapp")


def test_forward_auth_request_headers_filter_and_method_preserved(forward: Any) -> None:
    ports, seen, _ = forward
    status, _, _ = _request(ports["web"], "PUT", "/legacy/x", {
        "X-Auth": "allow", "Accept": "text/html", "Cookie": "secret", "X-Forwarded-Prefix": "/p"})
    assert status == 200
    (auth,) = seen
    assert auth["method"] == "PUT"
    headers = dict(auth["headers"])
    assert "cookie" not in headers and "x-forwarded-prefix" not in headers
    assert headers["accept"] == "text/html"
    assert headers["x-forwarded-uri"] == "/legacy/x"
    assert headers["user-agent"] == "Go-http-client/1.1"  # as Go's client says when filtered


def test_forward_auth_forwards_the_body_within_max_body_size(forward: Any) -> None:
    ports, seen, _ = forward
    status, _, body = _request(ports["web"], "POST", "/body", {}, b"0123456789")
    assert status == 200
    assert seen[0]["body"] == b"0123456789"
    assert echoed(body)["body"] == "0123456789"
    status, _, body = _request(ports["web"], "POST", "/body", {}, b"0123456789+")
    assert (status, body) == (401, b"")
    assert len(seen) == 1


def test_forward_auth_server_down_gives_an_empty_500(forward: Any) -> None:
    ports, _, _ = forward
    status, response, body = _request(ports["web"], "GET", "/down")
    assert (status, body, response.headers["Content-Length"]) == (500, b"", "0")


def test_forward_auth_over_tls_with_a_ca_and_a_bad_tls_setting_is_an_error(forward: Any) -> None:
    ports, _, tls_seen = forward
    assert _request(ports["web"], "GET", "/tls/x")[0] == 200
    assert tls_seen[0]["target"] == "/tls"
    assert _request(ports["web"], "GET", "/bad-tls")[0] == 404
    errors = {item["name"]: item.get("error", []) for item in
              json.loads(_request(ports["api"], "GET", "/api/http/middlewares")[2])}
    assert errors["bad-tls@file"] == [
        ("unable to create client TLS configuration: both TLS cert and key must be defined "
         "(tls.cert and tls.key)")]
