"""`explain` and real connections agree: the same router, and the same close reason the access log writes."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from switchyard.explain import Explanation, explain
from switchyard.server import Switchyard
from switchyard.tls.postgres import SSL_REQUEST
from tests.harness import Backends, LoopThread, connect, greeting_name, start_router, stop_router

DYNAMIC = """
tcp:
  routers:
    broken-opts:
      rule: "HostSNI(`broken.example.com`)"
      service: app
      tls: {{options: nosuch}}
    h1:
      rule: "HostSNI(`h1.example.com`)"
      service: app
      tls: {{options: h1only}}
    office:
      rule: "HostSNI(`office.example.com`)"
      service: app
      middlewares: [office]
      tls: {{passthrough: true}}
    limited:
      rule: "HostSNI(`limited.example.com`)"
      service: app
      middlewares: [one-each]
      tls: {{}}
    dead:
      rule: "HostSNI(`dead.example.com`)"
      service: nobody
      tls: {{passthrough: true}}
    pg:
      rule: "HostSNI(`pg.example.com`)"
      service: app
      tls: {{}}
    strict:
      rule: "HostSNI(`*`)"
      service: app
      tls: {{options: strict}}
  middlewares:
    office: {{ipAllowList: {{sourceRange: ["10.0.0.0/8"]}}}}
    one-each: {{inFlightConn: {{amount: 1}}}}
  services:
    app: {{loadBalancer: {{servers: [{{address: "127.0.0.1:{port}"}}]}}}}
    nobody: {{loadBalancer: {{servers: []}}}}
tls:
  options:
    h1only: {{alpnProtocols: [http/1.1]}}
    strict: {{sniStrict: true}}
"""


@pytest.fixture
def app(loop_thread: LoopThread, backends: Backends, tmp_path: Path) -> Iterator[Switchyard]:
    port = backends.whoami("app")
    started = start_router(loop_thread, tmp_path, DYNAMIC.format(port=port),
                           entrypoints={"ep": "127.0.0.1:0", "traefik": "127.0.0.1:0"},
                           api={"insecure": True},
                           accessLog={"filePath": str(tmp_path / "access.log"),
                                      "format": "json"})
    try:
        yield started
    finally:
        stop_router(loop_thread, started)


def said(loop_thread: LoopThread, app: Switchyard, **kwargs: Any) -> Explanation:
    async def ask() -> Explanation:
        return explain(app.runtime, app.static, "ep", "127.0.0.1", live=True, **kwargs)
    return loop_thread.run(ask())


def logged(loop_thread: LoopThread, app: Switchyard, tmp_path: Path, count: int) -> list[Any]:
    """The access log's lines, once `count` connections have ended."""
    deadline = time.monotonic() + 10
    while True:
        async def flush() -> None:
            assert app.access_log is not None
            app.access_log.flush()
        loop_thread.run(flush())
        lines = (tmp_path / "access.log").read_text().splitlines()
        if len(lines) >= count or time.monotonic() > deadline:
            return [json.loads(line) for line in lines]
        time.sleep(0.05)


