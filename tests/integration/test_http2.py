"""HTTP/2 to clients: TLS with ALPN h2 and h2c with prior knowledge, through real entry points.

curl (nghttp2) is the client for whole transfers; a small client on the ``h2`` library opens
several streams on one connection, so that concurrency, per-stream flow control and resets are
observed frame by frame.
"""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest
import trustme

from tests.harness import LoopThread, ensure_command
from tests.httpkit import BLOCK, H11Backend, block_digest
from tests.mwkit import serve

DYNAMIC = """
http:
  routers:
    secure:
      rule: "Host(`web.test`)"
      service: app
      tls: {{}}
      entryPoints: [websecure]
    plain:
      rule: "PathPrefix(`/`)"
      service: app
      entryPoints: [web]
  services:
    app: {{loadBalancer: {{servers: [{{url: "{url}"}}]}}}}
tls:
  certificates: [{{certFile: "{cert}", keyFile: "{key}"}}]
"""


@pytest.fixture
def site(loop_thread: LoopThread, tmp_path: Path, ca: trustme.CA) -> Iterator[dict[str, Any]]:
    backend = H11Backend(loop_thread)
    issued = ca.issue_cert("web.test")
    cert, key, ca_file = tmp_path / "web.crt", tmp_path / "web.key", tmp_path / "ca.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    try:
        with serve(loop_thread, tmp_path, DYNAMIC.format(url=backend.url, cert=cert, key=key),
                   entrypoints={"web": "127.0.0.1:0", "websecure": "127.0.0.1:0"}) as ports:
            yield {"ports": ports, "ca": str(ca_file), "backend": backend}
    finally:
        backend.close()


def curl(*args: str, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([ensure_command("curl", "curl"), "-sS", *args], input=data,
                          capture_output=True, timeout=60, check=False)


def _https(site: dict[str, Any], path: str) -> list[str]:
    port = site["ports"]["websecure"]
    return ["--http2", "--cacert", site["ca"], "--resolve", f"web.test:{port}:127.0.0.1",
            f"https://web.test:{port}{path}"]


def test_curl_negotiates_h2_over_tls_and_the_backend_sees_a_forwarded_request(
        site: dict[str, Any]) -> None:
    answer = curl("-w", "\n%{http_version}", *_https(site, "/echo?h-x-answer=yes"))
    body, _, version = answer.stdout.rpartition(b"\n")
    assert version == b"2", answer.stderr
    echoed = json.loads(body)
    headers = {name.lower(): value for name, value in echoed["headers"]}
    assert headers["host"] == f"web.test:{site['ports']['websecure']}"
    assert headers["x-forwarded-proto"] == "https"
    assert echoed["target"] == "/echo?h-x-answer=yes"


def test_h2c_with_prior_knowledge_on_a_plain_port(site: dict[str, Any]) -> None:
    port = site["ports"]["web"]
    answer = curl("--http2-prior-knowledge", "-w", "\n%{http_version}",
                  f"http://127.0.0.1:{port}/echo")
    body, _, version = answer.stdout.rpartition(b"\n")
    assert version == b"2", answer.stderr
    assert json.loads(body)["method"] == "GET"
    # The same port still speaks HTTP/1.1 to everyone else.
    old = curl("--http1.1", "-w", "\n%{http_version}", f"http://127.0.0.1:{port}/echo")
    assert old.stdout.rpartition(b"\n")[2] == b"1.1"


def test_a_large_download_and_upload_keep_every_byte(site: dict[str, Any]) -> None:
    size = 24 * 1024 * 1024 + 123
    down = curl("-o", "-", *_https(site, f"/download?size={size}"))
    assert hashlib.sha256(down.stdout).hexdigest() == block_digest(size), down.stderr
    payload = (BLOCK * 20)[: 20 * 1024 * 1024 + 7]
    up = curl("--data-binary", "@-", "-H", "Content-Type: application/octet-stream",
              *_https(site, "/upload"), data=payload)
    assert up.stdout == f"{len(payload)} {hashlib.sha256(payload).hexdigest()}".encode(), \
        up.stderr


class H2Client:
    """Just enough of an HTTP/2 client to open streams and watch what comes back."""

    def __init__(self, port: int, window: int = 65535) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding="utf-8"))
        self.conn.local_settings.initial_window_size = window
        self.conn.initiate_connection()
        # Streams get ``window`` each; the connection as a whole gets plenty.
        self.conn.increment_flow_control_window(1 << 28)
        self.sock.sendall(self.conn.data_to_send())
        self.events: list[Any] = []

    def get(self, path: str, extra: tuple[tuple[str, str], ...] = ()) -> int:
        stream = self.conn.get_next_available_stream_id()
        self.conn.send_headers(stream, [(":method", "GET"), (":path", path),
                                        (":scheme", "http"), (":authority", "h2c.test"),
                                        *extra], end_stream=True)
        self.sock.sendall(self.conn.data_to_send())
        return stream

    def pump(self, until: Any, timeout: float = 10, ack: bool = True) -> list[Any]:
        """Read frames until ``until(events)`` is true; acknowledges data when ``ack``."""
        deadline = time.monotonic() + timeout
        while not until(self.events):
            assert time.monotonic() < deadline, f"timed out; saw {self.events[-5:]}"
            data = self.sock.recv(65536)
            if not data:
                break
            for event in self.conn.receive_data(data):
                self.events.append(event)
                if ack and isinstance(event, h2.events.DataReceived):
                    self.conn.acknowledge_received_data(event.flow_controlled_length,
                                                        event.stream_id)
            out = self.conn.data_to_send()
            if out:
                self.sock.sendall(out)
        return self.events

    def ended(self, stream: int) -> bool:
        return any(isinstance(e, h2.events.StreamEnded) and e.stream_id == stream
                   for e in self.events)

    def body(self, stream: int) -> bytes:
        return b"".join(e.data for e in self.events
                        if isinstance(e, h2.events.DataReceived) and e.stream_id == stream)

    def close(self) -> None:
        self.sock.close()


