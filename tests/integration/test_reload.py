"""Hot reload in-process: what the API says about a broken file, and certificate swaps."""

from __future__ import annotations

import json
import socket
import ssl
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.harness import Backends, LoopThread, connect, greeting_name, start_router, stop_router

ROUTES = """
tcp:
  routers:
    all: {{rule: "HostSNI(`*`)", service: app}}
  services:
    app: {{loadBalancer: {{servers: [{{address: "127.0.0.1:{port}"}}]}}}}
"""


def wait_for(predicate, what: str, timeout: float = 10) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def overview(app: Any) -> dict[str, Any]:
    url = f"http://127.0.0.1:{app.internal_servers[0].port}/api/overview"
    with urllib.request.urlopen(url, timeout=5) as response:
        return dict(json.load(response))


def test_broken_file_shows_in_the_api_while_the_last_good_config_serves(
        loop_thread: LoopThread, backends: Backends, tmp_path: Path) -> None:
    first, second = backends.whoami("first"), backends.whoami("second")
    app = start_router(loop_thread, tmp_path, ROUTES.format(port=first),
                       entrypoints={"ep": "127.0.0.1:0", "traefik": "127.0.0.1:0"},
                       api={"insecure": True},
                       providers={"providersThrottleDuration": "20ms",
                                  "file": {"filename": str(tmp_path / "dynamic.yml")}})
    port = app.entrypoints["ep"].port
    dynamic = tmp_path / "dynamic.yml"
    try:
        live = connect(port)
        assert greeting_name(live) == "first"
        dynamic.write_text("tcp: [broken")
        wait_for(lambda: overview(app)["switchyard"]["config"]["providerErrors"], "the error in the API")
        assert "file" in overview(app)["switchyard"]["config"]["providerErrors"]
        with connect(port) as conn:
            assert greeting_name(conn) == "first"  # the last good config
        dynamic.write_text(ROUTES.format(port=second))
        wait_for(lambda: not overview(app)["switchyard"]["config"]["providerErrors"], "the error to clear")
        wait_for(lambda: greeting_name(connect(port)) == "second", "the new route")
        live.sendall(b"still")  # the stream that started before all this
        assert live.recv(5) == b"still"
        live.close()
    finally:
        stop_router(loop_thread, app)


def test_new_certificate_applies_to_new_handshakes(
        loop_thread: LoopThread, backends: Backends, tmp_path: Path, ca: Any) -> None:
    def config(cert: Any) -> str:
        chain = "".join(blob.bytes().decode() for blob in cert.cert_chain_pems)
        key = cert.private_key_pem.bytes().decode()
        indent = "\n" + " " * 10
        return f"""
tcp:
  routers:
    site: {{rule: "HostSNI(`site.test`)", service: app, tls: {{}}}}
  services:
    app: {{loadBalancer: {{servers: [{{address: "127.0.0.1:{backend}"}}]}}}}
tls:
  certificates:
    - certFile: |{indent}{indent.join(chain.splitlines())}
      keyFile: |{indent}{indent.join(key.splitlines())}
"""

    backend = backends.whoami("app")
    old, new = ca.issue_cert("site.test"), ca.issue_cert("site.test")
    app = start_router(loop_thread, tmp_path, config(old),
                       providers={"providersThrottleDuration": "20ms",
                                  "file": {"filename": str(tmp_path / "dynamic.yml")}})
    port = app.entrypoints["ep"].port
    context = ssl.create_default_context()
    ca.configure_trust(context)

    def served() -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname="site.test") as tls:
            der = tls.getpeercert(binary_form=True)
            assert der is not None
            return der

    try:
        first = served()
        (tmp_path / "dynamic.yml").write_text(config(new))
        wait_for(lambda: served() != first, "the new certificate")
    finally:
        stop_router(loop_thread, app)