def tls_attempt(port: int, sni: str | None, alpn: list[str] | None = None,
                first: bytes = b"") -> ssl.SSLSocket | None:
    """A TLS client; None when the handshake fails or the connection is closed."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    if alpn:
        context.set_alpn_protocols(alpn)
    sock = connect(port)
    if first:
        sock.sendall(first)
        assert sock.recv(1) == b"S"
    try:
        return context.wrap_socket(sock, server_hostname=sni)
    except (ssl.SSLError, OSError):
        sock.close()
        return None


@pytest.mark.parametrize(("case", "sni", "alpn", "reason"), [
    ("broken TLS options", "broken.example.com", None, "tls_config"),
    ("ALPN refusal", "h1.example.com", ["h2"], "tls_error"),
    ("allow-list rejection", "office.example.com", None, "rejected"),
    ("no server UP", "dead.example.com", None, "no_server"),
    ("sniStrict without SNI", None, None, "tls_error"),
])
def test_explain_names_the_reason_the_access_log_writes(
        loop_thread: LoopThread, app: Switchyard, tmp_path: Path, case: str, sni: str | None,
        alpn: list[str] | None, reason: str) -> None:
    answer = said(loop_thread, app, tls=True, sni=sni, alpn=alpn or ())
    assert answer.close_reason == reason, (case, answer.outcome)
    client = tls_attempt(app.entrypoints["ep"].port, sni, alpn)
    if client is not None:
        with client:
            assert client.recv(1) == b""  # what Switchyard closes, it closes without a word
    [entry] = logged(loop_thread, app, tmp_path, 1)
    assert entry["reason"] == reason, (case, entry)
    assert entry["router"] == (answer.router or ""), (case, entry)


def test_in_flight_rejection_is_what_the_running_instance_explains(
        loop_thread: LoopThread, app: Switchyard, tmp_path: Path) -> None:
    port = app.entrypoints["ep"].port
    first = tls_attempt(port, "limited.example.com")
    assert first is not None
    with first:
        assert greeting_name(first) == "app"
        answer = said(loop_thread, app, tls=True, sni="limited.example.com")
        assert answer.close_reason == "rejected"
        [limit] = answer.middlewares
        assert limit.allows is False and "1 of 1 connections" in limit.detail
        second = tls_attempt(port, "limited.example.com")
        if second is not None:
            with second:
                assert second.recv(1) == b""
        [entry] = logged(loop_thread, app, tmp_path, 1)
        assert (entry["reason"], entry["router"]) == ("rejected", "limited@file")


def test_postgres_starttls_is_routed_as_explain_says(
        loop_thread: LoopThread, app: Switchyard, tmp_path: Path) -> None:
    answer = said(loop_thread, app, tls=True, sni="pg.example.com", postgres=True)
    assert (answer.action, answer.router, answer.close_reason) == ("forward", "pg@file", None)
    client = tls_attempt(app.entrypoints["ep"].port, "pg.example.com", first=SSL_REQUEST)
    assert client is not None
    with client:
        assert greeting_name(client) == "app"
    [entry] = logged(loop_thread, app, tmp_path, 1)
    assert (entry["router"], entry["server"]) == ("pg@file", answer.server)


def test_the_command_asks_the_running_instance(loop_thread: LoopThread, app: Switchyard,
                                               tmp_path: Path) -> None:
    api = app.internal_servers[0].port
    config = tmp_path / "static.yml"
    config.write_text(json.dumps({
        "entryPoints": {"ep": {"address": "127.0.0.1:1"},
                        "traefik": {"address": f"127.0.0.1:{api}"}},
        "api": {"insecure": True},
        "providers": {"file": {"filename": str(tmp_path / "dynamic.yml")}}}))
    port = app.entrypoints["ep"].port
    held = tls_attempt(port, "limited.example.com")
    assert held is not None
    with held:
        assert greeting_name(held) == "app"
        live = subprocess.run(
            [sys.executable, "-m", "switchyard", "explain", "-c", str(config), "--entrypoint",
             "ep", "--client-ip", "127.0.0.1", "--sni", "limited.example.com", "--json"],
            check=False, capture_output=True, text=True, timeout=60)
        offline = subprocess.run(
            [sys.executable, "-m", "switchyard", "explain", "-c", str(config), "--entrypoint",
             "ep", "--client-ip", "127.0.0.1", "--sni", "limited.example.com", "--json",
             "--offline"], check=False, capture_output=True, text=True, timeout=60)
    assert live.returncode == 0, live.stderr
    assert json.loads(live.stdout)["closeReason"] == "rejected"
    assert json.loads(live.stdout)["live"] is True
    assert offline.returncode == 0, offline.stderr
    assert json.loads(offline.stdout)["closeReason"] is None  # depends on live state
    assert "offline" in offline.stderr


def test_the_api_refuses_a_question_it_cannot_answer(app: Switchyard) -> None:
    query = urllib.parse.urlencode({"entryPoint": "nope", "clientIP": "127.0.0.1"})
    url = f"http://127.0.0.1:{app.internal_servers[0].port}/api/explain?{query}"
    with pytest.raises(urllib.error.HTTPError) as failure:
        urllib.request.urlopen(url, timeout=5)
    assert failure.value.code == 400
    assert "known: ep" in json.load(failure.value)["message"]