def test_streams_are_served_concurrently_a_slow_one_does_not_hold_the_others(
        site: dict[str, Any]) -> None:
    client = H2Client(site["ports"]["web"])
    try:
        slow = client.get("/slow?delay=1.5")
        fast = [client.get(f"/echo?n={n}") for n in range(20)]
        started = time.monotonic()
        client.pump(lambda _: all(client.ended(s) for s in fast))
        assert time.monotonic() - started < 1.0
        assert not client.ended(slow)
        assert [json.loads(client.body(s))["target"] for s in fast] == [
            f"/echo?n={n}" for n in range(20)]
        client.pump(lambda _: client.ended(slow))
    finally:
        client.close()


def test_a_stream_the_client_does_not_read_is_held_by_its_window_alone(
        site: dict[str, Any]) -> None:
    # A 64 KiB stream window that the client never gives back: the big download stalls at it,
    # yet another stream on the same connection is answered (stream windows are separate).
    client = H2Client(site["ports"]["web"])
    try:
        big = client.get(f"/download?size={8 * 1024 * 1024}")
        client.pump(lambda events: sum(len(e.data) for e in events
                                       if isinstance(e, h2.events.DataReceived)) >= 65535,
                    ack=False)
        small = client.get("/echo?second")
        client.pump(lambda _: client.ended(small), ack=False)
        assert json.loads(client.body(small))["target"] == "/echo?second"
        assert len(client.body(big)) <= 65535 and not client.ended(big)
    finally:
        client.close()


def test_a_client_reset_ends_that_stream_and_the_connection_goes_on(
        site: dict[str, Any]) -> None:
    client = H2Client(site["ports"]["web"])
    try:
        big = client.get(f"/download?size={64 * 1024 * 1024}")
        client.pump(lambda events: any(isinstance(e, h2.events.DataReceived) for e in events))
        client.conn.reset_stream(big)
        client.sock.sendall(client.conn.data_to_send())
        after = client.get("/echo?after")
        client.pump(lambda _: client.ended(after))
        assert json.loads(client.body(after))["target"] == "/echo?after"
    finally:
        client.close()


def test_tls_options_without_h2_keep_clients_on_http1(
        loop_thread: LoopThread, tmp_path: Path, ca: trustme.CA) -> None:
    backend = H11Backend(loop_thread)
    issued = ca.issue_cert("web.test")
    cert, key, ca_file = tmp_path / "web.crt", tmp_path / "web.key", tmp_path / "ca.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    dynamic = DYNAMIC.format(url=backend.url, cert=cert, key=key) + (
        "  options:\n    default:\n      alpnProtocols: [http/1.1]\n")
    try:
        with serve(loop_thread, tmp_path, dynamic,
                   entrypoints={"web": "127.0.0.1:0", "websecure": "127.0.0.1:0"}) as ports:
            context = ssl.create_default_context(cafile=str(ca_file))
            context.set_alpn_protocols(["h2", "http/1.1"])
            with socket.create_connection(("127.0.0.1", ports["websecure"])) as raw, \
                    context.wrap_socket(raw, server_hostname="web.test") as tls:
                assert tls.selected_alpn_protocol() == "http/1.1"
    finally:
        backend.close()
