"""basicAuth, digestAuth and forwardAuth over real sockets, with curl and http.client as clients."""

from __future__ import annotations

import hashlib
import http.client
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest

from switchyard.http.middlewares.htpasswd import apr1, sha1_secret
from tests.harness import LoopThread, ensure_command
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
